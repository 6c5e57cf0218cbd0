"""Continuous WAL against a real primary: pg_receivewal through a slot, every segment shipped
through the pipeline, a base backup streamed as tar, and the README's stock-tool procedure
restoring to a moment between two batches of writes."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.utils import timezone

from backups.backup import back_up
from backups.models import Backup, BackupKey, DatabaseTarget, WalArchive, WalSegment
from backups.wal import Receiver
from opsconsole.fields import reveal
from tests.helpers import wait_for
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
    target.db.create_slot(archive.slot_name)  # as switching on does, before any base backup
    yield archive
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
                     "WHERE NOT active")  # fmt: skip


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
        "KEY", "WAL", "BASE", "PGDATA", "TARGET_TIME"
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
    assert base.toc_summary["wal segment bytes"] == 16 * 2**20, "the server's segment size"

    running = Running(archive)
    try:
        before = insert(primary, 40)
        time.sleep(1.2)
        moment = server_now(primary)
        time.sleep(1.2)
        after = insert(primary, 40)
        wrote = timezone.now()
        assert wait_for(lambda: shipped_after(archive, wrote), timeout=20)
        archive.refresh_from_db()
        assert archive.status == "streaming" and archive.holder
        assert archive.recovery_point_age() < 5
    finally:
        running.halt()
    partial = WalSegment.objects.get(archive=archive, partial=True)
    assert partial.storage_key == f"shop/wal-{archive.pk}/{partial.name}.partial.zst.age"

    # The README's procedure, with stock tools, as the postgres user.
    work = Path(tempfile.mkdtemp(prefix="opsconsole-pitr-"))
    try:
        shutil.copytree(Path(archive.storage.config["path"]) / "shop", work / "shop")
        (work / "key.txt").write_text(reveal(BackupKey.current().identity) + "\n")
        (work / "sock").mkdir()
        if RUN_AS:
            subprocess.run(["chown", "-R", "postgres:postgres", str(work)], check=True)
        env = {
            "KEY": str(work / "key.txt"), "WAL": str(work / "shop" / f"wal-{archive.pk}"),
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
                try:
                    with psycopg.connect(dsn, connect_timeout=2) as conn:
                        return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                except psycopg.OperationalError:
                    return False

            assert wait_for(promoted, timeout=60), process.stderr.read1().decode()[-2000:]
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
        assert wait_for(
            lambda: WalArchive.objects.get(pk=archive.pk).status == "streaming", timeout=20
        )
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
        assert wait_for(lambda: shipped_after(archive, wrote), timeout=30)
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


def test_switching_on_takes_a_base_backup_weekly_and_turns_the_hourly_dump_off(
    transactional_db, primary, bob, alice
):
    from django.core.exceptions import PermissionDenied

    from backups.models import BackupPolicy

    target = DatabaseTarget.objects.create(name="shop", engine="postgresql", dsn=primary)
    assert target.policies.get(kind="hourly").enabled
    with pytest.raises(PermissionDenied):
        WalArchive.switch_on(target, alice)
    from django_q.models import OrmQ

    archive, first = WalArchive.switch_on(target, bob)
    assert OrmQ.objects.count() == 1 and first.kind == "base" and first.status == "queued"
    assert archive.slot_name == f"opsconsole_{target.pk}" and archive.enabled
    base = BackupPolicy.objects.get(target=target, kind="base")
    assert (base.schedule, base.retention_days) == ("0 3 * * 0", 30)
    assert not target.policies.get(kind="hourly").enabled
    running = Running(archive)  # connected to the slot when it is switched off
    assert wait_for(lambda: WalArchive.objects.get().status == "streaming", timeout=20)
    archive.switch_off(bob)
    running.halt()
    assert target.policies.get(kind="hourly").enabled and not WalArchive.objects.get().enabled
    assert not BackupPolicy.objects.get(target=target, kind="base").enabled
    with psycopg.connect(primary) as conn:
        slots = conn.execute("SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s",
                             [archive.slot_name]).fetchone()[0]  # fmt: skip
    assert slots == 0, "the slot is gone, even though a receiver was connected"


def test_a_server_that_refuses_replication_is_said_in_one_line(transactional_db, primary, bob):
    from django.core.exceptions import ValidationError

    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS app")
        conn.execute("CREATE ROLE app LOGIN NOREPLICATION")
    dsn = primary.replace("postgres@", "app@")
    target = DatabaseTarget.objects.create(name="hosted", engine="postgresql", dsn=dsn)
    with pytest.raises(ValidationError) as error:
        WalArchive.switch_on(target, bob)
    assert error.value.messages == [
        "hosted: WAL cannot be streamed: the user may not open replication connections "
        "(it needs REPLICATION)."
    ]
    assert not WalArchive.objects.exists() and target.policies.get(kind="hourly").enabled


def test_the_live_rpo_is_the_last_shipped_wal_once_a_base_backup_exists(db, local_storage):

    from dr.models import RecoveryObjective

    target = DatabaseTarget.objects.create(name="shop", engine="postgresql",
                                           dsn="postgresql://u@127.0.0.1:1/shop")  # fmt: skip
    now = timezone.now()
    dump = Backup.objects.create(target=target, storage=local_storage, status="verified",
                                 sha256="0" * 64, bytes_stored=1)  # fmt: skip
    Backup.objects.filter(pk=dump.pk).update(created_at=now - timedelta(hours=5))
    archive = WalArchive.objects.create(target=target, storage=local_storage,
                                        covered_until=now - timedelta(seconds=12))  # fmt: skip
    objective = RecoveryObjective.objects.create(target=target)
    assert objective.live_rpo(now) == timedelta(hours=5), "WAL alone cannot be replayed"
    base = Backup.objects.create(target=target, storage=local_storage, status="verified",
                                 kind="base", sha256="0" * 64, bytes_stored=1)  # fmt: skip
    Backup.objects.filter(pk=base.pk).update(created_at=now - timedelta(hours=1))
    assert objective.live_rpo(now) == timedelta(seconds=12)
    assert objective.summary(now)["rpo_css"] == "state-ok"
    archive.enabled = False
    archive.save()
    assert objective.live_rpo(now) == timedelta(hours=1), "without WAL: the newest backup"


def test_retention_keeps_the_wal_the_oldest_kept_base_backup_needs(db, local_storage):

    from backups import retention

    target = DatabaseTarget.objects.create(name="shop", engine="postgresql",
                                           dsn="postgresql://u@127.0.0.1:1/shop")  # fmt: skip
    archive = WalArchive.objects.create(target=target, storage=local_storage)
    names = [f"0000000100000000000000{n:02X}" for n in range(1, 9)]
    for name in [*names, "00000002.history"]:
        key = archive.object_key(name)
        writer = local_storage.backend.open_writer(key, {})
        writer.write(b"x")
        writer.commit()
        WalSegment.objects.create(archive=archive, name=name, storage_key=key, sha256="0",
                                  bytes_stored=1, raw_sha256="0")  # fmt: skip
    assert retention.wal_due_for_deletion() == {}, "no base backup: keep everything"
    policy = target.policies.create(name="shop base", storage=local_storage, kind="base",
                                    schedule="0 3 * * 0", retention_days=30)  # fmt: skip
    old, kept, _newest = (
        Backup.objects.create(target=target, storage=local_storage, policy=policy, kind="base",
                              status="verified", sha256="0", bytes_stored=1,
                              toc_summary={"start wal": names[i]})
        for i in (1, 4, 6)
    )  # fmt: skip
    Backup.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=40))
    Backup.objects.filter(pk=kept.pk).update(created_at=timezone.now() - timedelta(days=20))
    due = retention.wal_due_for_deletion()
    assert [s.name for s in due[archive]] == names[:4], "from the kept one's start on, all stays"
    retention.prune()
    assert sorted(archive.segments.values_list("name", flat=True)) == [
        *names[4:], "00000002.history",
    ]  # fmt: skip
    assert not (Path(local_storage.config["path"]) / archive.object_key(names[0])).exists()


def recorded_history(archive: WalArchive, primary: str):
    """A base backup, 40 rows, a moment, 40 more rows, all shipped: (base, moment)."""
    base = back_up(Backup.objects.create(target=archive.target, storage=archive.storage,
                                         kind=Backup.Kind.BASE))  # fmt: skip
    assert base.status == "verified", base.error
    running = Running(archive)
    try:
        insert(primary, 40)
        time.sleep(1.2)
        moment = server_now(primary)
        time.sleep(1.2)
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute("DELETE FROM events WHERE id <= 10")  # the mistake
            conn.execute("SELECT pg_switch_wal()")
        insert(primary, 40)
        wrote = timezone.now()
        assert wait_for(lambda: shipped_after(archive, wrote), timeout=20)
    finally:
        running.halt()
    return base, moment


def test_a_point_in_time_restore_through_approval_copies_the_moment_into_a_new_database(
    archive, primary, alice, bob
):
    from backups.models import RestoreRequest

    with psycopg.connect(primary, autocommit=True) as conn:
        before = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    base, moment = recorded_history(archive, primary)
    request = RestoreRequest(backup=base, requested_by=alice, recover_to=moment,
                             new_database="shop_before_the_delete")  # fmt: skip
    request.full_clean()
    request.save()
    request.approve(bob, confirmation="shop")
    request = request.execute()
    assert request.status == "succeeded", request.error
    assert set(request.timings) >= {"fetch", "replay", "copy", "verify", "total"}
    restored = primary.rsplit("/", 1)[0] + "/shop_before_the_delete"
    with psycopg.connect(restored) as conn:
        count, lowest = conn.execute("SELECT count(*), min(id) FROM events").fetchone()
    assert (count, lowest) == (before + 40, 1), "every row up to the moment, the deleted ones too"
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("DROP DATABASE shop_before_the_delete")


def test_missing_or_damaged_wal_stops_the_restore_naming_the_segment(archive, primary, bob):
    from backups import pitr
    from backups.errors import RestoreRefused

    base, _moment = recorded_history(archive, primary)
    store = Path(archive.storage.config["path"])
    # The base backup itself, damaged or cut short in storage, is named as such (it is
    # unpacked as it is read back, and nothing unpacked counts until the read-back passed).
    stored = store / base.storage_key
    original = stored.read_bytes()
    for damaged in (
        original[: len(original) // 3],
        original[:5000] + bytes([original[5000] ^ 0xFF]) + original[5001:],
    ):
        stored.write_bytes(damaged)
        with pytest.raises(RestoreRefused, match="checksum mismatch"):
            pitr.recover_into(base, "shop_base_damaged", None)
    stored.write_bytes(original)
    assert not list(Path(pitr.scratch_dir()).glob(f"{pitr.SCRATCH_PREFIX}*")), "nothing left"
    whole = list(WalSegment.objects.filter(archive=archive, partial=False).order_by("name"))
    assert len(whole) >= 2
    victim = whole[1]
    path = store / victim.storage_key
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated in storage
    with pytest.raises(
        RestoreRefused, match=f"WAL segment {victim.name} was modified or truncated"
    ):
        pitr.recover_into(base, "shop_truncated", None)
    path.unlink()
    with pytest.raises(RestoreRefused, match=f"WAL segment {victim.name} is missing from storage"):
        pitr.recover_into(base, "shop_missing", None)
    victim.delete()  # not even a record of it
    with pytest.raises(
        RestoreRefused, match=f"WAL segment {victim.name} .*missing from the archive"
    ):
        pitr.recover_into(base, "shop_gap", None)
    with psycopg.connect(primary) as conn:
        names = {r[0] for r in conn.execute("SELECT datname FROM pg_database")}
    assert not names & {"shop_truncated", "shop_missing", "shop_gap"}, "nothing half-made"
    with pytest.raises(RestoreRefused, match="covers up to"):
        pitr.recover_into(base, "shop_future", timezone.now() + timedelta(hours=1))


def test_a_restore_recovers_exactly_to_a_named_restore_point(archive, primary, alice, bob, carol):
    from django.core.exceptions import PermissionDenied

    from backups.models import RestorePoint, RestoreRequest

    base = back_up(Backup.objects.create(target=archive.target, storage=archive.storage,
                                         kind=Backup.Kind.BASE))  # fmt: skip
    running = Running(archive)
    try:
        kept = insert(primary, 7)
        with pytest.raises(PermissionDenied):
            RestorePoint.create(archive, "before-migration", carol)
        point = RestorePoint.create(archive, "before-migration", alice)
        with psycopg.connect(primary, autocommit=True) as conn:
            conn.execute("DELETE FROM events")  # the migration that went wrong
        wrote = timezone.now()
        assert wait_for(lambda: shipped_after(archive, wrote), timeout=20)
    finally:
        running.halt()
    request = RestoreRequest(backup=base, requested_by=alice, recover_to_point=point,
                             new_database="shop_at_point")  # fmt: skip
    request.full_clean()
    request.save()
    request.approve(bob, confirmation="shop")
    request = request.execute()
    assert request.status == "succeeded", request.error
    with psycopg.connect(primary.rsplit("/", 1)[0] + "/shop_at_point") as conn:
        assert conn.execute("SELECT max(id) FROM events").fetchone()[0] == kept
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("DROP DATABASE shop_at_point")


def test_what_a_dead_worker_left_of_a_recovery_is_cleaned_up(db, tmp_path, settings):
    from backups import pitr

    settings.VAR_DIR = str(tmp_path)
    under = Path(pitr.scratch_dir())
    dead = under / f"{pitr.SCRATCH_PREFIX}dead"
    (dead / "data").mkdir(parents=True)
    # Stands for the orphaned scratch server (its command line names its folder).
    sleeper = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", str(dead / "data")]
    )
    stranger = subprocess.Popen(["sleep", "60"])  # a stale pid now used by someone else
    (dead / "data" / "postmaster.pid").write_text(f"{sleeper.pid}\n/data\n")
    gone = subprocess.Popen(["true"])  # the worker that started it, since dead
    gone.wait()
    (dead / "owner").write_text(f"{gone.pid}\n")
    mine = under / f"{pitr.SCRATCH_PREFIX}mine"
    mine.mkdir()
    (mine / "owner").write_text(f"{os.getpid()}\n")
    stale = under / f"{pitr.SCRATCH_PREFIX}stale"
    (stale / "data").mkdir(parents=True)
    (stale / "data" / "postmaster.pid").write_text(f"{stranger.pid}\n")
    (stale / "owner").write_text(f"{gone.pid}\n")
    assert pitr.clean_up_scratch() == 2
    assert sleeper.wait(timeout=10) == -signal.SIGQUIT
    assert stranger.poll() is None, "a process that is not the folder's server is left alone"
    stranger.kill()
    assert not dead.exists() and mine.exists(), "a recovery still running is left alone"


def test_a_timeline_switch_is_refused_with_the_way_by_hand(db, local_storage):
    from backups import pitr
    from backups.errors import RestoreRefused

    target = DatabaseTarget.objects.create(name="shop", engine="postgresql",
                                           dsn="postgresql://u@127.0.0.1:1/shop")  # fmt: skip
    archive = WalArchive.objects.create(target=target, storage=local_storage)
    for name in ("000000010000000000000003", "00000002.history", "000000020000000000000003"):
        WalSegment.objects.create(archive=archive, name=name, storage_key=name, sha256="0",
                                  bytes_stored=1, raw_sha256="0")  # fmt: skip
    with pytest.raises(RestoreRefused, match=r"changed timeline .* restore by hand"):
        pitr.needed_segments(archive, "000000010000000000000003")


def test_the_wal_a_recovery_needs_follows_the_servers_segment_size(db, local_storage):
    from backups import pitr

    target = DatabaseTarget.objects.create(name="shop", engine="postgresql",
                                           dsn="postgresql://u@127.0.0.1:1/shop")  # fmt: skip
    archive = WalArchive.objects.create(target=target, storage=local_storage)
    # At 64 MB a segment, the names wrap after ...3F: 0x40 segments make 4 GiB.
    names = ["00000001000000000000003E", "00000001000000000000003F", "000000010000000100000000",
             "000000010000000100000001"]  # fmt: skip
    for name in names:
        WalSegment.objects.create(archive=archive, name=name, storage_key=name, sha256="0",
                                  bytes_stored=1, raw_sha256="0")  # fmt: skip
    chosen, missing = pitr.needed_segments(archive, names[0], 64 * 2**20)
    assert [s.name for s in chosen] == names and missing is None
    # Read as 16 MB segments, ...40 would be missing before the later ones.
    chosen, missing = pitr.needed_segments(archive, names[0])
    assert missing == "000000010000000000000040"


def test_a_moment_after_the_last_commit_of_a_quiet_database_restores_everything(archive, primary):
    from backups import pitr

    base = back_up(Backup.objects.create(target=archive.target, storage=archive.storage,
                                         kind=Backup.Kind.BASE))  # fmt: skip
    running = Running(archive)
    try:
        last = insert(primary, 12)
        time.sleep(1.2)
        moment = server_now(primary)  # nothing is committed after this
        time.sleep(2.5)
        assert wait_for(lambda: shipped_after(archive, moment), timeout=20)
    finally:
        running.halt()
    result = pitr.recover_into(base, "shop_quiet", moment)
    with psycopg.connect(primary.rsplit("/", 1)[0] + "/shop_quiet") as conn:
        assert conn.execute("SELECT max(id) FROM events").fetchone()[0] == last
    assert result["timings"]["replay"] > 0
    with psycopg.connect(primary, autocommit=True) as conn:
        conn.execute("DROP DATABASE shop_quiet")


def test_a_receiver_killed_on_this_host_is_taken_over_at_once_not_after_its_lease(
    db, local_storage
):
    target = DatabaseTarget.objects.create(name="shop", engine="postgresql",
                                           dsn="postgresql://u@127.0.0.1:1/shop")  # fmt: skip
    archive = WalArchive.objects.create(target=target, storage=local_storage)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = __import__("socket").gethostname()
    ns = __import__("backups.wal").wal._pid_namespace()
    stop = threading.Event()
    for holder, taken in [
        (f"{host}:{dead.pid}:1:{ns}", True),  # killed here: its lease is stale at once
        (f"{host}:{os.getpid()}:1:{ns}", False),  # alive here: it holds the stream
        (f"elsewhere:{dead.pid}:1:{ns}", False),  # another host: only its lease's end says
        # A container with the same host name but its own process ids: the same.
        (f"{host}:{dead.pid}:1:4026500000", False),
    ]:
        WalArchive.objects.filter(pk=archive.pk).update(
            holder=holder, lease_expires_at=timezone.now() + timedelta(seconds=30)
        )
        assert Receiver(archive.pk, stop, holder="me:1:1").claim() is taken, holder
        assert WalArchive.objects.get(pk=archive.pk).holder == ("me:1:1" if taken else holder)


def test_a_drill_recovers_to_minutes_ago_and_checks_the_rows_either_side(
    archive, primary, monkeypatch
):
    import dr.models.objectives
    from dr.drills import run_drill
    from dr.models import RecoveryObjective

    base = back_up(Backup.objects.create(target=archive.target, storage=archive.storage,
                                         kind=Backup.Kind.BASE))  # fmt: skip
    assert base.status == "verified", base.error
    running = Running(archive)
    try:
        insert(primary, 30)
        time.sleep(6)  # past the drill's margin for rows committed after their stamp
        moment = server_now(primary)
        time.sleep(1.2)
        insert(primary, 10)
        wrote = timezone.now()
        assert wait_for(lambda: shipped_after(archive, wrote), timeout=20)
    finally:
        running.halt()
    objective = RecoveryObjective.objects.create(
        target=archive.target, pitr_drill_column="events.at", pitr_drill_minutes=10
    )
    objective.full_clean()

    class TenMinutesLater:  # the console's clock, ten minutes on: the drill's "10 minutes ago"
        @staticmethod
        def now():
            return moment + timedelta(minutes=10)

    monkeypatch.setattr(dr.models.objectives, "timezone", TenMinutesLater)
    drill = run_drill(archive.target)
    assert drill.status == "succeeded", drill.error
    assert drill.backup == base and drill.recovered_to == moment
    assert re.search(r"the (\d+) rows written in the 5 minutes before are there, none of the "
                     r"10 written since", drill.findings), drill.findings  # fmt: skip
    assert int(re.search(r"the (\d+) rows", drill.findings)[1]) >= 30
    phases = objective.rto_phases()
    assert re.fullmatch(r"fetch [\d.]+ s · replay [\d.]+ s · copy [\d.]+ s · checks [\d.]+ s",
                        phases), phases  # fmt: skip
    assert not archive.target.db.database_exists(drill.scratch_database)

    # A column the database does not have fails the drill, saying so, and drops the scratch.
    objective.pitr_drill_column = "events.written"
    objective.save()
    drill = run_drill(archive.target)
    assert drill.status == "failed"
    assert 'events.written cannot be compared: column "written" does not exist' in drill.error
    assert not archive.target.db.database_exists(drill.scratch_database)

    bad = RecoveryObjective(target=archive.target, pitr_drill_column="events; drop table x")
    with pytest.raises(__import__("django").core.exceptions.ValidationError) as err:
        bad.clean()
    assert "table.column" in str(err.value)


def test_a_kept_recovered_server_is_read_only_its_dsn_shown_to_its_approver_and_it_stops(
    archive, primary, alice, bob, carol, client
):
    from backups import pitr
    from backups.models import RestoreRequest

    with psycopg.connect(primary, autocommit=True) as conn:
        before, lowest = conn.execute("SELECT count(*), min(id) FROM events").fetchone()
    base, moment = recorded_history(archive, primary)
    request = RestoreRequest(backup=base, requested_by=alice, recover_to=moment, mode="keep")
    request.full_clean()
    request.save()
    assert request.requires_two_people(), "a read-only login to a copy of production"
    request.approve(bob, confirmation="shop")
    request = request.execute()
    assert request.status == "succeeded", request.error
    try:
        kept_server_checks(request, primary, before, lowest, alice, bob, carol, client)
    finally:
        if not RestoreRequest.objects.get(pk=request.pk).scratch_stopped_at:
            pitr.stop_kept(request)


def kept_server_checks(request, primary, before, lowest, alice, bob, carol, client):
    from backups import pitr

    assert set(request.timings) >= {"fetch", "replay", "total"} and "copy" not in request.timings
    dsn = reveal(request.scratch_dsn)
    assert dsn.startswith("postgresql://opsconsole_recovered:") and "@127.0.0.1:" in dsn
    with psycopg.connect(dsn, autocommit=True) as conn:
        count, low = conn.execute("SELECT count(*), min(id) FROM events").fetchone()
        assert (count, low) == (before + 40, lowest or 1), "the moment, none written after"
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("DELETE FROM events")
        conn.execute("SET default_transaction_read_only = off")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM events")
    password = dsn.split(":")[2].split("@")[0]

    page = f"/admin/backups/restorerequest/{request.pk}/change/"
    for who, sees in [(bob, True), (alice, False), (carol, False)]:
        client.force_login(who)
        html = client.get(page).content.decode()
        assert (password in html) is sees, who
        assert "runs on" in html
        if not sees:
            assert "its connection string is shown to bob only" in html

    # The clean-up leaves it while its time runs; only an approver stops it.
    assert pitr.clean_up_scratch() == 0
    with psycopg.connect(dsn) as conn:
        conn.execute("SELECT 1")
    for who, allowed in [(alice, False), (bob, True)]:
        client.force_login(who)
        response = client.post(
            "/admin/backups/restorerequest/",
            {"action": "stop_kept_server", "_selected_action": [request.pk]},
            follow=True,
        )
        request.refresh_from_db()
        assert (request.scratch_stopped_at is not None) is allowed, who
    assert "recovered server stopped" in response.content.decode()
    assert not request.scratch_dsn and not Path(request.scratch_folder).exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=3)


def test_a_kept_server_past_its_time_or_whose_server_died_is_removed(
    db, local_storage, alice, tmp_path, settings
):
    from backups import pitr
    from backups.models import RestoreRequest

    settings.VAR_DIR = str(tmp_path)
    target = DatabaseTarget.objects.create(name="shop", engine="postgresql",
                                           dsn="postgresql://u@127.0.0.1:1/shop")  # fmt: skip
    base = Backup.objects.create(target=target, storage=local_storage, status="verified",
                                 kind="base", sha256="0" * 64, bytes_stored=1)  # fmt: skip
    folders = {}
    for name, until in [("expired", -1), ("dead", 1)]:
        folder = Path(pitr.scratch_dir()) / f"{pitr.SCRATCH_PREFIX}{name}"
        (folder / "data").mkdir(parents=True)
        request = RestoreRequest.objects.create(
            backup=base, requested_by=alice, mode="keep", status="succeeded",
            scratch_folder=str(folder), scratch_host="here",
            scratch_dsn="postgresql://x:y@127.0.0.1:1/shop",
            scratch_until=timezone.now() + timedelta(hours=until),
        )  # fmt: skip
        (folder / "owner").write_text(f"kept {request.pk} {pitr._instance()}\n")
        folders[request.pk] = folder
    # One's time ran out; the other's has not, but its server is gone (the host rebooted).
    assert pitr.clean_up_scratch() == 2
    for pk, folder in folders.items():
        request = RestoreRequest.objects.get(pk=pk)
        assert request.scratch_stopped_at and not request.scratch_dsn
        assert not folder.exists()


def test_with_no_receiver_running_a_worker_still_watches_the_slot_and_says_so(archive, primary):
    from alerts.models import Incident
    from backups.wal import check_archives

    WalArchive.objects.filter(pk=archive.pk).update(max_retained_mb=1)
    with psycopg.connect(primary, autocommit=True) as conn:
        for _ in range(2):
            insert(primary, 50)
            conn.execute("SELECT pg_switch_wal()")
    just_switched_on = timezone.now()
    assert check_archives(just_switched_on) == 0, "a receiver has a moment to start"
    slot = Incident.objects.filter(fingerprint=f"wal-slot:{archive.pk}").latest("pk")
    assert slot.status != "resolved" and "holds" in slot.title
    archive.refresh_from_db()
    assert archive.retained_bytes > 2**20

    later = just_switched_on + timedelta(minutes=3)
    assert check_archives(later) == 1
    stale = Incident.objects.filter(fingerprint=archive.fingerprint()).latest("pk")
    assert stale.status != "resolved" and "No WAL receiver has streamed shop" in stale.title

    # The limit raised (a receiver reads it as it is now), a receiver streams: both resolve.
    WalArchive.objects.filter(pk=archive.pk).update(max_retained_mb=2048)
    running = Running(archive)
    try:
        assert wait_for(
            lambda: WalArchive.objects.get(pk=archive.pk).status == "streaming", timeout=20
        )
        assert check_archives() == 0
    finally:
        running.halt()
    assert (
        Incident.objects.filter(fingerprint=archive.fingerprint()).latest("pk").status == "resolved"
    )
    assert (
        Incident.objects.filter(fingerprint=f"wal-slot:{archive.pk}").latest("pk").status
        == "resolved"
    )
