"""Reading a backup back: storage → SHA-256 → age → zstd → a plain archive the engine reads.

Every check (checksum, key, decompression, the archive's contents) passes
before anything counts as verified or is restored; a failure names what is
wrong and leaves nothing half-made.
"""

from __future__ import annotations

import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import BinaryIO

import pyrage
import zstandard
from django.utils import timezone

from alerts.incidents import raise_incident
from backups.errors import EngineError, RestoreRefused, StorageError
from backups.models import Backup, BackupKey
from backups.streams import HashingReader, scratch_dir
from opsconsole import tracing


def extract(backup: Backup, into: Path | BinaryIO) -> dict[str, float]:
    """Storage → checksum → decrypt → decompress into a plain archive file (or a stream
    `into`, left open), or RestoreRefused.

    The stages stream into each other, so they are timed by where the time goes:
    waiting on the storage is "download", everything else "decrypt_decompress".
    Returns those two timings (also on the span, as the fetch and the decryption share it).
    """
    with tracing.span(
        "backup.fetch_decrypt",
        {"opsconsole.backup": backup.id, "opsconsole.bytes_stored": backup.bytes_stored},
    ):
        timings = _extract(backup, into)
        tracing.set_attributes(
            {
                "opsconsole.fetch_ms": round(timings["download"] * 1000),
                "opsconsole.decrypt_decompress_ms": round(timings["decrypt_decompress"] * 1000),
            }
        )
        return timings


def _extract(backup: Backup, into: Path | BinaryIO) -> dict[str, float]:
    started = time.monotonic()
    if not backup.is_good or not backup.storage_key:
        raise RestoreRefused(
            f"{backup.id} is {backup.get_status_display().lower()}: nothing to restore"
        )
    try:
        raw = backup.storage.backend.open_reader(backup.storage_key)
    except StorageError as exc:
        raise RestoreRefused(f"the stored object cannot be read: {exc}") from None
    reader = HashingReader(raw)
    failure = None
    try:
        with open(into, "wb") if isinstance(into, Path) else nullcontext(into) as plain:
            decompressor = zstandard.ZstdDecompressor().stream_writer(plain, closefd=False)
            pyrage.decrypt_io(reader, decompressor, BackupKey.identities())
            decompressor.flush()
    except pyrage.DecryptError as exc:
        if "No matching keys" in str(exc):
            failure = (
                "wrong key: no key this console holds opens it "
                f"(it was encrypted to {backup.recipient})"
            )
        else:
            failure = f"decryption failed: {exc}"
    except OSError as exc:
        failure = f"decryption failed ({exc}): the object is damaged"
    except zstandard.ZstdError as exc:
        failure = f"decompression failed: {exc}"
    finally:
        try:
            reader.drain()  # hash the rest, so a checksum mismatch can be named
        finally:
            raw.close()
    digest = reader.hash.hexdigest()
    if digest != backup.sha256 or reader.count != backup.bytes_stored:
        raise RestoreRefused(
            f"checksum mismatch: the stored object was modified or truncated "
            f"({reader.count} bytes, sha256 {digest[:12]}…; recorded {backup.bytes_stored} bytes, "
            f"{backup.sha256[:12]}…)"
        )
    if failure:
        raise RestoreRefused(failure)
    total = time.monotonic() - started
    return {"download": reader.read_seconds, "decrypt_decompress": total - reader.read_seconds}


def verify_backup(backup: Backup) -> Backup:
    """Read the object back whole: checksum, key, decompression, the archive's contents."""
    with tracing.span("backup.verify", {"opsconsole.backup": backup.id}) as current:
        backup = _verify(backup)
        current.set_attribute("opsconsole.outcome", backup.status)
        return backup


def _verify(backup: Backup) -> Backup:
    with tempfile.TemporaryDirectory(prefix="opsconsole-verify-", dir=scratch_dir()) as tmp:
        archive = Path(tmp) / "archive"
        try:
            extract(backup, archive)
            engine = backup.target.db
            toc = (
                engine.describe_base_backup(archive)
                if backup.kind == Backup.Kind.BASE
                else engine.describe_archive(archive)
            )
        except (RestoreRefused, EngineError) as exc:
            Backup.objects.filter(pk=backup.pk).update(error=f"verification failed: {exc}"[:4000])
            raise_incident(
                source="backups",
                fingerprint=backup.verification_fingerprint(),
                title=f"Backup {backup.id} failed verification",
                priority="high",
                component="backups",
                details={"backup": backup.id, "error": str(exc)[:500]},
            )
            backup.refresh_from_db()
            raise RestoreRefused(str(exc)) from None
    Backup.objects.filter(pk=backup.pk).update(
        status=Backup.Status.VERIFIED, verified_at=timezone.now(), toc_summary=toc
    )
    backup.refresh_from_db()
    return backup
