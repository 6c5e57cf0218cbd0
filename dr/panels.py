"""Dashboard panels: service health with latency sparklines; recovery objectives in colour.

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from dr.models import CheckResult, RecoveryObjective, ServiceCheck
from opsconsole.charts import sparkline

ORDER = {"unhealthy": 0, "degraded": 1, "unknown": 2, "healthy": 3}
SHOWN = 12  # checks listed; the rest are counted, with a link to all of them
POINTS = 30  # results per sparkline


def health_panel(request) -> dict:
    checks = sorted(
        ServiceCheck.objects.filter(enabled=True), key=lambda c: (ORDER[c.state], c.name)
    )
    shown = checks[:SHOWN]
    # The last POINTS results of each shown check in one query.
    latest = (
        CheckResult.objects.filter(service_check__in=shown)
        .annotate(n=Window(RowNumber(), partition_by=[F("service_check")], order_by=F("at").desc()))
        .filter(n__lte=POINTS)
        .values_list("service_check_id", "latency_ms")
        .order_by("service_check_id", "at")
    )
    series: dict[int, list[float]] = {}
    for check_id, latency in latest:
        series.setdefault(check_id, []).append(latency)
    return {
        "checks": [
            {
                "name": c.name,
                "state": c.get_state_display(),
                "css": ServiceCheck.STATE_CSS.get(c.state, ""),
                "latency": c.last_latency_ms,
                "chart": sparkline(
                    series.get(c.pk, []), width=120, height=24, label=f"{c.name} latency (ms)"
                ),
            }
            for c in shown
        ],
        "more": len(checks) - len(shown),
    }


def objectives_panel(request) -> dict:
    now = timezone.now()
    return {
        "objectives": [o.summary(now) for o in RecoveryObjective.objects.select_related("target")]
    }


def checks_status(now) -> list[dict]:
    """The system status API's "checks": every enabled check's state and latency."""
    return [
        {
            "name": c.name,
            "state": c.state,
            "last_checked_at": c.last_checked_at,
            "latency_ms": c.last_latency_ms,
        }
        for c in ServiceCheck.objects.filter(enabled=True)
    ]


def any_unhealthy(checks: list[dict]) -> bool:
    return any(c["state"] == "unhealthy" for c in checks)


def overdue_checks_trouble() -> list[str]:
    """For the alert path's own health (`opsconsole.alertpath.register_trouble`)."""
    late = ServiceCheck.overdue()
    if not late:
        return []
    names = ", ".join(c.name for c in late[:5]) + (" …" if len(late) > 5 else "")
    return [f"checks: {len(late)} overdue ({names})"]


def check_metrics():
    """This app's part of /metrics (`opsconsole.metrics`)."""
    from opsconsole.metrics import gauge

    overdue = gauge("checks_overdue", "Enabled health checks 30 s past their due time and timeout.")
    overdue.add_metric([], len(ServiceCheck.overdue()))
    yield overdue
