"""500 HTTP health checks at 30 s intervals against a local service, on one worker.

Targets: every tick within 10 s; p95 lag behind the schedule under 2 s (beyond the
scheduler's own granularity); the worker under 50 % of one core on average.
Baseline: one check run alone in the same run.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
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
        from dr.health import run_due
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
            for n in range(TICKS):
                due_at = {
                    c.pk: c.next_due_at for c in ServiceCheck.objects.only("pk", "next_due_at")
                }
                tick_started = time.perf_counter()
                ran = run_due()
                durations.append(time.perf_counter() - tick_started)
                for pk, at in CheckResult.objects.filter(at__gte=start).values_list(
                    "service_check_id", "at"
                ):
                    if pk in due_at and at >= due_at[pk]:
                        lags.append((at - due_at[pk]).total_seconds())
                CheckResult.objects.all().delete()
                if n < TICKS - 1:
                    time.sleep(max(0.0, INTERVAL - (time.perf_counter() - tick_started)))
            wall = time.perf_counter() - wall_before
            cpu = cpu_seconds() - cpu_before
        finally:
            service.terminate()
        print(f"machine: {machine()}")
        print(
            f"{CHECKS} HTTP checks every {INTERVAL} s, {TICKS} ticks: ran {ran} a tick in "
            f"{', '.join(f'{d:.2f}' for d in durations)} s"
        )
        print(
            f"lag behind the schedule: p95 {percentile(lags, 95):.2f} s, max {max(lags):.2f} s "
            f"(the scheduler itself fires up to ~30 s late; this is the tick's own share)"
        )
        print(f"worker CPU: {cpu:.1f} s over {wall:.0f} s = {100 * cpu / wall:.1f} % of one core")
        print(
            f"baseline one check alone: {baseline * 1000:.1f} ms; ratio tick/(checks x one) "
            f"{max(durations) / (CHECKS * baseline):.3f}"
        )
        ok = max(durations) <= 10 and percentile(lags, 95) < 2 and cpu / wall < 0.5
        print(f"targets (tick <= 10 s, p95 lag < 2 s, CPU < 50 %): {'PASS' if ok else 'FAIL'}")


if __name__ == "__main__":
    main()
