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


def test_the_public_status_page_is_off_by_default(client, db):
    assert client.get("/status").status_code == 404


def test_the_public_status_page_shows_names_states_and_titles_only(client, db, settings, channels):
    settings.DR_STATUS_PAGE_ENABLED = True
    ServiceCheck.objects.create(
        name="Public API", kind="tcp", config={"host": "10.1.2.3", "port": 443}, state="unhealthy"
    )
    ServiceCheck.objects.create(
        name="internal db", kind="tcp", config={"host": "10.9.9.9", "port": 5432},
        state="healthy", public=False,
    )  # fmt: skip
    # A check's incident title carries its last error: hosts, ports, role names.
    leaky = raise_incident("health", "check:1",
                           "Public API is unhealthy: connection to 10.1.2.3:443 refused for role app_rw",
                           "critical", "Public API")  # fmt: skip
    raise_incident("backups", "backup:1", "Backup of prod failed", "high", "backups")
    response = client.get("/status")  # no login
    body = response.content.decode()
    assert response.status_code == 200
    assert "Public API" in body and "Unhealthy" in body and "Some systems have problems" in body
    assert "refused" not in body and "app_rw" not in body, "an incident's own title is internal"
    assert "Open incidents" not in body, "none is written for the public yet"
    leaky.public_title = "Our API is answering slowly; we are on it."
    leaky.save()
    body = client.get("/status").content.decode()
    assert "Our API is answering slowly; we are on it." in body
    assert "refused" not in body and "app_rw" not in body
    assert "internal db" not in body, "a check kept off the page"
    assert "Backup of prod failed" not in body, "incidents about unlisted parts stay internal"
    assert "10.1.2.3" not in body and "443" not in body, "no configuration on the page"


def test_a_token_needs_the_status_read_scope(client, db):
    from opsconsole.models import ApiToken

    _, metrics_only = ApiToken.issue("m", scopes=["metrics:write"])
    _, reader = ApiToken.issue("r", scopes=["status:read"])
    assert (
        client.get("/api/system/status", HTTP_AUTHORIZATION=f"Bearer {metrics_only}").status_code
        == 403
    )
    assert (
        client.get("/api/system/status", HTTP_AUTHORIZATION=f"Bearer {reader}").status_code == 200
    )
