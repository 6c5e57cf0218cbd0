"""Dashboard panel: the latest backup per target, with the trend of sizes and durations.

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from django.utils import timezone
from django.utils.timesince import timesince

from backups.models import Backup, DatabaseTarget
from opsconsole.charts import sparkline

TREND = 14  # successful backups in each trend line


def backups_panel(request) -> dict:
    now = timezone.now()
    rows = []
    for target in DatabaseTarget.objects.all():
        latest = target.backups.order_by("-created_at").first()
        good = list(
            target.backups.filter(status__in=Backup.GOOD)
            .order_by("-created_at")
            .values_list("bytes_stored", "duration_seconds")[:TREND]
        )[::-1]
        rows.append(
            {
                "target": target.name,
                "latest": latest,
                "css": Backup.STATUS_CSS.get(latest.status, "state-ok") if latest else "state-bad",
                "age": timesince(latest.created_at, now) if latest else None,
                "sizes": sparkline(
                    [float(b or 0) for b, _ in good], width=100, height=24,
                    label=f"{target.name}: size of the last backups (bytes)",
                ),
                "durations": sparkline(
                    [float(d or 0) for _, d in good], width=100, height=24,
                    label=f"{target.name}: duration of the last backups (s)",
                ),
            }
        )  # fmt: skip
    return {"targets": rows}


def backups_status(now) -> list[dict]:
    """The system status API's "backups": the newest good backup and live RPO per target."""
    rows = []
    for target in DatabaseTarget.objects.all():
        newest = target.newest_good_backup()
        rows.append(
            {
                "target": target.name,
                "latest_backup": newest.id if newest else None,
                "rpo_seconds": round((now - newest.created_at).total_seconds()) if newest else None,
                "bytes_stored": newest.bytes_stored if newest else None,
            }
        )
    return rows


def backup_metrics():
    """This app's part of /metrics (`opsconsole.metrics`): how old each target's newest
    good backup is (absent when it never had one)."""
    from django.db.models import Max

    from opsconsole.metrics import gauge

    age = gauge(
        "newest_good_backup_age_seconds",
        "Seconds since the newest good backup of the target was taken.",
        ["target"],
    )
    now = timezone.now()
    newest = (
        Backup.objects.filter(status__in=Backup.GOOD)
        .values_list("target__name")
        .annotate(at=Max("created_at"))
    )
    for name, at in newest:
        age.add_metric([name], (now - at).total_seconds())
    yield age
