"""The incident page: status and actions first, a timeline in relative time, what is related
(linked both ways), and the details in words."""

import re
from datetime import timedelta

from django.utils import timezone

from alerts.incidents import acknowledge, raise_incident
from deployments.models import Deployment, Environment
from tests.conftest import login


def staging_incident():
    env = Environment.objects.create(name="staging", provider="command",
                                     provider_config={"rollback": ["true"]})  # fmt: skip
    then = timezone.now() - timedelta(hours=2)
    deployment = Deployment.objects.create(environment=env, external_id="s1", version="v1.3",
                                           status="succeeded", received_at=then, live_at=then)  # fmt: skip
    incident = raise_incident(
        "deployments", "deploy:staging", "Error rate 9 % on staging", "high", component="staging",
        details={"error_rate": "9 %", "labels": {"env": "staging", "team": "shop"}},
    )  # fmt: skip
    return env, deployment, incident


def test_an_operator_has_every_action_and_the_order_is_status_timeline_related_details(
    client, alice
):
    _, deployment, incident = staging_incident()
    page = login(client, alice).get(f"/admin/alerts/incident/{incident.pk}/change/")
    body = page.content.decode()
    for action in ("Acknowledge</button>", "Resolve</button>", "Silence this…",
                   "Request a rollback…", "Work a runbook for this incident…", "Add note"):  # fmt: skip
        assert action in body, action
    assert f"/admin/deployments/deployment/{deployment.pk}/rollback/" in body
    assert "?component=staging&amp;reason=Error" in body
    order = [body.index(f'id="{part}"') for part in
             ("incident-now", "timeline", "related", "incident-details")]  # fmt: skip
    assert order == sorted(order)
    # Relative times, the exact one (with seconds) on hover; no raw JSON.
    assert re.search(r'<time datetime="[^"]+" title="\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+">', body)
    assert "0\xa0minutes ago" in body or "minute" in body
    assert "Labels</th><td>env=staging, team=shop" in body and '"labels"' not in body
    assert "Error rate</th><td>9 %" in body


def test_related_records_link_both_ways(client, carol):
    env, deployment, incident = staging_incident()
    body = (
        login(client, carol).get(f"/admin/alerts/incident/{incident.pk}/change/").content.decode()
    )
    assert f'href="/admin/deployments/environment/{env.pk}/change/"' in body
    assert f'href="/admin/deployments/deployment/{deployment.pk}/change/"' in body
    back = client.get(f"/admin/deployments/deployment/{deployment.pk}/change/").content.decode()
    assert f'href="/admin/alerts/incident/{incident.pk}/change/"' in back


def test_a_viewer_sees_it_all_and_can_do_nothing(client, carol):
    _, _, incident = staging_incident()
    body = (
        login(client, carol).get(f"/admin/alerts/incident/{incident.pk}/change/").content.decode()
    )
    for action in ("Acknowledge</button>", "Resolve</button>", "Silence this…",
                   "Request a rollback…", "Add note"):  # fmt: skip
        assert action not in body, action
    assert "Error rate 9 % on staging" in body


def test_acknowledged_says_by_whom_and_when(client, alice, carol):
    _, _, incident = staging_incident()
    acknowledge(incident, alice)
    body = (
        login(client, carol).get(f"/admin/alerts/incident/{incident.pk}/change/").content.decode()
    )
    now = body.split('id="incident-now"')[1].split("</section>")[0]
    assert "Acknowledged" in now and "by alice" in now
    timeline = body.split('id="timeline"')[1].split("</section>")[0]
    assert "acknowledged by alice" in timeline
