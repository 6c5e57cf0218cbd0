"""What django-q2 runs for backups. Thin: the pipeline holds the work."""

from __future__ import annotations

import contextlib

from opsconsole.tasks import console_task


@console_task
def run_backup(backup_id: str) -> str:
    return _run_and_follow_up(backup_id)


def _run_and_follow_up(backup_id: str) -> str:
    """Run a queued backup, verify it when its policy says so, then apply retention."""
    from backups import retention
    from backups.models import Backup
    from backups.pipeline import RestoreRefused, run_backup, verify_backup

    backup = run_backup(Backup.objects.get(pk=backup_id))
    if backup.status == Backup.Status.SUCCEEDED and (
        backup.policy is None or backup.policy.verify_after
    ):
        try:
            backup = verify_backup(backup)
        except RestoreRefused:
            backup.refresh_from_db()
    record_metrics(backup.target_id)
    if backup.is_good:
        retention.prune()
    return backup.status


@console_task
def run_policy(policy_id: int) -> str | None:
    """What a policy's schedule calls: one backup record, then the normal run."""
    from backups.models import BackupPolicy

    policy = BackupPolicy.objects.filter(pk=policy_id, enabled=True).first()
    if policy is None:
        return None
    return _run_and_follow_up(policy.start().pk)


@console_task
def run_restore(request_id: int) -> None:
    from backups.models import RestoreRequest
    from backups.pipeline import execute_restore

    execute_restore(RestoreRequest.objects.get(pk=request_id))


@console_task
def verify_newest() -> int:
    """Daily: read back the newest good backup of every target."""
    from backups.models import DatabaseTarget
    from backups.pipeline import RestoreRefused, verify_backup

    checked = 0
    for target in DatabaseTarget.objects.all():
        newest = target.newest_good_backup()
        if newest is not None:
            # A failure is recorded on the backup and raised as an incident by verify_backup.
            with contextlib.suppress(RestoreRefused):
                verify_backup(newest)
            checked += 1
    return checked


@console_task
def verify_one(backup_id: str) -> str:
    from backups.models import Backup
    from backups.pipeline import RestoreRefused, verify_backup

    backup = Backup.objects.get(pk=backup_id)
    with contextlib.suppress(RestoreRefused):
        backup = verify_backup(backup)
    backup.refresh_from_db()
    return backup.status


@console_task
def prune() -> int:
    from backups import retention

    return len(retention.prune())


@console_task
def record_all_metrics() -> int:
    from backups.models import DatabaseTarget

    ids = list(DatabaseTarget.objects.values_list("pk", flat=True))
    for pk in ids:
        record_metrics(pk)
    return len(ids)


def record_metrics(target_id: int) -> None:
    """Samples for alert rules: live RPO (age of the newest good backup), last size and duration."""
    from django.utils import timezone

    from alerts.models import MetricSample
    from backups.models import DatabaseTarget

    target = DatabaseTarget.objects.get(pk=target_id)
    now = timezone.now()
    labels = {"target": target.name}
    newest = target.newest_good_backup()
    samples = []
    if newest is not None:
        samples += [
            ("backups.newest_good_age_seconds", (now - newest.created_at).total_seconds()),
            ("backups.last_size_bytes", float(newest.bytes_stored)),
            ("backups.last_duration_seconds", float(newest.duration_seconds or 0)),
        ]
    for key, value in samples:
        MetricSample.objects.create(key=key, value=value, labels=labels, observed_at=now)


@console_task
def reap_stalled() -> int:
    """Running backups whose worker is gone: fail them and abort what they left in storage."""
    from django.utils import timezone

    from backups.models import Backup
    from backups.pipeline import fail

    reaped = 0
    for backup in Backup.stale():
        _abort_leftovers(backup)
        ran = (timezone.now() - backup.started_at).total_seconds() if backup.started_at else None
        fail(
            backup,
            "the worker stopped without finishing (no progress); marked failed by the reaper",
            "",
            ran,
        )
        reaped += 1
    return reaped


def _abort_leftovers(backup) -> None:
    backend = backup.storage.backend
    if backup.storage.kind == "s3":
        client, bucket = backend.client(), backend.config["bucket"]
        key = backend._key(backup.storage_key) if backup.storage_key else None
        for upload in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            if key and upload["Key"] == key:
                client.abort_multipart_upload(
                    Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                )
    elif backup.storage_key:
        from pathlib import Path

        partial = Path(backend._path(backup.storage_key))
        partial.with_name(partial.name + ".partial").unlink(missing_ok=True)
