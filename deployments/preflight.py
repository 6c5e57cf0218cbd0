"""Preflight: recorded checks as a deploy is reported.

The deploy gate's findings (`deployments.gate`): variables (required names,
values, drift), nothing else in progress, a recent good backup of the
environment's database (taking one when the environment says so), and no
deploy freeze. Each is a DeploymentCheck with its reason.
"""

from __future__ import annotations

from deployments.gate import findings
from deployments.models import Deployment, DeploymentCheck
from opsconsole import tracing


def preflight(deployment: Deployment) -> bool:
    """Recorded checks before (or as) a deploy goes out; False when one failed."""
    env = deployment.environment
    with tracing.span(
        "deploy.preflight",
        {"opsconsole.environment": env.name, "opsconsole.version": deployment.version},
    ) as current:
        found = findings(env, deployment=deployment, start_backup=env.backup_before_deploy)
        for finding in found:
            deployment.record_check(
                DeploymentCheck.Phase.PREFLIGHT, finding.name, finding.passed, finding.detail
            )
        passed = all(f.passed for f in found)
        current.set_attribute("opsconsole.outcome", "passed" if passed else "failed")
        return passed
