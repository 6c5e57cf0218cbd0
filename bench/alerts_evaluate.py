"""Evaluating 1,000 enabled rules over 1,000,000 stored samples, per scheduler tick, on PostgreSQL.

Target: at most 5 s per tick. Baseline: one SQL statement that aggregates
every series of the window at once (the least work the database can do).
"""

from __future__ import annotations

import statistics
import sys
import time
from datetime import timedelta

from common import console_database, machine

RULES = 1000
SAMPLES = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
SERIES_PER_KEY = 2
TARGET_SECONDS = 5.0
AGGREGATIONS = ["avg", "max", "last", "p95", "sum", "count", "min", "avg", "last", "avg"]


def threshold(k: int) -> float:
    """Mostly quiet, some firing: sums and counts never, one rule in seven always."""
    if AGGREGATIONS[k % 10] in ("sum", "count"):
        return 1e9
    return 10 if k % 7 == 0 else 90


def main() -> None:
    with console_database():
        from django.db import connection
        from django.utils import timezone

        from alerts.evaluation import evaluate_all
        from alerts.models import AlertRule, Incident

        now = timezone.now()
        per_series = SAMPLES // (RULES * SERIES_PER_KEY)
        started = time.perf_counter()
        with connection.cursor() as cursor:
            # Samples every few seconds over the last hour for 1,000 keys x 2 services.
            cursor.execute(
                """
                INSERT INTO alerts_metricsample (key, labels, labels_key, value, observed_at)
                SELECT 'bench.k' || lpad(k::text, 4, '0'),
                       jsonb_build_object('service', s),
                       'service=' || s,
                       (random() * 100)::float,
                       %s - (i * (3600.0 / %s)) * interval '1 second'
                FROM generate_series(0, %s - 1) k,
                     unnest(ARRAY['api', 'worker']) s,
                     generate_series(0, %s - 1) i
                """,
                [now, per_series, RULES, per_series],
            )
            cursor.execute("ANALYZE alerts_metricsample")
            cursor.execute("SELECT count(*) FROM alerts_metricsample")
            stored = cursor.fetchone()[0]
        loaded = time.perf_counter() - started
        AlertRule.objects.all().delete()
        AlertRule.objects.bulk_create(
            AlertRule(
                name=f"bench rule {k}",
                metric_key=f"bench.k{k:04d}",
                aggregation=AGGREGATIONS[k % 10],
                window_seconds=300,
                comparator="above",
                threshold={"count": 1e9, "sum": 1e9}.get(AGGREGATIONS[k % 10], 90 if k % 7 else 10),
                for_seconds=0,
                priority="low",
                message_template="{name}: {value}",
            )
            for k in range(RULES)
        )
        ticks = []
        for tick in range(4):
            started = time.perf_counter()
            evaluate_all(now + timedelta(seconds=tick))
            ticks.append(time.perf_counter() - started)
        with connection.cursor() as cursor:
            started = time.perf_counter()
            cursor.execute(
                "SELECT key, labels_key, avg(value) FROM alerts_metricsample "
                "WHERE observed_at > %s - interval '300 seconds' AND observed_at <= %s "
                "GROUP BY 1, 2",
                [now, now],
            )
            groups = len(cursor.fetchall())
            baseline = time.perf_counter() - started
        steady = statistics.median(ticks[1:])
        print(f"machine: {machine()}")
        aggregations = ", ".join(sorted(set(AGGREGATIONS)))
        print(
            f"data: {stored:,} samples in {RULES * SERIES_PER_KEY:,} series, "
            f"loaded in {loaded:.1f} s; {RULES} enabled rules ({aggregations} over 5 min)"
        )
        later = ", ".join(f"{t:.2f}" for t in ticks[1:])
        print(
            f"ticks: first {ticks[0]:.2f} s (creates states, opens {Incident.objects.count()} "
            f"incidents), then {later} s; steady median {steady:.2f} s"
        )
        print(f"baseline (one GROUP BY over the window, {groups} series): {baseline:.3f} s")
        print(f"ratio tick/baseline: {steady / baseline:.1f}")
        worst = max(ticks)
        verdict = "PASS" if worst <= TARGET_SECONDS else "FAIL"
        print(f"target <= {TARGET_SECONDS:.0f} s per tick (worst {worst:.2f} s): {verdict}")


if __name__ == "__main__":
    main()
