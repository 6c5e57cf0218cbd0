"""`GET /metrics`: the console's own health for Prometheus, behind a `metrics:read` token.

Everything is read from the database at scrape time, so any web process
answers for the whole console (the alert path and the workers are other
processes). The console's own part is here: per-loop tick age and lag,
heartbeats by role, queue depths. Apps add theirs from `AppConfig.ready()`
(`register`): open incidents, notification failures, backup age. The shipped
alerting rules for all of it are in docs/prometheus-rules.yml.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric

from opsconsole.api import bearer_token

log = logging.getLogger("opsconsole.metrics")

Part = Callable[[], Iterable[Metric]]
_parts: dict[str, Part] = {}


def register(name: str, part: Part) -> None:
    _parts[name] = part


def gauge(name: str, documentation: str, labels: Iterable[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"opsconsole_{name}", documentation, labels=list(labels))


def console_metrics() -> Iterable[Metric]:
    from opsconsole import alertpath, broker
    from opsconsole.models import LoopTick, WorkerHeartbeat

    now = timezone.now()
    ticks = {t.name: t for t in LoopTick.objects.all()}
    age = gauge(
        "loop_last_tick_age_seconds", "Seconds since the loop last finished a tick.", ["loop"]
    )
    lag = gauge("loop_lag_seconds", "How late the loop's recent ticks started, at worst.", ["loop"])
    every = gauge("loop_interval_seconds", "The loop's cadence.", ["loop"])
    failing = gauge("loop_failing", "1 when the loop's newest tick raised an error.", ["loop"])
    for loop in alertpath.registered():
        tick = ticks.get(loop.name)
        every.add_metric([loop.name], loop.every)
        if tick is None:
            age.add_metric([loop.name], float("inf"))  # never ran: as stale as can be
            continue
        age.add_metric([loop.name], (now - tick.finished_at).total_seconds())
        lag.add_metric([loop.name], tick.lag_ms / 1000)
        failing.add_metric([loop.name], 1 if tick.error else 0)
    yield from (age, lag, every, failing)

    beats = gauge("heartbeat_age_seconds", "Seconds since a process of this role beat.", ["role"])
    for role in WorkerHeartbeat.Role:
        seen = WorkerHeartbeat.age(role)
        if seen is not None:
            beats.add_metric([role.value], seen.total_seconds())
    yield beats

    scheduler = gauge("scheduler_lag_seconds", "How far the jobs scheduler is behind.")
    scheduler.add_metric([], alertpath.scheduler_lag(now))
    yield scheduler

    depth = gauge("queue_depth", "Work waiting to be taken, per queue.", ["queue"])
    try:
        depth.add_metric(["jobs"], broker.depth())
    except Exception:
        # A broker that is down (Redis) must not take the rest of the scrape with it.
        log.warning("could not read the jobs queue's depth")
    for name, count in _depths.items():
        depth.add_metric([name], count())
    yield depth


_depths: dict[str, Callable[[], int]] = {}


def register_queue(name: str, count: Callable[[], int]) -> None:
    """An app's own queue (notifications due, say), reported as queue_depth{queue=name}."""
    _depths[name] = count


class _Collector:
    def collect(self) -> Iterable[Metric]:
        yield from console_metrics()
        for part in _parts.values():
            yield from part()


@never_cache
@require_GET
@bearer_token("metrics:read")
def metrics_view(request):
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
