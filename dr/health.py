"""Running due health checks: all at once, each bounded by its own timeout.

The alert path calls `tick()` every second: it starts every due check that is
not already running, in a batch of its own, and returns without waiting, so a
check that hangs for its whole timeout delays nobody else's next run.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ALL_COMPLETED, ThreadPoolExecutor, wait
from datetime import datetime, timedelta

from django.db import connections, transaction
from django.utils import timezone

from alerts.incidents import raise_incident, resolve_incident
from alerts.models import Incident
from dr.checks import timed
from dr.models import CheckResult, ServiceCheck
from opsconsole import tracing

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
    "certificate_expires_at",
]
# An HTTPS check's certificate raises an incident this long before it expires.
CERTIFICATE_WARNING = timedelta(days=14)


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
_batches: ThreadPoolExecutor | None = None
BATCHES = 8
# Results are written in groups: whatever finished within this long goes in one write.
GROUP_SECONDS = 0.25


def tick() -> int:
    """The alert path's checks loop: start the due checks not already running, as one
    batch, and return without waiting. In the batch every check runs at once and its result
    is written within GROUP_SECONDS of finishing: one check's timeout delays no other."""
    global _batches
    if _batches is None:
        _batches = ThreadPoolExecutor(max_workers=BATCHES, thread_name_prefix="checks")
    now = timezone.now()
    with _running_lock:
        due = due_checks(now, exclude=set(_running))
        _running.update(c.pk for c in due)
    if due:
        # The batch's spans belong to this tick's trace, though they end after it.
        _batches.submit(tracing.in_context(_run_batch), due, now)
    return len(due)


def _run_batch(due: list[ServiceCheck], now: datetime) -> None:
    def written(group: list[ServiceCheck]) -> None:
        with _running_lock:
            _running.difference_update(c.pk for c in group)

    try:
        run_checks(due, now, written=written)
    except Exception:
        log.exception("a batch of %d checks could not be run", len(due))
        written(due)
    finally:
        connections.close_all()  # this thread's own


def run_checks(
    due: list[ServiceCheck],
    now: datetime,
    written: Callable[[list[ServiceCheck]], None] | None = None,
) -> int:
    """Run `due` at once; write the results in groups as they finish."""
    if not due:
        return 0
    # A hanging target holds one thread for its own timeout, never the others.
    with ThreadPoolExecutor(max_workers=min(POOL, len(due))) as pool:
        pending = {pool.submit(tracing.in_context(_run_one), c): c for c in due}
        while pending:
            done, _ = wait(pending, timeout=GROUP_SECONDS, return_when=ALL_COMPLETED)
            if not done:
                continue
            group = [(pending.pop(f), f.result()) for f in done]
            _record(group, now)
            if written:
                written([c for c, _ in group])
    return len(due)


def _run_one(check: ServiceCheck) -> tuple[bool, float, str]:
    with tracing.span(
        f"check {check.name}", {"opsconsole.check": check.name, "opsconsole.check.kind": check.kind}
    ) as current:
        ok, latency, note = timed(check.runner)
        current.set_attribute("opsconsole.check.ok", ok)
        current.set_attribute("opsconsole.check.latency_ms", round(latency, 1))
        if not ok:
            current.set_status(tracing.Status(tracing.StatusCode.ERROR, note[:200]))
    return ok, latency, note


def _record(group: list[tuple[ServiceCheck, tuple[bool, float, str]]], now: datetime) -> None:
    with tracing.span("checks.record", {"opsconsole.checks.count": len(group)}):
        _write(group, now)


def _write(group: list[tuple[ServiceCheck, tuple[bool, float, str]]], now: datetime) -> None:
    finished = max(timezone.now(), now)
    checks = [c for c, _ in group]
    changes = [(c, *c.record(ok, lat, note, finished)) for c, (ok, lat, note) in group]
    with transaction.atomic():
        CheckResult.objects.bulk_create(
            [
                CheckResult(
                    service_check=c, at=finished, ok=ok, latency_ms=round(lat, 1), detail=note[:500]
                )
                for c, (ok, lat, note) in group
            ]
        )
        ServiceCheck.objects.bulk_update(checks, STATE_FIELDS)
    # Parents first; each reads its parent's state from the database (parent_unhealthy).
    for check, before, after in sorted(changes, key=lambda item: _depth(item[0])):
        _door(check, before, after)
        _certificate(check, finished)


# How close a certificate's end is: each stage is said once, louder than the last.
CERTIFICATE_STAGES = (
    ("expired", timedelta(0), "critical"),
    ("3 days", timedelta(days=3), "critical"),
    ("14 days", CERTIFICATE_WARNING, "high"),
)


def _certificate(check: ServiceCheck, now: datetime) -> None:
    """An incident from 14 days before an HTTPS certificate expires, raised again louder
    at 3 days and once it has expired, until it is renewed (or nothing is checked there)."""
    base = f"{check.fingerprint()}:certificate"
    expires = check.certificate_expires_at if check.enabled else None
    stage = None
    if expires is not None:
        left = expires - now
        stage = next(((n, p) for n, limit, p in CERTIFICATE_STAGES if left <= limit), None)
    open_ = Incident.objects.filter(fingerprint__startswith=base).exclude(status="resolved")
    for incident in open_:
        if stage is None or incident.fingerprint != f"{base}:{stage[0]}":
            reason = (
                f"renewed: valid until {expires:%Y-%m-%d}"
                if stage is None and expires
                else ("no certificate is checked there any more" if stage is None else "closer now")
            )
            resolve_incident(incident.fingerprint, reason=reason)
    if stage is None:
        return
    fingerprint = f"{base}:{stage[0]}"
    # Said once per stage of one certificate: a person who resolved it is not paged again
    # every interval for the same date.
    if Incident.objects.filter(
        fingerprint=fingerprint, details__expires=expires.isoformat()
    ).exists():
        return
    days = max(0, (expires - now).days)
    when = f"{expires:%Y-%m-%d %H:%M} UTC"
    left = "has expired" if stage[0] == "expired" else f"expires in {days} day{'s' * (days != 1)}"
    title = f"The certificate of {check.name} {left} ({when})"
    raise_incident(
        source="health", fingerprint=fingerprint, title=title, priority=stage[1],
        component=check.name, details={"check": check.name, "expires": expires.isoformat()},
    )  # fmt: skip


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
