"""Dashboard panels: service health (heartbeats, uptime, certificates); objectives in colour.

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, F, Q, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from dr.health import CERTIFICATE_WARNING
from dr.models import CheckResult, RecoveryObjective, ServiceCheck
from opsconsole.charts import heartbeat_bar, sparkline

ORDER = {"unhealthy": 0, "degraded": 1, "unknown": 2, "healthy": 3}
SHOWN = 12  # checks listed; the rest are counted, with a link to all of them
POINTS = 30  # results per sparkline
BEATS = 50  # results per heartbeat bar


def health_panel(request) -> dict:
    checks = sorted(
        ServiceCheck.objects.filter(enabled=True), key=lambda c: (ORDER[c.state], c.name)
    )
    shown = checks[:SHOWN]
    # The last BEATS results of each shown check in one query.
    latest = (
        CheckResult.objects.filter(service_check__in=shown)
        .annotate(n=Window(RowNumber(), partition_by=[F("service_check")], order_by=F("at").desc()))
        .filter(n__lte=BEATS)
        .values_list("service_check_id", "at", "ok", "latency_ms", "detail")
        .order_by("service_check_id", "at")
    )
    series: dict[int, list[tuple]] = {}
    for check_id, *result in latest:
        series.setdefault(check_id, []).append(result)
    now = timezone.now()
    uptimes = {
        span: _uptime(shown, now - timedelta(days=days))
        for span, days in (("day", 1), ("month", 30))
    }
    by_pk = {c.pk: c for c in shown}
    return {
        "checks": [
            {
                "check": c,
                "name": c.name,
                "state": c.get_state_display(),
                "css": ServiceCheck.STATE_CSS.get(c.state, ""),
                "latency": c.last_latency_ms,
                "bar": heartbeat_bar(
                    _beats(series.get(c.pk, []), by_pk[c.pk].retries), label=c.name
                ),
                "chart": sparkline(
                    [r[2] for r in series.get(c.pk, [])[-POINTS:]],
                    width=120,
                    height=24,
                    label=f"{c.name} latency (ms)",
                ),
                "uptime_day": uptimes["day"].get(c.pk),
                "uptime_month": uptimes["month"].get(c.pk),
                "certificate": c.certificate_expires_at,
                "certificate_css": _certificate_css(c.certificate_expires_at, now),
            }
            for c in shown
        ],
        "more": len(checks) - len(shown),
    }


def _beats(results: list[tuple], retries: int) -> list[tuple[str, str]]:
    """Each result as up, retry (failed while the check was still retrying) or down."""
    beats, failures = [], 0
    for at, ok, latency, detail in results:
        failures = 0 if ok else failures + 1
        state = "up" if ok else ("down" if failures >= retries else "retry")
        when = timezone.localtime(at).strftime("%Y-%m-%d %H:%M:%S")
        text = f"{when}: {'up' if ok else 'failed'}, {latency:.0f} ms"
        beats.append((state, text if ok else f"{text}: {detail}"))
    return beats


def _uptime(checks: list[ServiceCheck], since) -> dict[int, float]:
    """Percent of results that passed since `since`, per check, in one query."""
    rows = (
        CheckResult.objects.filter(service_check__in=checks, at__gte=since)
        .values("service_check_id")
        .annotate(total=Count("pk"), passed=Count("pk", filter=Q(ok=True)))
    )
    return {r["service_check_id"]: 100 * r["passed"] / r["total"] for r in rows if r["total"]}


def _certificate_css(expires, now) -> str:
    if expires is None:
        return ""
    left = expires - now
    return "state-bad" if left < CERTIFICATE_WARNING else ("state-warn" if left.days < 30 else "")


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
