"""What waits for the person looking ("Needs you"), on the dashboard and in the sidebar."""

from datetime import timedelta

from django.utils import timezone

from alerts.incidents import acknowledge, raise_incident
from deployments import rollbacks
from deployments.models import Deployment, Environment
from tests.conftest import login


def panel(client, user) -> str:
    page = login(client, user).get("/admin/").content.decode()
    return page.split('id="panel-needs"')[1].split("</section>")[0]


def filed_rollback(alice):
    env = Environment.objects.create(name="production", provider="command",
                                     provider_config={"rollback": ["true"]})  # fmt: skip
    then = timezone.now() - timedelta(hours=3)
    Deployment.objects.create(environment=env, external_id="a", version="v1", status="succeeded",
                              received_at=then, live_at=then)  # fmt: skip
    live = Deployment.objects.create(environment=env, external_id="b", version="v2",
                                     status="succeeded")  # fmt: skip
    return rollbacks.request_rollback(env, alice, reason="errors", from_deployment=live)


def test_the_approver_sees_the_request_first_with_approve_and_reject(client, alice, bob, carol):
    request = filed_rollback(alice)
    mine = panel(client, bob)
    assert "Approve rollback request" in mine and str(request) in mine
    assert f'href="/admin/deployments/rollbackrequest/{request.pk}/approve/"' in mine
    assert f'href="/admin/deployments/rollbackrequest/{request.pk}/reject/"' in mine
    page = client.get("/admin/").content.decode()
    assert page.index('id="panel-needs"') < page.index('id="panel-incidents"'), "first"
    assert 'class="needs-count" title="1 waiting for you">1<' in page, "counted in the sidebar"
    # The requester may not approve it, and a viewer decides nothing: neither is asked.
    assert str(request) not in panel(client, alice)
    assert "Nothing is waiting for you" in panel(client, carol)
    assert "needs-count" not in client.get("/admin/").content.decode()
    # Decided: it leaves bob's panel.
    request.approve(bob, confirmation="production")
    assert str(request) not in panel(client, bob)


def test_an_approver_is_not_asked_to_approve_their_own_request(client, bob):
    request = filed_rollback(bob)
    assert str(request) not in panel(client, bob)


def test_unacknowledged_incidents_then_the_ones_you_hold(client, alice, bob, carol):
    incident = raise_incident("test", "db-down", "Database down", "critical")
    for person in (alice, bob):
        mine = panel(client, person)
        assert "Acknowledge incident" in mine and "Database down" in mine
        assert f'action="/admin/alerts/incident/{incident.pk}/acknowledge/"' in mine
    assert "Database down" not in panel(client, carol), "a viewer cannot acknowledge"
    acknowledge(incident, alice)
    assert "Your incident, still open" in panel(client, alice)
    assert "acknowledge/" not in panel(client, alice)
    assert "Database down" not in panel(client, bob), "alice has it"


def test_a_runbook_you_started_and_did_not_finish(client, alice, bob):
    from dr.models import Runbook, RunbookExecution, RunbookStep

    runbook = Runbook.objects.create(scenario="Restore the shop")
    RunbookStep.objects.create(runbook=runbook, position=1, text="Stop writes")
    execution = RunbookExecution.objects.create(runbook=runbook, started_by=alice)
    assert "Finish your runbook" in panel(client, alice) and "Restore the shop" in panel(
        client, alice
    )
    assert "Restore the shop" not in panel(client, bob)
    execution.check_off(runbook.steps.get(), alice)
    assert "Restore the shop" not in panel(client, alice)
