"""Probes: concurrent requests to an environment's endpoints, summed up as one sample.

Each probe is bounded by the environment's timeout, so one hanging endpoint
never delays the others; the watch puts every probe of every deployment into
one pool per tick.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from deployments.models import Environment
from opsconsole import http

PROBE_THREADS = 64


def probe_once(url: str, ok: list[int], timeout: float) -> tuple[bool, bool, float]:
    """(answered as expected, server error or no answer, milliseconds)."""
    started = time.monotonic()
    try:
        response = http.request("GET", url, timeout=timeout, raise_for_status=False)
    except http.HttpError:
        return False, True, (time.monotonic() - started) * 1000
    elapsed = (time.monotonic() - started) * 1000
    return response.status_code in ok, response.status_code >= 500, elapsed


def submit_probes(environment: Environment, pool: ThreadPoolExecutor) -> list[Future]:
    return [
        pool.submit(probe_once, url, ok, environment.probe_timeout_seconds)
        for url, ok in environment.probe_targets()
        for _ in range(environment.probe_requests)
    ]


def probe(environment: Environment, pool: ThreadPoolExecutor) -> dict[str, Any]:
    """A few concurrent requests to each endpoint: error rate, timings, availability."""
    return summarize([job.result() for job in submit_probes(environment, pool)])


def summarize(results: list[tuple[bool, bool, float]]) -> dict[str, Any]:
    times = sorted(r[2] for r in results)
    count = len(results) or 1
    return {
        "requests": len(results),
        "error_rate": 100.0 * sum(1 for r in results if r[1]) / count,
        "availability": 100.0 * sum(1 for r in results if r[0]) / count,
        "avg_ms": sum(times) / count if times else 0.0,
        "p95_ms": times[min(len(times) - 1, int(0.95 * len(times)))] if times else 0.0,
    }
