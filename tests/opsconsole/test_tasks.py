"""Tasks carry the request's correlation id into the worker."""

import logging

from django_q.conf import Conf

from opsconsole.logs import get_correlation_id, reset_correlation_id, set_correlation_id
from opsconsole.tasks import console_task, enqueue

seen: list[str | None] = []


@console_task
def remember_correlation_id():
    seen.append(get_correlation_id())
    logging.getLogger("opsconsole.test").info("inside the task")
    return get_correlation_id()


def test_enqueued_task_runs_under_the_enqueuing_correlation_id(db, monkeypatch, caplog):
    monkeypatch.setattr(Conf, "SYNC", True)
    caplog.set_level(logging.INFO)
    token = set_correlation_id("req-123")
    try:
        enqueue("tests.opsconsole.test_tasks.remember_correlation_id")
    finally:
        reset_correlation_id(token)
    assert seen[-1] == "req-123"
    assert get_correlation_id() is None, "the worker's id must not leak back"


def test_a_task_without_a_request_gets_its_own_id(db):
    result = remember_correlation_id()
    assert result and len(result) == 32
