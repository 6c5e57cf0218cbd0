"""Database engines: how to dump, how to restore, how to check. One class per engine.

Passwords reach the PostgreSQL tools through a 0600 passfile named in the
child's environment (PGPASSFILE) — never in argv, never in a URI on the
command line, never in a log line.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict


class EngineError(Exception):
    pass


def _pg_bindir() -> Path | None:
    from django.conf import settings

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


class Engine:
    kind: ClassVar[str]
    label: ClassVar[str]

    def __init__(self, target):
        self.target = target
        self.dsn: str = target.dsn

    @classmethod
    def validate_dsn(cls, dsn: str) -> None: ...


class PostgresEngine(Engine):
    kind = "postgresql"
    label = "PostgreSQL"

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
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
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
                env["PGPASSFILE"] = str(passfile)
            if p.get("sslmode"):
                env["PGSSLMODE"] = str(p["sslmode"])
            env["PGCONNECT_TIMEOUT"] = "15"
            yield args, env

    def dump_argv(self, conn_args: list[str], exclude_table_data: list[str]) -> list[str]:
        argv = [pg_tool("pg_dump"), "--format=custom", "--compress=0", "--no-password", *conn_args]
        for pattern in exclude_table_data:
            argv.append(f"--exclude-table-data={pattern}")
        return [*argv, "--dbname", self.dbname]

    def versions(self) -> tuple[str, str]:
        client = subprocess.run(  # noqa: S603 - argv list
            [pg_tool("pg_dump"), "--version"],
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
        """Problems found in a restored database (empty when it passes)."""
        problems = []
        with self.connect(dbname=dbname) as conn:
            for table in required_tables:
                found = conn.execute("SELECT to_regclass(%s)", [table]).fetchone()[0]
                if found is None:
                    problems.append(f"table {table} is missing")
            for query in queries:
                try:
                    row = conn.execute(query).fetchone()
                except psycopg.Error as exc:
                    conn.rollback()
                    problems.append(f"check {query!r} failed: {str(exc).splitlines()[0]}")
                    continue
                if not row or not row[0]:
                    problems.append(f"check {query!r} returned {row[0] if row else 'no row'}")
        return problems


class SqliteEngine(Engine):
    """SQLite through its online backup API (consistent while others write)."""

    kind = "sqlite"
    label = "SQLite"

    @classmethod
    def validate_dsn(cls, dsn: str) -> None:
        if not dsn.startswith("sqlite:///"):
            raise ValueError("SQLite targets are written sqlite:////absolute/path.db")

    @property
    def path(self) -> str:
        return self.dsn.removeprefix("sqlite:///")

    def snapshot(self, into: Path) -> None:
        source = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30)
        try:
            destination = sqlite3.connect(into)
            with destination:
                source.backup(destination, pages=1024)
            destination.close()
        finally:
            source.close()

    def versions(self) -> tuple[str, str]:
        return f"sqlite {sqlite3.sqlite_version}", f"sqlite {sqlite3.sqlite_version}"


ENGINES: dict[str, type[Engine]] = {cls.kind: cls for cls in (PostgresEngine, SqliteEngine)}
