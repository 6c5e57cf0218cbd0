"""The console's own dashboard panel: is a worker alive, how much is queued, what failed.

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Failure, OrmQ

from opsconsole.models import WorkerHeartbeat


def _ago(age: timedelta | None) -> str:
    return "never" if age is None else f"{int(age.total_seconds())} s ago"


def worker_panel(request) -> dict:
    from opsconsole.alertpath import overdue_loops
    from opsconsole.health import ALERT_PATH_MAX_AGE

    age = WorkerHeartbeat.age()
    alive = age is not None and age.total_seconds() <= settings.WORKER_HEARTBEAT_MAX_AGE
    alerts = WorkerHeartbeat.age(WorkerHeartbeat.Role.ALERTS)
    since = timezone.now() - timedelta(hours=24)
    return {
        "alert_path_alive": alerts is not None and alerts.total_seconds() <= ALERT_PATH_MAX_AGE,
        "alert_path": _ago(alerts),
        "late_loops": [line.split(":", 1)[0] for line in overdue_loops()] if alerts else [],
        "alive": alive,
        "heartbeat": _ago(age),
        # OrmQ holds the ORM broker's queue; with Redis it is empty and the queue lives there.
        "queued": OrmQ.objects.count(),
        "failed": Failure.objects.filter(stopped__gte=since).count(),
    }


def worker_status(now) -> dict:
    """The system status API's "worker": how long ago the jobs worker and the alert path
    last proved they work."""
    age = WorkerHeartbeat.age()
    alerts = WorkerHeartbeat.age(WorkerHeartbeat.Role.ALERTS)
    return {
        "heartbeat_seconds_ago": None if age is None else round(age.total_seconds()),
        "alert_path_heartbeat_seconds_ago": None
        if alerts is None
        else round(alerts.total_seconds()),
    }
