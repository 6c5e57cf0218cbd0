"""Retention: which backups have outlived their policy's window, and deleting them.

Each kind is judged by its own window (daily 7 days, weekly 30, monthly 365 by
default). Never deleted: the newest verified backup of a target (or, if none
is verified, its newest good one), a backup an open restore refers to, and
manual backups (they have no window).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from backups.models import Backup, BackupPolicy, RestoreRequest
from backups.storages import StorageError

log = logging.getLogger("opsconsole.backups.retention")


def protected_ids() -> set[str]:
    keep: set[str] = set()
    for target_id in Backup.objects.values_list("target_id", flat=True).distinct():
        good = Backup.objects.filter(target_id=target_id, status__in=Backup.GOOD)
        newest = good.filter(status=Backup.Status.VERIFIED).order_by("-created_at").first()
        newest = newest or good.order_by("-created_at").first()
        if newest:
            keep.add(newest.pk)
    keep |= set(
        RestoreRequest.objects.filter(status__in=RestoreRequest.OPEN).values_list(
            "backup_id", flat=True
        )
    )
    return keep


def due_for_deletion(now: datetime | None = None) -> list[Backup]:
    """What the next prune would delete, oldest first."""
    now = now or timezone.now()
    windows = Q(pk__in=[])
    for policy in BackupPolicy.objects.exclude(kind=BackupPolicy.Kind.MANUAL):
        windows |= Q(
            policy=policy,
            kind=policy.kind,
            created_at__lt=now - timedelta(days=policy.retention_days),
        )
    candidates = Backup.objects.filter(windows, status__in=Backup.GOOD).exclude(
        pk__in=protected_ids()
    )
    return list(candidates.select_related("target", "storage").order_by("created_at"))


def prune(now: datetime | None = None, dry_run: bool = False) -> list[Backup]:
    doomed = due_for_deletion(now)
    if dry_run:
        return doomed
    deleted = []
    for backup in doomed:
        try:
            backup.storage.backend.delete(backup.storage_key)
        except StorageError as exc:
            log.warning("could not delete %s: %s", backup.id, exc)
            continue
        Backup.objects.filter(pk=backup.pk).update(
            status=Backup.Status.DELETED, deleted_at=timezone.now()
        )
        log.info("retention deleted %s (%s, %s)", backup.id, backup.target.name, backup.kind)
        deleted.append(backup)
    return deleted
