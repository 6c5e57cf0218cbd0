"""Preflight: recorded checks before (or as) a deploy goes out.

Required variables on the provider, nothing else in progress, a recent good
backup of the environment's database (taking one when the environment says
so), and no deploy freeze. Each is a DeploymentCheck with its reason.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from alerts.models import Silence
from backups.models import Backup, StorageLocation
from deployments.models import Deployment, DeploymentCheck, RollbackRequest
from deployments.providers import ProviderError
from opsconsole import tracing
from opsconsole.tasks import enqueue

Phase = DeploymentCheck.Phase


def preflight(deployment: Deployment) -> bool:
    """Recorded checks before (or as) a deploy goes out; False when one failed."""
    with tracing.span(
        "deploy.preflight",
        {
            "opsconsole.environment": deployment.environment.name,
            "opsconsole.version": deployment.version,
        },
    ) as current:
        passed = _preflight(deployment)
        current.set_attribute("opsconsole.outcome", "passed" if passed else "failed")
        return passed


def _preflight(deployment: Deployment) -> bool:
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
        backup = Backup.objects.create(
            target=env.backup_target,
            storage=StorageLocation.default(),
            trigger=Backup.Trigger.PRE_DEPLOY,
        )
        transaction.on_commit(lambda: enqueue("backups.tasks.run_backup", backup.pk))
        what += f"; taking one now: {backup.id}"
    record("recent backup", False, what)
