"""Backup facts as metric samples, so alert rules can watch them (the live RPO first)."""

from __future__ import annotations

from django.utils import timezone

from alerts.models import MetricSample
from backups.models import DatabaseTarget


def record_metrics(target_id: int) -> None:
    """Samples for alert rules: live RPO (age of the newest good backup), last size and duration."""
    target = DatabaseTarget.objects.get(pk=target_id)
    now = timezone.now()
    labels = {"target": target.name}
    newest = target.newest_good_backup()
    samples = []
    if newest is not None:
        samples += [
            ("backups.newest_good_age_seconds", (now - newest.created_at).total_seconds()),
            ("backups.last_size_bytes", float(newest.bytes_stored)),
            ("backups.last_duration_seconds", float(newest.duration_seconds or 0)),
        ]
    for key, value in samples:
        MetricSample.objects.create(key=key, value=value, labels=labels, observed_at=now)
