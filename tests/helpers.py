"""Shared helpers: running the console's own commands as a user would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Variables a developer's shell may carry that must not leak into a subprocess under test.
_SCRUBBED = (
    "DATABASE_URL", "REDIS_URL", "SENTRY_DSN", "OPSCONSOLE_ENV", "DEBUG", "SECRET_KEY",
    "OPSCONSOLE_ENCRYPTION_KEYS", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE", "OPSCONSOLE_VAR_DIR",
)  # fmt: skip


def console_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    env.update(
        OPSCONSOLE_ENV_FILE=os.devnull,
        OPSCONSOLE_VAR_DIR=str(var_dir),
        DJANGO_SETTINGS_MODULE="opsconsole.settings",
        PYTHONUNBUFFERED="1",
        OPSCONSOLE_OUTBOUND_ALLOW="127.0.0.0/8,::1/128",
    )
    env.update(overrides)
    return env


def manage(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_queued() -> list:
    """Run what the code under test queued, in order, as a django-q2 worker and the
    alert path's delivery loop would.

    First the on-commit callbacks still pending in the test's transaction (they
    are what enqueues), then every task in the ORM broker's queue, including
    tasks those tasks queue, then every notification due. Returns the tasks' results.
    """
    from django.db import connection
    from django.utils.module_loading import import_string
    from django_q.models import OrmQ

    pending = list(connection.run_on_commit)
    connection.run_on_commit[:] = []
    for _savepoints, callback, _robust in pending:
        callback()
    from alerts.notify import deliver_due

    results = []
    while True:
        while rows := list(OrmQ.objects.order_by("pk")):
            for row in rows:
                OrmQ.objects.filter(pk=row.pk).delete()
                task = row.task
                func = task["func"]
                func = import_string(func) if isinstance(func, str) else func
                results.append(func(*task["args"], **task["kwargs"]))
        pending = list(connection.run_on_commit)
        connection.run_on_commit[:] = []
        for _savepoints, callback, _robust in pending:
            callback()
        if not deliver_due() and not OrmQ.objects.exists():
            return results


def wait_for(predicate, timeout: float = 10.0, interval: float = 0.1):
    """Poll `predicate` until it returns something true (returned) or `timeout` passes
    (None): for what another process or thread does in its own time."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return None


def console_database_url() -> str:
    """The test database as a DATABASE_URL, for a console process started by a test."""
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    return f"postgresql://{s['USER']}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def page_only(channel):
    """Make `channel` the only receiver of the default escalation policy's first level."""
    from alerts.models import Channel, EscalationLevel, EscalationPolicy

    Channel.objects.exclude(pk=channel.pk).update(enabled=False)
    EscalationPolicy.objects.update(is_default=False)
    policy = EscalationPolicy.objects.create(name="only", is_default=True)
    EscalationLevel.objects.create(policy=policy, position=0, delay_minutes=0).channels.set(
        [channel]
    )
    return channel
