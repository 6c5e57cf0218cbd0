"""The backup and restore pipelines: stream, never buffer.

Backup:  pg_dump -Fc -Z0 → zstd → age (pyrage) → SHA-256 → storage, through
pipes and bounded buffers: memory stays flat whatever the database size.
Restore: storage → SHA-256 → age → zstd → a plain archive file → pg_restore.
Every check (checksum, key, decompression, archive) passes before a database
is created; any failure leaves the target untouched and nothing half-made.
"""

from __future__ import annotations

import collections
import hashlib
import logging
import os
import re
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

import pyrage
import zstandard
from django.conf import settings
from django.utils import timezone

from backups.engines import EngineError, PostgresEngine, SqliteEngine
from backups.errors import BackupError, RestoreRefused
from backups.models import Backup, BackupKey
from backups.storages import StorageError

log = logging.getLogger("opsconsole.backups")

CHUNK = 1024 * 1024
PROGRESS_EVERY = 2.0  # seconds between progress writes to the record


# --- stream pieces -------------------------------------------------------------------


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


class HashingWriter:
    def __init__(self, sink):
        self.sink, self.hash, self.count = sink, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.count += len(data)
        self.sink.write(data)
        return len(data)

    def flush(self) -> None:  # pyrage may call it
        pass


class HashingReader:
    """Hashes what passes through and counts the time spent waiting on the storage."""

    def __init__(self, raw: IO[bytes]):
        self.raw, self.hash, self.count = raw, hashlib.sha256(), 0
        self.read_seconds = 0.0

    def read(self, size: int = -1) -> bytes:
        started = time.monotonic()
        data = self.raw.read(CHUNK if size is None or size < 0 else size)
        self.read_seconds += time.monotonic() - started
        self.hash.update(data)
        self.count += len(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


class StderrTail:
    """Drains a child's stderr on its own thread (a full pipe would stall the child)."""

    def __init__(self, stream: IO[bytes], lines: int = 40):
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self.thread = threading.Thread(target=self._drain, args=(stream,), daemon=True)
        self.thread.start()

    def _drain(self, stream) -> None:
        for line in iter(stream.readline, b""):
            self.lines.append(line.decode(errors="replace").rstrip())

    def text(self) -> str:
        self.thread.join(timeout=5)
        return "\n".join(self.lines)


def _watchdog(process: subprocess.Popen, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, lambda: process.poll() is None and process.kill())
    timer.daemon = True
    timer.start()
    return timer


# --- backup ----------------------------------------------------------------------------


def object_key(backup: Backup) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", backup.target.name).strip("-") or "target"
    return f"{slug}/{backup.id}.dump.zst.age"


def back_up(backup: Backup) -> Backup:
    """The whole job: run, read back (unless the policy says not to), metrics, retention."""
    from backups import retention
    from backups.metrics import record_metrics

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
    started = time.monotonic()
    target = backup.target
    recipient = (
        backup.policy.recipient.strip() if backup.policy else ""
    ) or BackupKey.current().recipient
    storage_key = object_key(backup)
    writer = None
    stderr = ""
    try:
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
        writer = backup.storage.backend.open_writer(storage_key, metadata)
        hashing = HashingWriter(writer)
        if isinstance(engine, PostgresEngine):
            reader, stderr = _stream_pg_dump(engine, backup, hashing, recipient)
        elif isinstance(engine, SqliteEngine):
            reader = _stream_sqlite(engine, backup, hashing, recipient)
        else:  # pragma: no cover - the registry holds only these
            raise BackupError(f"no pipeline for {target.engine}")
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
    _store_sha(backup, storage_key, hashing.hash.hexdigest())
    Backup.objects.filter(pk=backup.pk).update(
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
    log.info("backup %s of %s: %s bytes stored", backup.id, target.name, backup.bytes_stored)
    from alerts.incidents import resolve_incident

    resolve_incident(f"backup:{target.pk}", reason=f"backup {backup.id} succeeded")
    return backup


def _stream_pg_dump(engine: PostgresEngine, backup: Backup, out: HashingWriter, recipient: str):
    with engine.tool_env() as (conn_args, env):
        argv = engine.dump_argv(conn_args, backup.target.exclude_table_data)
        process = subprocess.Popen(  # noqa: S603 - argv list, no shell, no secret in it
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True
        )
        tail = StderrTail(process.stderr)
        timer = _watchdog(process, settings.BACKUPS_TIMEOUT_SECONDS)
        reader = ProgressReader(process.stdout, backup)
        try:
            compressed = zstandard.ZstdCompressor(level=settings.BACKUPS_ZSTD_LEVEL).stream_reader(
                reader
            )
            pyrage.encrypt_io(compressed, out, [pyrage.x25519.Recipient.from_str(recipient)])
            code = process.wait(timeout=60)
        except BaseException:
            process.kill()
            process.wait(timeout=30)
            raise
        finally:
            timer.cancel()
        stderr = tail.text()
        if code != 0:
            reason = "timed out" if code == -9 else f"exited with code {code}"
            last = stderr.strip().splitlines()[-1] if stderr.strip() else ""
            raise BackupError(f"pg_dump {reason}: {last}".rstrip(": "), stderr)
        return reader, stderr


def _stream_sqlite(engine: SqliteEngine, backup: Backup, out: HashingWriter, recipient: str):
    with tempfile.TemporaryDirectory(prefix="opsconsole-sqlite-", dir=_tmp_dir()) as tmp:
        snapshot = Path(tmp) / "snapshot.sqlite3"
        engine.snapshot(snapshot)
        with open(snapshot, "rb") as raw:
            reader = ProgressReader(raw, backup)
            compressed = zstandard.ZstdCompressor(level=settings.BACKUPS_ZSTD_LEVEL).stream_reader(
                reader
            )
            pyrage.encrypt_io(compressed, out, [pyrage.x25519.Recipient.from_str(recipient)])
    return reader


def _store_sha(backup: Backup, storage_key: str, sha256: str) -> None:
    """Add the checksum to an S3 object's metadata (known only at the end of the stream)."""
    backend = backup.storage.backend
    if backup.storage.kind != "s3":
        return
    client, bucket = backend.client(), backend.config["bucket"]
    full_key = backend._key(storage_key)
    head = client.head_object(Bucket=bucket, Key=full_key)
    if head["ContentLength"] < 5 * 1024**3:  # CopyObject's limit
        extra = {
            "StorageClass": head.get("StorageClass")
            or backend.config.get("storage_class")
            or "STANDARD_IA"
        }
        if head.get("ServerSideEncryption"):
            extra["ServerSideEncryption"] = head["ServerSideEncryption"]
        client.copy_object(
            Bucket=bucket,
            Key=full_key,
            CopySource={"Bucket": bucket, "Key": full_key},
            Metadata={**head.get("Metadata", {}), "sha256": sha256},
            MetadataDirective="REPLACE",
            **extra,
        )
    else:
        client.put_object_tagging(
            Bucket=bucket, Key=full_key, Tagging={"TagSet": [{"Key": "sha256", "Value": sha256}]}
        )


def fail(backup: Backup, message: str, stderr: str, duration: float | None) -> None:
    """Record the failure and raise it through the incident door (high, as the original)."""
    Backup.objects.filter(pk=backup.pk).update(
        status=Backup.Status.FAILED,
        finished_at=timezone.now(),
        duration_seconds=None if duration is None else round(duration, 3),
        error=message[:4000],
        stderr_tail=stderr[-4000:],
    )
    log.error("backup %s of %s failed: %s", backup.id, backup.target.name, message)
    from alerts.incidents import raise_incident

    raise_incident(
        source="backups",
        fingerprint=f"backup:{backup.target_id}",
        title=f"Backup of {backup.target.name} failed",
        priority="high",
        component="backups",
        details={"backup": backup.id, "target": backup.target.name, "error": message[:500]},
    )


# --- verification and restore ------------------------------------------------------------


def _tmp_dir() -> str:
    path = Path(settings.VAR_DIR) / "tmp"
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def extract(backup: Backup, into: Path) -> dict[str, float]:
    """Storage → checksum → decrypt → decompress into a plain archive file, or RestoreRefused.

    The stages stream into each other, so they are timed by where the time goes:
    waiting on the storage is "download", everything else "decrypt_decompress".
    Returns those two timings.
    """
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
        with open(into, "wb") as plain:
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


def table_of_contents(engine: PostgresEngine, archive: Path) -> dict[str, int]:
    result = subprocess.run(  # noqa: S603 - argv list
        engine.list_argv(archive), capture_output=True, text=True, timeout=600, check=False
    )
    if result.returncode != 0:
        raise RestoreRefused(f"not a readable pg_dump archive: {result.stderr.strip()[:300]}")
    counts: collections.Counter[str] = collections.Counter()
    kinds = (
        "TABLE DATA",
        "SEQUENCE SET",
        "FK CONSTRAINT",
        "TABLE",
        "INDEX",
        "SEQUENCE",
        "CONSTRAINT",
    )
    for line in result.stdout.splitlines():
        entry = re.sub(r"^\d+; \d+ \d+ ", "", line)
        if line.startswith(";") or entry == line:
            continue
        counts[next((k for k in kinds if entry.startswith(k + " ")), "other")] += 1
    return dict(counts)


def verify_backup(backup: Backup) -> Backup:
    """Read the object back whole: checksum, key, decompression, the archive's contents."""
    with tempfile.TemporaryDirectory(prefix="opsconsole-verify-", dir=_tmp_dir()) as tmp:
        archive = Path(tmp) / "archive"
        try:
            extract(backup, archive)
            toc = (
                table_of_contents(backup.target.db, archive)
                if backup.target.engine == "postgresql"
                else {}
            )
        except (RestoreRefused, EngineError) as exc:
            Backup.objects.filter(pk=backup.pk).update(error=f"verification failed: {exc}"[:4000])
            from alerts.incidents import raise_incident

            raise_incident(
                source="backups",
                fingerprint=f"verify:{backup.pk}",
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


def restore_into(backup: Backup, dbname: str) -> dict:
    """Restore into a new database on the target's server; checks run before it counts.

    Refused before anything is created when a check of the backup fails; on a
    failure after that, the new database is dropped.
    """
    engine = backup.target.db
    if not isinstance(engine, PostgresEngine):
        raise RestoreRefused("restoring into a new database is for PostgreSQL targets")
    if engine.database_exists(dbname):
        raise RestoreRefused(f"database {dbname!r} exists already; choose a new name")
    timings: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="opsconsole-restore-", dir=_tmp_dir()) as tmp:
        archive = Path(tmp) / "archive"
        timings.update(extract(backup, archive))
        table_of_contents(engine, archive)
        engine.create_database(dbname)
        try:
            started = time.monotonic()
            with engine.tool_env() as (conn_args, env):
                jobs = max(1, min(4, os.cpu_count() or 1))
                result = subprocess.run(  # noqa: S603 - argv list, password in the passfile
                    engine.restore_argv(conn_args, archive, dbname, jobs),
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=settings.BACKUPS_TIMEOUT_SECONDS,
                    check=False,
                )
            if result.returncode != 0:
                raise BackupError(f"pg_restore exited with code {result.returncode}", result.stderr)
            timings["restore"] = time.monotonic() - started
            started = time.monotonic()
            problems = engine.run_checks(
                dbname, backup.target.required_tables, backup.target.check_queries
            )
            timings["verify"] = time.monotonic() - started
            if problems:
                raise BackupError("the restored database failed its checks: " + "; ".join(problems))
        except BaseException:
            engine.drop_database(dbname)
            raise
    return {"database": dbname, "timings": {k: round(v, 3) for k, v in timings.items()}}


def carry_out_restore(request) -> dict:
    """The work of a claimed RestoreRequest; a replace swaps databases only after every
    check passed. Returns the fields to record with success."""
    from backups.models import RestoreRequest

    backup = request.backup
    engine = backup.target.db
    started = time.monotonic()
    if request.mode == RestoreRequest.Mode.NEW:
        result = restore_into(backup, request.new_database)
    else:
        safety = run_backup(
            Backup.objects.create(
                target=backup.target,
                storage=backup.storage,
                trigger=Backup.Trigger.PRE_RESTORE,
                requested_by=request.decided_by,
            )
        )
        RestoreRequest.objects.filter(pk=request.pk).update(safety_backup=safety)
        if safety.status == Backup.Status.FAILED:
            raise BackupError(f"the safety backup of the current database failed: {safety.error}")
        stamp = timezone.now().strftime("%Y%m%d%H%M%S")
        fresh = f"{engine.dbname}_incoming_{stamp}"[:63]
        result = restore_into(backup, fresh)
        old = f"{engine.dbname}_pre_restore_{stamp}"[:63]
        engine.swap_in(fresh, old)
        RestoreRequest.objects.filter(pk=request.pk).update(old_database=old)
    return {"timings": {**result["timings"], "total": round(time.monotonic() - started, 3)}}
