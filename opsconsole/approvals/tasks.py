"""What django-q2 runs for every approval kind: the execution, and the one reaper."""

from __future__ import annotations

import logging

from django.apps import apps

from opsconsole.approvals.models import ApprovalRequest
from opsconsole.tasks import console_task

log = logging.getLogger("opsconsole.approvals")


def approval_models() -> list[type[ApprovalRequest]]:
    """Every concrete kind of request, from every installed app."""
    return [m for m in apps.get_models() if issubclass(m, ApprovalRequest)]


@console_task
def execute(label: str, pk: int) -> str:
    """Run one approved request (`label` is the model's "app.Model")."""
    model = apps.get_model(label)
    return model._default_manager.get(pk=pk).execute().status


@console_task
def reap_interrupted() -> int:
    """Fail every request whose worker died mid-run, with what to check by hand.

    Never re-run: half a gradual rollback may be serving, half a replace may
    have renamed databases.
    """
    reaped = 0
    for model in approval_models():
        for request in model.interrupted():
            reaped += request.fail(request.interruption_message())
    return reaped
