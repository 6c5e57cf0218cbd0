"""Continuous WAL under a sustained write load, and idle: how long a commit waits until its
WAL is stored, what the receiver costs, and that a SIGKILLed receiver loses nothing.

    python bench/wal_rpo.py [LOAD_SECONDS=300] [RATE=200] [IDLE_SECONDS=60]

A throwaway PostgreSQL (or BENCH_DATABASE_URL) holds the console's database and the
target `bench_shop` (pgbench's tables plus a probe table). `manage.py walreceiver`
runs as its own process with the shipped defaults (the open segment every 30 s).
A probe commits a row every 2 s; its latency is from its commit (the server's clock)
until `covered_until` passes it. pgbench writes at a fixed RATE during the load phase;
halfway, the receiver is SIGKILLed and started again 10 s later. At the end a
point-in-time restore of "latest" must hold every probe row, ids 1..N without a gap.
Storage bytes per hour are set against the raw WAL written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from common import ROOT, console_database, cpu_seconds, machine, percentile, start, stop, summary


def rss_mb(pid: int) -> float:
    total = 0.0
    pids = [pid]
    with contextlib.suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    for each in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) / 1024
    return total


class Probe(threading.Thread):
    """A row every 2 s; each row's commit time (the server's clock) and when it was stored."""

    def __init__(self, dsn: str, archive_pk: int):
        super().__init__(daemon=True)
        self.dsn, self.archive_pk = dsn, archive_pk
        self.stop_event = threading.Event()
        self.commits: list[tuple[int, float]] = []
        self.latencies: list[float] = []

    def run(self):
        import psycopg

        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while not self.stop_event.wait(2):
                row = conn.execute(
                    "INSERT INTO probe DEFAULT VALUES RETURNING id, "
                    "extract(epoch FROM clock_timestamp())"
                ).fetchone()
                self.commits.append((row[0], float(row[1])))


def watch_stored(probe: Probe, stop_event: threading.Event) -> None:
    """Poll covered_until; a probe is stored once it passes the probe's commit."""
    from django.db import connection

    from backups.models import WalArchive

    pending = 0
    while not stop_event.wait(0.25):
        covered = WalArchive.objects.get(pk=probe.archive_pk).covered_until
        if covered is None:
            continue
        now = time.time()
        while pending < len(probe.commits) and probe.commits[pending][1] <= covered.timestamp():
            probe.latencies.append(now - probe.commits[pending][1])
            pending += 1
    connection.close()


def main() -> None:
    load_seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 200
    idle_seconds = int(sys.argv[3]) if len(sys.argv) > 3 else 60
    print(f"machine: {machine()}")
    with console_database() as env:
        import psycopg

        from backups.backup import back_up
        from backups.models import Backup, DatabaseTarget, StorageLocation, WalArchive, WalSegment
        from backups.pitr import recover_into
        from tests.pgserver import ensure_binaries

        admin = env["BENCH_PG_ADMIN_URL"]
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP DATABASE IF EXISTS bench_shop WITH (FORCE)")
            conn.execute("DROP DATABASE IF EXISTS bench_restored WITH (FORCE)")
            conn.execute("CREATE DATABASE bench_shop")
        shop = admin.rsplit("/", 1)[0] + "/bench_shop"
        pgbench = str(ensure_binaries() / "pgbench")
        subprocess.run([pgbench, "-i", "-s", "5", "-q", shop], check=True, capture_output=True)
        with psycopg.connect(shop, autocommit=True) as conn:
            conn.execute("CREATE TABLE probe (id bigserial PRIMARY KEY)")
        storage = StorageLocation.objects.create(
            name="bench",
            kind="local",
            config={"path": str(Path(env["OPSCONSOLE_VAR_DIR"]) / "store")},
        )
        target = DatabaseTarget.objects.create(name="bench_shop", engine="postgresql", dsn=shop)
        archive = WalArchive.objects.create(target=target, storage=storage)
        target.db.create_slot(archive.slot_name)
        base = back_up(Backup.objects.create(target=target, storage=storage, kind=Backup.Kind.BASE))
        assert base.status == "verified", base.error

        logs = Path(tempfile.mkdtemp(prefix="opsconsole-bench-wal-"))
        receiver_argv = [sys.executable, str(ROOT / "manage.py"), "walreceiver", "--rescan", "2"]
        receiver = start(receiver_argv, env, logs / "walreceiver.log")
        time.sleep(5)
        probe = Probe(shop, archive.pk)
        watching = threading.Event()
        watcher = threading.Thread(target=watch_stored, args=(probe, watching), daemon=True)
        probe.start()
        watcher.start()

        # Idle.
        cpu_before = cpu_seconds(receiver.pid)
        peak = 0.0
        deadline = time.monotonic() + idle_seconds
        while time.monotonic() < deadline:
            peak = max(peak, rss_mb(receiver.pid))
            time.sleep(1)
        idle_latencies = list(probe.latencies)
        idle_cpu = cpu_seconds(receiver.pid) - cpu_before

        # Load, with the receiver killed halfway.
        with psycopg.connect(shop) as conn:
            lsn_start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        stored_start = sum(
            WalSegment.objects.filter(archive=archive).values_list("bytes_stored", flat=True)
        )
        first_load = len(probe.latencies)
        bench = subprocess.Popen(
            [pgbench, "-c", "4", "-j", "2", "-R", str(rate), "-T", str(load_seconds), "-n", shop],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started = time.monotonic()
        cpu_before = cpu_seconds(receiver.pid)
        load_cpu = 0.0
        killed = False
        while bench.poll() is None:
            peak = max(peak, rss_mb(receiver.pid))
            if not killed and time.monotonic() - started >= load_seconds / 2:
                load_cpu += cpu_seconds(receiver.pid) - cpu_before
                os.killpg(receiver.pid, signal.SIGKILL)  # walreceiver and its pg_receivewal
                receiver.wait()
                killed = True
                time.sleep(10)
                receiver = start(receiver_argv, env, logs / "walreceiver-2.log")
                cpu_before = cpu_seconds(receiver.pid)
            time.sleep(1)
        load_cpu += cpu_seconds(receiver.pid) - cpu_before
        tps = [line for line in bench.stdout.read().splitlines() if line.startswith("tps")]
        with psycopg.connect(shop) as conn:
            raw = conn.execute(
                "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", [lsn_start]
            ).fetchone()[0]
        time.sleep(35)  # the last probes are stored with the next open-segment round
        probe.stop_event.set()
        time.sleep(35)
        watching.set()
        stop(receiver)
        load_latencies = probe.latencies[first_load:]
        stored = sum(
            WalSegment.objects.filter(archive=archive).values_list("bytes_stored", flat=True)
        )
        stored -= stored_start

        restored = recover_into(base, "bench_restored", None)
        with psycopg.connect(admin.rsplit("/", 1)[0] + "/bench_restored") as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM probe ORDER BY id")]
        committed = [c[0] for c in probe.commits]

    print(
        f"idle {idle_seconds} s: commit -> stored {summary(idle_latencies)} "
        f"({len(idle_latencies)} probes); receiver CPU {idle_cpu:.1f} s"
    )
    print(
        f"load {load_seconds} s at {rate} tps ({'; '.join(tps)}): commit -> stored "
        f"{summary(load_latencies)} ({len(load_latencies)} probes); receiver CPU "
        f"{load_cpu:.1f} s = {100 * load_cpu / load_seconds:.1f} % of a core"
    )
    print(f"receiver peak RSS (walreceiver + pg_receivewal): {peak:.0f} MB")
    hours = load_seconds / 3600
    print(
        f"WAL written {raw / 2**20:.0f} MB, stored {stored / 2**20:.0f} MB "
        f"({stored / raw:.2f} of raw); {stored / 2**20 / hours:.0f} MB stored per hour at this rate"
    )
    print(
        f"restore of latest: {restored['timings']}; probes committed {len(committed)}, "
        f"restored {len(ids)}, contiguous {ids == list(range(1, len(ids) + 1))}"
    )
    p95 = max(percentile(idle_latencies, 95), percentile(load_latencies, 95))
    lost = set(committed) - set(ids)
    verdict = "PASS" if p95 <= 60 and not lost and peak <= 100 else "FAIL"
    print(
        f"targets: RPO p95 <= 60 s ({p95:.1f}), no committed probe lost across the kill "
        f"({len(lost)} lost), RSS <= 100 MB ({peak:.0f}): {verdict}"
    )


if __name__ == "__main__":
    main()
