"""Backups of a realistic database, side by side with the shell pipeline, in one run.

(a) pg_dump -Fc -Z0 DB | zstd -3 -T1 > FILE   (the baseline)
(b) a console backup to local storage
(c) a console backup to S3 (moto in server mode, over HTTP)
and the restore: console restore from local storage vs zstd -dc FILE | pg_restore -d NEWDB.

Goals: (b) <= 1.25 x (a); peak RSS of the backing-up process <= 150 MB and flat between a
~150 MB and a ~600 MB database; nothing of the dump's size written to local disk on the
S3 path; restore <= 1.25 x the shell restore.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, console_database, machine

SIZES = [int(x) for x in sys.argv[1:]] or [250_000, 1_000_000]
SQL = ROOT.parent / "shared" / "bench" / "make_realistic_db.sql"


def psql_bin() -> str:
    from backups.engines import pg_tool

    return pg_tool("psql")


def flat(values: list[float], tolerance_mb: float = 15) -> bool:
    return max(values) - min(values) <= tolerance_mb


def child(env, *args) -> dict:
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "_backup_child.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def timed(argv_chain: str, env) -> float:
    started = time.perf_counter()
    subprocess.run(["bash", "-o", "pipefail", "-c", argv_chain], check=True, env=env, timeout=3600)
    return time.perf_counter() - started


def main() -> None:
    from moto.server import ThreadedMotoServer

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    with console_database() as env:
        import boto3
        import psycopg

        from backups.engines import pg_tool
        from backups.models import DatabaseTarget, StorageLocation

        admin = env["BENCH_PG_ADMIN_URL"]
        endpoint = f"http://{host}:{port}"
        boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="b",
            aws_secret_access_key="b",
        ).create_bucket(Bucket="bench")
        work = Path(tempfile.mkdtemp(prefix="opsconsole-bench-backups-"))
        StorageLocation.objects.create(
            name="bench local", kind="local", config={"path": str(work / "store")}
        )
        StorageLocation.objects.create(
            name="bench s3",
            kind="s3",
            secret="b",
            config={
                "bucket": "bench",
                "endpoint_url": endpoint,
                "access_key_id": "b",
                "server_side_encryption": "AES256",
            },
        )
        print(f"machine: {machine()}")
        results = {}
        for rows in SIZES:
            name = f"realistic_{rows}"
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
                conn.execute(f'CREATE DATABASE "{name}"')
            dsn = admin.rsplit("/", 1)[0] + f"/{name}"
            started = time.perf_counter()
            subprocess.run(
                [psql_bin(), "-q", "-d", dsn, "-v", f"rows={rows}", "-f", str(SQL)],
                check=True,
                timeout=3600,
                capture_output=True,
            )
            loaded = time.perf_counter() - started
            with psycopg.connect(dsn) as conn:
                size_mb = (
                    conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
                    / 2**20
                )
            DatabaseTarget.objects.create(
                name=name, engine="postgresql", dsn=dsn, exclude_table_data=[]
            )
            dump_file = work / f"{name}.dump.zst"
            shell = timed(
                f"{pg_tool('pg_dump')} -Fc -Z0 -d '{dsn}' | zstd -q -3 -T1 > {dump_file}", env
            )
            local = child(env, "backup", name, "bench local")
            s3 = child(env, "backup", name, "bench s3")
            results[rows] = (size_mb, loaded, shell, local, s3, dump_file, dsn)
            print(f"\n{name}: {size_mb:,.0f} MB on disk (loaded in {loaded:.0f} s)")
            print(
                f"  (a) pg_dump | zstd -3 -T1 > file: {shell:.1f} s, {dump_file.stat().st_size / 2**20:,.0f} MB"
            )
            for label, r in (("(b) console -> local", local), ("(c) console -> S3", s3)):
                print(
                    f"  {label}: {r['seconds']:.1f} s = {r['seconds'] / shell:.2f} x (a); "
                    f"{r['bytes_stored'] / 2**20:,.0f} MB stored; peak RSS {r['peak_rss_mb']:.0f} MB; "
                    f"local disk written {r['disk_written_mb']:.1f} MB"
                )
        biggest = max(results)
        size_mb, _, shell, local, _, dump_file, dsn = results[biggest]
        base_dsn = dsn.rsplit("/", 1)[0]
        with psycopg.connect(admin, autocommit=True) as conn:
            for db in ("bench_shell_restore", "bench_console_restore"):
                conn.execute(f'DROP DATABASE IF EXISTS "{db}"')
            conn.execute('CREATE DATABASE "bench_shell_restore"')
        shell_restore = timed(
            f"zstd -q -dc {dump_file} | {pg_tool('pg_restore')} --no-owner -d '{base_dsn}/bench_shell_restore'",
            env,
        )
        console_restore = child(env, "restore", local["id"], "bench_console_restore")
        print(f"\nrestore of the {size_mb:,.0f} MB database:")
        print(f"  shell zstd -dc | pg_restore: {shell_restore:.1f} s")
        print(
            f"  console restore from local storage: {console_restore['seconds']:.1f} s = "
            f"{console_restore['seconds'] / shell_restore:.2f} x; steps {console_restore['timings']}; "
            f"peak RSS {console_restore['peak_rss_mb']:.0f} MB"
        )
        rss = [results[r][i]["peak_rss_mb"] for i in (3, 4) for r in sorted(results)]
        print("\ngoals:")
        print(
            f"  backup to local <= 1.25 x shell: {local['seconds'] / shell:.2f} "
            f"{'PASS' if local['seconds'] <= 1.25 * shell else 'FAIL'}"
        )
        print(
            f"  peak RSS <= 150 MB and flat (local small/large, S3 small/large): "
            f"{', '.join(f'{x:.0f}' for x in rss)} MB "
            f"{'PASS' if max(rss) <= 150 and flat(rss[:2]) and flat(rss[2:]) else 'FAIL'}"
        )
        s3_disk = max(results[r][4]["disk_written_mb"] for r in results)
        print(
            f"  S3 path writes nothing of the dump to local disk: {s3_disk:.1f} MB "
            f"{'PASS' if s3_disk < 5 else 'FAIL'}"
        )
        ratio = console_restore["seconds"] / shell_restore
        print(
            f"  restore <= 1.25 x shell restore: {ratio:.2f} {'PASS' if ratio <= 1.25 else 'FAIL'}"
        )
    moto.stop()


if __name__ == "__main__":
    main()
