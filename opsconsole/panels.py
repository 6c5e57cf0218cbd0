"""The console's own dashboard panel: is a worker alive, how much is queued, what failed.

Also this app's part of the system status API (`opsconsole.status`).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from django_q.models import Failure, OrmQ

from opsconsole.models import WorkerHeartbeat


def worker_panel(request) -> dict:
    age = WorkerHeartbeat.age()
    alive = age is not None and age.total_seconds() <= settings.WORKER_HEARTBEAT_MAX_AGE
    since = timezone.now() - timedelta(hours=24)
    return {
        "alive": alive,
        "heartbeat": "never" if age is None else f"{int(age.total_seconds())} s ago",
        # OrmQ holds the ORM broker's queue; with Redis it is empty and the queue lives there.
        "queued": OrmQ.objects.count(),
        "failed": Failure.objects.filter(stopped__gte=since).count(),
    }


def worker_status(now) -> dict:
    """The system status API's "worker": how long ago a worker last proved it works."""
    age = WorkerHeartbeat.age()
    return {"heartbeat_seconds_ago": None if age is None else round(age.total_seconds())}
