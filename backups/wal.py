"""Continuous WAL: the stock `pg_receivewal` through a physical replication slot, each file
shipped through the backup pipeline (zstd → age → SHA-256 → storage) as its own object.

One receiver per target across all hosts: the `WalArchive` row is a lease taken and
renewed by compare-and-swap, so a second `walreceiver` (another host, a restart
racing the old one) stands by until the first stops renewing. The slot makes the
server keep WAL while no receiver runs: nothing is lost, and `retained_bytes`
shows what that costs the server's disk (an incident past `max_retained_mb`).

Completed segments are shipped as soon as pg_receivewal renames them; the open
`.partial` segment is shipped every `partial_every_seconds` (at most 60) when it
changed, so a quiet database does not stretch the recovery point. `covered_until`
is the moment before the newest shipped read: everything written earlier is stored.

Each object restores with stock tools: `age -d -i key.txt F | zstd -d > SEGMENT`.
"""

from __future__ import annotations

import collections
import errno
import hashlib
import logging
import os
import re
import signal
import socket
import subprocess
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pyrage
import zstandard
from django.conf import settings
from django.db.models import Q
from django.db.models.functions import Now
from django.utils import timezone

from alerts.incidents import raise_incident, resolve_incident
from backups.backup import compress_and_encrypt
from backups.errors import RestoreRefused
from backups.models import BackupKey, WalArchive, WalSegment
from backups.storages import StorageError
from backups.streams import CHUNK, HashingReader, HashingWriter, StderrTail

log = logging.getLogger("opsconsole.backups.wal")

SEGMENT = re.compile(r"[0-9A-F]{24}")
HISTORY = re.compile(r"[0-9A-F]{8}\.history")
LEASE_SECONDS = 30
LEASE = timedelta(seconds=LEASE_SECONDS)
RENEW_EVERY = 10
SLOT_CHECK_EVERY = 60
MAX_BACKOFF = 60
# A receiver is expected this soon after switching on (serve looks every 30 s).
RECEIVER_GRACE = timedelta(minutes=2)


class WalError(Exception):
    pass


class LeaseLost(WalError):
    pass


def _lsn(text: str) -> int:
    high, low = text.split("/")
    return (int(high, 16) << 32) + int(low, 16)


def spool_dir(archive: WalArchive) -> Path:
    """Where pg_receivewal writes (and, restarted, resumes from): one per archive and
    server, so a target pointed at another server never resumes from the old one's WAL."""
    name = f"{archive.pk}-{archive.spool_key}-{archive.system_identifier}"
    return Path(settings.VAR_DIR) / "wal-spool" / name


class _RawReader:
    """Reads a file for the pipeline, hashing the WAL as it passes."""

    def __init__(self, fh):
        self.fh, self.hash, self.count = fh, hashlib.sha256(), 0

    def read(self, size: int = -1) -> bytes:
        data = self.fh.read(CHUNK if size is None or size < 0 else size)
        self.hash.update(data)
        self.count += len(data)
        return data


def _raw_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ship(archive: WalArchive, path: Path, name: str, *, partial: bool = False) -> WalSegment | None:
    """One WAL file through the pipeline into the archive's storage; None when a partial
    segment has not changed since it was last shipped."""
    if partial:
        raw = _raw_digest(path)
        if WalSegment.objects.filter(
            archive=archive, name=name, partial=True, raw_sha256=raw
        ).exists():
            return None
    key = archive.object_key(name, partial)
    storage = archive.storage.backend
    writer = storage.open_writer(key, {"service": archive.target.name, "wal": name})
    try:
        hashing = HashingWriter(writer)
        with open(path, "rb") as fh:
            reader = _RawReader(fh)
            compress_and_encrypt(reader, hashing, BackupKey.current().recipient)
        writer.commit()
    except BaseException:
        writer.abort()
        raise
    digest = hashing.hash.hexdigest()
    storage.record_checksum(key, digest)
    segment, _ = WalSegment.objects.update_or_create(
        archive=archive, name=name, partial=partial,
        defaults={"storage_key": key, "sha256": digest, "bytes_stored": hashing.count,
                  "raw_sha256": reader.hash.hexdigest(), "shipped_at": timezone.now()},
    )  # fmt: skip
    return segment


def ship_completed(archive: WalArchive, renew=None) -> list[str]:
    """Every whole segment and history file pg_receivewal finished, oldest first; each is
    removed from the spool once stored (and the partial copy of it from storage). `renew`
    is called after each: a long backlog never outlives the receiver's lease."""
    shipped = []
    spool = spool_dir(archive)
    if not spool.exists():
        return shipped
    for path in sorted(spool.iterdir()):
        name = path.name
        if not (SEGMENT.fullmatch(name) or HISTORY.fullmatch(name)):
            continue
        ship(archive, path, name)
        stale = WalSegment.objects.filter(archive=archive, name=name, partial=True).first()
        if stale is not None:
            archive.storage.backend.delete(stale.storage_key)
            stale.delete()
        path.unlink()
        shipped.append(name)
        if renew is not None:
            renew()
    if shipped:
        newest = max((n for n in shipped if SEGMENT.fullmatch(n)), default=archive.last_segment)
        WalArchive.objects.filter(pk=archive.pk).update(last_segment=newest)
    return shipped


def ship_partial(archive: WalArchive, covered: datetime | None = None) -> bool:
    """The open segment so far. `covered` is a moment (the server's clock) before which
    all WAL is known to be on the spool's disk; it becomes `covered_until` once what the
    spool holds is stored."""
    spool = spool_dir(archive)
    partials = sorted(spool.glob("*.partial")) if spool.exists() else []
    if not partials:
        return False
    path = partials[-1]
    try:
        ship(archive, path, path.name.removesuffix(".partial"), partial=True)
    except FileNotFoundError:
        return False  # completed (renamed) meanwhile: shipped whole on the next round
    if covered is not None:
        WalArchive.objects.filter(pk=archive.pk).update(covered_until=covered)
    return True


def fetch_wal(segment: WalSegment, into: Path, identities: list | None = None) -> None:
    """`_fetch_wal`, again with the newest record when a partial segment was replaced by a
    newer shipping round while it was read (it is overwritten in place)."""
    for _attempt in range(3):
        try:
            return _fetch_wal(segment, into, identities)
        except RestoreRefused:
            if not segment.partial:
                raise
            fresh = WalSegment.objects.filter(pk=segment.pk).first()
            if fresh is None or fresh.sha256 == segment.sha256:
                raise
            segment = fresh
    return _fetch_wal(segment, into, identities)


def _fetch_wal(segment: WalSegment, into: Path, identities: list | None = None) -> None:
    """One WAL object back to a plain file, every check passed, or RestoreRefused naming
    the segment: the stored object's checksum, the key, zstd, the WAL's own checksum."""
    what = f"WAL segment {segment.name}{' (partial)' if segment.partial else ''}"
    try:
        raw = segment.archive.storage.backend.open_reader(segment.storage_key)
    except StorageError as exc:
        raise RestoreRefused(f"{what} is missing from storage: {exc}") from None
    reader = HashingReader(raw)
    failure = None
    try:
        with open(into, "wb") as plain:
            decompressor = zstandard.ZstdDecompressor().stream_writer(plain, closefd=False)
            pyrage.decrypt_io(reader, decompressor, identities or BackupKey.identities())
            decompressor.flush()
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise RestoreRefused(f"no space left to fetch {what} into {into.parent}") from None
        failure = f"{what} cannot be read back ({type(exc).__name__}): it is damaged"
    except (pyrage.DecryptError, zstandard.ZstdError) as exc:
        failure = f"{what} cannot be read back ({type(exc).__name__}): it is damaged"
    finally:
        try:
            reader.drain()
        finally:
            raw.close()
    if reader.hash.hexdigest() != segment.sha256:
        raise RestoreRefused(f"{what} was modified or truncated in storage (checksum mismatch)")
    if failure:
        raise RestoreRefused(failure)
    if _raw_digest(into) != segment.raw_sha256:
        raise RestoreRefused(f"{what} does not match the WAL that was shipped")


def _pid_namespace() -> str:
    """Which process ids this process sees: containers sharing a host name do not share it."""
    try:
        return os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        return ""


def _dead_here(holder: str) -> bool:
    """Whether a lease holder (`host:pid:thread:pid-namespace`) is a process of this host,
    seen with the same process ids, that is gone."""
    host, pid, _thread, namespace = [*holder.split(":"), "", "", "", ""][:4]
    if host != socket.gethostname() or not pid.isdigit() or namespace != _pid_namespace():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def check_slot(archive: WalArchive) -> int | None:
    """The WAL the server keeps for the archive's slot, recorded; an incident past
    `max_retained_mb`, before it fills the server's disk."""
    retained = archive.target.db.slot_retained_bytes(archive.slot_name)
    WalArchive.objects.filter(pk=archive.pk).update(retained_bytes=retained)
    # The limit as it is now: a receiver holds its archive for days, edits come meanwhile.
    limit = WalArchive.objects.filter(pk=archive.pk).values_list("max_retained_mb", flat=True)
    limit_mb = limit.first() or archive.max_retained_mb
    fingerprint = f"wal-slot:{archive.pk}"
    if retained is not None and retained > limit_mb * 1024 * 1024:
        raise_incident(
            source="backups", fingerprint=fingerprint, priority="high", component="backups",
            title=f"The WAL slot of {archive.target} holds {retained / 2**20:.0f} MB on the "
            f"server (limit {limit_mb} MB): its disk fills while WAL is "
            "not received",
            details={"target": archive.target.name, "retained_bytes": retained},
        )  # fmt: skip
    else:
        resolve_incident(fingerprint, reason="the slot's retained WAL is under its limit")
    return retained


def check_archives(now: datetime | None = None) -> int:
    """From a worker, every few minutes, whether a receiver runs or not (when none does is
    when it matters): each slot's retained WAL, and an incident for an archive no receiver
    has held for RECEIVER_GRACE. Returns how many archives have no receiver."""
    now = now or timezone.now()
    unreceived = 0
    for archive in WalArchive.objects.filter(enabled=True).select_related("target"):
        try:
            check_slot(archive)
        except Exception as exc:  # the server is down: the receiver's incident says so
            log.warning("%s: could not measure the slot (%s)", archive, type(exc).__name__)
        held = (
            archive.lease_expires_at is not None
            and archive.lease_expires_at > now - RECEIVER_GRACE + LEASE
        )
        if held or archive.switched_on_at > now - RECEIVER_GRACE:
            continue
        if archive.status == WalArchive.Status.UNAVAILABLE:
            continue  # a receiver looked, and said why it cannot stream
        unreceived += 1
        since = archive.lease_expires_at or archive.switched_on_at
        raise_incident(
            source="backups", fingerprint=archive.fingerprint(), priority="high",
            component="backups",
            title=f"No WAL receiver has streamed {archive.target} since "
            f"{since:%Y-%m-%d %H:%M} UTC: start `manage.py walreceiver` (`serve` starts it); "
            "the slot keeps the WAL meanwhile",
            details={"target": archive.target.name, "since": since.isoformat()},
        )  # fmt: skip
    return unreceived


class Receiver:
    """Keeps one target's WAL streaming: the lease, pg_receivewal, shipping, restarts."""

    def __init__(self, archive_id: int, stop: threading.Event, holder: str | None = None):
        self.archive_id, self.stop = archive_id, stop
        self.holder = holder or (
            f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}:{_pid_namespace()}"
        )
        self.process: subprocess.Popen | None = None

    def archive(self) -> WalArchive:
        return WalArchive.objects.select_related("target", "storage").get(pk=self.archive_id)

    def claim(self) -> bool:
        # The database's clock, not this host's: two hosts never disagree on who holds it.
        if self._take(
            Q(holder=self.holder) | Q(lease_expires_at__lt=Now()) | Q(lease_expires_at=None)
        ):
            return True
        # A receiver killed on this very host (restarted by serve, systemd or a person)
        # is taken over at once, not after its lease runs out: the WAL waits for no one.
        holder = (
            WalArchive.objects.filter(pk=self.archive_id).values_list("holder", flat=True).first()
        )
        return bool(holder) and _dead_here(holder) and self._take(Q(holder=holder))

    def _take(self, condition: Q) -> bool:
        return bool(
            WalArchive.objects.filter(pk=self.archive_id, enabled=True)
            .filter(condition)
            .update(holder=self.holder, lease_expires_at=Now() + LEASE)
        )

    def renew(self) -> None:
        if not self.claim():
            raise LeaseLost(f"archive {self.archive_id}")

    def release(self) -> None:
        WalArchive.objects.filter(pk=self.archive_id, holder=self.holder).update(
            lease_expires_at=None, holder=""
        )

    def run(self) -> None:
        backoff = 1.0
        while not self.stop.is_set():
            if not self.claim():
                self.stop.wait(LEASE_SECONDS / 3)
                continue
            archive = self.archive()
            try:
                problem = archive.target.db.replication_problem()
                if problem:
                    self._record(archive, WalArchive.Status.UNAVAILABLE, problem)
                    self.stop.wait(MAX_BACKOFF)
                    continue
                self.stream(archive)
                backoff = 1.0
            except LeaseLost:
                log.warning("%s: another receiver holds the stream now", archive)
                continue
            except Exception as exc:  # restarted with backoff; the error is on the record
                log.exception("%s: the receiver stopped", archive)
                self._record(archive, WalArchive.Status.FAILING, f"{type(exc).__name__}: {exc}")
            if not self.stop.is_set():
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self.release()

    def _record(self, archive: WalArchive, status: str, error: str) -> None:
        WalArchive.objects.filter(pk=archive.pk).update(status=status, error=error[:2000])
        raise_incident(
            source="backups", fingerprint=archive.fingerprint(), priority="high",
            component="backups",
            title=f"Continuous WAL of {archive.target} is not streaming: {error}"[:300],
            details={"target": archive.target.name, "status": status},
        )  # fmt: skip

    def stream(self, archive: WalArchive) -> None:
        engine = archive.target.db
        with engine.connect() as conn:
            archive.system_identifier = str(
                conn.execute("SELECT system_identifier FROM pg_control_system()").fetchone()[0]
            )
        spool = spool_dir(archive)
        spool.mkdir(parents=True, exist_ok=True)
        # What an earlier run received is shipped before anything more is: while storage
        # fails, WAL stays on the server (the slot holds it), not piling up on this disk.
        ship_completed(archive, self.renew)
        with engine.connect(autocommit=True) as conn:
            # A receiver orphaned by a killed walreceiver would hold the slot forever.
            conn.execute(
                "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots "
                "WHERE slot_name = %s AND active",
                [archive.slot_name],
            )
        with engine.tool_env() as (conn_args, env):
            # Named, so its progress can be read, and never taken for a synchronous standby
            # named in synchronous_standby_names.
            env = {**env, "PGAPPNAME": archive.slot_name}
            created = subprocess.run(  # noqa: S603 - argv list, no shell, no secret in it
                engine.create_slot_argv(conn_args, archive.slot_name),
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if created.returncode != 0:
                raise WalError(f"creating the slot failed: {created.stderr.strip()[-300:]}")
            argv = engine.receivewal_argv(conn_args, spool, archive.slot_name)
            self.process = subprocess.Popen(  # noqa: S603 - argv list, no shell
                argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,
            )  # fmt: skip
            tail = StderrTail(self.process.stderr)
            try:
                self._follow(archive, tail)
            finally:
                self._stop_process()
                ship_completed(archive)  # what it finished before it stopped

    def _follow(self, archive: WalArchive, tail: StderrTail) -> None:
        WalArchive.objects.filter(pk=archive.pk).update(
            status=WalArchive.Status.STREAMING, error=""
        )
        resolve_incident(archive.fingerprint(), reason="WAL is streaming again")
        last_partial = last_renew = last_slot = 0.0
        # The server's (WAL position, clock), read every second: at each shipping round
        # the newest moment whose position this receiver has flushed past is covered.
        seen: collections.deque = collections.deque(maxlen=240)
        while True:
            now = time.monotonic()
            if now - last_renew >= RENEW_EVERY:
                self.renew()
                last_renew = now
            ship_completed(archive, self.renew)
            position = self._position(archive)
            if position:
                seen.append(position[:2])
            if now - last_partial >= archive.partial_every_seconds:
                # Never a claim the spool cannot back: a receiver catching up covers
                # nothing newer than what it has flushed.
                flushed = position[2] if position else None
                passed = [at for lsn, at in seen if flushed is not None and lsn <= flushed]
                ship_partial(archive, max(passed) if passed else None)
                last_partial = now
            if now - last_slot >= SLOT_CHECK_EVERY:
                self._check_slot(archive)
                last_slot = now
            if self.process.poll() is not None:
                last = tail.text().strip().splitlines()[-1:] or [""]
                raise WalError(
                    f"pg_receivewal exited with code {self.process.returncode}: {last[0]}"
                )
            if self.stop.wait(1):
                ship_completed(archive, self.renew)
                ship_partial(archive)
                return

    def _position(self, archive: WalArchive) -> tuple[int, datetime, int | None] | None:
        """The server's WAL position and clock, and how far this receiver has flushed."""
        try:
            with archive.target.db.connect() as conn:
                current, at = conn.execute(
                    "SELECT pg_current_wal_lsn()::text, clock_timestamp()"
                ).fetchone()
                row = conn.execute(
                    "SELECT flush_lsn::text FROM pg_stat_replication WHERE application_name = %s",
                    [archive.slot_name],
                ).fetchone()
        except Exception:
            log.warning("%s: could not read the server's WAL position", archive)
            return None
        flushed = _lsn(row[0]) if row and row[0] else None
        return _lsn(current), at, flushed

    def _check_slot(self, archive: WalArchive) -> None:
        check_slot(archive)

    def _stop_process(self) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, signal.SIGTERM)  # pg_receivewal flushes and exits
            process.wait(timeout=15)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(timeout=10)


def run_receivers(stop: threading.Event, rescan_seconds: float = 30) -> None:
    """Every enabled archive gets a receiver thread; archives enabled later are picked up."""
    threads: dict[int, threading.Thread] = {}
    while not stop.is_set():
        for pk in WalArchive.objects.filter(enabled=True).values_list("pk", flat=True):
            if pk not in threads or not threads[pk].is_alive():
                thread = threading.Thread(
                    target=Receiver(pk, stop).run, name=f"wal-{pk}", daemon=True
                )
                thread.start()
                threads[pk] = thread
        stop.wait(rescan_seconds)
    for thread in threads.values():
        thread.join(timeout=30)
