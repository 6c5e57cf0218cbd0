"""500 HTTP health checks at 30 s intervals against a local service, on the alert path.

The checks loop runs as `manage.py alertpath` runs it: `dr.health.tick()` every
second, each due check started on its own in the pool. Targets: every result
within 10 s of its due time; p95 lag behind the schedule under 2 s; the process
under 50 % of one core on average. Baseline: one check run alone in the same run.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from common import console_database, machine, percentile

CHECKS = int(sys.argv[1]) if len(sys.argv) > 1 else 500
TICKS = 3
INTERVAL = 30


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    import httpx

    from tests.pgserver import free_port

    with console_database():
        from django.utils import timezone

        from dr.checks import timed
        from dr.health import TICK_GRACE_SECONDS, tick
        from dr.models import CheckResult, ServiceCheck

        port = free_port()
        service = subprocess.Popen(
            [sys.executable, "-m", "deployments.sample_service", str(port)],
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            for _ in range(50):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.1)
            ServiceCheck.objects.all().delete()
            start = timezone.now()
            ServiceCheck.objects.bulk_create(
                [
                    ServiceCheck(
                        name=f"svc-{i}",
                        kind="http",
                        config={"url": f"http://127.0.0.1:{port}/health"},
                        interval_seconds=INTERVAL,
                        timeout_seconds=5,
                        next_due_at=start,
                    )
                    for i in range(CHECKS)
                ]
            )
            one = ServiceCheck.objects.first()
            started = time.perf_counter()
            timed(one.runner)
            baseline = time.perf_counter() - started
            durations, lags = [], []
            cpu_before, wall_before = cpu_seconds(), time.perf_counter()
            due_at: dict[int, list] = {}
            end = time.perf_counter() + TICKS * INTERVAL
            while time.perf_counter() < end:
                for pk, at in ServiceCheck.objects.values_list("pk", "next_due_at"):
                    due_at.setdefault(pk, [])
                    if at not in due_at[pk]:
                        due_at[pk].append(at)
                tick_started = time.perf_counter()
                tick()
                durations.append(time.perf_counter() - tick_started)
                time.sleep(max(0.0, 1.0 - (time.perf_counter() - tick_started)))
            time.sleep(6)  # the last checks started finish
            ran = CheckResult.objects.filter(at__gte=start).count()
            failed = CheckResult.objects.filter(at__gte=start, ok=False).count()
            # A check may start up to TICK_GRACE_SECONDS before its slot: that slot counts.
            grace = timedelta(seconds=TICK_GRACE_SECONDS + 0.1)
            for pk, at in CheckResult.objects.filter(at__gte=start).values_list(
                "service_check_id", "at"
            ):
                slots = [d for d in due_at.get(pk, []) if d <= at + grace]
                if slots:
                    lags.append(max(0.0, (at - max(slots)).total_seconds()))
            wall = time.perf_counter() - wall_before
            cpu = cpu_seconds() - cpu_before
        finally:
            service.terminate()
        print(f"machine: {machine()}")
        print(
            f"{CHECKS} HTTP checks every {INTERVAL} s for {TICKS * INTERVAL} s, ticked every "
            f"second: {ran} results ({failed} failed); a tick took at most "
            f"{max(durations) * 1000:.0f} ms"
        )
        print(
            f"lag of each result behind its due time: p50 {percentile(lags, 50):.2f} s, "
            f"p95 {percentile(lags, 95):.2f} s, max {max(lags):.2f} s"
        )
        print(f"process CPU: {cpu:.1f} s over {wall:.0f} s = {100 * cpu / wall:.1f} % of one core")
        print(
            f"baseline one check alone: {baseline * 1000:.1f} ms; ratio p95 lag / one check "
            f"{percentile(lags, 95) / baseline:.1f}"
        )
        ok = max(lags) <= 10 and percentile(lags, 95) < 2 and cpu / wall < 0.5
        print(
            f"targets (every result <= 10 s late, p95 < 2 s, CPU < 50 %): {'PASS' if ok else 'FAIL'}"
        )


if __name__ == "__main__":
    main()
