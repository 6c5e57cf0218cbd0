"""A real PostgreSQL server for the tests that need one.

TEST_DATABASE_URL, when set, names a server to use (databases are created on
it and dropped afterwards). Otherwise a throwaway cluster is started from the
installed server binaries, in a temporary directory on a free port, and
removed at the end. System clusters are never touched.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg


class PostgresUnavailable(Exception):
    pass


def find_bindir() -> Path | None:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    for path in candidates:
        if (Path(path) / "initdb").exists():
            return Path(path)
    initdb = shutil.which("initdb")
    return Path(os.path.realpath(initdb)).parent if initdb else None


def ensure_binaries() -> Path:
    bindir = find_bindir()
    if bindir:
        return bindir
    if os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "postgresql"], check=True, env=env, timeout=900
        )
        bindir = find_bindir()
        if bindir:
            return bindir
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found: install them (sudo apt-get install postgresql) "
        "or set TEST_DATABASE_URL"
    )


PASSWORD_ROLE = "pwcheck"


def free_port_block(count: int) -> int:
    """A port such that it and the next count-1 ports are free now."""
    for _ in range(100):
        base = free_port()
        if base + count > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                s.bind(("127.0.0.1", port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError("no block of free ports found")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """Either an external server (TEST_DATABASE_URL) or a throwaway cluster."""

    def __init__(self, url: str, password_role: str | None = None):
        self.url = url
        # A role the server really checks the password of (a throwaway cluster
        # trusts everyone else); None on an external server.
        self.password_role = password_role
        self._databases: list[str] = []

    def dsn(self, dbname: str) -> str:
        parts = urlsplit(self.url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{dbname}", parts.query, ""))

    @property
    def admin_dsn(self) -> str:
        return self.url

    def create_database(self, prefix: str = "opsconsole_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        self._databases.append(name)
        return name

    def drop_databases(self) -> None:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            for name in self._databases:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self._databases.clear()


@contextlib.contextmanager
def postgres_server():
    external = os.environ.get("TEST_DATABASE_URL")
    if external:
        server = PostgresServer(external)
        try:
            yield server
        finally:
            server.drop_databases()
        return
    with throwaway_cluster() as url:
        yield PostgresServer(url, password_role=PASSWORD_ROLE)


@contextlib.contextmanager
def throwaway_cluster():
    bindir = ensure_binaries()
    root = Path(tempfile.mkdtemp(prefix="opsconsole-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        # initdb refuses to run as root: run the cluster as the postgres user.
        try:
            user = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable(
                "running as root but no 'postgres' user exists to own a throwaway cluster"
            ) from None
        for path in (root, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "postgres", "--"]
    port = free_port()
    process = None
    try:
        subprocess.run(
            [*run_as, str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
             "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        hba = data / "pg_hba.conf"
        hba.write_text(f"host all {PASSWORD_ROLE} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())
        process = subprocess.Popen(
            [*run_as, str(bindir / "postgres"), "-D", str(data), "-p", str(port),
             "-k", str(sockets), "-c", "listen_addresses=127.0.0.1",
             "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 60
        while True:
            try:
                psycopg.connect(url, connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if process.poll() is not None:
                    raise PostgresUnavailable(
                        "throwaway PostgreSQL did not start: "
                        + process.stderr.read().decode(errors="replace")[-500:]
                    ) from None
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        "throwaway PostgreSQL did not accept connections in 60 s"
                    ) from None
                time.sleep(0.2)
        yield url
    finally:
        if process is not None and process.poll() is None:
            process.terminate()  # smart shutdown would wait for clients; SIGTERM is enough here
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
