"""How a deploy and a rollback are verified. One place for both.

- `verify()`: one request to the health URL, every endpoint and smoke URL,
  each recorded as a check (post-deploy, and after a rollback).
- `judge_traffic()`: a round of probes held against the environment's
  rollback policy (errors, response time, availability), recorded as a check;
  each step of a gradual rollback and the end of every rollback use it.
- `verify_rollback()`: the live version is the target, `verify()` passes,
  and `judge_traffic()` finds no breach.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from deployments.models import Deployment, DeploymentCheck, HealthSample, RollbackRequest
from deployments.probes import PROBE_THREADS, probe, probe_once

Phase = DeploymentCheck.Phase


def verify(deployment: Deployment, phase: str = Phase.POST_DEPLOY) -> bool:
    """Health URL, endpoints and smoke URLs, one request each, recorded as checks."""
    env = deployment.environment
    targets = [*env.probe_targets(), *((u, [200, 201, 202, 204]) for u in env.smoke_urls)]
    passed = True
    with ThreadPoolExecutor(max_workers=min(16, len(targets) or 1)) as pool:
        outcomes = list(
            pool.map(lambda t: (t, probe_once(t[0], t[1], env.probe_timeout_seconds)), targets)
        )
    for (url, ok), (good, _, ms) in outcomes:
        deployment.record_check(
            phase, url, good, "" if good else f"expected {ok}", duration_ms=round(ms, 1)
        )
        passed &= good
    return passed


@dataclass
class Judgement:
    """A round of probes held against the rollback policy: why it breaches, or None."""

    breach: str | None
    values: dict[str, Any]

    def record(self, deployment: Deployment, label: str) -> None:
        v = self.values
        deployment.record_check(
            Phase.ROLLBACK,
            label,
            self.breach is None,
            self.breach
            or (
                f"{v['error_rate']:.1f} % errors, {v['availability']:.1f} % available "
                f"over {v['requests']} requests"
            ),
        )


def judge_traffic(deployment: Deployment) -> Judgement:
    """Probe the environment of `deployment` and hold the result against its policy."""
    env = deployment.environment
    with ThreadPoolExecutor(max_workers=PROBE_THREADS) as pool:
        values = probe(env, pool)
    return Judgement(
        env.breach_of(HealthSample(deployment=deployment, **values, passed=True)), values
    )


def verify_rollback(request: RollbackRequest) -> str | None:
    """Why the rolled-back environment is not right, or None when it is."""
    env, target = request.environment, request.target_deployment
    live = env.backend.live_version()
    if live is not None:
        target.record_check(Phase.ROLLBACK, "live version", live == target.version, f"live: {live}")
        if live != target.version:
            return f"the live version is {live}, not {target.version}"
    if not verify(target, phase=Phase.ROLLBACK):
        return "health or endpoints failed after the rollback"
    judgement = judge_traffic(target)
    judgement.record(target, "traffic after the rollback")
    return None if judgement.breach is None else f"after the rollback: {judgement.breach}"
