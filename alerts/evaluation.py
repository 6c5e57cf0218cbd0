"""Evaluating alert rules: aggregate in the database, keep state per label set,
raise and resolve through the door. Also the preview and its 7-day backtest."""

from __future__ import annotations

import bisect
import json
import logging
import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    Aggregate,
    Avg,
    Count,
    Exists,
    FloatField,
    Max,
    Min,
    OuterRef,
    Sum,
    TextField,
)
from django.db.models.functions import Cast
from django.utils import timezone

from alerts.incidents import raise_incident, resolve_incident
from alerts.models import AlertRule, MetricSample, RuleState

log = logging.getLogger("opsconsole.alerts.rules")

State = RuleState.State
BACKTEST_DAYS = 7
BACKTEST_STEP_SECONDS = 60


class Percentile95(Aggregate):
    """PostgreSQL's ordered-set aggregate; other databases compute it in Python."""

    function = "PERCENTILE_CONT"
    template = "%(function)s(0.95) WITHIN GROUP (ORDER BY %(expressions)s)"
    output_field = FloatField()


DB_AGGREGATES = {"avg": Avg, "min": Min, "max": Max, "sum": Sum, "count": Count}


def aggregate_values(aggregation: str, values: list[float]) -> float | None:
    """The same aggregations in Python, for the backtest and where the database has none."""
    if not values:
        return None
    if aggregation == "last":
        return values[-1]
    if aggregation == "avg":
        return sum(values) / len(values)
    if aggregation == "min":
        return min(values)
    if aggregation == "max":
        return max(values)
    if aggregation == "sum":
        return float(sum(values))
    if aggregation == "count":
        return float(len(values))
    if aggregation == "p95":
        ordered = sorted(values)
        # Linear interpolation between closest ranks, as PERCENTILE_CONT does.
        rank = 0.95 * (len(ordered) - 1)
        low, high = math.floor(rank), math.ceil(rank)
        return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)
    raise ValueError(f"unknown aggregation {aggregation!r}")


def _samples(rule: AlertRule, since: datetime, until: datetime):
    matchers = {f"labels__{k}": str(v) for k, v in (rule.label_matchers or {}).items()}
    return MetricSample.objects.filter(
        key=rule.metric_key, observed_at__gt=since, observed_at__lte=until, **matchers
    )


def current_values(rule: AlertRule, now: datetime) -> dict[str, tuple[dict[str, Any], float]]:
    """labels_key -> (labels, aggregated value) over the rule's window ending now."""
    since = now - timedelta(seconds=rule.lookback_seconds)
    samples = _samples(rule, since, now)
    if rule.aggregation == "last":
        newer = MetricSample.objects.filter(
            key=OuterRef("key"),
            labels_key=OuterRef("labels_key"),
            observed_at__gt=OuterRef("observed_at"),
            observed_at__lte=now,
        )
        rows = samples.filter(~Exists(newer)).values_list("labels_key", "labels", "value")
        return {lk: (labels, value) for lk, labels, value in rows}
    if rule.aggregation == "p95" and connection.vendor != "postgresql":
        grouped: dict[str, list[float]] = defaultdict(list)
        labels_of: dict[str, dict] = {}
        for lk, labels, value in samples.values_list("labels_key", "labels", "value"):
            grouped[lk].append(value)
            labels_of.setdefault(lk, labels)
        return {lk: (labels_of[lk], aggregate_values("p95", vs)) for lk, vs in grouped.items()}
    func = Percentile95 if rule.aggregation == "p95" else DB_AGGREGATES[rule.aggregation]
    # Every sample of a series carries the same labels: any one of them, as JSON
    # text, comes back in the same query.
    rows = (
        samples.values("labels_key")
        .annotate(v=func("value"), labels_json=Max(Cast("labels", output_field=TextField())))
        .values_list("labels_key", "v", "labels_json")
    )
    return {lk: (json.loads(labels), float(v)) for lk, v, labels in rows if v is not None}


class _Writes:
    """State rows to write at the end of a tick: one statement each, not one per series."""

    def __init__(self):
        self.create: list[RuleState] = []
        self.update: list[RuleState] = []
        self.forget: list[int] = []

    def add(self, other: _Writes) -> None:
        self.create += other.create
        self.update += other.update
        self.forget += other.forget

    def flush(self) -> None:
        RuleState.objects.bulk_create(self.create, batch_size=1000)
        RuleState.objects.bulk_update(self.update, STATE_FIELDS, batch_size=1000)
        RuleState.objects.filter(pk__in=self.forget).delete()


STATE_FIELDS = [
    "state",
    "active_since",
    "firing_since",
    "last_true_at",
    "last_value",
    "last_evaluated_at",
]


def evaluate_all(now: datetime | None = None) -> int:
    """One scheduler tick: every enabled rule, in one transaction.

    The rules are locked for the tick, so a second evaluator (another worker, a
    re-delivered task) waits and then sees the states this one wrote. Each rule
    runs in a savepoint: one broken rule is logged and skipped, not fatal.
    """
    now = now or timezone.now()
    with transaction.atomic():
        rules = list(AlertRule.objects.select_for_update().filter(enabled=True).order_by("pk"))
        states: dict[int, dict[str, RuleState]] = defaultdict(dict)
        for state in RuleState.objects.filter(rule__in=rules):
            states[state.rule_id][state.labels_key] = state
        writes = _Writes()
        for rule in rules:
            try:
                with transaction.atomic():
                    rule_writes, _ = _evaluate(rule, states[rule.pk], now)
                writes.add(rule_writes)
            except Exception:
                log.exception("evaluating rule %s failed", rule.name)
        writes.flush()
    return len(rules)


def evaluate_rule(rule: AlertRule, now: datetime | None = None) -> list[tuple[str, str, str]]:
    """One tick for one rule; returns the transitions (labels_key, from, to)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = AlertRule.objects.select_for_update().filter(pk=rule.pk, enabled=True).first()
        if locked is None:
            return []
        states = {s.labels_key: s for s in locked.states.all()}
        writes, transitions = _evaluate(locked, states, now)
        writes.flush()
    return transitions


def _evaluate(
    rule: AlertRule, states: dict[str, RuleState], now: datetime
) -> tuple[_Writes, list[tuple[str, str, str]]]:
    current = current_values(rule, now)
    keys = set(current) | set(states)
    if not keys and rule.no_data == AlertRule.NoData.ALERTING:
        keys = {""}
    writes, transitions = _Writes(), []
    for lk in sorted(keys):
        state = states.get(lk) or RuleState(
            rule=rule, labels_key=lk, labels=current.get(lk, ({}, 0))[0]
        )
        before = state.state
        if lk in current:
            value = current[lk][1]
            condition = rule.breaches(value)
        elif rule.no_data == AlertRule.NoData.KEEP:
            if state.pk:
                state.last_evaluated_at = now
                writes.update.append(state)
            continue
        else:
            value = None
            condition = rule.no_data == AlertRule.NoData.ALERTING
        _step(rule, state, condition, value, now)
        if state.state == State.INACTIVE and lk not in current and state.pk:
            writes.forget.append(state.pk)  # a series that went away and is quiet
        elif state.pk:
            writes.update.append(state)
        else:
            writes.create.append(state)
        if state.state != before:
            transitions.append((lk, before, state.state))
    return writes, transitions


def _step(
    rule: AlertRule, state: RuleState, condition: bool, value: float | None, now: datetime
) -> None:
    state.last_value = value
    state.last_evaluated_at = now
    if condition:
        state.last_true_at = now
        if state.state == State.INACTIVE:
            state.state, state.active_since = State.PENDING, now
        if state.state == State.PENDING and now - state.active_since >= timedelta(
            seconds=rule.for_seconds
        ):
            state.state, state.firing_since = State.FIRING, now
            _raise(rule, state, value)
        return
    if state.state == State.PENDING:
        state.state, state.active_since = State.INACTIVE, None
    elif state.state == State.FIRING:
        held = state.last_true_at and now - state.last_true_at < timedelta(
            seconds=rule.keep_firing_seconds
        )
        if not held:
            state.state, state.active_since, state.firing_since = State.INACTIVE, None, None
            resolve_incident(
                rule.fingerprint(state.labels_key), reason="condition cleared", now=now
            )


def _raise(rule: AlertRule, state: RuleState, value: float | None) -> None:
    raise_incident(
        source="rule",
        fingerprint=rule.fingerprint(state.labels_key),
        title=rule.render_message(value, state.labels),
        priority=rule.priority,
        component=rule.component or rule.category,
        details={
            "rule": rule.name,
            "rule_id": rule.pk,
            "value": value,
            "threshold": rule.threshold,
            "labels": state.labels,
            "runbook": rule.runbook_url,
        },
        now=state.last_evaluated_at,
    )


def preview(rule: AlertRule, now: datetime | None = None) -> dict[str, Any]:
    """What an (unsaved) rule evaluates to now, and how often it would have fired in 7 days."""
    now = now or timezone.now()
    series = [
        {"labels": labels, "value": value, "breaching": rule.breaches(value)}
        for _, (labels, value) in sorted(current_values(rule, now).items())
    ]
    return {"now": series, "backtest": backtest(rule, now)}


def backtest(rule: AlertRule, now: datetime, days: int = BACKTEST_DAYS) -> dict[str, Any]:
    """Replay the rule every minute over the stored samples of the last `days` days."""
    start = now - timedelta(days=days)
    lookback = timedelta(seconds=rule.lookback_seconds)
    by_series: dict[str, tuple[list[float], list[float]]] = defaultdict(lambda: ([], []))
    rows = (
        _samples(rule, start - lookback, now)
        .order_by("observed_at")
        .values_list("labels_key", "observed_at", "value")
    )
    for lk, at, value in rows.iterator(chunk_size=5000):
        times, values = by_series[lk]
        times.append(at.timestamp())
        values.append(value)
    firings = 0
    step = BACKTEST_STEP_SECONDS
    for times, values in by_series.values():
        state, since, last_true = State.INACTIVE, None, None
        t = start.timestamp()
        while t <= now.timestamp():
            lo = bisect.bisect_right(times, t - lookback.total_seconds())
            hi = bisect.bisect_right(times, t)
            value = aggregate_values(rule.aggregation, values[lo:hi])
            if value is None and rule.no_data == AlertRule.NoData.KEEP:
                t += step
                continue
            condition = rule.breaches(value) if value is not None else rule.no_data == "alerting"
            if condition:
                last_true = t
                if state == State.INACTIVE:
                    state, since = State.PENDING, t
                if state == State.PENDING and t - since >= rule.for_seconds:
                    state = State.FIRING
                    firings += 1
            elif state == State.PENDING or (
                state == State.FIRING
                and (last_true is None or t - last_true >= rule.keep_firing_seconds)
            ):
                state = State.INACTIVE
            t += step
    return {"firings": firings, "days": days, "step_seconds": step, "series": len(by_series)}
