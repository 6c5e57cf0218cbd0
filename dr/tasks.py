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
