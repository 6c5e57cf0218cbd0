"""What django-q2 runs for disaster recovery. Thin: health, drills and objectives hold the work."""

from __future__ import annotations

from backups.models import DatabaseTarget
from dr import drills
from dr.models import CheckResult
from opsconsole.tasks import console_task


@console_task
def prune_results() -> int:
    return CheckResult.prune()


@console_task
def check_objectives() -> int:
    return drills.check_objectives()


@console_task
def monthly_drills() -> int:
    return drills.drill_all()


@console_task
def drill_target(target_id: int) -> str:
    return drills.run_drill(DatabaseTarget.objects.get(pk=target_id)).status
