"""What happens when a deploy is reported: the record, then preflight, then verification.

A webhook (or the demo) calls `receive()`; a worker then runs `process()`:
preflight while the pipeline deploys, and once the deploy is live, the
post-deploy verification that either starts the watch or breaches.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from alerts.incidents import raise_incident
from deployments.models import Deployment, DeploymentCheck, Environment
from deployments.preflight import preflight
from deployments.verification import verify
from deployments.watch import breach, finish

log = logging.getLogger("opsconsole.deployments")
Phase = DeploymentCheck.Phase
Status = Deployment.Status
LIVE_STATUSES = {"succeeded", "success", "deployed", "live"}


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
            finish(deployment, Status.FAILED, "the pipeline reported the deploy failed")
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
        fingerprint=deployment.environment.fingerprint(),
        title=f"Deploy of {deployment.version} to {deployment.environment} failed",
        priority="high",
        component=deployment.environment.name,
        details={"deployment": deployment.external_id},
    )


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
