"""The disaster-recovery records, one module per subject:

- `health`: service checks, their results, availability reports;
- `objectives`: recovery objectives and drills;
- `runbooks`: runbooks, their steps and executions;
- `failover`: failover actions and their runs (approval requests).
"""

from dr.models.failover import FailoverAction, FailoverRun
from dr.models.health import CheckResult, ServiceCheck, availability_report, month_bounds
from dr.models.objectives import RecoveryDrill, RecoveryObjective
from dr.models.runbooks import Runbook, RunbookExecution, RunbookStep, StepRecord

__all__ = [
    "CheckResult",
    "FailoverAction",
    "FailoverRun",
    "RecoveryDrill",
    "RecoveryObjective",
    "Runbook",
    "RunbookExecution",
    "RunbookStep",
    "ServiceCheck",
    "StepRecord",
    "availability_report",
    "month_bounds",
]
