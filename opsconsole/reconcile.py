"""The one reconciler: work stranded by a dead worker is picked up within two minutes.

It runs as a loop of the alert path (every RECONCILE_EVERY seconds), so a
jobs worker busy or dead does not stop it. Each pass:

1. Expired leases. A running record whose worker stopped renewing its lease
   is taken over (compare-and-swap on the lease, so a worker that renews at
   that moment keeps it) and goes to its kind's handler
   (`opsconsole.leases.register`): failed with an incident naming what to
   check, or put back in a safe state first (a gradual rollback's traffic
   split).
2. Stranded work. A record waiting for a worker (a queued backup, an approved
   request) whose task is no longer waiting in the broker, and that no worker
   claimed within GRACE, had its task taken by a cluster that died: the task is
   made runnable again (`opsconsole.broker.redrive`), at most once per
   REDRIVE_EVERY for the same task. A task run twice does nothing the second
   time: each claims its record first. Work that waited over TOO_OLD is failed
   instead, saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from opsconsole import broker, leases

log = logging.getLogger("opsconsole.reconcile")

RECONCILE_EVERY = 10.0
# How long a record may wait unclaimed with its task nowhere in the broker before
# that counts as lost: a cluster takes a task and its worker claims the record in
# well under this, unless the cluster is busy; then the copy re-driven meanwhile
# just waits in the queue and does nothing when its turn comes.
GRACE = timedelta(seconds=45)
REDRIVE_EVERY = timedelta(minutes=2)
# Work that waited this long is not started behind anyone's back (an automatic rollback
# approved an hour ago may no longer be wanted): it is failed, saying so, instead.
TOO_OLD = timedelta(hours=1)


@dataclass(frozen=True)
class Waiting:
    """A record waiting for its task: since when, the task, and what to call it in logs."""

    since: datetime
    func: str
    args: tuple
    what: str
    give_up: Callable[[str], object] | None = None


_sources: dict[str, Callable[[], Iterable[Waiting]]] = {}
_redriven: dict[tuple[str, tuple], datetime] = {}


def register_waiting(name: str, source: Callable[[], Iterable[Waiting]]) -> None:
    """Called from `AppConfig.ready()`: `source()` lists records waiting for a worker."""
    _sources[name] = source


def reconcile(now: datetime | None = None) -> dict[str, int]:
    now = now or timezone.now()
    done = {"expired": 0, "redriven": 0, "given_up": 0}
    for kind in leases.kinds():
        for record in kind.expired(now):
            if not kind.take_over(record, now):
                continue  # renewed meanwhile: its worker is alive after all
            try:
                changed = kind.handler(record)
            except Exception:
                log.exception(
                    "could not settle %s %s after its lease ran out", kind.label, record.pk
                )
                continue
            if changed:
                done["expired"] += 1
                log.warning("%s %s: its worker stopped; settled", kind.label, record.pk)
    stranded = [w for source in _sources.values() for w in source() if w.since < now - GRACE]
    if stranded:
        in_broker = broker.waiting()
        for item in stranded:
            key = (item.func, tuple(item.args))
            if key in in_broker or _redriven.get(key, now - REDRIVE_EVERY) > now - REDRIVE_EVERY:
                continue
            if item.since < now - TOO_OLD and item.give_up is not None:
                item.give_up(
                    "it waited over an hour for a worker whose task was lost (a worker died); "
                    "not started this late: request it again if it is still wanted"
                )
                done["given_up"] += 1
                continue
            how = broker.redrive(item.func, item.args)
            _redriven[key] = now
            done["redriven"] += 1
            log.warning("%s was waiting for a task no cluster holds: %s", item.what, how)
    for key, at in list(_redriven.items()):
        if at < now - REDRIVE_EVERY:
            del _redriven[key]
    return done
