"""What django-q2 runs for alerts. Thin: the work lives in the models and modules."""

from __future__ import annotations

from opsconsole.tasks import console_task


@console_task
def evaluate_rules() -> int:
    from alerts.evaluation import evaluate_all

    return evaluate_all()


@console_task
def collect_sources() -> int:
    from django.utils import timezone

    from alerts.models import MetricSource

    now = timezone.now()
    pulled = 0
    for source in MetricSource.objects.filter(enabled=True):
        if source.is_due(now):
            pulled += source.collect(now)
    return pulled


@console_task
def escalate() -> int:
    from alerts.incidents import escalate_due

    return escalate_due()


@console_task
def dispatch_notifications() -> int:
    from alerts.notify import dispatch_due

    return dispatch_due()


@console_task
def deliver_notification(notification_id: int) -> str | None:
    from alerts.notify import deliver

    return deliver(notification_id)


@console_task
def prune() -> int:
    from alerts.models import InboxMessage, MetricSample
    from opsconsole.models import WebhookReceipt

    return MetricSample.prune() + WebhookReceipt.prune() + InboxMessage.prune()
