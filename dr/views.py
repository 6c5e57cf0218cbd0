"""GET /api/system/status: the console's view of the service, for people and scripts."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from opsconsole.models import ApiToken, WorkerHeartbeat


@require_GET
@login_not_required
def system_status(request):
    """Session (staff) or bearer token; health, backups and RPO, deployments, incidents, worker."""
    staff = request.user.is_authenticated and request.user.is_staff
    if not staff and ApiToken.authenticate(request.headers.get("Authorization")) is None:
        return JsonResponse({"error": "log in, or send a bearer API token"}, status=401)
    from alerts.models import Incident
    from backups.models import DatabaseTarget
    from deployments.models import Deployment
    from dr.models import ServiceCheck

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
