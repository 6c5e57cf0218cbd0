"""The console's own spans for a rollback and a restore: names, parents, attributes.

The console's tracer is pointed at an SDK provider that keeps spans in memory (the one
seam); the rollback and the restore run for real (commands, pg_restore, PostgreSQL).
"""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from backups.backup import run_backup
from backups.models import Backup, RestoreRequest
from opsconsole import tracing
from tests.deployments.test_providers import gradual_command_env


@pytest.fixture
def spans(monkeypatch):
    exported = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(tracing.ShapingExporter(exported)))
    monkeypatch.setattr(tracing, "tracer", provider.get_tracer("opsconsole"))

    def finished() -> dict[str, list]:
        by_name: dict[str, list] = {}
        for s in exported.get_finished_spans():
            by_name.setdefault(s.name, []).append(s)
        return by_name

    return finished


def child_of(span, parent) -> bool:
    return span.parent is not None and span.parent.span_id == parent.context.span_id


def test_a_gradual_rollback_has_a_span_per_step_with_its_commands(db, alice, bob, tmp_path, spans):
    from deployments import rollbacks

    env, _ = gradual_command_env(db, tmp_path)
    env.base_url, env.endpoints, env.probe_requests = "http://127.0.0.1:9", [], 1
    env.save()
    request = rollbacks.request_rollback(env, alice, reason="bad deploy")
    request.approve(bob, confirmation="staging")
    request.execute()
    assert request.status == "failed"  # nothing answers: the first step breaches

    found = spans()
    run = found["run rollbackrequest"][0]
    assert run.attributes["opsconsole.request.id"] == request.pk
    assert run.attributes["opsconsole.outcome"] == "failed"
    assert run.attributes["opsconsole.environment"] == "staging"
    assert run.attributes["opsconsole.version.target"] == "v1"
    assert not run.status.is_ok
    assert child_of(found["approval.claim"][0], run)
    assert found["approval.claim"][0].attributes["opsconsole.claimed"] is True
    (step,) = found["rollback.step"]
    assert child_of(step, run)
    assert step.attributes["opsconsole.percent"] == 25
    assert step.attributes["opsconsole.breach"], "the breach that stopped it"
    # The provider's commands are child processes, each with its exit code.
    commands = [s for name, each in found.items() if name.startswith("exec python") for s in each]
    assert commands and all(s.attributes["process.exit.code"] == 0 for s in commands)
    assert any(child_of(s, step) for s in commands), "set_weights runs inside its step"


def test_a_rollback_has_the_provider_call_then_verification(db, alice, bob, tmp_path, spans):
    from deployments import rollbacks

    env, _ = gradual_command_env(db, tmp_path)
    env.gradual_rollback, env.base_url, env.endpoints, env.probe_requests = (
        False, "http://127.0.0.1:9", [], 1,
    )  # fmt: skip
    env.save()
    request = rollbacks.request_rollback(env, alice, reason="bad deploy")
    request.approve(bob, confirmation="staging")
    request.execute()
    found = spans()
    run = found["run rollbackrequest"][0]
    call, verify = found["rollback.provider_call"][0], found["rollback.verify"][0]
    assert child_of(call, run) and child_of(verify, run)
    assert call.attributes["opsconsole.provider"] == "command"
    assert child_of(found["exec true"][0], call)
    assert found["exec true"][0].attributes["process.exit.code"] == 0
    assert verify.start_time >= call.end_time
    assert verify.attributes["opsconsole.outcome"] == "failed"


@pytest.mark.postgres
def test_a_restore_has_fetch_restore_and_checks_spans(target, local_storage, alice, bob, spans):
    backup = run_backup(Backup.objects.create(target=target, storage=local_storage))
    assert backup.status == "succeeded", backup.error
    request = RestoreRequest(backup=backup, requested_by=alice)
    request.full_clean()  # names the new database
    request.save()
    request.approve(bob, confirmation=request.backup.target.name)
    RestoreRequest.objects.get(pk=request.pk).execute()
    request.refresh_from_db()
    assert request.status == "succeeded", request.error
    target.db.drop_database(request.new_database)

    found = spans()
    run = found["run restorerequest"][0]
    restore = found["restore shorts"][0]
    assert child_of(restore, run)
    assert restore.attributes["opsconsole.mode"] == "new"
    assert restore.attributes["opsconsole.backup"] == backup.id
    fetch = next(s for s in found["backup.fetch_decrypt"] if child_of(s, restore))
    assert fetch.attributes["opsconsole.bytes_stored"] == backup.bytes_stored
    assert {"opsconsole.fetch_ms", "opsconsole.decrypt_decompress_ms"} <= set(fetch.attributes)
    steps = {
        name: found[name][0]
        for name in ("restore.read_archive", "restore.restore", "restore.checks")
    }
    assert all(child_of(s, restore) for s in steps.values())
    assert steps["restore.checks"].attributes["opsconsole.problems"] == 0
    pg_restore = [s for s in found["exec pg_restore"] if child_of(s, steps["restore.restore"])]
    assert pg_restore and pg_restore[0].attributes["process.exit.code"] == 0
    # In order: fetched, read, restored, checked.
    order = [fetch, *steps.values()]
    assert [s.start_time for s in order] == sorted(s.start_time for s in order)


def test_a_page_sent_again_after_its_sender_died_stays_in_the_checks_trace(db, httpserver, spans):
    """The alert path died mid-send; the reconciler re-queues the page, and the new send
    joins the same trace as the first (the notification keeps its traceparent)."""
    from datetime import timedelta

    from django.utils import timezone

    from alerts import notify
    from alerts.models import Channel, Notification

    httpserver.expect_request("/page").respond_with_data("ok")
    channel = Channel.objects.create(name="hook", kind="webhook", secret="s",
                                     config={"url": httpserver.url_for("/page")})  # fmt: skip
    with tracing.tracer.start_as_current_span("check api") as check:
        queued = Notification.objects.create(channel=channel, event="test")
    assert queued.traceparent.split("-")[1] == f"{check.get_span_context().trace_id:032x}"
    # Cut short: still "sending", its lease run out two minutes ago.
    Notification.objects.filter(pk=queued.pk).update(
        status="sending", attempts=1, lease_expires_at=timezone.now() - timedelta(minutes=2)
    )
    assert notify.lease_expired(Notification.objects.get(pk=queued.pk))
    assert notify.deliver(queued.pk) == "sent"
    (send,) = spans()["notify webhook"]
    assert send.context.trace_id == check.get_span_context().trace_id
    assert send.parent.span_id == check.get_span_context().span_id
    assert send.attributes["opsconsole.notification.attempt"] == 2
    assert send.attributes["opsconsole.provider.status"] == 200
    assert httpserver.log, "the page went out"
