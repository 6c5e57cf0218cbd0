"""GET /api/system/status: the console's view of the service, for people and scripts."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from alerts.models import Incident
from backups.models import DatabaseTarget
from deployments.models import Deployment
from dr.models import ServiceCheck
from opsconsole.api import bearer_token
from opsconsole.models import WorkerHeartbeat


@require_GET
@bearer_token(allow_staff_session=True)
def system_status(request):
    """Session (staff) or bearer token; health, backups and RPO, deployments, incidents, worker."""
    now = timezone.now()
    checks = [
        {
            "name": c.name,
            "state": c.state,
            "last_checked_at": c.last_checked_at,
            "latency_ms": c.last_latency_ms,
        }
        for c in ServiceCheck.objects.filter(enabled=True)
    ]
    backups = []
    for target in DatabaseTarget.objects.all():
        newest = target.newest_good_backup()
        backups.append(
            {
                "target": target.name,
                "latest_backup": newest.id if newest else None,
                "rpo_seconds": round((now - newest.created_at).total_seconds()) if newest else None,
                "bytes_stored": newest.bytes_stored if newest else None,
            }
        )
    deployments = [
        {
            "environment": d.environment.name,
            "version": d.version,
            "status": d.status,
            "received_at": d.received_at,
        }
        for d in Deployment.objects.select_related("environment")[:5]
    ]
    incidents = [
        {
            "id": i.pk,
            "title": i.title,
            "priority": i.priority,
            "status": i.status,
            "opened_at": i.opened_at,
        }
        for i in Incident.objects.exclude(status="resolved")[:50]
    ]
    age = WorkerHeartbeat.age()
    unhealthy = any(c["state"] == "unhealthy" for c in checks)
    return JsonResponse(
        {
            "status": "degraded" if unhealthy or incidents else "ok",
            "generated_at": now,
            "checks": checks,
            "backups": backups,
            "deployments": deployments,
            "incidents": incidents,
            "worker": {
                "heartbeat_seconds_ago": None if age is None else round(age.total_seconds())
            },
        }
    )


@require_GET
@login_not_required
def status_page(request):
    """The public status page, when turned on: service names, states, open incident titles."""
    if not settings.DR_STATUS_PAGE_ENABLED:
        raise Http404("The status page is turned off.")

    checks = list(ServiceCheck.objects.filter(enabled=True, public=True).only("name", "state"))
    # Only incidents about the services listed, and none silenced for maintenance:
    # a backup or deploy incident is for the team, not the public.
    incidents = list(
        Incident.objects.exclude(status=Incident.Status.RESOLVED)
        .filter(silence__isnull=True, component__in=[c.name for c in checks])
        .only("title", "opened_at")
        .order_by("-opened_at")[:20]
    )
    all_well = not incidents and all(c.state == ServiceCheck.State.HEALTHY for c in checks)
    response = render(
        request,
        "dr/status_page.html",
        {
            "title": settings.DR_STATUS_PAGE_TITLE,
            "checks": checks,
            "incidents": incidents,
            "all_well": all_well,
            "now": timezone.now(),
        },
    )
    response["Cache-Control"] = "public, max-age=30"
    return response
