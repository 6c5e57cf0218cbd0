"""What django-q2 runs for alerts: only housekeeping. Everything on the alert path
(sources, rules, escalation, delivery) runs in `manage.py alertpath`, never behind
long work."""

from __future__ import annotations

from alerts.models import InboxMessage, MetricSample
from opsconsole.models import WebhookReceipt
from opsconsole.tasks import console_task


@console_task
def prune() -> int:
    return MetricSample.prune() + WebhookReceipt.prune() + InboxMessage.prune()
