"""Taking a backup: the engine's dump → zstd → age → SHA-256 → the storage, streamed.

Pipes and bounded buffers all the way: memory stays flat whatever the size of
the database, and the storage's writer commits the object whole or leaves
nothing. (PostgreSQL's dump is never staged on disk; SQLite's consistent
snapshot is a file in the scratch folder, streamed from there.) Reading it
back is `backups.verify`; restoring it is `backups.restore`.
"""

from __future__ import annotations

import logging
import re
import time
from typing import IO

import pyrage
import zstandard
from django.conf import settings
from django.utils import timezone

from alerts.incidents import raise_incident, resolve_incident
from backups import retention
from backups.errors import BackupError, RestoreRefused, StorageError
from backups.metrics import record_metrics
from backups.models import Backup, BackupKey
from backups.streams import CHUNK, HashingWriter
from backups.verify import verify_backup
from opsconsole import leases, tracing

log = logging.getLogger("opsconsole.backups")

PROGRESS_EVERY = 2.0  # seconds between progress writes to the record


class ProgressReader:
    """Counts what passes and writes the count to the record now and then (a heartbeat)."""

    def __init__(self, raw: IO[bytes], backup: Backup):
        self.raw, self.backup, self.count = raw, backup, 0
        self.last = time.monotonic()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(CHUNK if size is None or size < 0 else size)
        self.count += len(data)
        if time.monotonic() - self.last >= PROGRESS_EVERY:
            self.last = time.monotonic()
            Backup.objects.filter(pk=self.backup.pk).update(
                bytes_read=self.count, progress_at=timezone.now()
            )
        return data


def compress_and_encrypt(reader: ProgressReader, out: HashingWriter, recipient: str) -> None:
    """zstd, then age to `recipient`, streamed from `reader` into `out`."""
    compressed = zstandard.ZstdCompressor(level=settings.BACKUPS_ZSTD_LEVEL).stream_reader(reader)
    pyrage.encrypt_io(compressed, out, [pyrage.x25519.Recipient.from_str(recipient)])


def object_key(backup: Backup) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", backup.target.name).strip("-") or "target"
    kind = "base.tar" if backup.kind == Backup.Kind.BASE else "dump"
    return f"{slug}/{backup.id}.{kind}.zst.age"


def back_up(backup: Backup) -> Backup:
    """The whole job: run, read back (unless the policy says not to), metrics, retention."""
    backup = run_backup(backup)
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
    return backup


def run_backup(backup: Backup) -> Backup:
    """Execute a queued backup record. Idempotent: a second call does nothing."""
    if not backup.claim():
        backup.refresh_from_db()
        return backup
    with leases.held(backup):
        return _carry_out(backup)


def _carry_out(backup: Backup) -> Backup:
    with tracing.span(
        f"backup {backup.target.name}",
        {
            "opsconsole.backup": backup.id,
            "opsconsole.target": backup.target.name,
            "opsconsole.engine": backup.target.engine,
            "opsconsole.trigger": backup.trigger,
        },
    ) as current:
        backup = _stream(backup)
        tracing.set_attributes(
            {
                "opsconsole.outcome": backup.status,
                "opsconsole.bytes_read": backup.bytes_read,
                "opsconsole.bytes_stored": backup.bytes_stored,
            }
        )
        if backup.status == Backup.Status.FAILED:
            current.set_status(tracing.Status(tracing.StatusCode.ERROR, backup.error[:200]))
        return backup


def _stream(backup: Backup) -> Backup:
    started = time.monotonic()
    target = backup.target
    storage_key = object_key(backup)
    writer = None
    stderr = ""
    # Everything after the claim is inside the try: whatever fails (the key, the
    # storage, the engine), the record ends failed, never left running.
    try:
        recipient = (
            backup.policy.recipient.strip() if backup.policy else ""
        ) or BackupKey.current().recipient
        storage = backup.storage.backend
        engine = target.db
        client_version, server_version = engine.versions()
        Backup.objects.filter(pk=backup.pk).update(
            client_version=client_version[:100],
            server_version=server_version[:100],
            storage_key=storage_key,
            recipient=recipient,
        )
        metadata = {
            "backup-id": backup.id,
            "date": backup.created_at.isoformat(),
            "service": target.name,
        }
        writer = storage.open_writer(storage_key, metadata)
        hashing = HashingWriter(writer)
        # The stages stream into each other: the dump's span holds the compression and
        # encryption, which holds the uploads of the parts as they fill.
        with tracing.span("backup.dump", {"opsconsole.engine": target.engine}):
            with engine.base_backup() if backup.kind == Backup.Kind.BASE else engine.dump() as dump:
                reader = ProgressReader(dump.stream, backup)
                with tracing.span(
                    "backup.compress_encrypt",
                    {"opsconsole.zstd_level": settings.BACKUPS_ZSTD_LEVEL},
                ):
                    compress_and_encrypt(reader, hashing, recipient)
                    tracing.set_attributes(
                        {"opsconsole.bytes_in": reader.count, "opsconsole.bytes_out": hashing.count}
                    )
            stderr = dump.stderr
        with tracing.span(
            "backup.upload",
            {"opsconsole.storage.kind": backup.storage.kind, "opsconsole.bytes": hashing.count},
        ):
            writer.commit()
        writer = None
    except Exception as exc:
        if writer is not None:
            try:
                writer.abort()
            except Exception:  # the original failure matters more
                log.exception("could not abort the partial object of %s", backup.id)
        message = exc.message if isinstance(exc, BackupError) else f"{type(exc).__name__}: {exc}"
        stderr = exc.stderr if isinstance(exc, BackupError) else stderr
        fail(backup, message, stderr, time.monotonic() - started)
        backup.refresh_from_db()
        return backup
    storage.record_checksum(storage_key, hashing.hash.hexdigest())
    finished = Backup.objects.filter(pk=backup.pk, status=Backup.Status.RUNNING).update(
        status=Backup.Status.SUCCEEDED,
        finished_at=timezone.now(),
        duration_seconds=round(time.monotonic() - started, 3),
        bytes_read=reader.count,
        bytes_stored=hashing.count,
        sha256=hashing.hash.hexdigest(),
        progress_at=timezone.now(),
        stderr_tail=stderr[-4000:],
    )
    backup.refresh_from_db()
    if not finished:
        # The reconciler failed it meanwhile (this worker was cut off for a whole lease).
        log.warning("backup %s finished after it was marked failed", backup.id)
        return backup
    log.info("backup %s of %s: %s bytes stored", backup.id, target.name, backup.bytes_stored)
    resolve_incident(target.fingerprint(), reason=f"backup {backup.id} succeeded")
    return backup


def fail(backup: Backup, message: str, stderr: str, duration: float | None) -> bool:
    """Record the failure of a running backup and raise it through the incident door
    (high). Returns False, doing nothing, when it is no longer running."""
    failed = Backup.objects.filter(pk=backup.pk, status=Backup.Status.RUNNING).update(
        status=Backup.Status.FAILED,
        finished_at=timezone.now(),
        duration_seconds=None if duration is None else round(duration, 3),
        error=message[:4000],
        stderr_tail=stderr[-4000:],
    )
    if not failed:
        return False
    log.error("backup %s of %s failed: %s", backup.id, backup.target.name, message)
    raise_incident(
        source="backups",
        fingerprint=backup.target.fingerprint(),
        title=f"Backup of {backup.target.name} failed",
        priority="high",
        component="backups",
        details={"backup": backup.id, "target": backup.target.name, "error": message[:500]},
    )
    return True


def lease_expired(backup: Backup) -> bool:
    """The reconciler's verdict on a backup whose worker died: failed, with an incident,
    and what it wrote to the storage removed (or left to `clean_up_failed` to retry)."""
    ran = (timezone.now() - backup.started_at).total_seconds() if backup.started_at else None
    failed = fail(
        backup,
        "the worker running this backup stopped (its lease ran out): check the jobs "
        "worker's log for a crash or an out-of-memory kill, then start the backup again",
        "",
        ran,
    )
    if failed and backup.storage_key:
        try:
            backup.storage.backend.abort_partial(backup.storage_key)
        except StorageError as exc:
            log.warning("could not clean up after backup %s yet: %s", backup.id, exc)
    return failed
