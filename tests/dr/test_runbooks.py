"""Runbooks ship with procedures for each kind of failure; an execution records who did what, when."""

import pytest
from django.core.exceptions import PermissionDenied

from alerts.incidents import raise_incident
from dr.models import Runbook
from tests.helpers import run_queued


def test_the_shipped_procedures_are_there(db):
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


def test_an_automated_step_runs_its_action_and_shows_the_result(db, alice, bob, channels, tmp_path):
    import sys

    from dr.models import FailoverAction

    marker = tmp_path / "bypassed"
    bypass = FailoverAction.objects.create(
        name="bypass the cache", kind="command", automatic=True,
        config={"argv": [sys.executable, "-c", f"open({str(marker)!r}, 'w').write('x')"]},
    )  # fmt: skip
    guarded = FailoverAction.objects.create(
        name="read-only mode", kind="command",
        config={"argv": [sys.executable, "-c", "print('read-only on')"]},
    )  # fmt: skip
    runbook = Runbook.objects.get(scenario="Cache failure")
    first, second = list(runbook.steps.all())[:2]
    first.action, second.action = bypass, guarded
    first.save(), second.save()
    incident = raise_incident("test", "cache:down", "Cache down", "critical")
    execution = runbook.start(alice, incident=incident)

    record = execution.check_off(first, alice, notes="cache is gone")
    assert record.run.status == "approved", "automatic: approved and queued at once"
    assert incident.events.filter(message__contains="bypass the cache: approved").exists()
    run_queued()
    record.run.refresh_from_db()
    assert record.run.status == "succeeded" and marker.exists()

    record = execution.check_off(second, alice)
    assert record.run.status == "requested", "not automatic: waits for a second person"
    record.run.approve(bob, confirmation="read-only mode")
    run_queued()
    record.run.refresh_from_db()
    assert record.run.status == "succeeded" and "read-only on" in str(record.run.result)


def test_a_failed_action_can_be_run_again_from_its_step(db, alice, channels):
    import sys

    from dr.models import FailoverAction

    flaky = FailoverAction.objects.create(
        name="flip dns", kind="command", automatic=True,
        config={"argv": [sys.executable, "-c", "import sys; sys.exit(3)"]},
    )  # fmt: skip
    runbook = Runbook.objects.get(scenario="API failure")
    step = runbook.steps.first()
    step.action = flaky
    step.save()
    execution = runbook.start(alice)
    failed = execution.check_off(step, alice).run
    run_queued()
    failed.refresh_from_db()
    assert failed.status == "failed"
    assert execution.check_off(step, alice).run.pk != failed.pk, "a new run, the old one kept"
    assert flaky.runs.count() == 2


def test_the_execution_page_lists_steps_and_checks_them_off(db, client, alice, carol, channels):
    from django.urls import reverse

    from tests.conftest import login

    incident = raise_incident(
        "health", "check:1", "API down", "critical", details={"runbook": "API failure"}
    )
    login(client, alice)
    start = reverse("admin:dr_runbookexecution_start")
    incident_page = client.get(reverse("admin:alerts_incident_change", args=[incident.pk]))
    assert f'href="{start}?incident={incident.pk}"' in incident_page.content.decode()
    page = client.get(start, {"incident": incident.pk})
    assert page.status_code == 200
    assert page.context["suggested"].scenario == "API failure", "the check's runbook suggested"
    response = client.post(
        start, {"incident": incident.pk, "runbook": page.context["suggested"].pk}
    )
    execution = incident.runbookexecution_set.get()
    assert response.status_code == 302 and response.url.endswith(f"/{execution.pk}/change/")

    page = client.get(response.url)
    body = page.content.decode()
    assert body.count("Mark done") == 6
    step = execution.runbook.steps.first()
    url = reverse("admin:dr_runbookexecution_step", args=[execution.pk, step.pk])
    client.post(url, {"notes": "restarted the API"})
    assert client.get(response.url).content.decode().count("Mark done") == 5
    assert execution.records.get().notes == "restarted the API"

    login(client, carol)
    assert client.post(url, {"notes": "x"}).status_code == 403
    assert client.get(start).status_code == 403
