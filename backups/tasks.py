"""What django-q2 runs for backups. Thin: the pipeline holds the work."""

from __future__ import annotations

from opsconsole.tasks import console_task


@console_task
def run_backup(backup_id: str) -> str:
    from backups.models import Backup
    from backups.pipeline import RestoreRefused, run_backup, verify_backup

    backup = run_backup(Backup.objects.get(pk=backup_id))
    if backup.status == Backup.Status.SUCCEEDED and backup.policy and backup.policy.verify_after:
        try:
            backup = verify_backup(backup)
        except RestoreRefused:
            backup.refresh_from_db()
    return backup.status


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
