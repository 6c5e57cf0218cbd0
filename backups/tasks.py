"""What django-q2 runs for backups. Thin: `backups.backup`, `verify` and `retention` hold
the work."""

from __future__ import annotations

import contextlib
import logging
from datetime import timedelta

from django.utils import timezone

from backups import retention
from backups.backup import back_up
from backups.errors import RestoreRefused, StorageError
from backups.metrics import record_metrics
from backups.models import Backup, BackupPolicy, DatabaseTarget
from backups.verify import verify_backup
from opsconsole.tasks import console_task

log = logging.getLogger("opsconsole.backups")


@console_task
def run_backup(backup_id: str) -> str:
    return back_up(Backup.objects.get(pk=backup_id)).status


@console_task
def run_policy(policy_id: int) -> str | None:
    """What a policy's schedule calls: one backup record, then the normal run."""

    policy = BackupPolicy.objects.filter(pk=policy_id, enabled=True).first()
    if policy is None:
        return None

    return back_up(policy.start()).status


@console_task
def verify_newest() -> int:
    """Daily: read back the newest good backup of every target."""
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
    backup = Backup.objects.get(pk=backup_id)
    with contextlib.suppress(RestoreRefused):
        backup = verify_backup(backup)
    backup.refresh_from_db()
    return backup.status


@console_task
def prune() -> int:
    return len(retention.prune())


@console_task
def record_all_metrics() -> int:
    ids = list(DatabaseTarget.objects.values_list("pk", flat=True))
    for pk in ids:
        record_metrics(pk)
    return len(ids)


@console_task
def check_wal_archives() -> int:
    from backups.wal import check_archives

    return check_archives()


@console_task
def clean_up() -> int:
    from backups.pitr import clean_up_scratch

    return clean_up_failed() + clean_up_scratch()


def clean_up_failed(within: timedelta = timedelta(days=1)) -> int:
    """Abort what failed backups left in storage (a partial file, an open multipart
    upload). An abort that fails (the storage was down) is tried again on the next run,
    until it succeeds or the day is over."""
    cleaned = 0
    recent = Backup.objects.filter(
        status=Backup.Status.FAILED, finished_at__gte=timezone.now() - within
    ).exclude(storage_key="")
    for backup in recent.select_related("storage"):
        try:
            cleaned += backup.storage.backend.abort_partial(backup.storage_key)
        except StorageError as exc:
            log.warning("could not clean up after backup %s yet: %s", backup.id, exc)
    return cleaned
