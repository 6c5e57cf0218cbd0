"""The admin index is a dashboard that apps add panels to."""

import pytest

from opsconsole import dashboard
from opsconsole.models import WorkerHeartbeat
from tests.conftest import login


@pytest.fixture
def extra_panels():
    saved = dict(dashboard._panels)
    yield
    dashboard._panels.clear()
    dashboard._panels.update(saved)


def test_the_dashboard_is_branded_and_shows_the_worker_panel(client, carol):
    WorkerHeartbeat.beat("w1")
    page = login(client, carol).get("/admin/").content.decode()
    assert "<title>Dashboard | opsconsole</title>" in page
    assert 'id="panel-worker"' in page
    assert "Queued tasks" in page


def test_a_broken_panel_does_not_take_the_page_down(client, carol, extra_panels):
    def broken(request):
        raise RuntimeError("panel bug")

    dashboard.register(dashboard.Panel("broken", "Broken", "opsconsole/panels/worker.html", broken))
    response = login(client, carol).get("/admin/")
    assert response.status_code == 200
    assert "This panel could not be loaded" in response.content.decode()
    assert 'id="panel-worker"' in response.content.decode()


def test_panels_are_shown_only_to_users_with_their_permission(client, carol, extra_panels):
    dashboard.register(
        dashboard.Panel(
            "secret-panel", "Approvals", "opsconsole/panels/worker.html",
            lambda r: {"alive": True}, permission="opsconsole.approve_restore",
        )
    )  # fmt: skip
    page = login(client, carol).get("/admin/").content.decode()
    assert 'id="panel-secret-panel"' not in page


def test_incidents_panel_lists_open_incidents_with_acknowledge_in_place(client, alice, carol):
    from alerts.incidents import raise_incident

    incident = raise_incident("test", "x:1", "Queue is stuck", "critical", component="worker")
    page = login(client, alice).get("/admin/").content.decode()
    assert 'id="panel-incidents"' in page and "Queue is stuck" in page
    assert f"/admin/alerts/incident/{incident.pk}/acknowledge/" in page
    response = client.post(
        f"/admin/alerts/incident/{incident.pk}/acknowledge/", {"next": "/admin/"}
    )
    assert response["Location"] == "/admin/"
    incident.refresh_from_db()
    assert incident.status == "acknowledged"
    viewer_page = login(client, carol).get("/admin/").content.decode()
    assert f"/admin/alerts/incident/{incident.pk}/acknowledge/" not in viewer_page
