"""Continuous WAL against a real primary: pg_receivewal through a slot, every segment shipped
through the pipeline, a base backup streamed as tar, and the README's stock-tool procedure
restoring to a moment between two batches of writes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import psycopg
import pytest
from django.utils import timezone

from backups.backup import back_up
from backups.models import Backup, BackupKey, DatabaseTarget, WalArchive, WalSegment
from backups.wal import Receiver
from opsconsole.fields import reveal
from tests.peers import ensure_binary
from tests.pgserver import ensure_binaries, free_port, throwaway_cluster

pytestmark = pytest.mark.postgres
README = Path(__file__).resolve().parents[2] / "README.md"
RUN_AS = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@pytest.fixture(scope="module")
def primary():
    with throwaway_cluster() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        shop = url.rsplit("/", 1)[0] + "/shop"
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute("CREATE TABLE events (id bigserial PRIMARY KEY, at timestamptz NOT NULL "
                         "DEFAULT clock_timestamp())")  # fmt: skip
        yield shop


@pytest.fixture
def archive(transactional_db, primary, local_storage):
    target = DatabaseTarget.objects.create(name="shop", engine="postgresql", dsn=primary)
    archive = WalArchive.objects.create(target=target, storage=local_storage,
                                        partial_every_seconds=1)  # fmt: skip
    yield archive
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE NOT active")  # fmt: skip


def wait_until(predicate, timeout: float, exceptions: tuple = ()) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except exceptions:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"not within {timeout} s")


class Running:
    """A receiver on its own thread, as `walreceiver` runs it."""

    def __init__(self, archive: WalArchive):
        self.stop = threading.Event()
        self.receiver = Receiver(archive.pk, self.stop)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        from django.db import connection

        try:
            self.receiver.run()
        finally:
            connection.close()

    def halt(self):
        self.stop.set()
        self.thread.join(timeout=40)
        assert not self.thread.is_alive()


def insert(dsn: str, count: int) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(count):
            last = conn.execute("INSERT INTO events DEFAULT VALUES RETURNING id").fetchone()[0]
    return last


def server_now(dsn: str):
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT clock_timestamp()").fetchone()[0]


def shipped_after(archive: WalArchive, moment) -> bool:
    archive.refresh_from_db()
    return archive.covered_until is not None and archive.covered_until > moment


def readme_block() -> str:
    text = README.read_text()
    block = text.split("<!-- pitr-by-hand", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    # The first lines set the procedure's inputs; the test gives its own.
    lines = block.splitlines()
    assert [line.split("=", 1)[0] for line in lines[:5]] == [
        "KEY", "ARCHIVE", "BASE", "PGDATA", "TARGET_TIME"
    ]  # fmt: skip
    return "\n".join(lines[5:])


def start_restored(pgdata: Path, sockets: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen(
        [*RUN_AS, str(ensure_binaries() / "postgres"), "-D", str(pgdata), "-p", str(port),
         "-k", str(sockets), "-c", "listen_addresses=127.0.0.1", "-c", "archive_mode=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    return process, f"postgresql://postgres@127.0.0.1:{port}/shop"


def test_wal_is_shipped_and_the_readme_procedure_restores_to_a_moment(archive, primary):
    for tool in ("age", "zstd"):
        ensure_binary(tool, tool)
    base = back_up(Backup.objects.create(target=archive.target, storage=archive.storage,
                                         kind=Backup.Kind.BASE))  # fmt: skip
    assert base.status == "verified", base.error
    assert base.storage_key.endswith(".base.tar.zst.age")
    assert base.toc_summary["files"] > 100 and base.toc_summary["wal segments"] >= 1

    running = Running(archive)
    try:
        before = insert(primary, 40)
        time.sleep(1.2)
        moment = server_now(primary)
        time.sleep(1.2)
        after = insert(primary, 40)
        wrote = timezone.now()
        wait_until(lambda: shipped_after(archive, wrote), timeout=20)
        archive.refresh_from_db()
        assert archive.status == "streaming" and archive.holder
        assert archive.recovery_point_age() < 5
    finally:
        running.halt()
    partial = WalSegment.objects.get(archive=archive, partial=True)
    assert partial.storage_key == f"shop/wal/{partial.name}.partial.zst.age"

    # The README's procedure, with stock tools, as the postgres user.
    work = Path(tempfile.mkdtemp(prefix="opsconsole-pitr-"))
    try:
        shutil.copytree(Path(archive.storage.config["path"]) / "shop", work / "shop")
        (work / "key.txt").write_text(reveal(BackupKey.current().identity) + "\n")
        (work / "sock").mkdir()
        if RUN_AS:
            subprocess.run(["chown", "-R", "postgres:postgres", str(work)], check=True)
        env = {
            "KEY": str(work / "key.txt"), "ARCHIVE": str(work / "shop"),
            "BASE": str(work / base.storage_key), "PGDATA": str(work / "restored"),
            "TARGET_TIME": moment.isoformat(), "PATH": "/usr/bin:/bin",
        }  # fmt: skip
        result = subprocess.run(
            [*RUN_AS, "env", *(f"{k}={v}" for k, v in env.items()), "bash", "-e", "-c", readme_block()],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        process, dsn = start_restored(work / "restored", work / "sock")
        try:

            def promoted():
                with psycopg.connect(dsn, connect_timeout=2) as conn:
                    return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]

            wait_until(promoted, timeout=60, exceptions=(psycopg.OperationalError,))
            with psycopg.connect(dsn) as conn:
                count, newest = conn.execute("SELECT count(*), max(id) FROM events").fetchone()
            assert (count, newest) == (before, before), (
                f"every row up to the moment and none after it ({after} were written)"
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_a_killed_receiver_loses_nothing_the_slot_kept(archive, primary):
    running = Running(archive)
    try:
        wait_until(lambda: WalArchive.objects.get(pk=archive.pk).status == "streaming", timeout=20)
        first = insert(primary, 20)
        receiver_pid = running.receiver.process.pid
    finally:
        os.kill(receiver_pid, signal.SIGKILL)  # pg_receivewal dies mid-stream
        running.halt()
    # While nothing receives, writes go on and whole segments fill: the slot keeps them.
    with psycopg.connect(primary, autocommit=True) as conn:
        for _ in range(3):
            insert(primary, 10)
            conn.execute("SELECT pg_switch_wal()")
    last = insert(primary, 5)
    wrote = timezone.now()
    running = Running(archive)
    try:
        wait_until(lambda: shipped_after(archive, wrote), timeout=30)
    finally:
        running.halt()
    names = sorted(WalSegment.objects.filter(archive=archive, partial=False)
                   .values_list("name", flat=True))  # fmt: skip
    numbers = [
        int(n[8:16], 16) * 0x100 + int(n[16:], 16)
        for n in names
        if re.fullmatch(r"[0-9A-F]{24}", n)
    ]
    assert len(numbers) >= 3 and numbers == list(range(numbers[0], numbers[0] + len(numbers))), (
        f"no gap in the archived WAL: {names}"
    )
    assert last > first
