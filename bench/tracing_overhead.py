"""What tracing costs: the deploy webhook and a large backup with tracing off, on with
sampling 1.0, and on with 0.1, exporting over OTLP to a receiver on loopback, in one run.

Goals: <= 5 % less webhook throughput at sampling 0.1; <= 2 % slower backup at any
sampling. The modes take turns, round after round, so a noisy neighbour on this shared
machine slows every mode alike rather than one. Requests/s move by 10 % between rounds
of one mode here, so the CPU the web workers spend per request is measured too: on a
saturated server it is what sets throughput. The webhook's verdict is the median
requests/s of bursts that take turns between three servers (one per mode, all up at
once), with the web workers' CPU per request shown beside it; the backup's is its
duration compared within each round, median over rounds (with the CPU of the process
running it).

    python bench/tracing_overhead.py [ROWS] [WEBHOOK_ROUNDS] [BACKUP_ROUNDS]

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
ROUNDS = int(sys.argv[2]) if len(sys.argv) > 2 else 20  # webhook bursts per mode
BACKUP_ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 5
CLIENTS = 4
WARM_UP = 200
BURST = 200
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


def signed_bodies(tag: str, count: int) -> list[tuple[bytes, dict]]:
    """`count` deploy webhooks for new deployments, signed."""
    from opsconsole.webhooks import sign_timestamped

    bodies = []
    for i in range(count):
        payload = {
            "deployment_id": f"{tag}-{i}",
            "environment": "production",
            "version": f"v{tag}.{i}",
            "status": "deploying",
        }
        body = json.dumps(payload).encode()
        bodies.append(
            (body, {"Content-Type": "application/json", **sign_timestamped(SECRET, body)})
        )
    return bodies


def webhook(env: dict[str, str], endpoint: str) -> dict[str, dict[str, list[float]]]:
    """One gunicorn per mode, all up at once; bursts of BURST requests take turns between
    them, ROUNDS times, in a rotating order. Per mode: requests/s and p99 of each burst,
    and the web workers' CPU per request over the whole run (exports included: each
    server's export thread bills its own CPU, whenever it runs)."""
    out: dict[str, dict[str, list[float]]] = {m: {"rate": [], "p99": []} for m in MODES}
    with contextlib.ExitStack() as stack:
        servers = {}
        for mode in MODES:
            base = stack.enter_context(gunicorn(mode_env(env, endpoint, mode)))
            servers[mode] = (base, gunicorn.pid)
        for n, (base, _) in enumerate(servers.values()):
            hammer(f"{base}/webhooks/deploy", signed_bodies(f"w{n}", WARM_UP), CLIENTS)
        time.sleep(6)  # the warm-up's exports
        cpu_before = {mode: cpu_seconds(pid) for mode, (_, pid) in servers.items()}
        served = dict.fromkeys(MODES, 0)
        modes = list(MODES)
        for round_ in range(ROUNDS):
            for mode in modes[round_ % 3 :] + modes[: round_ % 3]:
                base, _ = servers[mode]
                bodies = signed_bodies(f"r{round_}{mode[-3:]}", BURST)
                elapsed, latencies, statuses = hammer(f"{base}/webhooks/deploy", bodies, CLIENTS)
                assert all(s in (200, 201) for s in statuses), set(statuses)
                served[mode] += len(bodies)
                out[mode]["rate"].append(len(bodies) / elapsed)
                out[mode]["p99"].append(percentile(latencies, 99))
        time.sleep(6)  # the last exports
        for mode, (_, pid) in servers.items():
            cpu = cpu_seconds(pid) - cpu_before[mode]
            out[mode]["cpu"] = [cpu / served[mode] * 1000]
            out[mode]["served"] = [served[mode]]
    return out


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
        hooks = webhook(env, endpoint)
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
        for round_ in range(BACKUP_ROUNDS):
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

        base_rate = statistics.median(hooks["off"]["rate"])
        base_cpu = hooks["off"]["cpu"][0]
        print(
            f"\nwebhook ({ROUNDS} bursts of {BURST} requests per mode, taking turns; {CLIENTS} "
            f"clients, 2 gunicorn workers per mode):"
        )
        for mode in MODES:
            rate, cpu = statistics.median(hooks[mode]["rate"]), hooks[mode]["cpu"][0]
            print(
                f"  tracing {mode}: median {rate:.0f} req/s = {rate / base_rate:.3f} x off; "
                f"web CPU {cpu:.2f} ms/request = {cpu / base_cpu:.3f} x off "
                f"({hooks[mode]['served'][0]} requests); "
                f"p99 {statistics.median(hooks[mode]['p99']) * 1000:.1f} ms"
            )
        print(f"  OTLP exports received: {exports_after_webhook}")
        median_off = statistics.median(durations["off"])
        cpu_off = statistics.median(backup_cpu["off"])
        print(
            f"backup of a {size_mb:,.0f} MB database (median and best duration, median CPU of "
            f"the console's process, of {BACKUP_ROUNDS} rounds):"
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
                f"  paired, tracing {mode}: backup duration {paired(durations, mode):.3f} x off, "
                f"backup CPU {paired(backup_cpu, mode):.3f} x off"
            )
        # On a server that the webhook saturates, throughput is 1 / CPU per request.
        # The goal is throughput: the median of the interleaved bursts. The CPU the web
        # workers spend per request is shown beside it: on a server whose web workers
        # are the bottleneck, its growth is what throughput would lose.
        loss = 1 - statistics.median(hooks["on, sampling 0.1"]["rate"]) / base_rate
        cpu_growth = hooks["on, sampling 0.1"]["cpu"][0] / base_cpu - 1
        slowest = max(paired(durations, m) for m in MODES if m != "off") - 1
        print("goals:")
        print(
            f"  webhook throughput loss at sampling 0.1 <= 5 %: {loss * 100:.1f} % by median "
            f"requests/s (web CPU per request +{cpu_growth * 100:.1f} %) "
            f"{'PASS' if loss <= 0.05 else 'FAIL'}"
        )
        print(
            f"  backup slower by <= 2 % at any sampling: {slowest * 100:.1f} % by duration, "
            "paired median "
            f"{'PASS' if slowest <= 0.02 else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
