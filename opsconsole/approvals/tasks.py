"""What django-q2 runs for every approval kind: the execution of an approved request."""

from __future__ import annotations

from django.apps import apps

from opsconsole.approvals.models import EXECUTE_TASK, ApprovalRequest, ApprovalStatus
from opsconsole.tasks import console_task


def approval_models() -> list[type[ApprovalRequest]]:
    """Every concrete kind of request, from every installed app."""
    return [m for m in apps.get_models() if issubclass(m, ApprovalRequest)]


@console_task
def execute(label: str, pk: int) -> str:
    """Run one approved request (`label` is the model's "app.Model")."""
    model = apps.get_model(label)
    return model._default_manager.get(pk=pk).execute().status


def approved_waiting() -> list[tuple[ApprovalRequest, str, tuple]]:
    """Approved requests no worker has claimed yet, with the task that should run each:
    what the reconciler re-drives when that task is no longer in the broker."""
    waiting = []
    for model in approval_models():
        for request in model._default_manager.filter(status=ApprovalStatus.APPROVED):
            waiting.append((request, EXECUTE_TASK, (model._meta.label, request.pk)))
    return waiting
