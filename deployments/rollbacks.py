"""Rollbacks: choosing the target, filing the request, and carrying it out.

- `choose_target()`: the version to go back to — the one asked for, or the
  newest earlier deployment that the environment's policy calls stable
  (`Environment.stable_target`: ran long enough, with few errors).
- `request_rollback()`: file the request (an approval request; automatic ones
  are approved by the environment's policy and queued at once).
- `carry_out_rollback()`: the work of a claimed request on a worker — the
  provider's rollback, or a gradual one in steps each judged against the
  policy — then `verification.verify_rollback()`.

The rest of the life (claim, success, failure, the reaper) is the approval
frame's: see `RollbackRequest` and `opsconsole.approvals`.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from alerts.incidents import raise_incident
from deployments.models import Deployment, Environment, RollbackRequest
from deployments.providers import ProviderError
from deployments.verification import judge_traffic, verify_rollback
from opsconsole import leases, tracing

log = logging.getLogger("opsconsole.deployments")
DEFAULT_STEPS = [10, 50, 100]
GRADUAL_POLL_SECONDS = 5.0


def choose_target(
    env: Environment,
    current: Deployment | None,
    *,
    target: Deployment | None = None,
    target_version: str | None = None,
) -> Deployment:
    """The deployment to roll back to; ValidationError (and a critical incident when no
    stable version exists) otherwise."""
    if target is None and target_version:
        target = env.deployments.filter(version=target_version).order_by("-received_at").first()
        if target is None:
            raise ValidationError(f"{env} has no deployment of version {target_version!r}.")
    target = target or env.stable_target(before=current)
    if target is not None:
        return target
    raise_incident(
        source="deployments",
        fingerprint=env.fingerprint("no-rollback-target"),
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


def migration_warnings(current: Deployment | None, target: Deployment) -> str:
    """What going back from `current` to `target` cannot undo."""
    crossed = current.irreversible_migrations_since(target) if current is not None else []
    return f"crosses irreversible migrations: {', '.join(crossed)}" if crossed else ""


def request_rollback(
    env: Environment,
    user,
    *,
    reason: str,
    target: Deployment | None = None,
    target_version: str | None = None,
    from_deployment: Deployment | None = None,
    automatic: bool = False,
    token=None,
) -> RollbackRequest:
    """File a rollback request (automatic ones are approved by the policy and run at once).

    One active rollback per environment (a database constraint): a second one
    is refused with what the first one is doing.
    """
    if user is not None:
        RollbackRequest.check_can_request(user)
    current = from_deployment or env.live_deployment()
    target = choose_target(env, current, target=target, target_version=target_version)
    try:
        with transaction.atomic():
            request = RollbackRequest.objects.create(
                environment=env,
                from_deployment=current,
                target_deployment=target,
                reason=reason,
                automatic=automatic,
                requested_by=user,
                requested_by_token=token,
                warnings=migration_warnings(current, target),
                status=RollbackRequest.Status.APPROVED
                if automatic
                else RollbackRequest.Status.REQUESTED,
                decided_at=timezone.now() if automatic else None,
                decision_note="approved by the environment's automatic rollback policy"
                if automatic
                else "",
            )
    except IntegrityError:
        raise ValidationError(f"A rollback of {env} is already {_active_one(env)}.") from None
    if automatic:
        request.enqueue()
    return request


def _active_one(env: Environment) -> str:
    active = RollbackRequest.objects.filter(
        environment=env, status__in=RollbackRequest.ACTIVE
    ).first()
    if active is None:
        return "active"
    return (
        f"{active.get_status_display().lower()} "
        f"(#{active.pk}, to {active.target_deployment.version})"
    )


def carry_out_rollback(request: RollbackRequest) -> dict[str, Any]:
    """The work of a claimed rollback: the provider call (or gradual steps), then
    verification. Raises ProviderError with what went wrong."""
    env, target = request.environment, request.target_deployment
    tracing.set_attributes(
        {
            "opsconsole.environment": env.name,
            "opsconsole.provider": env.provider,
            "opsconsole.version.target": target.version,
        }
    )
    try:
        if env.gradual_rollback and env.backend.supports_weights:
            response = gradual(request, target)
        else:
            with tracing.span("rollback.provider_call", {"opsconsole.provider": env.provider}):
                response = env.backend.rollback(target)
    except ProviderError as exc:
        if exc.response:
            RollbackRequest.objects.filter(pk=request.pk).update(provider_response=exc.response)
        raise
    request.advance(RollbackRequest.Status.VERIFYING, provider_response=response)
    with tracing.span("rollback.verify") as current:
        problem = verify_rollback(request)
        current.set_attribute("opsconsole.outcome", "failed" if problem else "passed")
    if problem:
        raise ProviderError(problem)
    return {}


def gradual(request: RollbackRequest, target: Deployment) -> dict[str, Any]:
    """Shift traffic to the target in steps, each judged against the rollback policy for
    the environment's step time; back out on a breach."""
    env = request.environment
    backend = env.backend
    steps = env.gradual_steps or DEFAULT_STEPS
    slot = backend.begin_gradual(target)
    # Recorded before each change of share, so whoever finds this run dead knows the
    # split may be in place and how to undo it (RollbackRequest.on_lease_expired).
    kept_slot = slot if isinstance(slot, int | str) else None
    for percent in steps:
        leases.check()  # a run the reconciler took over sets no further share
        RollbackRequest.objects.filter(pk=request.pk).update(
            gradual_progress={"slot": kept_slot, "percent": percent}
        )
        with tracing.span("rollback.step", {"opsconsole.percent": percent}) as current:
            backend.set_share(slot, percent)
            deadline = time.monotonic() + env.gradual_step_seconds
            while True:
                judgement = judge_traffic(target)
                if judgement.breach or time.monotonic() >= deadline:
                    break
                time.sleep(min(GRADUAL_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
            judgement.record(target, f"{percent} % of traffic")
            current.set_attribute("opsconsole.breach", judgement.breach or "")
        if reason := judgement.breach:
            backend.abort(slot)
            raise ProviderError(f"gradual rollback stopped at {percent} %: {reason}")
    leases.check()
    return {"gradual": steps, **backend.complete(slot)}
