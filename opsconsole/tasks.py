"""What django-q2 runs, and the one way the console enqueues work.

Every task function is wrapped with `@console_task`: it carries the correlation
id and the trace context of the request that enqueued it into the worker (its
log lines, its spans), and reports an exception to Sentry before django-q2
records the failure (sentry-sdk has no django-q integration). A task run by a
schedule starts a trace of its own.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone
from django_q.tasks import async_task

from opsconsole import sentry, tracing
from opsconsole.logs import (
    get_correlation_id,
    new_correlation_id,
    reset_correlation_id,
    set_correlation_id,
)
from opsconsole.models import WorkerHeartbeat

log = logging.getLogger("opsconsole.tasks")
F = TypeVar("F", bound=Callable[..., Any])
CORRELATION_KWARG = "_correlation_id"


def console_task(func: F) -> F:
    name = f"{func.__module__}.{func.__qualname__}"

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        correlation_id = kwargs.pop(CORRELATION_KWARG, None) or new_correlation_id()
        carrier = kwargs.pop(tracing.CARRIER_KWARG, None)
        token = set_correlation_id(correlation_id)
        try:
            with tracing.continued(
                carrier,
                f"task {name}",
                {"opsconsole.task": name, "opsconsole.correlation_id": correlation_id},
                kind=tracing.SpanKind.CONSUMER,
            ):
                try:
                    return func(*args, **kwargs)
                except Exception:
                    # Inside the span: the event and the log line carry the trace.
                    sentry.capture_exception(task=name, correlation_id=correlation_id)
                    log.exception("task %s failed", func.__qualname__)
                    raise
        finally:
            reset_correlation_id(token)

    return wrapper  # type: ignore[return-value]


def outlived_any_task(now: datetime | None = None) -> datetime:
    """Work started before this has run longer than django-q2 lets a task run (Q_TIMEOUT,
    plus a margin): its worker is gone, whatever the record still says."""
    return (now or timezone.now()) - timedelta(seconds=settings.Q_TIMEOUT + 300)


def enqueue(func: str | Callable[..., Any], *args: Any, **kwargs: Any) -> str:
    """async_task with the current correlation id and trace context attached. Returns the
    task id."""
    kwargs.setdefault(CORRELATION_KWARG, get_correlation_id())
    name = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    with tracing.span(f"enqueue {name}", {"opsconsole.task": name}, kind=tracing.SpanKind.PRODUCER):
        if carrier := tracing.inject():
            kwargs.setdefault(tracing.CARRIER_KWARG, carrier)
        return async_task(func, *args, **kwargs)


@console_task
def heartbeat() -> None:
    """Scheduled every ~30 s: proves the scheduler, the broker and a worker all work."""
    WorkerHeartbeat.beat()
    WorkerHeartbeat.prune()


WORKER_BEAT_SECONDS = 15.0


def worker_started(sender: Any = None, proc_name: str = "", **kwargs: Any) -> None:
    """django-q2 post_spawn receiver, in each new worker process: it counts as alive at
    once, and a thread beats for it every 15 s for as long as the process lives, so a
    worker busy with a four-hour backup does not look dead."""
    close_old_connections()
    try:
        WorkerHeartbeat.beat()
    except Exception:
        # A worker must start even when the database hiccups; the thread beats again.
        log.exception("could not record the worker heartbeat")
    threading.Thread(target=_beat_while_alive, name="heartbeat", daemon=True).start()


def _beat_while_alive() -> None:
    while True:
        time.sleep(WORKER_BEAT_SECONDS)
        try:
            WorkerHeartbeat.beat()
        except Exception:
            log.warning("could not record the worker heartbeat")
            # A broken connection is dropped so the next beat opens a new one; the
            # thread itself must outlive any database trouble.
            with contextlib.suppress(Exception):
                close_old_connections()
