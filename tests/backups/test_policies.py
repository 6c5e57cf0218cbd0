"""Policies and their schedules, retention with a controlled clock, and the RPO metrics."""

from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from django_q.models import Schedule

from backups import retention
from backups.models import Backup, BackupPolicy, DatabaseTarget, RestoreRequest, StorageLocation

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


@pytest.fixture
def sqlite_target(db, tmp_path):
    return DatabaseTarget.objects.create(
        name="app", engine="sqlite", dsn=f"sqlite:///{tmp_path}/app.db"
    )


def test_a_new_target_gets_the_original_policies_and_their_schedules(sqlite_target):
    policies = {p.kind: p for p in sqlite_target.policies.all()}
    assert {k: (p.schedule, p.retention_days) for k, p in policies.items()} == {
        # Hourly meets the shipped objective's RPO of 60 minutes without continuous WAL.
        "hourly": ("0 * * * *", 2),
        "daily": ("0 2 * * *", 7),
        "weekly": ("0 3 * * 0", 30),
        "monthly": ("0 4 1 * *", 365),
    }
    schedule = Schedule.objects.get(name=policies["daily"].schedule_name)
    assert (schedule.func, schedule.cron, schedule.args) == (
        "backups.tasks.run_policy",
        "0 2 * * *",
        repr((policies["daily"].pk,)),
    )


def test_schedules_follow_the_policy(sqlite_target):
    policy = sqlite_target.policies.get(kind="daily")
    policy.schedule = "30 1 * * *"
    policy.save()
    assert Schedule.objects.get(name=policy.schedule_name).cron == "30 1 * * *"
    policy.enabled = False
    policy.save()
    assert not Schedule.objects.filter(name=policy.schedule_name).exists()
    policy.enabled = True
    policy.save()
    name = policy.schedule_name
    policy.delete()
    assert not Schedule.objects.filter(name=name).exists()


def test_a_bad_cron_is_refused_with_an_example(sqlite_target):
    policy = BackupPolicy(
        name="x", target=sqlite_target, storage=StorageLocation.default(), schedule="every day"
    )
    with pytest.raises(ValidationError, match="0 2"):
        policy.full_clean()


def make(target, policy, days_ago, status="verified", kind=None):
    return Backup.objects.create(
        target=target, storage=policy.storage, policy=policy, kind=kind or policy.kind,
        status=status, created_at=NOW - timedelta(days=days_ago), storage_key=f"k{days_ago}{policy.kind}",
    )  # fmt: skip


def test_retention_judges_each_kind_by_its_own_window(sqlite_target):
    daily = sqlite_target.policies.get(kind="daily")
    weekly = sqlite_target.policies.get(kind="weekly")
    monthly = sqlite_target.policies.get(kind="monthly")
    keep = [make(sqlite_target, daily, 1), make(sqlite_target, daily, 6), make(sqlite_target, weekly, 20),
            make(sqlite_target, monthly, 200)]  # fmt: skip
    drop = [make(sqlite_target, daily, 8), make(sqlite_target, daily, 30), make(sqlite_target, weekly, 31),
            make(sqlite_target, monthly, 400)]  # fmt: skip
    due = {b.pk for b in retention.due_for_deletion(NOW)}
    assert due == {b.pk for b in drop}
    assert not due & {b.pk for b in keep}


def test_retention_never_deletes_the_newest_verified_backup_or_one_being_restored(
    sqlite_target, alice
):
    daily = sqlite_target.policies.get(kind="daily")
    newest_verified = make(sqlite_target, daily, 10)
    make(sqlite_target, daily, 2, status="succeeded")  # newer, but not verified
    old = make(sqlite_target, daily, 20)
    in_restore = make(sqlite_target, daily, 30)
    RestoreRequest.objects.create(backup=in_restore, requested_by=alice, new_database="x")
    due = {b.pk for b in retention.due_for_deletion(NOW)}
    assert due == {old.pk}
    assert newest_verified.pk not in due


def test_prune_deletes_the_object_and_records_it(sqlite_target, tmp_path):
    daily = sqlite_target.policies.get(kind="daily")
    storage = StorageLocation.objects.create(
        name="t", kind="local", config={"path": str(tmp_path / "s")}
    )
    daily.storage = storage
    daily.save()
    make(sqlite_target, daily, 1)
    old = make(sqlite_target, daily, 9)
    obj = tmp_path / "s" / old.storage_key
    obj.parent.mkdir(parents=True, exist_ok=True)
    obj.write_bytes(b"x")
    storage.backend.record_checksum(old.storage_key, "0" * 64)
    assert [b.pk for b in retention.prune(NOW, dry_run=True)] == [old.pk]
    assert obj.exists(), "a dry run deletes nothing"
    assert [b.pk for b in retention.prune(NOW)] == [old.pk]
    old.refresh_from_db()
    assert old.status == "deleted" and old.deleted_at is not None and not obj.exists()
    assert not list(obj.parent.iterdir()), "its checksum went with it"


def test_metrics_give_the_live_rpo_for_alert_rules(sqlite_target):
    from alerts.models import MetricSample
    from backups.metrics import record_metrics

    daily = sqlite_target.policies.get(kind="daily")
    b = make(sqlite_target, daily, 2, status="verified")
    Backup.objects.filter(pk=b.pk).update(bytes_stored=1234, duration_seconds=5.5)
    record_metrics(sqlite_target.pk)
    values = dict(MetricSample.objects.filter(labels__target="app").values_list("key", "value"))
    assert values["backups.last_size_bytes"] == 1234
    assert values["backups.last_duration_seconds"] == 5.5
    from django.utils import timezone

    expected = (timezone.now() - b.created_at).total_seconds()
    assert values["backups.newest_good_age_seconds"] == pytest.approx(expected, abs=60)


def test_the_admin_previews_the_next_prune(client, carol, sqlite_target):
    from tests.conftest import login

    daily = sqlite_target.policies.get(kind="daily")
    from django.utils import timezone

    old = Backup.objects.create(target=sqlite_target, storage=daily.storage, policy=daily, kind="daily",
                                status="verified", created_at=timezone.now() - timedelta(days=20))  # fmt: skip
    newest = Backup.objects.create(target=sqlite_target, storage=daily.storage, policy=daily, kind="daily",
                                   status="verified", created_at=timezone.now())  # fmt: skip
    page = login(client, carol).get("/admin/backups/backup/retention/").content.decode()
    doomed = page.split('id="retention-doomed"')[1].split("</table>")[0]
    assert old.id in doomed and newest.id not in doomed
    assert (
        "Retention preview" in login(client, carol).get("/admin/backups/backup/").content.decode()
    )
