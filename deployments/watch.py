"""The watch: after a clean verification, a round of probes every tick until the
watch window ends. A sample that breaks the rollback policy is a breach: an
incident, then a rollback (automatic) or a request for one (ask).
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.utils import timezone

from alerts.incidents import announce, raise_incident, resolve_incident
from alerts.models import MetricSample
from deployments.models import Deployment, Environment, HealthSample, RollbackRequest
from deployments.probes import PROBE_THREADS, submit_probes, summarize
from deployments.rollbacks import request_rollback

log = logging.getLogger("opsconsole.deployments")
Status = Deployment.Status


def metric_error_rate(deployment: Deployment, now: datetime) -> float | None:
    """The newest value of the environment's error-rate metric since the deploy went live."""
    env = deployment.environment
    if not env.error_rate_metric:
        return None
    matchers = {f"labels__{k}": str(v) for k, v in (env.error_rate_labels or {}).items()}
    since = max(deployment.live_at or deployment.received_at, now - timedelta(minutes=5))
    return (
        MetricSample.objects.filter(
            key=env.error_rate_metric, observed_at__gte=since, observed_at__lte=now, **matchers
        )
        .order_by("-observed_at")
        .values_list("value", flat=True)
        .first()
    )


def watch_tick(now: datetime | None = None) -> int:
    """Scheduled each tick: one probe round for every deployment being watched, concurrently."""
    now = now or timezone.now()
    watching = list(Deployment.objects.filter(status=Status.WATCHING).select_related("environment"))
    if not watching:
        return 0

    # Every probe of every deployment goes into one bounded pool at once, so the
    # tick lasts about as long as the slowest probe, not the sum of them.
    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
        pending = [(d, submit_probes(d.environment, pool)) for d in watching]
        results = [(d, summarize([job.result() for job in jobs])) for d, jobs in pending]
    for deployment, values in results:
        row = HealthSample(
            deployment=deployment,
            at=now,
            **values,
            passed=True,
            metric_error_rate=metric_error_rate(deployment, now),
        )
        reason = deployment.environment.breach_of(row)
        row.passed, row.breach = reason is None, reason or ""
        row.save()
        if reason:
            breach(deployment, reason)
        elif deployment.watch_until and now >= deployment.watch_until:
            _succeeded(deployment)
    return len(results)


def _succeeded(deployment: Deployment) -> None:
    if Deployment.objects.filter(pk=deployment.pk, status=Status.WATCHING).update(
        status=Status.SUCCEEDED, finished_at=timezone.now()
    ):
        resolve_incident(
            deployment.environment.fingerprint(), reason=f"{deployment.version} is healthy"
        )
        env = deployment.environment
        announce(
            "deployments",
            f"{env} is on {deployment.version}: the watch ended clean",
            component=env.name,
            url=deployment.url or env.base_url,
            details={
                "environment": env.name,
                "version": deployment.version,
                "url": env.base_url,
                "deployed_by": deployment.started_by or "unknown",
            },
        )
        log.info("deployment %s of %s succeeded", deployment.version, deployment.environment)


def finish(deployment: Deployment, status: str, note: str) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(
        status=status, finished_at=timezone.now(), notes=(deployment.notes + "\n" + note).strip()
    )


def breach(deployment: Deployment, reason: str) -> RollbackRequest | None:
    """A bad deploy: an incident, then a rollback (automatic) or a request for one (ask)."""
    env = deployment.environment
    raise_incident(
        source="deployments",
        fingerprint=env.fingerprint(),
        title=f"{env} {deployment.version} is unhealthy: {reason}",
        priority="critical",
        component=env.name,
        details={"deployment": deployment.external_id, "reason": reason},
    )
    finish(deployment, Status.FAILED, reason)
    try:
        return request_rollback(
            env,
            None,
            reason=reason,
            from_deployment=deployment,
            automatic=env.rollback_mode == Environment.Mode.AUTOMATIC,
        )
    except ValidationError as exc:
        log.warning("no rollback for %s: %s", env, exc.messages[0])
        return None
