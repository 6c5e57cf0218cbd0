"""What the django-q2 broker holds, on either broker: the reconciler's view of the queue.

The ORM broker keeps a task as an OrmQ row until it is acknowledged; a row a
cluster has taken is locked until now + `retry` (over an hour), so a task taken
by a cluster that then died sits invisible for that long. The Redis broker
removes a task from its list when a cluster takes it (BLPOP, no
acknowledgement), so a task taken by a cluster that died is simply gone.
Either way the task is only safe while it is *waiting*: in the broker and not
yet taken. A record whose task is not waiting, and that no worker claimed, is
re-driven: the ORM row is unlocked, or the task is queued again. Taking it
twice is harmless, because every task claims its record first and does
nothing when someone else did.
"""

from __future__ import annotations

import logging
from typing import Any

from django.utils import timezone
from django_q.brokers import get_broker
from django_q.conf import Conf
from django_q.models import OrmQ
from django_q.signing import BadSignature, SignedPackage

log = logging.getLogger("opsconsole.broker")

TaskKey = tuple[str, tuple]


def _key(task: dict[str, Any]) -> TaskKey:
    func = task.get("func")
    name = func if isinstance(func, str) else f"{func.__module__}.{func.__qualname__}"
    return name, tuple(task.get("args") or ())


def _decoded(payloads) -> list[dict[str, Any]]:
    tasks = []
    for payload in payloads:
        try:
            tasks.append(SignedPackage.loads(payload))
        except (BadSignature, TypeError, ValueError):
            continue  # not ours to judge; django-q2 fails it when it is taken
    return tasks


def is_orm() -> bool:
    return bool(Conf.ORM)


def waiting() -> set[TaskKey]:
    """(function, args) of every task waiting in the broker, not yet taken by a cluster."""
    broker = get_broker()
    if is_orm():
        rows = OrmQ.objects.filter(key=broker.list_key, lock__lte=timezone.now())
        return {_key(t) for t in _decoded(rows.values_list("payload", flat=True))}
    return {_key(t) for t in _decoded(broker.connection.lrange(broker.list_key, 0, -1))}


def depth() -> int:
    """How many tasks wait in the broker."""
    return get_broker().queue_size() or 0


def redrive(func: str, args: tuple) -> str:
    """Make the task for (func, args) runnable again; returns what was done."""
    from opsconsole.tasks import enqueue

    if is_orm():
        broker = get_broker()
        for row in OrmQ.objects.filter(key=broker.list_key, lock__gt=timezone.now()):
            task = _decoded([row.payload])
            if task and _key(task[0]) == (func, tuple(args)):
                # The cluster that took it is gone: let any cluster take it now.
                OrmQ.objects.filter(pk=row.pk).update(lock=timezone.now())
                return "unlocked"
    enqueue(func, *args)
    return "queued again"
