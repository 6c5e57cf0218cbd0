from __future__ import annotations

from opsconsole.tasks import console_task


@console_task
def run_checks() -> int:
    from dr.health import run_due

    return run_due()


@console_task
def prune_results() -> int:
    from dr.models import CheckResult

    return CheckResult.prune()


@console_task
def check_objectives() -> int:
    from dr.drills import check_objectives

    return check_objectives()


@console_task
def monthly_drills() -> int:
    from dr.drills import drill_all

    return drill_all()


@console_task
def drill_target(target_id: int) -> str:
    from backups.models import DatabaseTarget
    from dr.drills import run_drill

    return run_drill(DatabaseTarget.objects.get(pk=target_id)).status
