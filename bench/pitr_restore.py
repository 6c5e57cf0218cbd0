"""A point-in-time restore of the realistic database plus minutes of pgbench WAL, by the
console and by hand with stock tools, in one run.

    python bench/pitr_restore.py [ROWS=1000000] [LOAD_SECONDS=300] [RATE=200]

The realistic database (../shared/bench/make_realistic_db.sql, ~614 MB at a million
rows) gets pgbench's tables, a base backup by the console, then pgbench at RATE for
LOAD_SECONDS while `manage.py walreceiver` ships the WAL. Both restores recover to the
moment the load ended and end with the database copied into a new database on the same
server:

(a) by hand: the README's block (`age -d | zstd -d | tar -x`, a `restore_command` of
    `age -d | zstd -d`), `postgres` until it promotes, `pg_dump -Fc -Z0 | pg_restore`;
(b) the console: `recover_into` (fetch and check, replay, copy, checks).

Each runs twice, in swapped order; the faster of each counts. Goal: (b) <= 1.25 x (a).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, console_database, machine, start, stop

SQL = ROOT.parent / "shared" / "bench" / "make_realistic_db.sql"
RUN_AS = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


def readme_block() -> str:
    text = (ROOT / "README.md").read_text()
    block = text.split("<!-- pitr-by-hand", 1)[1].split("```sh\n", 1)[1].split("\n```", 1)[0]
    return "\n".join(block.splitlines()[5:])  # the first five set the inputs


def promoted(sockets: Path, port: int) -> bool:
    import psycopg

    try:
        with psycopg.connect(
            host=str(sockets), port=port, user="postgres", dbname="postgres", connect_timeout=2
        ) as conn:
            return not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    except psycopg.OperationalError:
        return False


def by_hand(env, admin: str, key: str, wal: Path, base: Path, moment, dbname: str) -> dict:
    from backups.engines import pg_tool
    from tests.pgserver import ensure_binaries, free_port

    work = Path(tempfile.mkdtemp(prefix="opsconsole-bench-hand-"))
    (work / "key.txt").write_text(key + "\n")
    (work / "key.txt").chmod(0o600)
    (work / "sock").mkdir()
    if RUN_AS:
        subprocess.run(["chown", "-R", "postgres:postgres", str(work)], check=True)
    inputs = {
        "KEY": str(work / "key.txt"), "WAL": str(wal), "BASE": str(base),
        "PGDATA": str(work / "restored"), "TARGET_TIME": moment.isoformat(),
        "PATH": "/usr/bin:/bin",
    }  # fmt: skip
    timings = {}
    started = time.perf_counter()
    subprocess.run(
        [*RUN_AS, "env", *(f"{k}={v}" for k, v in inputs.items()), "bash", "-e", "-c",
         readme_block()],
        check=True, timeout=3600,
    )  # fmt: skip
    timings["base"] = time.perf_counter() - started
    port = free_port()
    with open(work / "server.log", "wb") as log:
        server = subprocess.Popen(
            [*RUN_AS, str(ensure_binaries() / "postgres"), "-D", str(work / "restored"),
             "-p", str(port), "-k", str(work / "sock"), "-c", "listen_addresses=",
             "-c", "archive_mode=off"],
            stdout=subprocess.DEVNULL, stderr=log,
            start_new_session=True,
        )  # fmt: skip
    try:
        mark = time.perf_counter()
        while not promoted(work / "sock", port):
            if server.poll() is not None:
                raise RuntimeError((work / "server.log").read_text()[-2000:])
            time.sleep(0.2)
        timings["replay"] = time.perf_counter() - mark
        mark = time.perf_counter()
        target = admin.rsplit("/", 1)[0] + f"/{dbname}"
        subprocess.run(
            ["bash", "-o", "pipefail", "-c",
             f"{pg_tool('pg_dump')} -Fc -Z0 -h {work / 'sock'} -p {port} -U postgres -d realistic"
             f" | {pg_tool('pg_restore')} --no-owner --no-privileges -d '{target}'"],
            check=True, timeout=3600, env=env,
        )  # fmt: skip
        timings["copy"] = time.perf_counter() - mark
    finally:
        os.killpg(server.pid, 2)
        server.wait(timeout=60)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    timings["total"] = time.perf_counter() - started
    return timings


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    load_seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    rate = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    print(f"machine: {machine()}")
    with console_database() as env:
        import psycopg

        from backups.backup import back_up
        from backups.engines import pg_tool
        from backups.models import Backup, BackupKey, DatabaseTarget, StorageLocation, WalArchive
        from backups.pitr import recover_into
        from opsconsole.fields import reveal
        from tests.helpers import wait_for
        from tests.peers import ensure_binary
        from tests.pgserver import ensure_binaries

        for tool in ("age", "zstd"):
            ensure_binary(tool, tool)
        admin = env["BENCH_PG_ADMIN_URL"]
        with psycopg.connect(admin, autocommit=True) as conn:
            for name in ("realistic", "bench_pitr_hand", "bench_pitr_console"):
                conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            conn.execute("CREATE DATABASE realistic")
            conn.execute("CREATE DATABASE bench_pitr_hand")
        dsn = admin.rsplit("/", 1)[0] + "/realistic"
        subprocess.run(
            [pg_tool("psql"), "-q", "-d", dsn, "-v", f"rows={rows}", "-f", str(SQL)],
            check=True, capture_output=True, timeout=3600,
        )  # fmt: skip
        pgbench = str(ensure_binaries() / "pgbench")
        subprocess.run([pgbench, "-i", "-s", "5", "-q", dsn], check=True, capture_output=True)
        with psycopg.connect(dsn) as conn:
            size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]

        var = Path(env["OPSCONSOLE_VAR_DIR"])
        storage = StorageLocation.objects.create(
            name="bench", kind="local", config={"path": str(var / "store")}
        )
        target = DatabaseTarget.objects.create(name="realistic", engine="postgresql", dsn=dsn)
        archive = WalArchive.objects.create(target=target, storage=storage)
        target.db.create_slot(archive.slot_name)
        base = back_up(Backup.objects.create(target=target, storage=storage, kind="base"))
        assert base.status == "verified", base.error

        logs = Path(tempfile.mkdtemp(prefix="opsconsole-bench-pitr-"))
        receiver = start(
            [sys.executable, str(ROOT / "manage.py"), "walreceiver", "--rescan", "2"],
            env, logs / "walreceiver.log",
        )  # fmt: skip
        with psycopg.connect(dsn) as conn:
            lsn_start = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        subprocess.run(
            [pgbench, "-c", "4", "-j", "2", "-R", str(rate), "-T", str(load_seconds), "-n", dsn],
            check=True, capture_output=True, timeout=load_seconds + 600,
        )  # fmt: skip
        with psycopg.connect(dsn) as conn:
            moment, wal_bytes = conn.execute(
                "SELECT clock_timestamp(), pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                [lsn_start],
            ).fetchone()

        def covered():
            archive.refresh_from_db()
            return archive.covered_until is not None and archive.covered_until >= moment

        assert wait_for(covered, timeout=180), "the WAL archive never covered the moment"
        stop(receiver)
        print(
            f"database {size / 2**20:,.0f} MB ({rows:,} rows) + pgbench at {rate} tps for "
            f"{load_seconds} s: {wal_bytes / 2**20:,.0f} MB of WAL after the base backup; "
            f"{archive.segments.count()} WAL objects"
        )

        # Both read the same stored objects; by hand, as the postgres user.
        for path in [var, *(p for p in (var / "store").rglob("*"))]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        # Two rounds, the order swapped in the second (the server's checkpoints and the
        # page cache favour whichever runs second); the faster run of each counts.
        hands, consoles = [], []
        server = admin.rsplit("/", 1)[0]
        for round_ in range(2):
            for who in ("hand", "console") if round_ == 0 else ("console", "hand"):
                with psycopg.connect(admin, autocommit=True) as conn:
                    conn.execute(f"DROP DATABASE IF EXISTS bench_pitr_{who} WITH (FORCE)")
                    if who == "hand":
                        conn.execute("CREATE DATABASE bench_pitr_hand")
                if who == "hand":
                    hands.append(
                        by_hand(
                            env, admin, reveal(BackupKey.current().identity),
                            var / "store" / "realistic" / f"wal-{archive.pk}",
                            var / "store" / base.storage_key, moment, "bench_pitr_hand",
                        )
                    )  # fmt: skip
                else:
                    started = time.perf_counter()
                    result = recover_into(base, "bench_pitr_console", moment)
                    consoles.append((time.perf_counter() - started, result["timings"]))
        with (
            psycopg.connect(server + "/bench_pitr_console") as a,
            psycopg.connect(server + "/bench_pitr_hand") as b,
        ):
            query = "SELECT sum(abalance), count(*) FROM pgbench_accounts"
            same = a.execute(query).fetchone() == b.execute(query).fetchone()

    for hand in hands:
        print("(a) by hand:  " + ", ".join(f"{k} {v:.1f} s" for k, v in hand.items()))
    for total, timings in consoles:
        print(
            "(b) console:  "
            + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
            + f", total {total:.1f} s"
        )
    hand = min(hands, key=lambda h: h["total"])
    console_total = min(total for total, _ in consoles)
    ratio = console_total / hand["total"]
    print(f"both recovered the same pgbench balances: {same}")
    print(
        f"goal: console <= 1.25 x by hand: {ratio:.2f} {'PASS' if ratio <= 1.25 and same else 'FAIL'}"
    )


if __name__ == "__main__":
    main()
