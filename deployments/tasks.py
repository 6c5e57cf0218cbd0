"""What django-q2 runs for deployments. Thin: the loop holds the work."""

from __future__ import annotations

from opsconsole.tasks import console_task


@console_task
def process_deployment(deployment_id: int) -> str:
    from deployments import loop
    from deployments.models import Deployment

    deployment = Deployment.objects.get(pk=deployment_id)
    loop.process(deployment)
    deployment.refresh_from_db()
    return deployment.status


@console_task
def watch() -> int:
    from deployments import loop

    return loop.watch_tick()
