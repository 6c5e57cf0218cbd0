"""What django-q2 runs for alerts. Thin: the work lives in the models and modules."""

from __future__ import annotations

from django.utils import timezone

from alerts.evaluation import evaluate_all
from alerts.incidents import escalate_due
from alerts.models import InboxMessage, MetricSample, MetricSource
from alerts.notify import deliver, dispatch_due
from opsconsole.models import WebhookReceipt
from opsconsole.tasks import console_task


@console_task
def evaluate_rules() -> int:
    return evaluate_all()


@console_task
def collect_sources() -> int:
    now = timezone.now()
    pulled = 0
    for source in MetricSource.objects.filter(enabled=True):
        if source.is_due(now):
            pulled += source.collect(now)
    return pulled


@console_task
def escalate() -> int:
    return escalate_due()


@console_task
def dispatch_notifications() -> int:
    return dispatch_due()


@console_task
def deliver_notification(notification_id: int) -> str | None:
    return deliver(notification_id)


@console_task
def prune() -> int:
    return MetricSample.prune() + WebhookReceipt.prune() + InboxMessage.prune()
