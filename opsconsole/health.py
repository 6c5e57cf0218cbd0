"""Liveness and readiness probes: unauthenticated, JSON, naming each check, no secrets."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from opsconsole.models import WorkerHeartbeat

log = logging.getLogger("opsconsole.health")


@never_cache
@require_GET
@login_not_required
def live(request):
    """The process answers. No database, no I/O: always fast."""
    return JsonResponse({"status": "ok", "build": settings.BUILD_ID})


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        # The reason goes to the log only: it can name hosts and users.
        log.warning("readiness: database unreachable: %s", exc)
        return False, "unreachable"
    return True, "reachable"


def check_migrations() -> tuple[bool, str]:
    # Every known migration against the applied set: catches a hole in the middle
    # too, which a plan to the leaf nodes does not.
    loader = MigrationLoader(connection, ignore_no_migrations=True)
    pending = set(loader.graph.nodes) - set(loader.applied_migrations)
    if pending:
        return False, f"{len(pending)} unapplied migration(s)"
    return True, "up to date"


def _heartbeat(role: str, what: str, max_age: float) -> tuple[bool, str]:
    age = WorkerHeartbeat.age(role)
    if age is None:
        return False, f"no {what} heartbeat yet"
    seconds = int(age.total_seconds())
    return seconds <= max_age, f"last {what} heartbeat {seconds}s ago"


def check_worker() -> tuple[bool, str]:
    """The jobs worker (django-q2): its heartbeat task when idle, lease renewals when busy."""
    return _heartbeat(WorkerHeartbeat.Role.JOBS, "worker", settings.WORKER_HEARTBEAT_MAX_AGE)


def check_alert_path() -> tuple[bool, str]:
    """The alert path beats every 5 s; half a minute of silence means it is down."""
    return _heartbeat(WorkerHeartbeat.Role.ALERTS, "alert path", ALERT_PATH_MAX_AGE)


ALERT_PATH_MAX_AGE = 30
READINESS_CHECKS = {
    "database": check_database,
    "migrations": check_migrations,
    "worker": check_worker,
    "alert_path": check_alert_path,
}


@never_cache
@require_GET
@login_not_required
def ready(request):
    """Ready for traffic: database reachable, migrations applied, a worker alive."""
    checks = {}
    for name, check in READINESS_CHECKS.items():
        if name != "database" and not checks["database"]["ok"]:
            checks[name] = {"ok": False, "detail": "skipped: database unreachable"}
            continue
        try:
            ok, detail = check()
        except DatabaseError as exc:
            log.warning("readiness: %s check failed: %s", name, exc)
            ok, detail = False, "database error"
        checks[name] = {"ok": ok, "detail": detail}
    healthy = all(c["ok"] for c in checks.values())
    failing = [name for name, c in checks.items() if not c["ok"]]
    body = {"status": "ok" if healthy else "failing", "build": settings.BUILD_ID, "checks": checks}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=200 if healthy else 503)
