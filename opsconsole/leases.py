"""Leases: how a long-running record says "a live worker is on this".

A worker that claims a backup, restore, rollback, failover run, drill or a
notification's send sets `lease_expires_at` a lease ahead and renews it from a
thread while the work runs. A worker that dies (SIGKILL, an out-of-memory kill,
a lost machine) stops renewing; the reconciler (`opsconsole.reconcile`) finds
the expired lease on the alert path's cadence, takes the record over, and
hands it to its kind's handler, which fails it with what to check, or puts
things back in a safe state first.

Renewal and take-over are compare-and-swap on the lease's own value: a worker
renews only the lease it wrote last, and the reconciler takes over only the
expired lease it read. So when a worker that was merely cut off from the
database (not dead) comes back after the reconciler took over, its renewal
fails, the lease is *lost*, and the work stops at its next `check()` instead
of carrying on beside whatever the reconciler did (a gradual rollback does not
set another traffic share, a restore does not swap databases). Every final
status update is conditional on the record still running, too.

A renewal also beats the jobs heartbeat (as does a thread in every worker
process, `opsconsole.tasks.worker_started`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connections, models
from django.utils import timezone

log = logging.getLogger("opsconsole.leases")

# How long the reconciler holds a record it took over while its handler runs.
TAKEN_OVER = timedelta(minutes=10)


class LeaseLost(Exception):
    """Someone else (the reconciler) took this record over: stop working on it."""


def duration() -> timedelta:
    return timedelta(seconds=settings.OPSCONSOLE_LEASE_SECONDS)


def expiry(now: datetime | None = None) -> datetime:
    """When a lease taken or renewed now runs out."""
    return (now or timezone.now()) + duration()


class Lease:
    def __init__(self, record: models.Model):
        self.model, self.pk = type(record), record.pk
        self.value = record.lease_expires_at
        self.lost = threading.Event()
        self.stop = threading.Event()
        self.lock = threading.Lock()  # the value and the row change together

    def _mine(self):
        return self.model._default_manager.filter(pk=self.pk, lease_expires_at=self.value)

    def renew(self) -> None:
        with self.lock:
            new = expiry()
            if self._mine().update(lease_expires_at=new):
                self.value = new
                return
        self.lost.set()
        log.warning("the lease of %s %s was taken over", self.model.__name__, self.pk)

    def check(self) -> None:
        """Raise LeaseLost unless the row still holds this lease (asked of the database:
        a take-over a moment ago counts)."""
        if not self.lost.is_set():
            with self.lock:
                if not self._mine().exists():
                    self.lost.set()
        if self.lost.is_set():
            raise LeaseLost(f"{self.model.__name__} {self.pk} was taken over by the reconciler")


_current: contextvars.ContextVar[Lease | None] = contextvars.ContextVar("lease", default=None)


def check() -> None:
    """Before a step that must not run twice or after a take-over (a traffic share, a
    database swap): raise LeaseLost when the lease held in this context was lost."""
    lease = _current.get()
    if lease is not None:
        lease.check()


@contextlib.contextmanager
def held(record: models.Model, *, beat_jobs: bool = True) -> Iterator[Lease]:
    """Renew `record`'s lease every quarter lease while the body runs."""
    from opsconsole.models import WorkerHeartbeat

    lease = Lease(record)

    def renew() -> None:
        try:
            while not lease.stop.wait(duration().total_seconds() / 4) and not lease.lost.is_set():
                try:
                    lease.renew()
                    if beat_jobs:
                        WorkerHeartbeat.beat(role=WorkerHeartbeat.Role.JOBS)
                except Exception:
                    # The next renewal may get through (the lease outlasts three misses);
                    # a connection the database dropped is replaced, not reused.
                    log.warning(
                        "could not renew the lease of %s %s", lease.model.__name__, lease.pk
                    )
                    close_old_connections()
        finally:
            connections.close_all()  # this thread's own connections only

    name = f"lease-{lease.model.__name__}-{lease.pk}"
    thread = threading.Thread(target=renew, name=name, daemon=True)
    token = _current.set(lease)
    thread.start()
    try:
        yield lease
    finally:
        _current.reset(token)
        lease.stop.set()
        thread.join(timeout=10)


@dataclass(frozen=True)
class LeasedKind:
    """A model whose running rows hold leases: its running states, the field that says
    since when it runs (for rows from before leases existed), and what to do with a row
    whose lease ran out (`handler(record) -> bool`, True when it changed something)."""

    label: str
    running: tuple[str, ...]
    handler: Callable[[models.Model], bool]
    since: str = "started_at"

    @property
    def model(self) -> type[models.Model]:
        from django.apps import apps

        return apps.get_model(self.label)

    def expired(self, now: datetime) -> models.QuerySet:
        legacy = models.Q(lease_expires_at__isnull=True, **{f"{self.since}__lt": now - duration()})
        return self.model._default_manager.filter(
            models.Q(lease_expires_at__lt=now) | legacy, status__in=self.running
        )

    def take_over(self, record: models.Model, now: datetime) -> bool:
        """Claim an expired record for the reconciler; False when its worker renewed the
        lease meanwhile (or another reconciler got there first)."""
        return bool(
            self.model._default_manager.filter(
                pk=record.pk, status__in=self.running, lease_expires_at=record.lease_expires_at
            ).update(lease_expires_at=now + TAKEN_OVER)
        )


_kinds: dict[str, LeasedKind] = {}


def register(
    label: str, *, running: tuple[str, ...], handler: Callable, since: str = "started_at"
) -> None:
    """Called from `AppConfig.ready()`: rows of `label` in `running` states hold leases."""
    _kinds[label] = LeasedKind(label=label, running=tuple(running), handler=handler, since=since)


def kinds() -> list[LeasedKind]:
    return list(_kinds.values())
