"""The alerts app's dashboard panel: open incidents by priority, the newest first.

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.utils import timezone

from alerts.models import Incident, Priority
from opsconsole import permissions


def incidents_panel(request) -> dict:
    open_incidents = Incident.objects.exclude(status=Incident.Status.RESOLVED)
    by_priority = dict(open_incidents.values_list("priority").annotate(n=Count("pk")))
    return {
        "by_priority": [(p.label, by_priority.get(p.value, 0), p.value) for p in Priority],
        "recent": list(open_incidents.order_by("status", "-opened_at")[:5]),
        "can_ack": request.user.has_perm(permissions.ACKNOWLEDGE_INCIDENT),
        "resolved_today": Incident.objects.filter(
            resolved_at__gte=timezone.now() - timedelta(hours=24)
        ).count(),
    }


def incidents_status(now) -> list[dict]:
    """The system status API's "incidents": the open ones (any makes the status degraded)."""
    return [
        {
            "id": i.pk,
            "title": i.title,
            "priority": i.priority,
            "status": i.status,
            "opened_at": i.opened_at,
        }
        for i in Incident.objects.exclude(status=Incident.Status.RESOLVED)[:50]
    ]
