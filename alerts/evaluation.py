"""Evaluating alert rules: aggregate in the database, keep state per label set,
raise and resolve through the door. Also the preview and its 7-day backtest."""

from __future__ import annotations

import bisect
import logging
import math
from collections import defaultdict
from datetime import datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Aggregate, Avg, Count, Exists, FloatField, Max, Min, OuterRef, Sum
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
    rows = samples.values("labels_key").annotate(v=func("value")).values_list("labels_key", "v")
    values = dict(rows)
    labels = _labels_for(rule, set(values))
    return {lk: (labels.get(lk, {}), float(v)) for lk, v in values.items() if v is not None}


def _labels_for(rule: AlertRule, keys: set[str]) -> dict[str, dict]:
    known = (
        {s.labels_key: s.labels for s in rule.states.filter(labels_key__in=keys)} if rule.pk else {}
    )
    for lk in keys - set(known):
        known[lk] = (
            MetricSample.objects.filter(key=rule.metric_key, labels_key=lk)
            .values_list("labels", flat=True)
            .first()
            or {}
        )
    return known


def evaluate_rule(rule: AlertRule, now: datetime | None = None) -> list[tuple[str, str, str]]:
    """One tick for one rule; returns the transitions (labels_key, from, to)."""
    now = now or timezone.now()
    transitions = []
    with transaction.atomic():
        # One evaluator per rule at a time; a second waits and then sees the new state.
        locked = AlertRule.objects.select_for_update().filter(pk=rule.pk, enabled=True).first()
        if locked is None:
            return transitions
        rule = locked
        states = {s.labels_key: s for s in rule.states.all()}
        current = current_values(rule, now)
        keys = set(current) | set(states)
        if not keys and rule.no_data == AlertRule.NoData.ALERTING:
            keys = {""}
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
                    RuleState.objects.filter(pk=state.pk).update(last_evaluated_at=now)
                continue
            else:
                value = None
                condition = rule.no_data == AlertRule.NoData.ALERTING
            _step(rule, state, condition, value, now)
            if state.state == State.INACTIVE and lk not in current and state.pk:
                state.delete()  # a series that went away and is quiet: forget it
            elif state.state != State.INACTIVE or state.pk or lk in current:
                state.save()
            if state.state != before:
                transitions.append((lk, before, state.state))
    return transitions


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


def evaluate_all(now: datetime | None = None) -> int:
    now = now or timezone.now()
    count = 0
    for rule in AlertRule.objects.filter(enabled=True).order_by("pk"):
        try:
            evaluate_rule(rule, now)
        except Exception:
            # One broken rule must not stop the others from being evaluated.
            log.exception("evaluating rule %s failed", rule.name)
        count += 1
    return count


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
