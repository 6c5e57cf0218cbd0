"""Metric samples as they are pushed: what a valid one looks like, parsed into a record.

The push API refuses a whole batch when any sample is bad and names each
problem by index; `parse_sample` is where those problems are found.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from alerts.models import LABEL_NAME, MetricSample, MetricSource, canonical_labels

MAX_LABELS = 10
MAX_FUTURE = timedelta(minutes=5)
SAMPLE_FIELDS = {"key", "value", "labels", "observed_at"}
METRIC_KEY_MAX = 200


def parse_sample(entry: Any, now: datetime) -> tuple[list[str], MetricSample | None]:
    """One pushed sample: every problem with it in words, or an unsaved MetricSample."""
    if not isinstance(entry, dict):
        return ["a sample must be a JSON object"], None
    errors = []
    unknown = sorted(set(entry) - SAMPLE_FIELDS)
    if unknown:
        errors.append(f"unknown field(s): {', '.join(unknown)}")
    key = entry.get("key")
    if not isinstance(key, str) or not key.strip():
        errors.append("missing key")
    elif len(key) > METRIC_KEY_MAX:
        errors.append(f"key longer than {METRIC_KEY_MAX} characters")
    value = entry.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.append("value must be a number")
    elif not math.isfinite(value):
        errors.append("value must be finite (no NaN or infinity)")
    labels = entry.get("labels", {})
    if not isinstance(labels, dict):
        errors.append("labels must be an object")
        labels = {}
    else:
        if len(labels) > MAX_LABELS:
            errors.append(f"too many labels: {len(labels)}, at most {MAX_LABELS}")
        for name, label_value in labels.items():
            if not LABEL_NAME.match(name):
                errors.append(f"label name {name!r} is not a valid identifier")
            if not isinstance(label_value, str | int) or isinstance(label_value, bool):
                errors.append(f"label {name!r} must be a string")
            elif len(str(label_value)) > 200:
                errors.append(f"label {name!r} is longer than 200 characters")
    observed = now
    if "observed_at" in entry:
        raw = entry["observed_at"]
        if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
            observed = datetime.fromtimestamp(raw, tz=UTC)
        elif isinstance(raw, str) and (parsed := parse_datetime(raw)) is not None:
            observed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
        else:
            errors.append("observed_at must be ISO 8601 or Unix seconds")
        if observed - now > MAX_FUTURE:
            errors.append("observed_at is more than 5 minutes in the future")
    if errors:
        return errors, None
    labels = {k: str(v) for k, v in labels.items()}
    return [], MetricSample(
        key=key.strip(),
        labels=labels,
        labels_key=canonical_labels(labels),
        value=float(value),
        observed_at=observed,
    )


def collect_due() -> int:
    """The alert path's sources loop: pull every enabled source that is due."""
    now = timezone.now()
    pulled = 0
    for source in MetricSource.objects.filter(enabled=True):
        if source.is_due(now):
            pulled += source.collect(now)
    return pulled
