"""The alerts app's dashboard panel: open incidents by priority, the newest first.

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count
from django.utils import timezone

from alerts.models import Incident, Notification, Priority
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


def notifications_due() -> int:
    """The delivery queue: notifications due and not yet sent."""
    return Notification.objects.filter(
        status__in=[Notification.Status.QUEUED, Notification.Status.RETRYING],
        next_attempt_at__lte=timezone.now(),
    ).count()


def alert_metrics():
    """This app's part of /metrics (`opsconsole.metrics`)."""
    from opsconsole.metrics import gauge

    open_incidents = gauge("open_incidents", "Incidents not resolved, by priority.", ["priority"])
    counts = dict(
        Incident.objects.exclude(status=Incident.Status.RESOLVED)
        .values_list("priority")
        .annotate(n=Count("pk"))
    )
    for priority in Priority:
        open_incidents.add_metric([priority.value], counts.get(priority.value, 0))
    yield open_incidents
    failures = gauge(
        "notification_failures_last_hour",
        "Notifications that failed for good in the last hour, by channel kind.",
        ["kind"],
    )
    since = timezone.now() - timedelta(hours=1)
    failed = dict(
        Notification.objects.filter(status=Notification.Status.FAILED, created_at__gte=since)
        .values_list("channel__kind")
        .annotate(n=Count("pk"))
    )
    for kind, n in failed.items():
        failures.add_metric([kind], n)
    yield failures
