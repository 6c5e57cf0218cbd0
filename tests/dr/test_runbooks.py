"""Runbooks ship with the original procedures; an execution records who did what, when."""

import pytest
from django.core.exceptions import PermissionDenied

from alerts.incidents import raise_incident
from dr.models import Runbook


def test_the_original_procedures_ship(db):
    counts = {r.scenario: r.steps.count() for r in Runbook.objects.all()}
    assert counts["API failure"] == counts["Database failure"] == counts["Complete outage"] == 6
    assert "Cache failure" in counts and "Upstream API failure" in counts


def test_an_execution_records_each_step_and_finishes(db, alice, carol, channels):
    incident = raise_incident("test", "db:down", "Database down", "critical")
    runbook = Runbook.objects.get(scenario="Database failure")
    execution = runbook.start(alice, incident=incident)
    steps = list(runbook.steps.all())
    with pytest.raises(PermissionDenied):
        execution.check_off(steps[0], carol)
    for step in steps:
        execution.check_off(step, alice, notes=f"did {step.position}")
    execution.refresh_from_db()
    assert execution.finished_at is not None
    assert [(r.step.position, r.done_by, r.notes) for r in execution.records.all()] == [
        (s.position, alice, f"did {s.position}") for s in steps
    ]
    assert incident.events.filter(
        kind="note", message__startswith="runbook Database failure: step 6"
    ).exists()
