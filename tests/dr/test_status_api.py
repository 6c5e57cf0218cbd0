"""GET /api/system/status: who may read it, and what it says."""

from alerts.incidents import raise_incident
from dr.models import ServiceCheck
from opsconsole.models import WorkerHeartbeat
from tests.conftest import login


def test_anonymous_is_401_with_a_json_reason(client, db):
    response = client.get("/api/system/status")
    assert response.status_code == 401 and "bearer" in response.json()["error"]


def test_a_token_or_a_staff_session_reads_it(client, carol, api_token, channels):
    ServiceCheck.objects.create(
        name="api", kind="tcp", config={"host": "127.0.0.1", "port": 9}, state="unhealthy"
    )
    raise_incident("test", "x:1", "API down", "critical")
    WorkerHeartbeat.beat("w")
    body = client.get("/api/system/status", HTTP_AUTHORIZATION=f"Bearer {api_token}").json()
    assert body["status"] == "degraded"
    assert {c["name"]: c["state"] for c in body["checks"]} == {"api": "unhealthy"}
    assert [i["title"] for i in body["incidents"]] == ["API down"]
    assert body["worker"]["heartbeat_seconds_ago"] <= 1
    assert set(body) == {
        "status",
        "generated_at",
        "checks",
        "backups",
        "deployments",
        "incidents",
        "worker",
    }
    assert login(client, carol).get("/api/system/status").status_code == 200
