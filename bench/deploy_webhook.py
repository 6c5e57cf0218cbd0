"""The deploy webhook under gunicorn on PostgreSQL, and one watch tick over 50 deployments.

Targets: >= 200 requests/s with p99 under 100 ms; a tick watching 50 deployments
finishes well inside the 30 s tick. Baselines from the same run: GET /health on
the same server (no database), and one deployment's probe round.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

from common import console_database, gunicorn, machine, percentile

REQUESTS = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
CLIENTS = 4
SECRET = "bench-secret"


def hammer(
    url: str, bodies: list[tuple[bytes, dict]], clients: int
) -> tuple[float, list[float], list[int]]:
    import httpx

    latencies: list[float] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def client(part):
        with httpx.Client(timeout=60) as http:
            for body, headers in part:
                started = time.perf_counter()
                try:
                    response = (
                        http.post(url, content=body, headers=headers)
                        if body is not None
                        else http.get(url)
                    )
                    status = response.status_code
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses.append(status)

    threads = [threading.Thread(target=client, args=(bodies[i::clients],)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started, latencies, statuses


def main() -> None:

    with console_database() as env:
        from deployments.models import Deployment, Environment
        from opsconsole.webhooks import sign_timestamped

        Environment.objects.create(
            name="production",
            provider="local",
            provider_config={"port": 18999},
            webhook_secret=SECRET,
        )
        with gunicorn(env) as base:
            bodies = []
            for i in range(REQUESTS):
                # Half new deployments, half status updates of earlier ones (the idempotent path).
                dep = i if i % 2 == 0 else i - 1
                payload = {
                    "deployment_id": f"ci-{dep}",
                    "environment": "production",
                    "version": f"v{dep}",
                    "status": "deploying" if i % 2 == 0 else "started",
                    "checks": [{"name": "tests", "passed": True}],
                }
                body = json.dumps(payload).encode()
                headers = {"Content-Type": "application/json", **sign_timestamped(SECRET, body)}
                bodies.append((body, headers))
            hammer(f"{base}/health", [(None, {})] * 200, CLIENTS)  # warm-up
            health_elapsed, health_lat, _ = hammer(
                f"{base}/health", [(None, {})] * REQUESTS, CLIENTS
            )
            elapsed, lat, statuses = hammer(f"{base}/webhooks/deploy", bodies, CLIENTS)
        ok = sum(1 for s in statuses if s in (200, 201))
        from collections import Counter

        others = Counter(s for s in statuses if s not in (200, 201))
        rate, health_rate = REQUESTS / elapsed, REQUESTS / health_elapsed
        print(f"machine: {machine()}")
        print(
            f"webhook: {ok}/{REQUESTS} accepted by gunicorn (2 sync workers) from {CLIENTS} clients: "
            f"{rate:.0f} req/s, max {max(lat) * 1000:.0f} ms, p50 {percentile(lat, 50) * 1000:.1f} ms, p99 {percentile(lat, 99) * 1000:.1f} ms "
            f"({Deployment.objects.count()} deployments recorded; other answers: {dict(others)})"
        )
        print(
            f"baseline GET /health: {health_rate:.0f} req/s, p99 {percentile(health_lat, 99) * 1000:.1f} ms; "
            f"ratio webhook/health throughput {rate / health_rate:.2f}"
        )
        p99 = percentile(lat, 99) * 1000
        print(
            f"target >= 200 req/s and p99 < 100 ms: {'PASS' if rate >= 200 and p99 < 100 else 'FAIL'}"
        )
        watch_benchmark()


def watch_benchmark() -> None:
    """50 deployments watched at once against local services, one of which never answers."""
    import socket
    import subprocess

    import httpx
    from django.utils import timezone

    from deployments import probes, watch
    from deployments.models import Deployment, Environment
    from tests.pgserver import free_port

    # The watched services run in their own process, as real services would.
    service_port = free_port()
    service = subprocess.Popen(
        [sys.executable, "-m", "deployments.sample_service", str(service_port)],
        cwd=Path(__file__).resolve().parent.parent,
    )
    for _ in range(50):
        try:
            httpx.get(f"http://127.0.0.1:{service_port}/health", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    hole = socket.socket()
    hole.bind(("127.0.0.1", 0))
    hole.listen(1024)  # accepts, never answers
    good = f"http://127.0.0.1:{service_port}"
    bad = f"http://127.0.0.1:{hole.getsockname()[1]}"
    for i in range(50):
        env = Environment.objects.create(
            name=f"svc-{i}",
            provider="local",
            provider_config={"port": 20000 + i},
            base_url=bad if i == 0 else good,
            probe_requests=5,
            probe_timeout_seconds=2,
        )
        Deployment.objects.create(
            environment=env,
            external_id=f"w{i}",
            version="v1",
            status="watching",
            live_at=timezone.now(),
            watch_until=timezone.now() + timezone.timedelta(hours=1),
        )
    one = Environment.objects.get(name="svc-1")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=16) as pool:
        started = time.perf_counter()
        probes.probe(one, pool)
        baseline = time.perf_counter() - started
    ticks, watched = [], []
    for _ in range(3):
        # Keep all 50 under watch for every round (the silent one fails the first).
        Deployment.objects.filter(environment__name__startswith="svc-").update(status="watching")
        started = time.perf_counter()
        watched.append(watch.watch_tick())
        ticks.append(time.perf_counter() - started)
    failed = Deployment.objects.filter(
        environment__name__startswith="svc-", status="failed"
    ).count()
    service.terminate()
    requests = sum(
        e.probe_requests * len(e.probe_targets())
        for e in Environment.objects.filter(name__startswith="svc-")
    )
    print(
        f"watch: {max(watched)} deployments, {failed} breached ({requests} probe requests a tick, one service never answers, "
        f"probe timeout 2 s): ticks {', '.join(f'{t:.2f}' for t in ticks)} s"
    )
    print(
        f"baseline one deployment's probe round: {baseline:.3f} s; ratio worst tick/baseline {max(ticks) / baseline:.1f}"
    )
    print(f"target: well inside the 30 s tick: {'PASS' if max(ticks) < 10 else 'FAIL'}")


if __name__ == "__main__":
    main()
