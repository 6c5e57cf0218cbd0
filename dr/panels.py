"""The dashboard panel: service health, and recovery objectives per database in colour."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from dr.models import RecoveryDrill, RecoveryObjective, ServiceCheck

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
    objectives = []
    for o in RecoveryObjective.objects.select_related("target"):
        rpo, rto = o.live_rpo(now), o.measured_rto()
        drill = (
            o.target.drills.filter(status=RecoveryDrill.Status.SUCCEEDED)
            .order_by("-started_at")
            .first()
        )
        drill_ok = drill is not None and now - drill.started_at <= timedelta(
            days=o.drill_every_days
        )
        objectives.append(
            {
                "target": o.target.name,
                "rpo": "none" if rpo is None else f"{rpo.total_seconds() / 60:.0f}",
                "rpo_target": o.rpo_target_minutes,
                "rpo_css": "state-ok"
                if rpo is not None and rpo <= timedelta(minutes=o.rpo_target_minutes)
                else "state-bad",
                "rto": "no drill" if rto is None else f"{rto.total_seconds() / 60:.1f}",
                "rto_target": o.rto_target_minutes,
                "rto_css": "state-warn"
                if rto is None
                else (
                    "state-ok" if rto <= timedelta(minutes=o.rto_target_minutes) else "state-bad"
                ),
                "last_drill": "never"
                if drill is None
                else f"{(now - drill.started_at).days} d ago",
                "drill_css": "state-ok" if drill_ok else "state-bad",
            }
        )
    return {"checks": checks, "objectives": objectives}
