"""Point-in-time recovery: a base backup, the WAL after it, replayed by a scratch PostgreSQL
of the base's major version up to the moment asked for, then copied into a new database
on the target's server (so a restore's checks, and a replace's safety backup and swap,
apply as to any restore).

Every WAL file the replay needs is fetched and checked first (checksum of the object,
key, decompression, checksum of the WAL itself), and the names must follow each other
from the base backup's first segment on: a missing, damaged or truncated object stops
the restore before replay, naming the segment, never a silently short recovery. The
scratch server's `restore_command` only copies from that folder (stock `cp`), listens
on a private socket only, and is stopped and removed afterwards, whatever happened.
PostgreSQL itself refuses to end a recovery that did not reach its target.

Timings are kept per phase: fetch (base and WAL), replay, copy and checks.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import hmac
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from urllib.parse import quote

import psycopg
from django.conf import settings
from django.db.models import Q
from psycopg import sql

from backups.errors import BackupError, RestoreRefused
from backups.models import Backup, BackupKey, RestorePoint, WalArchive
from backups.streams import StderrTail, scratch_dir
from backups.verify import extract
from backups.wal import HISTORY, SEGMENT, fetch_wal
from opsconsole import tracing
from opsconsole.children import child_env

log = logging.getLogger("opsconsole.backups.pitr")

SCRATCH_PREFIX = "opsconsole-pitr-"
# PostgreSQL's words when the WAL ends before a commit past the recovery target.
QUIET = "before configured recovery target was reached"
PROMOTE_POLL = 0.2
# The read-only login of a recovered server kept for people to look into.
KEPT_ROLE = "opsconsole_recovered"
PIPE_BYTES = 1024 * 1024
DEFAULT_SEGMENT_BYTES = 16 * 1024 * 1024  # PostgreSQL's default wal_segment_size


def segments_per_log(segment_bytes: int) -> int:
    """How many segments one 4 GiB "log" of WAL names holds (256 at 16 MB)."""
    return 0x100000000 // segment_bytes


def segment_number(name: str, per_log: int = 0x100) -> tuple[str, int]:
    return name[:8], int(name[8:16], 16) * per_log + int(name[16:], 16)


def segment_name(timeline: str, number: int, per_log: int = 0x100) -> str:
    return f"{timeline}{number // per_log:08X}{number % per_log:08X}"


def needed_segments(
    archive: WalArchive, start: str, segment_bytes: int = DEFAULT_SEGMENT_BYTES
) -> tuple[list, str | None]:
    """The WAL a recovery replays from `start` (the last segment inside the base backup:
    the rest of it, and all after) through the last one shipped, in order; and the first
    segment missing before later ones, if any. (When a segment was shipped says nothing of
    when its WAL was written: the replay itself stops at the moment asked for.)"""
    per_log = segments_per_log(segment_bytes)
    timeline, number = segment_number(start, per_log)
    switched = archive.segments.exclude(name__startswith=timeline).exists() or any(
        HISTORY.fullmatch(n) for n in archive.segments.values_list("name", flat=True)
    )
    if switched:
        # A failover or promotion started a new timeline: following it is not done here.
        raise RestoreRefused(
            f"the WAL of {archive.target} changed timeline after the base backup (a failover "
            "or a promotion): restore by hand (README, 'To a point in time, by hand'), whose "
            "restore_command follows timelines"
        )
    rows = {
        (s.name, s.partial): s
        for s in archive.segments.filter(name__startswith=timeline)
        if SEGMENT.fullmatch(s.name)
    }
    chosen = []
    while True:
        name = segment_name(timeline, number, per_log)
        segment = rows.get((name, False)) or rows.get((name, True))
        if segment is None:
            break
        chosen.append(segment)
        if segment.partial:
            break  # the open segment is the last one there is
        number += 1
    if not chosen:
        raise RestoreRefused(
            f"WAL segment {start} (where the base backup ends) is missing from the archive"
        )
    later = any(segment_number(n, per_log)[1] > number for (n, _partial) in rows)
    return chosen, segment_name(timeline, number, per_log) if later else None


def recover_into(backup: Backup, dbname: str, until: datetime | RestorePoint | None) -> dict:
    """Recover `backup` (a base backup) with its target's WAL to `until` (a moment, a named
    restore point, or None: as late as was shipped) and copy the database into `dbname`
    on the target's server."""
    target = backup.target
    engine = target.db
    if engine.database_exists(dbname):
        raise RestoreRefused(f"database {dbname!r} exists already; choose a new name")
    timings: dict[str, float] = {}
    with _recovered(backup, until, timings) as (scratch, _work):
        started = time.monotonic()
        with tracing.span("restore.copy"):
            engine.create_database(dbname)
            try:
                _copy(engine, scratch, dbname)
                timings["copy"] = time.monotonic() - started
                started = time.monotonic()
                problems = engine.run_checks(dbname, target.required_tables, target.check_queries)
                timings["verify"] = time.monotonic() - started
                if problems:
                    raise BackupError(
                        "the restored database failed its checks: " + "; ".join(problems)
                    )
            except BaseException:
                engine.drop_database(dbname)
                raise
    return {
        "database": dbname,
        "wal_segments": timings.pop("wal_segments"),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }


def recover_and_keep(
    backup: Backup, until: datetime | RestorePoint | None, request_pk: int
) -> dict:
    """Recover as `recover_into` does, and keep the recovered server running instead of
    copying out of it: reachable on this host's loopback by a read-only role with a fresh
    password, until `clean_up_scratch` or a person stops it."""
    timings: dict[str, float] = {}
    with _recovered(backup, until, timings, tcp=True) as (scratch, work):
        dsn = scratch.keep(backup.target.db, work, request_pk)
    return {
        "dsn": dsn,
        "folder": str(work),
        "timings": {k: round(v, 3) for k, v in timings.items() if k != "wal_segments"},
    }


def _refuse_early(backup: Backup, archive: WalArchive | None, until) -> str:
    """Every reason a recovery cannot start, before anything is fetched; the segment the
    base backup ends in otherwise."""
    target = backup.target
    start = (backup.toc_summary or {}).get("end wal")
    if backup.kind != Backup.Kind.BASE or not start:
        raise RestoreRefused(f"{backup.id} is not a base backup that a recovery can start from")
    if archive is None:
        raise RestoreRefused(f"{target} has no WAL archive to replay")
    if isinstance(until, RestorePoint):
        if backup.finished_at and until.created_at <= backup.finished_at:
            raise RestoreRefused(
                f"restore point {until.name} is older than base backup {backup.id}: choose "
                "an older base backup"
            )
    elif until is not None:
        if backup.finished_at and until <= backup.finished_at:
            raise RestoreRefused(
                f"{until:%Y-%m-%d %H:%M:%S} UTC is before base backup {backup.id} finished "
                f"({backup.finished_at:%Y-%m-%d %H:%M:%S} UTC): choose an older base backup"
            )
        if archive.covered_until is None or until > archive.covered_until:
            covered = (
                f"{archive.covered_until:%Y-%m-%d %H:%M:%S} UTC"
                if archive.covered_until
                else "nothing yet"
            )
            raise RestoreRefused(
                f"the WAL archive of {target} covers up to {covered}, not "
                f"{until:%Y-%m-%d %H:%M:%S} UTC"
            )
    return start


@contextlib.contextmanager
def _recovered(backup: Backup, until, timings: dict, *, tcp: bool = False):
    """A scratch server holding `backup` recovered to `until`: (server, its folder). It is
    stopped and the folder removed on leaving, unless the server was kept."""
    engine = backup.target.db
    archive = WalArchive.objects.filter(target=backup.target).first()
    start = _refuse_early(backup, archive, until)
    # The server's segment size, as the base backup's own WAL files have it.
    segment_bytes = (backup.toc_summary or {}).get("wal segment bytes") or DEFAULT_SEGMENT_BYTES
    segments, missing = needed_segments(archive, start, segment_bytes)
    gap = (
        f"WAL segment {missing} is missing from the archive: the recovery would stop short "
        "of the moment asked for"
    )
    if missing and until is None:
        raise RestoreRefused(gap)
    timings["wal_segments"] = len(segments)
    # Run as postgres (the console as root), the scratch server must reach its folder:
    # then it is a private folder under the system's temporary directory, given to it.
    under = tempfile.gettempdir() if _as_postgres() else scratch_dir()
    work = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=under))
    kept = False
    try:
        # Whose it is: a worker that dies leaves it (and maybe a server) to clean_up_scratch.
        _write_owner(work, str(os.getpid()))
        data, wal, sockets = work / "data", work / "wal", work / "sock"
        for folder in (wal, sockets):
            folder.mkdir()
        started = time.monotonic()
        with tracing.span("restore.fetch", {"opsconsole.wal_segments": len(segments)}):
            data.mkdir(mode=0o700)
            _fetch_all(backup, data, segments, wal)
        timings["fetch"] = time.monotonic() - started
        _configure(data, wal, until)
        if _as_postgres():
            _hand_over_wal(wal)
        user = engine.params.get("user") or "postgres"
        with contextlib.ExitStack() as stack:
            started = time.monotonic()
            with tracing.span("restore.replay"):
                scratch = stack.enter_context(_scratch_server(data, sockets, tcp=tcp))
                try:
                    scratch.wait_promoted(user, engine.dbname)
                except RestoreRefused as exc:
                    if missing:  # the moment lay beyond a gap: say which segment is missing
                        raise RestoreRefused(gap) from None
                    if not (isinstance(until, datetime) and QUIET in str(exc)):
                        raise
                    # Nothing was committed after the moment (a quiet database), and all
                    # WAL up to it is stored: everything shipped *is* that moment.
                    stack.close()
                    with open(data / "postgresql.auto.conf", "a") as conf:
                        conf.write("recovery_target_time = ''\n")
                    scratch = stack.enter_context(_scratch_server(data, sockets, tcp=tcp))
                    scratch.wait_promoted(user, engine.dbname)
            timings["replay"] = time.monotonic() - started
            yield scratch, work
            kept = scratch.kept
    finally:
        if not kept:
            shutil.rmtree(work, ignore_errors=True)


def _fetch_all(backup: Backup, data: Path, segments: list, wal: Path) -> None:
    """The base backup unpacked on this thread while the whole WAL segments are fetched on
    another (both mostly wait on decryption, decompression and disk: two cores share the
    work); the open segment, if any, last, here. The first failure in order is raised."""
    whole = [s for s in segments if not s.partial]
    # Loaded here (all segments share one archive): the other thread asks no database.
    identities = BackupKey.identities()
    if whole:
        whole[0].archive.storage  # noqa: B018
    stop = threading.Event()
    failure: list[BaseException] = []

    def fetch_whole() -> None:
        try:
            for segment in whole:
                if stop.is_set():
                    return
                fetch_wal(segment, wal / segment.name, identities)
        except BaseException as exc:  # raised below, on the restore's thread
            failure.append(exc)

    fetching = threading.Thread(target=fetch_whole, name="fetch-wal", daemon=True)
    fetching.start()
    try:
        _unpack_base(backup, data)
    finally:
        if sys.exc_info()[0] is not None:
            stop.set()
        fetching.join()
    if failure:
        raise failure[0]
    for segment in segments[len(whole) :]:
        fetch_wal(segment, wal / segment.name)


def _unpack_base(backup: Backup, data: Path) -> None:
    """The base backup read back (every check of `extract`) straight into GNU tar, which
    unpacks on the other core: no copy of the archive on disk. Nothing unpacked counts
    until the read-back passed. Run as root, tar runs as postgres (the folder is given to
    it first), and never as root with the archive's owners."""
    run_as = _as_postgres()
    if run_as:
        _give_to_postgres(data.parent, ["data", "sock"])
    argv = [*run_as, "tar", "--extract", "--no-same-owner", "--file=-", f"--directory={data}"]
    with tempfile.TemporaryFile() as errors, tracing.process(argv) as exited:
        tar = subprocess.Popen(  # noqa: S603 - argv list, no shell, no secret
            argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=errors,
            env=child_env(), bufsize=PIPE_BYTES,
        )  # fmt: skip
        # zstd hands over 128 KB at a time: a pipe of the default 64 KB has the two
        # sides taking turns rather than working at once (Linux lets it grow).
        with contextlib.suppress(OSError, AttributeError):
            fcntl.fcntl(tar.stdin.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        refused = None
        try:
            extract(backup, tar.stdin)
        except RestoreRefused as exc:
            refused = exc
        finally:
            with contextlib.suppress(BrokenPipeError):
                tar.stdin.close()
            try:
                code = tar.wait(timeout=settings.BACKUPS_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                tar.kill()
                code = tar.wait()
            exited(code)
        errors.seek(0)
        said = errors.read().decode(errors="replace").strip().splitlines()
    # The stored object's own fault (checksum, key, zstd) is the cause; a broken pipe only
    # says that tar stopped reading, and tar's error says why.
    if refused is not None and not (code != 0 and "Broken pipe" in str(refused)):
        raise refused
    if code != 0:
        reason = said[-1] if said else f"tar exited with code {code}"
        raise RestoreRefused(f"base backup {backup.id} cannot be unpacked: {reason}")


def _configure(data: Path, wal: Path, until: datetime | RestorePoint | None) -> None:
    """Recovery settings, and a server reachable only through its private socket."""
    for leftover in ("postmaster.pid", "standby.signal"):
        (data / leftover).unlink(missing_ok=True)
    (data / "pg_hba.conf").write_text("local all all trust\n")
    (data / "pg_ident.conf").write_text("")
    # A Debian-style source keeps postgresql.conf in /etc: the copy has none.
    (data / "postgresql.conf").touch()
    lines = [
        f'restore_command = \'cp "{wal}/%f" "%p"\'',
        "recovery_target_action = 'promote'",
    ]
    if isinstance(until, RestorePoint):
        # By its position: a name may be used twice (two targets on one cluster).
        lines.append(f"recovery_target_lsn = '{until.lsn}'")
    elif until is not None:
        lines.append(f"recovery_target_time = '{until.isoformat()}'")
    with open(data / "postgresql.auto.conf", "a") as conf:
        conf.write("\n# opsconsole point-in-time recovery\n" + "\n".join(lines) + "\n")
    (data / "recovery.signal").touch()


def _server_bindir(data: Path) -> Path:
    major = (data / "PG_VERSION").read_text().strip()
    configured = getattr(settings, "OPSCONSOLE_PG_BIN", "")
    for candidate in ([Path(configured)] if configured else []) + [
        Path(f"/usr/lib/postgresql/{major}/bin")
    ]:
        if (candidate / "postgres").exists():
            return candidate
    raise RestoreRefused(
        f"the base backup is PostgreSQL {major}, and its server is not installed here "
        f"(apt-get install postgresql-{major})"
    )


def _as_postgres() -> list[str]:
    """PostgreSQL refuses to run as root: a console running as root runs it as postgres."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class _Scratch:
    def __init__(self, process: subprocess.Popen, sockets: Path, port: int, log: Path):
        self.process, self.sockets, self.port, self.log = process, sockets, port, log
        self.kept = False

    def connect(self, user: str, dbname: str, **kwargs) -> psycopg.Connection:
        return psycopg.connect(
            host=str(self.sockets), port=self.port, user=user, dbname=dbname, **kwargs
        )

    def wait_promoted(self, user: str, dbname: str) -> None:
        deadline = time.monotonic() + settings.BACKUPS_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RestoreRefused(f"the recovery stopped: {self._reason()}")
            with (
                contextlib.suppress(psycopg.OperationalError),
                self.connect(user, dbname, connect_timeout=2) as conn,
            ):
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
            time.sleep(PROMOTE_POLL)
        raise RestoreRefused("the recovery did not finish in time (BACKUPS_TIMEOUT_SECONDS)")

    def _reason(self) -> str:
        with open(self.log, "rb") as fh:
            fh.seek(max(0, self.log.stat().st_size - 65536))
            text = fh.read().decode(errors="replace")
        lines = [line for line in text.splitlines() if "FATAL" in line]
        return lines[-1].split("FATAL:", 1)[-1].strip() if lines else "the server exited"

    def keep(self, engine, work: Path, request_pk: int) -> str:
        """Leave this server running for people to look into: a read-only login with a
        fresh password, from this host's loopback only. Returns its connection string."""
        password = secrets.token_urlsafe(24)
        user = engine.params.get("user") or "postgres"
        with self.connect(user, engine.dbname) as conn:
            bootstrap, version = conn.execute(
                "SELECT rolname, current_setting('server_version_num')::int FROM pg_roles "
                "WHERE oid = 10"
            ).fetchone()
        if version < 140000:
            raise RestoreRefused(
                "keeping the recovered server needs PostgreSQL 14 or later (its read-only "
                "role, pg_read_all_data); restore into a new database instead"
            )
        with self.connect(bootstrap, engine.dbname, autocommit=True) as conn:
            # The password's SCRAM verifier, not the password: no statement, log or trace
            # of the scratch server holds it.
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE pg_read_all_data").format(
                    sql.Identifier(KEPT_ROLE), sql.Literal(scram_verifier(password))
                )
            )
            conn.execute(
                sql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(
                    sql.Identifier(KEPT_ROLE)
                )
            )
            hba = self.sockets.parent / "data" / "pg_hba.conf"
            hba.write_text(
                f"local all all trust\nhost all {KEPT_ROLE} 127.0.0.1/32 scram-sha-256\n"
            )
            conn.execute("SELECT pg_reload_conf()")
        _write_owner(work, f"kept {request_pk} {_instance()}")
        self.kept = True
        return (
            f"postgresql://{KEPT_ROLE}:{password}@127.0.0.1:{self.port}/"
            f"{quote(engine.dbname, safe='')}"
        )


def scram_verifier(password: str, iterations: int = 4096) -> str:
    """PostgreSQL's stored form of a SCRAM-SHA-256 password (RFC 5802, RFC 7677)."""
    salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    stored_key = hashlib.sha256(client_key).digest()
    b64 = base64.b64encode
    return (
        f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}"
        f"${b64(stored_key).decode()}:{b64(server_key).decode()}"
    )


def _write_owner(work: Path, text: str) -> None:
    """Whose a scratch folder is, replaced in one step (the clean-up never reads half)."""
    (work / "owner.new").write_text(text + "\n")
    os.replace(work / "owner.new", work / "owner")


@contextlib.contextmanager
def _scratch_server(data: Path, sockets: Path, *, tcp: bool = False):
    """The scratch server, stopped on leaving unless it was kept. It listens on its private
    socket, and with `tcp` on a free loopback port too."""
    bindir = _server_bindir(data)
    run_as = _as_postgres()
    port = _free_port()
    argv = [
        *run_as, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
        "-k", str(sockets), "-c", f"listen_addresses={'127.0.0.1' if tcp else ''}",
        "-c", "archive_mode=off",
        # The source's own files and features do not come along.
        "-c", f"hba_file={data / 'pg_hba.conf'}", "-c", f"ident_file={data / 'pg_ident.conf'}",
        "-c", "ssl=off", "-c", "shared_preload_libraries=", "-c", "logging_collector=off",
        # A copied subscription would connect to its publisher and consume its slot.
        "-c", "max_logical_replication_workers=0",
    ]  # fmt: skip
    # Its log in a file, not a pipe: a kept server outlives the worker that started it.
    log = data.parent / "server.log"
    with tracing.process(argv) as exited, open(log, "ab") as stderr:
        process = subprocess.Popen(  # noqa: S603 - argv list, no shell, no secret
            argv,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            env=child_env(),  # the console's secrets stay out of the scratch server
        )
        scratch = _Scratch(process, sockets, port, log)
        try:
            yield scratch
        finally:
            if not scratch.kept and process.poll() is None:
                # To the group: runuser passes no signal on to the server it started.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGINT)  # fast shutdown
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=10)
            exited(process.returncode)


def _give_to_postgres(work: Path, folders: list[str]) -> None:
    """The scratch folder and its `folders` (not what they hold) to the postgres user:
    root never walks a tree postgres could have changed under it."""
    import pwd

    owner = pwd.getpwnam("postgres")
    for path in [work, *(work / name for name in folders)]:
        os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)


def _hand_over_wal(wal: Path) -> None:
    """The fetched WAL files to postgres (root wrote them), through the folder's own
    descriptor, never following a link."""
    import pwd

    owner = pwd.getpwnam("postgres")
    folder = os.open(wal, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        for name in os.listdir(folder):
            os.chown(name, owner.pw_uid, owner.pw_gid, dir_fd=folder, follow_symlinks=False)
        os.fchown(folder, owner.pw_uid, owner.pw_gid)
    finally:
        os.close(folder)


def _free_port() -> int:
    """A free loopback port: the scratch server's socket name, and its TCP port when kept."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _copy(engine, scratch: _Scratch, dbname: str) -> None:
    """pg_dump from the scratch server, straight into pg_restore on the target's server."""
    from backups.engines.postgresql import pg_tool

    user = engine.params.get("user") or "postgres"
    dump_argv = [
        pg_tool("pg_dump"), "--format=custom", "--compress=0", "--no-password",
        "--host", str(scratch.sockets), "--port", str(scratch.port), "--username", user,
        "--dbname", engine.dbname,
    ]  # fmt: skip
    with engine.tool_env() as (conn_args, env):
        restore_argv = [
            pg_tool("pg_restore"), "--no-password", "--no-owner", "--no-privileges",
            "--exit-on-error", *conn_args, "--dbname", dbname,
        ]  # fmt: skip
        dump = subprocess.Popen(  # noqa: S603 - argv lists, no shell, no secret
            dump_argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        )
        dump_tail = StderrTail(dump.stderr)
        restore = subprocess.run(  # noqa: S603
            restore_argv, stdin=dump.stdout, capture_output=True, text=True, env=env,
            timeout=settings.BACKUPS_TIMEOUT_SECONDS,
        )  # fmt: skip
        dump.stdout.close()
        dumped = dump.wait(timeout=60)
    if dumped != 0:
        raise BackupError(f"pg_dump from the recovered server exited with code {dumped}",
                          dump_tail.text())  # fmt: skip
    if restore.returncode != 0:
        raise BackupError(f"pg_restore exited with code {restore.returncode}", restore.stderr)


def clean_up_scratch() -> int:
    """What a worker that died mid-recovery left: its scratch server is stopped and its
    folder (decrypted base backup and WAL) removed. A folder whose owner still runs is
    left alone, and so is a kept server until its time is up or someone stopped it; a
    kept server whose folder is gone (a reboot) is recorded stopped."""
    removed = 0
    for under in {tempfile.gettempdir(), scratch_dir()}:
        for work in Path(under).glob(f"{SCRATCH_PREFIX}*"):
            try:
                owner = (work / "owner").read_text().split()
            except OSError:
                owner = []
            if owner[:1] == ["kept"]:
                if len(owner) != 3 or owner[2] != _instance() or not owner[1].isdigit():
                    continue  # another console's (they may share this folder)
                if _still_kept(int(owner[1]), work):
                    continue
                if _stop_and_remove(work):
                    _record_stopped(int(owner[1]), work)
                    removed += 1
                continue
            if owner[:1] and owner[0].isdigit() and _alive(int(owner[0])):
                continue
            if not owner and time.time() - work.stat().st_mtime < 60:
                continue  # being set up this very moment
            removed += _stop_and_remove(work)
    _reconcile_kept()
    return removed


def stop_kept(request) -> bool:
    """Stop a kept recovered server now, when it runs on this host and this process may
    stop it; else it is marked to stop and the clean-up on its host stops it. True when
    it was stopped here."""
    from django.utils import timezone

    folder = Path(request.scratch_folder) if request.scratch_folder else None
    if (
        folder is not None
        and request.scratch_host == socket.gethostname()
        and folder.exists()
        and _stop_and_remove(folder)
    ):
        _record_stopped(request.pk, folder)
        return True
    type(request).objects.filter(pk=request.pk).update(scratch_until=timezone.now())
    return False


def _instance() -> str:
    """This console (its data folder), as kept servers' owner files name it."""
    return hashlib.sha256(str(Path(settings.VAR_DIR).resolve()).encode()).hexdigest()[:12]


def _still_kept(request_pk: int, work: Path) -> bool:
    from django.utils import timezone

    from backups.models import RestoreRequest

    request = RestoreRequest.objects.filter(pk=request_pk).first()
    if request is None or request.scratch_stopped_at:
        return False
    if request.status == RestoreRequest.Status.RUNNING:
        return True  # its worker is recording it
    return (
        request.status == RestoreRequest.Status.SUCCEEDED
        and request.scratch_until is not None
        and request.scratch_until > timezone.now()
        and _server_of(work) is not None
    )


def _record_stopped(request_pk: int, work: Path) -> None:
    from django.utils import timezone

    from backups.models import RestoreRequest

    RestoreRequest.objects.filter(
        Q(scratch_folder=str(work)) | Q(scratch_folder=""), pk=request_pk, scratch_stopped_at=None
    ).update(scratch_stopped_at=timezone.now(), scratch_dsn="")


def _reconcile_kept() -> None:
    """Kept servers of this host whose folder is gone (a reboot emptied /tmp): stopped."""
    from backups.models import RestoreRequest

    kept = RestoreRequest.objects.filter(
        mode=RestoreRequest.Mode.KEEP, scratch_host=socket.gethostname(),
        scratch_stopped_at=None, status=RestoreRequest.Status.SUCCEEDED,
    ).exclude(scratch_folder="")  # fmt: skip
    for request in kept.only("pk", "scratch_folder"):
        if not Path(request.scratch_folder).exists():
            _record_stopped(request.pk, Path(request.scratch_folder))


def _server_of(work: Path) -> int | None:
    """The pid of the postgres serving this very folder, if one runs (a stale pid file may
    name another process)."""
    try:
        server = int((work / "data" / "postmaster.pid").read_text().split()[0])
        command = Path(f"/proc/{server}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError, IndexError):
        return None
    return server if str(work / "data").encode() in command else None


def _stop_and_remove(work: Path) -> bool:
    """Its server stopped (immediate shutdown, then killed), then the folder removed. False,
    and nothing removed, when the server cannot be stopped from this process."""
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        server = _server_of(work)
        if server is None:
            break
        try:
            os.kill(server, sig)
        except ProcessLookupError:
            break
        except PermissionError:
            log.warning("cannot stop the scratch server in %s from this process", work)
            return False
        for _ in range(50):
            if _server_of(work) is None:
                break
            time.sleep(0.1)
    if _server_of(work) is not None:
        return False
    shutil.rmtree(work, ignore_errors=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
