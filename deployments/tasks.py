"""What django-q2 runs for deployments. Thin: intake and the watch hold the work.

(Rollbacks run through the approval frame's one task, `opsconsole.approvals.tasks`.)
"""

from __future__ import annotations

from deployments import intake
from deployments.models import Deployment
from opsconsole.tasks import console_task


@console_task
def process_deployment(deployment_id: int) -> str:
    deployment = Deployment.objects.get(pk=deployment_id)
    intake.process(deployment)
    deployment.refresh_from_db()
    return deployment.status
