"""Leases: how a long-running record says "a live worker is on this".

A worker that claims a backup, restore, rollback, failover run or drill sets
`lease_expires_at` a lease ahead and renews it from a thread while the work
runs. A worker that dies (SIGKILL, an out-of-memory kill, a lost machine) stops
renewing; the reconciler (`opsconsole.reconcile`) finds the expired lease on
the alert path's cadence and hands the record to its kind's `on_lease_expired`,
which fails it with what to check, or puts things back in a safe state first.

A renewal also beats the jobs heartbeat (as does a thread in every worker
process, `opsconsole.tasks.worker_started`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connections, models
from django.utils import timezone

log = logging.getLogger("opsconsole.leases")


def duration() -> timedelta:
    return timedelta(seconds=settings.OPSCONSOLE_LEASE_SECONDS)


def expiry(now: datetime | None = None) -> datetime:
    """When a lease taken or renewed now runs out."""
    return (now or timezone.now()) + duration()


@contextlib.contextmanager
def held(record: models.Model) -> Iterator[None]:
    """Renew `record`'s lease every quarter lease while the body runs."""
    from opsconsole.models import WorkerHeartbeat

    model, pk = type(record), record.pk
    stop = threading.Event()

    def renew() -> None:
        try:
            while not stop.wait(duration().total_seconds() / 4):
                try:
                    model._default_manager.filter(pk=pk).update(lease_expires_at=expiry())
                    WorkerHeartbeat.beat(role=WorkerHeartbeat.Role.JOBS)
                except Exception:
                    # The next renewal may get through; the lease outlasts three misses.
                    log.warning("could not renew the lease of %s %s", model.__name__, pk)
        finally:
            connections.close_all()  # this thread's own connections only

    thread = threading.Thread(target=renew, name=f"lease-{model.__name__}-{pk}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=10)


@dataclass(frozen=True)
class LeasedKind:
    """A model whose running rows hold leases: its running states, and what to do with a
    row whose lease ran out (`handler(record) -> bool`, True when it changed something)."""

    label: str
    running: tuple[str, ...]
    handler: Callable[[models.Model], bool]

    @property
    def model(self) -> type[models.Model]:
        from django.apps import apps

        return apps.get_model(self.label)

    def expired(self, now: datetime) -> models.QuerySet:
        return self.model._default_manager.filter(status__in=self.running, lease_expires_at__lt=now)


_kinds: dict[str, LeasedKind] = {}


def register(label: str, *, running: tuple[str, ...], handler: Callable) -> None:
    """Called from `AppConfig.ready()`: rows of `label` in `running` states hold leases."""
    _kinds[label] = LeasedKind(label=label, running=tuple(running), handler=handler)


def kinds() -> list[LeasedKind]:
    return list(_kinds.values())
