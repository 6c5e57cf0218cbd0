"""The deployment loop: receive → preflight → verify → watch → succeeded, or roll back.

Probes are concurrent and each bounded by its timeout, so one hanging endpoint
never delays the others, and one tick can watch many deployments.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from alerts.incidents import announce, raise_incident, resolve_incident
from deployments.models import (
    Deployment,
    DeploymentCheck,
    Environment,
    HealthSample,
    RollbackRequest,
)
from deployments.providers import ProviderError
from opsconsole import http

log = logging.getLogger("opsconsole.deployments")
Phase = DeploymentCheck.Phase
Status = Deployment.Status
LIVE_STATUSES = {"succeeded", "success", "deployed", "live"}


# --- receiving -------------------------------------------------------------------------


def receive(environment: Environment, payload: dict[str, Any]) -> tuple[Deployment, bool]:
    """Record a webhook; idempotent on (environment, deployment_id)."""
    external_id = str(payload["deployment_id"])
    arrived = timezone.now()
    # INSERT … ON CONFLICT DO NOTHING, then lock the row: two webhooks for one
    # deployment arriving together (CI's "started" racing its "deployed") then
    # queue on the row lock instead of racing two inserts.
    Deployment.objects.bulk_create(
        [
            Deployment(
                environment=environment,
                external_id=external_id,
                version=str(payload["version"]),
                commit=str(payload.get("commit") or "")[:64],
                url=str(payload.get("url") or "")[:500],
                started_by=str(payload.get("started_by") or payload.get("actor") or "")[:200],
                migrations=payload.get("migrations") or [],
                received_at=arrived,
            )
        ],
        ignore_conflicts=True,
    )
    with transaction.atomic():
        deployment = Deployment.objects.select_for_update().get(
            environment=environment, external_id=external_id
        )
        created = deployment.received_at == arrived and not deployment.checks.exists()
        for check in payload.get("checks") or []:
            deployment.record_check(
                Phase.CI,
                str(check["name"])[:200],
                bool(check["passed"]),
                str(check.get("detail", "")),
            )
        reported = str(payload.get("status") or "").lower()
        if reported == "failed" and deployment.status in Deployment.ACTIVE:
            _finish(deployment, Status.FAILED, "the pipeline reported the deploy failed")
            transaction.on_commit(lambda: _deploy_failed_incident(deployment))
        elif created:
            _supersede_older(deployment)
        if reported in LIVE_STATUSES and deployment.status in (
            "received",
            "preflight",
            "deploying",
        ):
            Deployment.objects.filter(pk=deployment.pk).update(
                status=Status.VERIFYING, live_at=timezone.now()
            )
            deployment.refresh_from_db()
        elif reported in ("started", "deploying") and deployment.status == Status.RECEIVED:
            Deployment.objects.filter(pk=deployment.pk).update(status=Status.PREFLIGHT)
            deployment.refresh_from_db()
    return deployment, created


def _supersede_older(deployment: Deployment) -> None:
    """Earlier deployments of the environment are replaced by this one.

    Only older rows, and only those nobody holds: a webhook busy with its own
    row keeps it, so two webhooks never wait on each other (no deadlock); the
    next webhook supersedes what this one skipped.
    """
    older = deployment.environment.deployments.filter(received_at__lt=deployment.received_at)
    now = timezone.now()
    ids = list(
        older.filter(Q(status__in=Deployment.ACTIVE) | Q(ended_at__isnull=True))
        .select_for_update(skip_locked=True)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    Deployment.objects.filter(pk__in=ids, status__in=Deployment.ACTIVE).update(
        status=Status.SUPERSEDED, finished_at=now
    )
    Deployment.objects.filter(pk__in=ids, ended_at__isnull=True).update(ended_at=now)


def _deploy_failed_incident(deployment: Deployment) -> None:
    raise_incident(
        source="deployments",
        fingerprint=f"deploy:{deployment.environment_id}",
        title=f"Deploy of {deployment.version} to {deployment.environment} failed",
        priority="high",
        component=deployment.environment.name,
        details={"deployment": deployment.external_id},
    )


# --- preflight ---------------------------------------------------------------------------


def preflight(deployment: Deployment) -> bool:
    """Recorded checks before (or as) a deploy goes out; False when one failed."""
    env = deployment.environment
    results = []

    def record(name: str, passed: bool, detail: str) -> None:
        deployment.record_check(Phase.PREFLIGHT, name, passed, detail)
        results.append(passed)

    if env.required_variables:
        try:
            names = env.backend.variable_names()
        except ProviderError as exc:
            record("required variables", False, f"cannot list them: {exc.message}")
        else:
            if names is None:
                record(
                    "required variables", True, "the provider cannot list variables; not checked"
                )
            else:
                missing = sorted(set(env.required_variables) - names)
                record(
                    "required variables",
                    not missing,
                    f"missing: {', '.join(missing)}" if missing else "all set",
                )
    busy = env.deployments.filter(status__in=Deployment.ACTIVE).exclude(pk=deployment.pk).exists()
    rolling = RollbackRequest.objects.filter(
        environment=env, status__in=RollbackRequest.ACTIVE
    ).exists()
    record(
        "nothing else in progress",
        not (busy or rolling),
        "another deploy is in progress"
        if busy
        else "a rollback is in progress"
        if rolling
        else "clear",
    )
    if env.backup_target_id:
        record_backup_check(deployment, record)
    from alerts.models import Silence

    now = timezone.now()
    freeze = Silence.objects.filter(
        freeze_deploys=True, starts_at__lte=now, ends_at__gt=now
    ).first()
    record(
        "no deploy freeze",
        freeze is None,
        f"frozen: {freeze.reason}" if freeze else "no freeze window",
    )
    return all(results)


def record_backup_check(deployment: Deployment, record) -> None:
    env = deployment.environment
    newest = env.backup_target.newest_good_backup()
    age = timezone.now() - newest.created_at if newest else None
    if age is not None and age <= timedelta(hours=env.backup_max_age_hours):
        record("recent backup", True, f"{newest.id}, {age.total_seconds() / 3600:.1f} h old")
        return
    what = (
        f"newest good backup is {age.total_seconds() / 3600:.0f} h old"
        if age
        else "no good backup yet"
    )
    if env.backup_before_deploy:
        from backups.models import Backup, StorageLocation
        from opsconsole.tasks import enqueue

        backup = Backup.objects.create(
            target=env.backup_target,
            storage=StorageLocation.default(),
            trigger=Backup.Trigger.PRE_DEPLOY,
        )
        transaction.on_commit(lambda: enqueue("backups.tasks.run_backup", backup.pk))
        what += f"; taking one now: {backup.id}"
    record("recent backup", False, what)


def metric_error_rate(deployment: Deployment, now: datetime) -> float | None:
    """The newest value of the environment's error-rate metric since the deploy went live."""
    env = deployment.environment
    if not env.error_rate_metric:
        return None
    from alerts.models import MetricSample

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


# --- probing -----------------------------------------------------------------------------


def _probe_once(url: str, ok: list[int], timeout: float) -> tuple[bool, bool, float]:
    """(answered as expected, server error or no answer, milliseconds)."""
    started = time.monotonic()
    try:
        response = http.request("GET", url, timeout=timeout, raise_for_status=False)
    except http.HttpError:
        return False, True, (time.monotonic() - started) * 1000
    elapsed = (time.monotonic() - started) * 1000
    return response.status_code in ok, response.status_code >= 500, elapsed


PROBE_THREADS = 64


def submit_probes(environment: Environment, pool: ThreadPoolExecutor) -> list[Future]:
    return [
        pool.submit(_probe_once, url, ok, environment.probe_timeout_seconds)
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


def verify(deployment: Deployment, phase: str = Phase.POST_DEPLOY) -> bool:
    """Health URL, endpoints and smoke URLs, one request each, recorded as checks."""
    env = deployment.environment
    targets = [*env.probe_targets(), *((u, [200, 201, 202, 204]) for u in env.smoke_urls)]
    passed = True
    with ThreadPoolExecutor(max_workers=min(16, len(targets) or 1)) as pool:
        outcomes = list(
            pool.map(lambda t: (t, _probe_once(t[0], t[1], env.probe_timeout_seconds)), targets)
        )
    for (url, ok), (good, _, ms) in outcomes:
        deployment.record_check(
            phase, url, good, "" if good else f"expected {ok}", duration_ms=round(ms, 1)
        )
        passed &= good
    return passed


# --- the loop -----------------------------------------------------------------------------


def process(deployment: Deployment) -> None:
    """After the webhook: preflight, and once the deploy is live, verify and start the watch."""
    deployment.refresh_from_db()
    if deployment.status == Status.PREFLIGHT:
        preflight(deployment)
        # The pipeline goes on deploying; its "succeeded" webhook starts verification.
        Deployment.objects.filter(pk=deployment.pk, status=Status.PREFLIGHT).update(
            status=Status.DEPLOYING
        )
        return
    if deployment.status != Status.VERIFYING:
        return
    if not deployment.checks.filter(phase=Phase.PREFLIGHT).exists():
        preflight(deployment)
    if verify(deployment):
        env = deployment.environment
        Deployment.objects.filter(pk=deployment.pk, status=Status.VERIFYING).update(
            status=Status.WATCHING,
            watch_until=timezone.now() + timedelta(minutes=env.watch_minutes),
        )
    else:
        breach(deployment, "post-deploy verification failed")


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
            f"deploy:{deployment.environment_id}", reason=f"{deployment.version} is healthy"
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


def _finish(deployment: Deployment, status: str, note: str) -> None:
    Deployment.objects.filter(pk=deployment.pk).update(
        status=status, finished_at=timezone.now(), notes=(deployment.notes + "\n" + note).strip()
    )


def breach(deployment: Deployment, reason: str) -> RollbackRequest | None:
    """A bad deploy: an incident, then a rollback (automatic) or a request for one (ask)."""
    env = deployment.environment
    raise_incident(
        source="deployments",
        fingerprint=f"deploy:{env.pk}",
        title=f"{env} {deployment.version} is unhealthy: {reason}",
        priority="critical",
        component=env.name,
        details={"deployment": deployment.external_id, "reason": reason},
    )
    _finish(deployment, Status.FAILED, reason)
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


def request_rollback(
    env: Environment,
    user,
    *,
    reason: str,
    target: Deployment | None = None,
    target_version: str | None = None,
    from_deployment: Deployment | None = None,
    automatic: bool = False,
) -> RollbackRequest:
    """File a rollback request (automatic ones are approved by the policy and run at once)."""
    if user is not None:
        RollbackRequest.check_can_request(user)
    current = (
        from_deployment
        or env.deployments.exclude(status=Status.SUPERSEDED).order_by("-received_at").first()
    )
    if target is None and target_version:
        target = env.deployments.filter(version=target_version).order_by("-received_at").first()
        if target is None:
            raise ValidationError(f"{env} has no deployment of version {target_version!r}.")
    target = target or env.stable_target(before=current)
    if target is None:
        raise_incident(
            source="deployments",
            fingerprint=f"no-rollback-target:{env.pk}",
            title=f"No stable deployment of {env} to roll back to: manual intervention required",
            priority="critical",
            component=env.name,
            details={
                "rule": f"ran {env.stable_minutes} min, error rate < {env.stable_max_error_rate} %"
            },
        )
        raise ValidationError(
            f"No earlier deployment of {env} ran {env.stable_minutes} minutes with an error rate "
            f"under {env.stable_max_error_rate:g} %: roll back by hand."
        )
    warnings = ""
    if current is not None:
        crossed = current.irreversible_migrations_since(target)
        if crossed:
            warnings = f"crosses irreversible migrations: {', '.join(crossed)}"
    try:
        with transaction.atomic():
            request = RollbackRequest.objects.create(
                environment=env,
                from_deployment=current,
                target_deployment=target,
                reason=reason,
                automatic=automatic,
                requested_by=user,
                warnings=warnings,
                status=RollbackRequest.Status.APPROVED
                if automatic
                else RollbackRequest.Status.REQUESTED,
                decided_at=timezone.now() if automatic else None,
                decision_note="approved by the environment's automatic rollback policy"
                if automatic
                else "",
            )
    except IntegrityError:
        active = RollbackRequest.objects.filter(
            environment=env, status__in=RollbackRequest.ACTIVE
        ).first()
        what = (
            f"{active.get_status_display().lower()} "
            f"(#{active.pk}, to {active.target_deployment.version})"
            if active
            else "active"
        )
        raise ValidationError(f"A rollback of {env} is already {what}.") from None
    if automatic:
        request.enqueue()
    return request


def carry_out_rollback(request: RollbackRequest) -> dict[str, Any]:
    """The work of a claimed rollback: the provider call (or gradual steps), then
    verification. Raises ProviderError with what went wrong."""
    env, target = request.environment, request.target_deployment
    try:
        if env.gradual_rollback and env.backend.supports_weights:
            response = _gradual(request, target)
        else:
            response = env.backend.rollback(target)
    except ProviderError as exc:
        if exc.response:
            RollbackRequest.objects.filter(pk=request.pk).update(provider_response=exc.response)
        raise
    request.advance(RollbackRequest.Status.VERIFYING, provider_response=response)
    problem = _verify_rollback(request, target)
    if problem:
        raise ProviderError(problem)
    return {}


def _gradual(request: RollbackRequest, target: Deployment) -> dict[str, Any]:
    """Shift traffic to the target in steps, watching each; back out on a breach."""
    env = request.environment
    backend = env.backend
    slot = backend.begin_gradual(target)
    for percent in env.gradual_steps or [10, 50, 100]:
        backend.set_share(slot, percent)
        deadline = time.monotonic() + env.gradual_step_seconds
        while True:
            with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
                values = probe(env, pool)
            sample = HealthSample(deployment=target, **values, passed=True)
            reason = env.breach_of(sample)
            if reason or time.monotonic() >= deadline:
                break
            time.sleep(min(5.0, max(0.0, deadline - time.monotonic())))
        target.record_check(
            Phase.ROLLBACK,
            f"{percent} % of traffic",
            reason is None,
            reason or f"{values['error_rate']:.1f} % errors",
        )
        if reason:
            backend.abort(slot)
            raise ProviderError(f"gradual rollback stopped at {percent} %: {reason}")
    return {"gradual": env.gradual_steps or [10, 50, 100], **backend.complete(slot)}


def _verify_rollback(request: RollbackRequest, target: Deployment) -> str | None:
    env = request.environment
    live = env.backend.live_version()
    check = target.record_check
    if live is not None:
        check(Phase.ROLLBACK, "live version", live == target.version, f"live: {live}")
        if live != target.version:
            return f"the live version is {live}, not {target.version}"
    if not verify(target, phase=Phase.ROLLBACK):
        return "health or endpoints failed after the rollback"
    with ThreadPoolExecutor(max_workers=16) as pool:
        values = probe(env, pool)
    ok = values["availability"] >= env.min_availability
    check(
        Phase.ROLLBACK,
        "availability",
        ok,
        f"{values['availability']:.1f} % over {values['requests']} requests",
    )
    return None if ok else f"availability {values['availability']:.1f} % after the rollback"
