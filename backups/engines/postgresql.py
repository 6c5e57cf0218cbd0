"""PostgreSQL: pg_dump's custom format out, pg_restore into a new database, checks by SQL.

Passwords reach the PostgreSQL tools through a 0600 passfile named in the
child's environment (PGPASSFILE) — never in argv, never in a URI on the
command line, never in a log line.
"""

from __future__ import annotations

import collections
import contextlib
import glob
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
from django.conf import settings
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from backups.engines.base import Dump, Engine
from backups.errors import BackupError, EngineError, RestoreRefused
from backups.streams import StderrTail, watchdog
from opsconsole import tracing
from opsconsole.children import child_env

# A WAL segment's file name: timeline, then log and segment numbers, in hex.
WAL_FILE = re.compile(r"[0-9A-F]{24}")

# The entries of `pg_restore --list` counted in a backup's table of contents.
ARCHIVE_KINDS = (
    "TABLE DATA",
    "SEQUENCE SET",
    "FK CONSTRAINT",
    "TABLE",
    "INDEX",
    "SEQUENCE",
    "CONSTRAINT",
)


def _pg_bindir() -> Path | None:
    configured = getattr(settings, "OPSCONSOLE_PG_BIN", "")
    if configured:
        return Path(configured)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    if candidates:
        return Path(candidates[0])
    found = shutil.which("pg_dump")
    return Path(found).parent if found else None


def pg_tool(name: str) -> str:
    bindir = _pg_bindir()
    path = bindir / name if bindir else None
    if not path or not path.exists():
        raise EngineError(
            f"{name} not found: install the PostgreSQL client (apt-get install postgresql-client)"
        )
    return str(path)


def _escape_passfile(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


class PostgresEngine(Engine):
    kind = "postgresql"
    label = "PostgreSQL"
    schemes = ("postgresql", "postgres")
    restores_into_databases = True
    streams_wal = True

    @classmethod
    def validate_dsn(cls, dsn: str) -> None:
        try:
            params = conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise ValueError(
                "Not a PostgreSQL connection string (postgresql://user:password@host/db)."
            ) from None
        if not params.get("dbname"):
            raise ValueError("The connection string names no database.")

    @property
    def params(self) -> dict[str, Any]:
        return conninfo_to_dict(self.dsn)

    @property
    def dbname(self) -> str:
        return self.params["dbname"]

    def connect(self, dbname: str | None = None, **kwargs) -> psycopg.Connection:
        params = {**self.params, "connect_timeout": 10, **kwargs}
        if dbname:
            params["dbname"] = dbname
        return psycopg.connect(**params)

    @contextlib.contextmanager
    def tool_env(self) -> Iterator[tuple[list[str], dict[str, str]]]:
        """Connection arguments (no secret among them) and an environment with a passfile."""
        p = self.params
        args = []
        if p.get("host"):
            args += ["--host", str(p["host"])]
        if p.get("port"):
            args += ["--port", str(p["port"])]
        if p.get("user"):
            args += ["--username", str(p["user"])]
        extra: dict[str, str] = {}
        with tempfile.TemporaryDirectory(prefix="opsconsole-pg-") as tmp:
            if p.get("password"):
                passfile = Path(tmp) / "pgpass"
                line = ":".join(
                    _escape_passfile(str(x))
                    for x in (
                        p.get("host") or "*",
                        p.get("port") or "*",
                        "*",
                        p.get("user") or "*",
                        p["password"],
                    )
                )
                fd = os.open(passfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as fh:
                    fh.write(line + "\n")
                extra["PGPASSFILE"] = str(passfile)
            if p.get("sslmode"):
                extra["PGSSLMODE"] = str(p["sslmode"])
            extra["PGCONNECT_TIMEOUT"] = "15"
            yield args, child_env(extra)

    def dump_argv(self, conn_args: list[str], exclude_table_data: list[str]) -> list[str]:
        argv = [pg_tool("pg_dump"), "--format=custom", "--compress=0", "--no-password", *conn_args]
        for pattern in exclude_table_data:
            argv.append(f"--exclude-table-data={pattern}")
        return [*argv, "--dbname", self.dbname]

    @contextlib.contextmanager
    def dump(self) -> Iterator[Dump]:
        """pg_dump's custom format, uncompressed (zstd does that), streamed from its stdout."""
        with (
            self.tool_env() as (conn_args, env),
            self._streamed(
                self.dump_argv(conn_args, self.target.exclude_table_data), env, "pg_dump"
            ) as dump,
        ):
            yield dump

    def base_backup_argv(self, conn_args: list[str]) -> list[str]:
        # A tar of the whole cluster on stdout, with the WAL it needs inside (-X fetch):
        # restorable on its own, and the start of a point-in-time recovery.
        return [
            pg_tool("pg_basebackup"), "--pgdata=-", "--format=tar", "--wal-method=fetch",
            "--checkpoint=fast", "--no-manifest", "--no-password", *conn_args,
        ]  # fmt: skip

    @contextlib.contextmanager
    def base_backup(self) -> Iterator[Dump]:
        """pg_basebackup's tar, streamed from its stdout: never staged on disk."""
        with (
            self.tool_env() as (conn_args, env),
            self._streamed(self.base_backup_argv(conn_args), env, "pg_basebackup") as dump,
        ):
            yield dump

    @contextlib.contextmanager
    def _streamed(self, argv: list[str], env: dict[str, str], name: str) -> Iterator[Dump]:
        with tracing.process(argv) as exited:
            process = subprocess.Popen(  # noqa: S603 - argv list, no shell, no secret in it
                argv,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
            tail = StderrTail(process.stderr)
            timer = watchdog(process, settings.BACKUPS_TIMEOUT_SECONDS)
            dump = Dump(process.stdout)
            try:
                yield dump
                code = process.wait(timeout=60)
            except BaseException:
                process.kill()
                exited(process.wait(timeout=30))
                raise
            finally:
                timer.cancel()
            exited(code)
        dump.stderr = tail.text()
        if code != 0:
            reason = "timed out" if code == -9 else f"exited with code {code}"
            last = dump.stderr.strip().splitlines()[-1] if dump.stderr.strip() else ""
            raise BackupError(f"{name} {reason}: {last}".rstrip(": "), dump.stderr)

    def describe_base_backup(self, archive: Path) -> dict[str, int]:
        """What a base backup's tar holds; EngineError when it is not a whole cluster."""
        import tarfile

        counts: dict = {"files": 0, "wal segments": 0}
        names = set()
        try:
            with tarfile.open(archive, mode="r|") as tar:
                for member in tar:
                    names.add(member.name)
                    if member.name == "backup_label":
                        # The first WAL segment a recovery from it needs: what retention keeps.
                        label = tar.extractfile(member).read().decode(errors="replace")
                        found = re.search(r"START WAL LOCATION: .*\(file ([0-9A-F]{24})\)", label)
                        counts["start wal"] = found.group(1) if found else ""
                    counts["files"] += member.isfile()
                    segment = member.name.removeprefix("pg_wal/")
                    if member.name.startswith("pg_wal/") and WAL_FILE.fullmatch(segment):
                        counts["wal segments"] += 1
                        counts["wal segment bytes"] = member.size  # the server's segment size
                        # The last segment inside: the archive must hold it whole, and
                        # every one after it, for a recovery past the backup's end.
                        counts["end wal"] = max(counts.get("end wal", ""), segment)
        except tarfile.TarError as exc:
            raise EngineError(f"not a base backup: {exc}") from None
        missing = [n for n in ("PG_VERSION", "backup_label", "global/pg_control") if n not in names]
        if missing:
            raise EngineError(f"not a whole base backup: no {', '.join(missing)}")
        return counts

    # --- continuous WAL --------------------------------------------------------------
    def receivewal_argv(self, conn_args: list[str], spool: Path, slot: str) -> list[str]:
        # --synchronous: flushed (and reported flushed to the server) as it arrives, so
        # what the slot releases is on disk here; --no-loop: the console supervises.
        return [
            pg_tool("pg_receivewal"), "--directory", str(spool), "--slot", slot,
            "--synchronous", "--no-loop", "--status-interval=5", "--no-password", *conn_args,
        ]  # fmt: skip

    def create_slot_argv(self, conn_args: list[str], slot: str) -> list[str]:
        return [
            pg_tool("pg_receivewal"), "--create-slot", "--if-not-exists", "--slot", slot,
            "--no-password", *conn_args,
        ]  # fmt: skip

    def replication_problem(self) -> str | None:
        """Why WAL cannot be streamed from this server (one line), or None."""
        try:
            with self.connect() as conn:
                level = conn.execute("SHOW wal_level").fetchone()[0]
                senders = int(conn.execute("SHOW max_wal_senders").fetchone()[0])
                can = conn.execute(
                    "SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user"
                ).fetchone()[0]
        except psycopg.Error as exc:
            return f"cannot connect: {str(exc).strip().splitlines()[0]}"
        if level == "minimal":
            return "the server's wal_level is minimal; set wal_level = replica and restart it"
        if senders < 1:
            return "the server allows no replication connections (max_wal_senders = 0)"
        if not can:
            return "the user may not open replication connections (it needs REPLICATION)"
        # Hosted servers often stop here: pg_hba.conf admits no replication connection
        # from outside (Railway's template, most managed services).
        try:
            with psycopg.connect(
                **{**self.params, "connect_timeout": 10}, replication="true", autocommit=True
            ) as conn:
                conn.execute("IDENTIFY_SYSTEM")
        except psycopg.Error as exc:
            line = str(exc).strip().splitlines()[0].split("FATAL:", 1)[-1].strip()
            return f"the server refuses replication connections ({line})"
        return None

    def create_slot(self, slot: str) -> None:
        """A physical slot that keeps WAL from now on (before the first base backup, so no
        WAL between it and the receiver's start is lost)."""
        with self.connect(autocommit=True) as conn:
            conn.execute(
                "SELECT pg_create_physical_replication_slot(%s, true) WHERE NOT EXISTS "
                "(SELECT 1 FROM pg_replication_slots WHERE slot_name = %s)",
                [slot, slot],
            )

    def slot_retained_bytes(self, slot: str) -> int | None:
        """WAL the server keeps for the slot (what a stopped receiver costs its disk)."""
        with self.connect() as conn:
            row = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint "
                "FROM pg_replication_slots WHERE slot_name = %s",
                [slot],
            ).fetchone()
        return int(row[0]) if row and row[0] is not None else None

    def describe_archive(self, archive: Path) -> dict[str, int]:
        """pg_restore --list, counted by kind of entry (tables, data, indexes, ...)."""
        argv = self.list_argv(archive)
        with tracing.process(argv) as exited:
            result = subprocess.run(  # noqa: S603 - argv list
                argv, env=child_env(), capture_output=True, text=True, timeout=600, check=False
            )
            exited(result.returncode)
        if result.returncode != 0:
            raise RestoreRefused(f"not a readable pg_dump archive: {result.stderr.strip()[:300]}")
        counts: collections.Counter[str] = collections.Counter()
        for line in result.stdout.splitlines():
            entry = re.sub(r"^\d+; \d+ \d+ ", "", line)
            if line.startswith(";") or entry == line:
                continue
            counts[next((k for k in ARCHIVE_KINDS if entry.startswith(k + " ")), "other")] += 1
        return dict(counts)

    def restore_archive(self, archive: Path, dbname: str) -> None:
        """pg_restore into `dbname`, stopping at the first error."""
        with self.tool_env() as (conn_args, env):
            jobs = max(1, min(4, os.cpu_count() or 1))
            argv = self.restore_argv(conn_args, archive, dbname, jobs)
            with tracing.process(argv) as exited:
                result = subprocess.run(  # noqa: S603 - argv list, password in the passfile
                    argv,
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=settings.BACKUPS_TIMEOUT_SECONDS,
                    check=False,
                )
                exited(result.returncode)
        if result.returncode != 0:
            raise BackupError(f"pg_restore exited with code {result.returncode}", result.stderr)

    def versions(self) -> tuple[str, str]:
        client = subprocess.run(  # noqa: S603 - argv list
            [pg_tool("pg_dump"), "--version"],
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.strip()
        try:
            with self.connect() as conn:
                server = conn.execute("SHOW server_version").fetchone()[0]
        except psycopg.Error:
            server = "unknown"
        return client, server

    # --- restore side -------------------------------------------------------------
    def create_database(self, name: str) -> None:
        with self.connect(dbname="postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name))
            )

    def drop_database(self, name: str) -> None:
        with self.connect(dbname="postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )

    def database_exists(self, name: str) -> bool:
        with self.connect(dbname="postgres") as conn:
            return (
                conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
                is not None
            )

    def swap_in(self, fresh: str, keep_as: str) -> None:
        """Rename the live database away and the fresh one into its place.

        Renaming needs nobody connected: new connections are refused, the
        remaining ones are ended, then both renames happen back to back. If the
        second rename fails the first is undone: the live database stays.
        """
        live = self.dbname
        ident = sql.Identifier
        with self.connect(dbname="postgres", autocommit=True) as conn:
            conn.execute(
                sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS false").format(ident(live))
            )
            try:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = %s AND pid <> pg_backend_pid()",
                    [live],
                )
                conn.execute(
                    sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(live), ident(keep_as))
                )
                try:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(ident(fresh), ident(live))
                    )
                except psycopg.Error:
                    conn.execute(
                        sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                            ident(keep_as), ident(live)
                        )
                    )
                    raise
            finally:
                for name in (live, keep_as):
                    if conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", [name]
                    ).fetchone():
                        conn.execute(
                            sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS true").format(
                                ident(name)
                            )
                        )

    def restore_argv(
        self, conn_args: list[str], archive: Path, dbname: str, jobs: int
    ) -> list[str]:
        return [
            pg_tool("pg_restore"),
            "--no-password",
            "--no-owner",
            "--no-privileges",
            "--exit-on-error",
            f"--jobs={jobs}",
            *conn_args,
            "--dbname",
            dbname,
            str(archive),
        ]

    def list_argv(self, archive: Path) -> list[str]:
        return [pg_tool("pg_restore"), "--list", str(archive)]

    def run_checks(self, dbname: str, required_tables: list[str], queries: list[str]) -> list[str]:
        """Problems found in a restored database (empty when it passes).

        Each check query runs alone (a prepared statement: one statement only) in a
        READ ONLY transaction, and only pass or fail is reported, with the SQLSTATE of
        an error: never what the database answered.
        """
        problems = []
        with self.connect(dbname=dbname) as conn:
            conn.read_only = True
            for table in required_tables:
                found = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]
                if found is None:
                    problems.append(f"table {table} is missing")
            for number, query in enumerate(queries, 1):
                try:
                    row = conn.execute(query, prepare=True).fetchone()
                except psycopg.Error as exc:
                    conn.rollback()
                    problems.append(f"check {number} failed (SQLSTATE {exc.sqlstate or 'unknown'})")
                    continue
                if not row or not row[0]:
                    problems.append(f"check {number} did not return true")
        return problems
