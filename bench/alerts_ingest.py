"""Metrics ingestion through POST /api/metrics, in batches of 1,000, on PostgreSQL.

Target: at least 5,000 samples/s sustained. Baseline: the same batches written
straight to the table with bulk_create in this process (the database's floor).
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time

from common import console_database, gunicorn, machine

BATCH = 1000
BATCHES = int(sys.argv[1]) if len(sys.argv) > 1 else 500
CLIENTS = 2
TARGET = 5000


def batches(count: int) -> list[list[dict]]:
    rng = random.Random(7)
    keys = [f"bench.metric_{i:03d}" for i in range(50)]
    now = time.time()
    return [
        [
            {
                "key": rng.choice(keys),
                "value": rng.random() * 100,
                "labels": {"service": rng.choice(["api", "worker", "web"]), "env": "production"},
                "observed_at": now - rng.random() * 60,
            }
            for _ in range(BATCH)
        ]
        for _ in range(count)
    ]


def main() -> None:
    import httpx

    with console_database() as env:
        from django.utils import timezone

        from alerts.metrics import parse_sample
        from alerts.models import MetricSample
        from opsconsole.models import ApiToken

        work = batches(BATCHES)
        # Baseline: validation-free bulk inserts of the same rows, one process.
        now = timezone.now()
        rows = [[parse_sample(s, now)[1] for s in batch] for batch in work[:20]]
        started = time.perf_counter()
        for batch in rows:
            MetricSample.objects.bulk_create(batch, batch_size=1000)
        baseline = 20 * BATCH / (time.perf_counter() - started)
        MetricSample.objects.all().delete()

        _, token = ApiToken.issue("bench", scopes=["metrics:write"])
        with gunicorn(env) as base:
            url = f"{base}/api/metrics"
            bodies = [json.dumps(b).encode() for b in work]
            headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
            statuses: list[int] = []
            lock = threading.Lock()

            def client(part: list[bytes]) -> None:
                with httpx.Client(timeout=60) as http:
                    for body in part:
                        status = http.post(url, content=body, headers=headers).status_code
                        with lock:
                            statuses.append(status)

            httpx.post(url, content=bodies[0], headers=headers, timeout=60)  # warm-up
            threads = [
                threading.Thread(target=client, args=(bodies[i::CLIENTS],)) for i in range(CLIENTS)
            ]
            started = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
        accepted = sum(1 for s in statuses if s == 202)
        rate = accepted * BATCH / elapsed
        stored = MetricSample.objects.count()
        print(f"machine: {machine()}")
        print(
            f"ingest: {accepted}/{len(statuses)} batches of {BATCH} accepted in {elapsed:.1f} s "
            f"by {CLIENTS} clients -> {rate:,.0f} samples/s ({stored:,} rows stored)"
        )
        print(
            f"baseline (bulk_create in-process, no HTTP, no validation): {baseline:,.0f} samples/s"
        )
        print(f"ratio api/baseline: {rate / baseline:.2f}")
        print(f"target >= {TARGET:,} samples/s: {'PASS' if rate >= TARGET else 'FAIL'}")


if __name__ == "__main__":
    main()
