"""Running due health checks: all at once, each bounded by its own timeout.

The alert path calls `tick()` every second: it starts every due check that is
not already running, in a batch of its own, and returns without waiting, so a
check that hangs for its whole timeout delays nobody else's next run.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.db import connections, transaction
from django.utils import timezone

from alerts.incidents import raise_incident, resolve_incident
from dr.checks import timed
from dr.models import CheckResult, ServiceCheck

log = logging.getLogger("opsconsole.dr.health")
POOL = 64
# Checks due within this much of a tick run in it (ticks come every second).
TICK_GRACE_SECONDS = 0.5
STATE_FIELDS = [
    "state",
    "consecutive_failures",
    "consecutive_successes",
    "last_checked_at",
    "last_latency_ms",
    "last_error",
    "next_due_at",
]


def due_checks(now: datetime, exclude: set[int] = frozenset()) -> list[ServiceCheck]:
    # A tick that comes a moment early still serves the checks due in that moment.
    horizon = now + timedelta(seconds=TICK_GRACE_SECONDS)
    return list(
        ServiceCheck.objects.filter(enabled=True, next_due_at__lte=horizon)
        .exclude(pk__in=exclude)
        .select_related("parent")
    )


def run_due(now: datetime | None = None) -> int:
    """Every due check concurrently, results saved in bulk; returns when all are done."""
    now = now or timezone.now()
    return run_checks(due_checks(now), now)


_running: set[int] = set()
_running_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def tick() -> int:
    """The alert path's checks loop: start each due check not already running, on its own,
    and return without waiting: one check's result never waits for another's timeout."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=POOL, thread_name_prefix="checks")
    now = timezone.now()
    with _running_lock:
        due = due_checks(now, exclude=set(_running))
        _running.update(c.pk for c in due)
    for check in due:
        _pool.submit(_run_one, check, now)
    return len(due)


def _run_one(check: ServiceCheck, now: datetime) -> None:
    try:
        run_checks([check], now)
    except Exception:
        log.exception("check %s could not be run", check)
    finally:
        with _running_lock:
            _running.discard(check.pk)
        connections.close_all()  # this thread's own


def run_checks(due: list[ServiceCheck], now: datetime) -> int:
    if not due:
        return 0
    # A hanging target holds one thread for its own timeout, never the others.
    with ThreadPoolExecutor(max_workers=min(POOL, len(due))) as pool:
        outcomes = list(pool.map(lambda c: timed(c.runner), due))
    finished = max(timezone.now(), now)
    changes = []
    for check, (ok, latency, note) in zip(due, outcomes, strict=True):
        changes.append((check, *check.record(ok, latency, note, finished)))
    with transaction.atomic():
        CheckResult.objects.bulk_create(
            [
                CheckResult(
                    service_check=c, at=finished, ok=ok, latency_ms=round(lat, 1), detail=note[:500]
                )
                for c, (ok, lat, note) in zip(due, outcomes, strict=True)
            ]
        )
        ServiceCheck.objects.bulk_update(due, STATE_FIELDS)
    # Parents first, so a child sees its parent's new state.
    by_pk = {c.pk: c for c in due}
    for check, before, after in sorted(changes, key=lambda item: _depth(item[0])):
        if check.parent_id in by_pk:
            check.parent = by_pk[check.parent_id]
        _door(check, before, after)
    return len(due)


def _depth(check: ServiceCheck) -> int:
    depth, ancestor = 0, check.parent
    while ancestor is not None and depth < 20:
        depth, ancestor = depth + 1, ancestor.parent
    return depth


def _door(check: ServiceCheck, before: str, after: str) -> None:
    fingerprint = check.fingerprint()
    if after == ServiceCheck.State.UNHEALTHY and before != after:
        cause = check.parent_unhealthy()
        if cause is not None:
            # The stop to alert storms: the parent's incident covers its children.
            log.warning("%s is unhealthy, caused by %s", check, cause, extra={"check": check.name})
            return
        raise_incident(
            source="health",
            fingerprint=fingerprint,
            title=f"{check.name} is unhealthy: {check.last_error}",
            priority="critical",
            component=check.name,
            details={
                "check": check.name,
                "kind": check.kind,
                "error": check.last_error,
                "failures": check.consecutive_failures,
                "runbook": check.runbook.scenario if check.runbook_id else check.runbook_url,
            },
        )
    elif after == ServiceCheck.State.HEALTHY and before in (
        ServiceCheck.State.UNHEALTHY,
        ServiceCheck.State.DEGRADED,
    ):
        resolve_incident(fingerprint, reason=f"{check.name} is healthy again")
