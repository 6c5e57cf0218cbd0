"""The dashboard panel: service health, and recovery objectives per database in colour."""

from __future__ import annotations

from django.utils import timezone

from dr.models import RecoveryObjective, ServiceCheck

CSS = {"healthy": "state-ok", "degraded": "state-warn", "unhealthy": "state-bad", "unknown": ""}


def recovery_panel(request) -> dict:
    now = timezone.now()
    checks = [
        {
            "name": c.name,
            "state": c.get_state_display(),
            "css": CSS[c.state],
            "latency": c.last_latency_ms,
        }
        for c in ServiceCheck.objects.filter(enabled=True)
    ]
    objectives = [o.summary(now) for o in RecoveryObjective.objects.select_related("target")]
    return {"checks": checks, "objectives": objectives}
