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


def test_every_panel_is_there_and_refreshes_without_the_page(client, carol):
    page = login(client, carol).get("/admin/").content.decode()
    for key in ("incidents", "health", "objectives", "backups", "deployments", "worker"):
        assert f'id="panel-{key}"' in page, key
    assert 'data-follow-url="/admin/dashboard/panels/"' in page
    assert "/static/opsconsole/follow.js" in page
    import re

    loaded = re.findall(r'<(?:script|link|img)[^>]+(?:src|href)="([^"]+)"', page)
    assert loaded and all(url.startswith("/") for url in loaded), "nothing loaded from elsewhere"
    fragment = client.get("/admin/dashboard/panels/")
    assert fragment.status_code == 200 and "no-store" in fragment["Cache-Control"]
    body = fragment.content.decode()
    assert 'id="panel-worker"' in body and "<html" not in body
    client.logout()
    assert client.get("/admin/dashboard/panels/").status_code == 302, "login still required"


def test_the_health_panel_draws_latency_and_puts_trouble_first(client, carol):
    from django.utils import timezone

    from dr.models import CheckResult, ServiceCheck

    now = timezone.now()
    for name, state in (("a-fine", "healthy"), ("z-broken", "unhealthy")):
        check = ServiceCheck.objects.create(
            name=name, kind="tcp", config={"host": "127.0.0.1", "port": 9}, state=state
        )
        CheckResult.objects.bulk_create(
            CheckResult(service_check=check, at=now, ok=True, latency_ms=10 + i) for i in range(40)
        )
    panel = login(client, carol).get("/admin/dashboard/panels/").content.decode()
    panel = panel.split('id="panel-health"')[1].split("</section>")[0]
    assert panel.index("z-broken") < panel.index("a-fine"), "unhealthy first"
    assert panel.count("<polyline") == 2
    points = panel.split('points="')[1].split('"')[0].split()
    assert len(points) == 30, "the last 30 results"


def test_backups_and_deployments_panels(client, carol, tmp_path):
    from backups.models import Backup, DatabaseTarget, StorageLocation
    from deployments.models import Deployment, Environment

    target = DatabaseTarget.objects.create(name="shop", engine="sqlite", dsn="sqlite:///x.db")
    store = StorageLocation.objects.create(
        name="here", kind="local", config={"path": str(tmp_path)}
    )
    for size in (1000, 2000, 3000):
        Backup.objects.create(target=target, storage=store, status="verified",
                              bytes_stored=size * 1024, duration_seconds=size / 100)  # fmt: skip
    env = Environment.objects.create(name="production", provider="local")
    for i in range(7):
        Deployment.objects.create(environment=env, external_id=f"d{i}", version=f"v1.{i}",
                                  status="succeeded")  # fmt: skip
    body = login(client, carol).get("/admin/dashboard/panels/").content.decode()
    backups = body.split('id="panel-backups"')[1].split("</section>")[0]
    assert "shop" in backups and "2.9\xa0MB" in backups and backups.count("<polyline") == 2
    # One row per environment: the live version, not a history.
    deployments = body.split('id="panel-deployments"')[1].split("</section>")[0]
    assert deployments.count('<th scope="row">') == 1 and "v1.6" in deployments
    assert "Active" in deployments and "v1.5" not in deployments


def test_every_admin_page_carries_the_console_styles(client, carol):
    """State colours (ok / warn / bad) are used on lists and records, not only the dashboard."""
    login(client, carol)
    for url in ("/admin/", "/admin/backups/backup/", "/admin/alerts/incident/"):
        assert "/static/opsconsole/console.css" in client.get(url).content.decode(), url
