"""A real Alertmanager routes its alerts into the console's incidents over HTTP."""

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from alerts.models import Channel, Incident
from opsconsole.models import ApiToken
from tests.helpers import wait_for
from tests.peers import alertmanager


@pytest.mark.django_db(transaction=True)
def test_alertmanager_opens_and_resolves_an_incident(live_server):
    Channel.objects.update(enabled=False)
    _, token = ApiToken.issue("alertmanager", scopes=["alerts:write"])
    with alertmanager(f"{live_server.url}/webhooks/alertmanager", token) as am:
        alert = {
            "labels": {"alertname": "DiskFull", "severity": "warning", "service": "db"},
            "annotations": {"summary": "disk 95% full"},
            "startsAt": datetime.now(UTC).isoformat(),
        }
        assert httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=5).status_code == 200
        incident = wait_for(lambda: Incident.objects.filter(source="alertmanager").first(), 30)
        assert incident, "Alertmanager never delivered the firing alert"
        assert (incident.title, incident.priority, incident.component) == (
            "DiskFull: disk 95% full",
            "medium",
            "db",
        )

        ended = {**alert, "endsAt": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}
        assert httpx.post(f"{am}/api/v2/alerts", json=[ended], timeout=5).status_code == 200
        resolved = wait_for(
            lambda: Incident.objects.filter(pk=incident.pk, status="resolved").exists(), 30
        )
        assert resolved, "Alertmanager never delivered the resolution"


@pytest.mark.django_db(transaction=True)
def test_alertmanager_with_a_wrong_token_opens_nothing(live_server):
    with alertmanager(f"{live_server.url}/webhooks/alertmanager", "oc_not_a_token") as am:
        alert = {"labels": {"alertname": "X"}, "startsAt": datetime.now(UTC).isoformat()}
        httpx.post(f"{am}/api/v2/alerts", json=[alert], timeout=5)
        # Wait until Alertmanager says it tried and was refused, then look.
        assert wait_for(lambda: failed_webhook_sends(am) > 0, 30), "Alertmanager never tried"
        assert not Incident.objects.exists()


def failed_webhook_sends(am: str) -> float:
    metrics = httpx.get(f"{am}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("alertmanager_notifications_failed_total")
        and 'integration="webhook"' in line
    )
