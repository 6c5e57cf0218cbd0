"""Retention: which backups have outlived their policy's window, and deleting them.

Each kind is judged by its own window (hourly 2 days, daily 7, weekly 30,
monthly 365, base 30 by default). Continuous WAL is kept from the first segment
the oldest kept base backup needs, and nothing older. Never deleted: the
newest verified backup of a target (or, if none is verified, its newest good
one), a backup an open restore refers to, and manual backups (they have no
window).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils import timezone

from backups.models import Backup, BackupPolicy, RestoreRequest, WalArchive, WalSegment
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


def wal_due_for_deletion(now: datetime | None = None) -> dict[WalArchive, list[WalSegment]]:
    """WAL older than what the oldest base backup still kept needs, per archive. With no
    kept base backup nothing is deleted: the WAL waits for the next one."""
    doomed = {backup.pk for backup in due_for_deletion(now)}
    found = {}
    for archive in WalArchive.objects.select_related("target", "storage"):
        kept = Backup.objects.filter(
            target=archive.target, kind=Backup.Kind.BASE, status__in=Backup.GOOD
        ).exclude(pk__in=doomed)
        starts = [b.toc_summary.get("start wal") for b in kept]
        if not starts or not all(starts):
            continue  # a kept base backup whose start is unknown: keep everything
        oldest = min(starts)
        old = archive.segments.filter(name__lt=oldest).exclude(name__endswith=".history")
        old = list(old.order_by("name"))
        if old:
            found[archive] = old
    return found


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
    prune_wal(now)
    return deleted


def prune_wal(now: datetime | None = None) -> int:
    count = 0
    for archive, segments in wal_due_for_deletion(now).items():
        for segment in segments:
            try:
                archive.storage.backend.delete(segment.storage_key)
            except StorageError as exc:
                log.warning("could not delete WAL %s of %s: %s", segment.name, archive, exc)
                break
            segment.delete()
            count += 1
        log.info("retention deleted %s WAL segment(s) of %s", count, archive.target.name)
    return count
