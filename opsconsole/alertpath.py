"""The alert path: health checks, rule evaluation, escalation, delivery, the deploy watch,
the heartbeat and the reconciler, each on its own loop in their own process.

Nothing here waits behind long work. Backups, verifies, drills, restores,
rollbacks and failovers run on django-q2 workers (`manage.py qcluster`); the
alert path runs in `manage.py alertpath` (started by `serve`), one thread per
loop, with one-second resolution instead of django-q2's 30-second scheduler.

A loop's next tick is due `every` seconds after its last one started. A tick
that runs long makes the next one late, and that one runs once, at once: late
ticks merge, they never queue up as copies. Each loop records its newest tick
(`LoopTick`), which the readiness check, `/metrics` and the dead-man's switch
read; the row is written at most every TICK_RECORD_EVERY seconds per loop (and
at once when an error starts or ends) so a one-second loop is not a write a
second.

Apps register their loops from `AppConfig.ready()`, as they do schedules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from django.db import close_old_connections, connections
from django.utils import timezone
from django.utils.module_loading import import_string

from opsconsole import sentry, tracing

log = logging.getLogger("opsconsole.alertpath")

TICK_RECORD_EVERY = 5.0


@dataclass(frozen=True)
class Loop:
    name: str
    func: str  # dotted path to a function taking no arguments
    every: float  # seconds between tick starts


_registry: dict[str, Loop] = {}
_wake: dict[str, threading.Event] = {}
_troubles: dict[str, Callable[[], list[str]]] = {}
# When each loop's current tick began (None between ticks): the watchdog's view.
busy_since: dict[str, float | None] = {}


def register(name: str, func: str, *, every: float) -> None:
    _registry[name] = Loop(name=name, func=func, every=every)


def registered() -> list[Loop]:
    return list(_registry.values())


def register_trouble(name: str, finder: Callable[[], list[str]]) -> None:
    """An app's own sign that alerting is not on time (a check hanging past its timeout):
    each line it returns keeps the dead-man's switch from saying "ok"."""
    _troubles[name] = finder


def hung_loops(now: float | None = None) -> list[str]:
    """Loops of this process whose current tick has run far longer than it may."""
    now = now or time.monotonic()
    return [
        name
        for name, began in list(busy_since.items())
        if began is not None and now - began > max(120.0, 20 * _registry[name].every)
        if name in _registry
    ]


def wake(name: str) -> None:
    """Run loop `name` now rather than at its next tick (when it runs in this process)."""
    event = _wake.get(name)
    if event is not None:
        event.set()


def wake_after_commit(name: str) -> None:
    """Wake `name` once the current transaction commits (it must find the rows)."""
    from django.db import transaction

    transaction.on_commit(lambda: wake(name))


class _Recorder:
    """Writes a loop's LoopTick row, throttled."""

    def __init__(self, loop: Loop):
        self.loop = loop
        self.written_at = 0.0
        self.last_error = ""
        self.worst_lag = 0.0

    def record(self, started, duration: float, lag: float, error: str) -> None:
        from opsconsole.models import LoopTick

        self.worst_lag = max(self.worst_lag, lag)
        due = time.monotonic() - self.written_at >= TICK_RECORD_EVERY
        if not due and error == self.last_error:
            return
        try:
            LoopTick.objects.update_or_create(
                name=self.loop.name,
                defaults={
                    "every_seconds": self.loop.every,
                    "started_at": started,
                    "finished_at": timezone.now(),
                    "duration_ms": round(duration * 1000, 1),
                    "lag_ms": round(self.worst_lag * 1000, 1),
                    "error": error[:2000],
                },
            )
        except Exception:
            log.exception("could not record the tick of %s", self.loop.name)
            return
        self.written_at, self.last_error, self.worst_lag = time.monotonic(), error, 0.0


def run_loop(loop: Loop, stop: threading.Event, func: Callable[[], object] | None = None) -> None:
    """Tick `loop` until `stop` is set. Late ticks merge; an error is logged, reported and
    recorded, and the loop goes on."""
    func = func or import_string(loop.func)
    wake_event = _wake.setdefault(loop.name, threading.Event())
    recorder = _Recorder(loop)
    next_at = time.monotonic()
    try:
        while not stop.is_set():
            pause = next_at - time.monotonic()
            if pause > 0 and wake_event.wait(pause):
                wake_event.clear()
                if stop.is_set():
                    break
            began = time.monotonic()
            busy_since[loop.name] = began
            lag = max(0.0, began - next_at)
            started = timezone.now()
            error = ""
            close_old_connections()
            try:
                with tracing.tick(loop.name) as done:
                    done(func())
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.exception("alert path loop %s failed", loop.name)
                sentry.capture_exception(loop=loop.name)
            busy_since[loop.name] = None
            recorder.record(started, time.monotonic() - began, lag, error)
            # Due `every` after this tick began; when that has passed, at once (one tick).
            next_at = max(began + loop.every, time.monotonic())
    finally:
        connections.close_all()


def halt(stop: threading.Event) -> None:
    """Stop every loop now, not at the end of its current pause."""
    stop.set()
    for event in list(_wake.values()):
        event.set()


def run(stop: threading.Event, loops: list[Loop] | None = None) -> list[threading.Thread]:
    """Start a thread per loop; they stop when `stop` is set."""
    threads = []
    for loop in loops or registered():
        thread = threading.Thread(
            target=run_loop, args=(loop, stop), name=f"loop-{loop.name}", daemon=True
        )
        thread.start()
        threads.append(thread)
    return threads


def beat() -> None:
    """The alert path's heartbeat loop: this process is alive and its loops are ticking."""
    from opsconsole.models import WorkerHeartbeat

    WorkerHeartbeat.beat(role=WorkerHeartbeat.Role.ALERTS)


def overdue_loops(now=None, margin: timedelta = timedelta(seconds=10)) -> list[str]:
    """The loops whose newest tick is later than their cadence allows, and why."""
    from opsconsole.models import LoopTick

    now = now or timezone.now()
    ticks = {t.name: t for t in LoopTick.objects.all()}
    late = []
    for loop in registered():
        tick = ticks.get(loop.name)
        if tick is None:
            late.append(f"{loop.name}: never ran")
        elif tick.overdue(now) > margin + timedelta(seconds=TICK_RECORD_EVERY):
            late.append(
                f"{loop.name}: last tick {int((now - tick.finished_at).total_seconds())} s ago"
            )
        elif tick.error:
            late.append(f"{loop.name}: {tick.error[:200]}")
    return late


def alert_path_trouble(now=None) -> list[str]:
    """Everything that keeps the alert path from being on time: a loop late or failing,
    django-q2's scheduler not beating (so no backup or drill starts), the database."""
    from django.conf import settings
    from django.db import DatabaseError

    from opsconsole.models import WorkerHeartbeat

    try:
        trouble = overdue_loops(now)
        jobs = WorkerHeartbeat.age(WorkerHeartbeat.Role.JOBS)
        late = scheduler_lag(now)
        for finder in _troubles.values():
            trouble.extend(finder())
    except DatabaseError as exc:
        return [f"database: {type(exc).__name__}"]
    if jobs is None or jobs.total_seconds() > settings.WORKER_HEARTBEAT_MAX_AGE:
        seconds = "never" if jobs is None else f"{int(jobs.total_seconds())} s ago"
        trouble.append(f"jobs worker: last heartbeat {seconds}")
    if late > SCHEDULER_MAX_LAG:
        trouble.append(f"jobs scheduler: the heartbeat schedule is {int(late)} s overdue")
    return trouble


# django-q2's scheduler fires every ~30 s: a schedule this far past due means it stopped.
SCHEDULER_MAX_LAG = 120.0


def scheduler_lag(now=None) -> float:
    """Seconds the jobs scheduler is behind, read from django-q2's own Schedule table (the
    scheduler moves `next_run` on when it fires, busy workers or not)."""
    from django_q.models import Schedule

    next_run = (
        Schedule.objects.filter(name="opsconsole.heartbeat")
        .values_list("next_run", flat=True)
        .first()
    )
    if next_run is None:
        return 0.0
    return max(0.0, ((now or timezone.now()) - next_run).total_seconds())


def ping_dead_mans_switch() -> str:
    """The dead-man's switch loop: GET the heartbeat URL when the whole alert path ran on
    time, `<url>/fail` (with what is wrong) when a tick noticed trouble. If the console
    stalls, the pings stop and the external service pages."""
    from django.conf import settings

    from opsconsole import http

    url = settings.OPSCONSOLE_HEARTBEAT_URL
    if not url:
        return "off"
    trouble = alert_path_trouble()
    if trouble:
        http.request(
            "POST", url.rstrip("/") + "/fail", content="\n".join(trouble), secrets=[url],
            timeout=10,
        )  # fmt: skip
        return "fail"
    http.request("GET", url, secrets=[url], timeout=10)
    return "ok"
