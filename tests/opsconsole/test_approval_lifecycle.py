"""The whole life of an approval, the same for every kind: queued on approval, claimed
once, failed with a message (never left running), and one reaper for every kind."""

from datetime import timedelta

import pytest
from django.utils import timezone

from opsconsole.approvals.models import ApprovalRequest
from opsconsole.approvals.tasks import approval_models
from opsconsole.reconcile import reconcile
from tests.helpers import run_queued
from tests.testapp.models import ChangeRequest


class ChangeFailed(Exception):
    pass


@pytest.fixture
def change(alice, bob, monkeypatch):
    monkeypatch.setattr(ChangeRequest, "FAILURES", (ChangeFailed,))
    request = ChangeRequest.objects.create(environment="production", requested_by=alice)
    request.approve(bob, confirmation="production")
    return request


def test_approving_queues_the_execution_for_a_worker(change, monkeypatch):
    ran = []
    monkeypatch.setattr(ChangeRequest, "run", lambda self: ran.append(self.pk) or {"reason": "x"})
    assert ran == [] and change.status == "approved", "nothing runs in the approver's request"
    assert run_queued() == ["succeeded"]
    change.refresh_from_db()
    assert ran == [change.pk]
    assert change.status == "succeeded" and change.started_at and change.finished_at
    assert change.reason == "x", "run() returns the fields recorded with success"


def test_a_redelivered_task_does_not_run_it_twice(change, monkeypatch):
    ran = []
    monkeypatch.setattr(ChangeRequest, "run", lambda self: ran.append(self.pk))
    first = ChangeRequest.objects.get(pk=change.pk)
    second = ChangeRequest.objects.get(pk=change.pk)
    first.execute()
    second.execute()
    assert ran == [change.pk]


def test_a_known_failure_is_recorded_with_its_message(change, monkeypatch):
    def run(self):
        raise ChangeFailed("the provider said no")

    failed = []
    monkeypatch.setattr(ChangeRequest, "run", run)
    monkeypatch.setattr(ChangeRequest, "on_failed", lambda self, message: failed.append(message))
    change.execute()
    assert (change.status, change.error) == ("failed", "the provider said no")
    assert failed == ["the provider said no"]


def test_a_bug_fails_the_request_and_still_reaches_the_task_error(change, monkeypatch):
    monkeypatch.setattr(ChangeRequest, "run", lambda self: {}["missing"])
    with pytest.raises(KeyError):
        change.execute()
    change.refresh_from_db()
    assert change.status == "failed" and change.error.startswith("KeyError")


def test_one_reconciler_fails_every_kind_whose_lease_ran_out(db):
    kinds = approval_models()
    names = {m._meta.label for m in kinds}
    assert {
        "deployments.RollbackRequest",
        "deployments.VariableSyncRequest",
        "backups.RestoreRequest",
        "dr.FailoverRun",
        "testapp.ChangeRequest",
    } <= names
    assert all(issubclass(m, ApprovalRequest) for m in kinds)
    now = timezone.now()
    # Started long ago, but its worker renews the lease: alive, left alone.
    renewed = ChangeRequest.objects.create(
        status="running",
        started_at=now - timedelta(hours=3),
        lease_expires_at=now + timedelta(seconds=30),
    )
    stuck = ChangeRequest.objects.create(
        status="running",
        started_at=now - timedelta(minutes=2),
        lease_expires_at=now - timedelta(seconds=1),
    )
    assert reconcile()["expired"] == 1
    stuck.refresh_from_db(), renewed.refresh_from_db()
    assert stuck.status == "failed" and "lease ran out" in stuck.error
    assert renewed.status == "running"
    assert reconcile()["expired"] == 0, "a failed request is not failed twice"


def test_a_failover_run_whose_worker_died_is_failed_with_an_incident(db, alice):
    from alerts.models import Incident
    from dr.models import FailoverAction, FailoverRun

    action = FailoverAction.objects.create(name="flip", kind="command", config={"argv": ["true"]})
    FailoverRun.objects.create(
        action=action, requested_by=alice, status="running",
        started_at=timezone.now() - timedelta(minutes=2),
        lease_expires_at=timezone.now() - timedelta(seconds=5),
    )  # fmt: skip
    assert reconcile()["expired"] == 1
    assert Incident.objects.get(fingerprint=action.fingerprint()).priority == "critical"


def test_retired_schedules_are_removed_and_others_kept(db):
    from django_q.models import Schedule

    from opsconsole import schedules

    Schedule.objects.create(name="deployments.reap_interrupted", func="gone.task", cron="* * * * *",
                            schedule_type=Schedule.CRON)  # fmt: skip
    Schedule.objects.create(name="backup policy 99", func="backups.tasks.run_policy",
                            cron="0 2 * * *", schedule_type=Schedule.CRON)  # fmt: skip
    schedules.sync()
    names = set(Schedule.objects.values_list("name", flat=True))
    assert "deployments.reap_interrupted" not in names
    assert {"backup policy 99", "opsconsole.heartbeat"} <= names
