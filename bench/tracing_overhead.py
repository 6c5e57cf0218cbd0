"""What tracing costs: the deploy webhook and a large backup with tracing off, on with
sampling 1.0, and on with 0.1, exporting over OTLP to a receiver on loopback, in one run.

Goals: <= 5 % less webhook throughput at sampling 0.1; <= 2 % slower backup at any
sampling. The modes take turns, round after round, so a noisy neighbour on this shared
machine slows every mode alike rather than one. Requests/s move by 10 % between rounds
of one mode here, so the CPU the web workers spend per request is measured too: on a
saturated server it is what sets throughput. Each verdict compares the modes within a
round, then takes the median over rounds: the webhook's by web CPU per request, the
backup's by duration (the CPU of the process running it is shown beside it).

    python bench/tracing_overhead.py [ROWS] [REQUESTS] [ROUNDS]

ROWS sizes the realistic database (1,000,000 rows: about 614 MB on disk).
"""

from __future__ import annotations

import contextlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from backups_pipeline import SQL, child, psql_bin
from common import ROOT, console_database, cpu_seconds, gunicorn, machine, percentile
from deploy_webhook import SECRET, hammer

from tests.otlp import Receiver

ROWS = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
REQUESTS = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 3
CLIENTS = 4
WARM_UP = 200
MODES = {
    "off": {},
    "on, sampling 1.0": {"OPSCONSOLE_TRACES_SAMPLE_RATE": "1.0"},
    "on, sampling 0.1": {"OPSCONSOLE_TRACES_SAMPLE_RATE": "0.1"},
}


def mode_env(env: dict[str, str], endpoint: str, mode: str) -> dict[str, str]:
    env = {k: v for k, v in env.items() if not k.startswith("OTEL_")}
    if MODES[mode]:
        # The SDK's default export schedule (5 s batches), as in production.
        env.update(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint, **MODES[mode])
    return env


def webhook_round(env: dict[str, str], offset: int) -> tuple[float, float, float, int]:
    """(requests/s, p99 s, web CPU ms per request, accepted) for REQUESTS new deployments
    against a fresh gunicorn. The CPU the web workers spend per request is what limits
    throughput on a saturated server; unlike requests/s, a noisy neighbour barely moves it."""
    from opsconsole.webhooks import sign_timestamped

    bodies = []
    for i in range(REQUESTS):
        payload = {
            "deployment_id": f"t{offset}-{i}",
            "environment": "production",
            "version": f"v{offset}.{i}",
            "status": "deploying",
        }
        body = json.dumps(payload).encode()
        bodies.append(
            (body, {"Content-Type": "application/json", **sign_timestamped(SECRET, body)})
        )
    with gunicorn(env) as base:
        hammer(f"{base}/webhooks/deploy", bodies[:WARM_UP], CLIENTS)  # not counted
        cpu_before = cpu_seconds(gunicorn.pid)
        elapsed, latencies, statuses = hammer(f"{base}/webhooks/deploy", bodies[WARM_UP:], CLIENTS)
        time.sleep(6)  # the export of the last batch (5 s schedule) is part of the cost
        cpu = cpu_seconds(gunicorn.pid) - cpu_before
    accepted = sum(1 for s in statuses if s in (200, 201))
    counted = len(bodies) - WARM_UP
    return counted / elapsed, percentile(latencies, 99), cpu / counted * 1000, accepted


@contextlib.contextmanager
def raw_receiver():
    """The OTLP receiver in its own process: decoding protobuf in this one would take the
    GIL from the load generator and count as the console's overhead."""
    folder = Path(tempfile.mkdtemp(prefix="opsconsole-bench-otlp-"))
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.otlp", str(folder)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        endpoint = process.stdout.readline().strip()
        yield endpoint, folder
    finally:
        process.kill()
        process.wait(10)


def main() -> None:
    with raw_receiver() as (endpoint, folder), console_database() as env:
        import psycopg

        from backups.models import DatabaseTarget, StorageLocation
        from deployments.models import Environment

        print(f"machine: {machine()}")
        Environment.objects.create(
            name="production", provider="local", provider_config={"port": 18998},
            webhook_secret=SECRET,
        )  # fmt: skip

        # --- the webhook ---------------------------------------------------------
        rates: dict[str, list[float]] = {m: [] for m in MODES}
        cpus: dict[str, list[float]] = {m: [] for m in MODES}
        p99s: dict[str, list[float]] = {m: [] for m in MODES}
        for round_ in range(ROUNDS):
            for n, mode in enumerate(MODES):
                rate, p99, cpu, accepted = webhook_round(
                    mode_env(env, endpoint, mode), round_ * 10 + n
                )
                print(
                    f"  webhook round {round_ + 1}, tracing {mode}: {rate:.0f} req/s, "
                    f"p99 {p99 * 1000:.1f} ms, web CPU {cpu:.2f} ms/request "
                    f"({accepted}/{REQUESTS - WARM_UP} accepted)"
                )
                rates[mode].append(rate)
                cpus[mode].append(cpu)
                p99s[mode].append(p99)
        exports_after_webhook = len(list(folder.glob("*.pb")))

        # --- the backup ----------------------------------------------------------
        admin = env["BENCH_PG_ADMIN_URL"]
        name = f"realistic_{ROWS}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
            conn.execute(f'CREATE DATABASE "{name}"')
        dsn = admin.rsplit("/", 1)[0] + f"/{name}"
        subprocess.run(
            [psql_bin(), "-q", "-d", dsn, "-v", f"rows={ROWS}", "-f", str(SQL)],
            check=True, timeout=3600, capture_output=True,
        )  # fmt: skip
        with psycopg.connect(dsn) as conn:
            size_mb = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]
            size_mb /= 2**20
        DatabaseTarget.objects.create(name=name, engine="postgresql", dsn=dsn)
        store = tempfile.mkdtemp(prefix="opsconsole-bench-tracing-")
        StorageLocation.objects.create(name="bench local", kind="local", config={"path": store})
        durations: dict[str, list[float]] = {m: [] for m in MODES}
        backup_cpu: dict[str, list[float]] = {m: [] for m in MODES}
        for round_ in range(ROUNDS):
            for mode in MODES:
                result = child(mode_env(env, endpoint, mode), "backup", name, "bench local")
                assert result["status"] == "succeeded", result
                print(
                    f"  backup round {round_ + 1}, tracing {mode}: {result['seconds']:.1f} s, "
                    f"console process CPU {result['cpu_seconds']:.1f} s, "
                    f"{result['bytes_read'] / 2**20:,.0f} MB read"
                )
                durations[mode].append(result["seconds"])
                backup_cpu[mode].append(result["cpu_seconds"])
        time.sleep(1)

        # --- what a trace viewer shows for one backup -------------------------------
        receiver = Receiver()
        receiver.load(folder)
        roots = [s for s in receiver.all() if s.name == f"backup {name}"]
        if roots:
            print(
                f"\na backup's trace, as the receiver got it ({len(receiver.all())} spans in all):"
            )
            print(
                receiver.tree(
                    roots[0].trace_id,
                    ("opsconsole.bytes_stored", "opsconsole.bytes_out", "process.exit.code"),
                )
            )

        base_rate, base_cpu = max(rates["off"]), statistics.median(cpus["off"])
        print(
            f"\nwebhook ({REQUESTS - WARM_UP} requests a round, {CLIENTS} clients, 2 gunicorn "
            f"workers; best rate, median CPU and p99 of {ROUNDS} rounds):"
        )
        for mode in MODES:
            rate, cpu = max(rates[mode]), statistics.median(cpus[mode])
            print(
                f"  tracing {mode}: {rate:.0f} req/s = {rate / base_rate:.3f} x off; "
                f"web CPU {cpu:.2f} ms/request = {cpu / base_cpu:.3f} x off; "
                f"p99 {statistics.median(p99s[mode]) * 1000:.1f} ms"
            )
        print(f"  OTLP exports received: {exports_after_webhook}")
        median_off = statistics.median(durations["off"])
        cpu_off = statistics.median(backup_cpu["off"])
        print(
            f"backup of a {size_mb:,.0f} MB database (median and best duration, median CPU of "
            f"the console's process, of {ROUNDS} rounds):"
        )
        for mode in MODES:
            median, cpu = statistics.median(durations[mode]), statistics.median(backup_cpu[mode])
            print(
                f"  tracing {mode}: {median:.2f} s = {median / median_off:.3f} x off "
                f"(best {min(durations[mode]):.2f} s); CPU {cpu:.2f} s = {cpu / cpu_off:.3f} x off"
            )

        # Each round's modes ran back to back: compare within rounds, then take the
        # median over rounds, so a slow spell of the machine cancels out.
        def paired(values: dict[str, list[float]], mode: str) -> float:
            ratios = [m / o for m, o in zip(values[mode], values["off"], strict=True)]
            return statistics.median(ratios)

        for mode in list(MODES)[1:]:
            print(
                f"  paired, tracing {mode}: web CPU per request {paired(cpus, mode):.3f} x off, "
                f"backup duration {paired(durations, mode):.3f} x off, "
                f"backup CPU {paired(backup_cpu, mode):.3f} x off"
            )
        # On a server that the webhook saturates, throughput is 1 / CPU per request.
        loss = 1 - 1 / paired(cpus, "on, sampling 0.1")
        measured = 1 - max(rates["on, sampling 0.1"]) / base_rate
        slowest = max(paired(durations, m) for m in MODES if m != "off") - 1
        print("goals:")
        print(
            f"  webhook throughput loss at sampling 0.1 <= 5 %: {loss * 100:.1f} % by web CPU "
            f"per request, paired median ({measured * 100:.1f} % by best requests/s) "
            f"{'PASS' if loss <= 0.05 else 'FAIL'}"
        )
        print(
            f"  backup slower by <= 2 % at any sampling: {slowest * 100:.1f} % by duration, "
            "paired median "
            f"{'PASS' if slowest <= 0.02 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
