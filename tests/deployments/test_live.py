"""What is live stays true after rollbacks: on the dashboard, the list and each deployment."""

import re
import sys
from datetime import timedelta

import pytest
from django.utils import timezone

from deployments import rollbacks
from deployments.models import Deployment, Environment
from deployments.tasks import observe_live_versions
from tests.conftest import login


@pytest.fixture
def production(db, httpserver, tmp_path):
    """A provider whose rollback writes the version it made live, and whose status reads it
    back (so the provider can say what is live); the service answers its health check."""
    httpserver.expect_request("/health").respond_with_data("ok")
    live = tmp_path / "live"
    write = "import pathlib, sys; pathlib.Path(sys.argv[1]).write_text(sys.argv[2])"
    env = Environment.objects.create(
        name="production", provider="command", base_url=httpserver.url_for("/"),
        provider_config={"rollback": [sys.executable, "-c", write, str(live), "{version}"],
                         "status": ["cat", str(live)]},
        stable_minutes=0, probe_requests=1, endpoints=[],
    )  # fmt: skip
    now = timezone.now()
    for i, version in enumerate(("v1.0", "v1.1", "v1.2-faulty")):
        at = now - timedelta(hours=3 - i)
        Deployment.objects.create(environment=env, external_id=f"d{i}", version=version,
                                  status="succeeded", received_at=at, live_at=at)  # fmt: skip
    live.write_text("v1.2-faulty")
    return env


def deployment(version: str) -> Deployment:
    return Deployment.objects.get(version=version)


def run_rollback(env, user, bob, target: str | None = None):
    request = rollbacks.request_rollback(
        env, user, reason="errors", target=deployment(target) if target else None
    )
    if request.status == "requested":
        request.approve(bob, confirmation=env.name)
    request = type(request).objects.get(pk=request.pk).execute()
    assert request.status == "succeeded", request.error
    return request


def test_after_an_automatic_then_a_manual_rollback_everything_says_v1_0(
    client, production, alice, bob, carol
):
    first = rollbacks.request_rollback(
        production, None, reason="breach", target=deployment("v1.1"), automatic=True
    )
    assert type(first).objects.get(pk=first.pk).execute().status == "succeeded"
    # The manual one starts from what is live (v1.1), not from the newest record (v1.2).
    second = run_rollback(production, alice, bob)
    assert (second.from_deployment.version, second.target_deployment.version) == ("v1.1", "v1.0")

    v10, v11, v12 = deployment("v1.0"), deployment("v1.1"), deployment("v1.2-faulty")
    assert (v11.status, v12.status) == ("rolled_back", "rolled_back")
    assert v11.ended_at is not None and v12.ended_at is not None, "both stopped serving"
    assert v10.ended_at is None, "it serves again"
    assert v10.situation(production.live_deployment()).startswith("live again since")
    assert v11.situation(v10) == "rolled back to v1.0"
    assert v12.situation(v10) == "rolled back to v1.1"

    state = production.live_state()
    assert (state.version, state.source, state.since) == ("v1.0", "records", second.finished_at)
    observe_live_versions()
    production.refresh_from_db()
    assert production.observed_version == "v1.0"
    assert production.live_state().source == "provider"

    panel = login(client, carol).get("/admin/dashboard/panels/").content.decode()
    panel = panel.split('id="panel-deployments"')[1].split("</section>")[0]
    row = panel.split("production")[1]
    assert "v1.0" in row and "Active" in row and "v1.2" not in row
    assert "no open incidents" in row
    listing = client.get("/admin/deployments/deployment/").content.decode()
    assert "live again since" in listing and "rolled back to v1.0" in listing

    # The request's own page tells its life, verification check by check.
    page = client.get(f"/admin/deployments/rollbackrequest/{second.pk}/change/").content.decode()
    assert "Was live</th><td>v1.1" in page and "Live now" not in page, "said as it was"
    timeline = page.split('id="timeline"')[1].split("</section>")[0]
    steps = re.findall(r"<strong>([^<]+)</strong>", timeline)
    assert steps[:3] == ["Requested", "Approved", "Started"] and steps[-1] == "Succeeded"
    assert "Checked" in steps and "by alice" in timeline and "by bob" in timeline
    assert "live version: passed (live: v1.0)" in timeline
    assert re.search(r"/health: passed, \d+ ms", timeline), "each probe with its time"


def test_the_provider_is_believed_and_a_disagreement_shown(client, production, carol):
    Environment.objects.filter(pk=production.pk).update(
        observed_version="v0.9-hotfix", observed_at=timezone.now()
    )
    production.refresh_from_db()
    state = production.live_state()
    assert (state.version, state.deployment, state.records_say) == (
        "v0.9-hotfix", None, "v1.2-faulty",
    )  # fmt: skip
    panel = login(client, carol).get("/admin/dashboard/panels/").content.decode()
    assert "the records say v1.2-faulty" in panel
    # An old answer no longer counts: the records speak again.
    Environment.objects.filter(pk=production.pk).update(
        observed_at=timezone.now() - timedelta(minutes=10)
    )
    production.refresh_from_db()
    assert production.live_state().version == "v1.2-faulty"


def test_pending_work_and_open_incidents_show_on_the_row(client, production, alice, carol):
    from alerts.incidents import raise_incident

    rollbacks.request_rollback(production, alice, reason="errors")
    raise_incident("test", "api-5xx", "API errors", "high", component="production")
    panel = login(client, carol).get("/admin/dashboard/panels/").content.decode()
    row = panel.split('id="panel-deployments"')[1].split("</section>")[0]
    assert "rollback production to v1.1" in row and "1 open incident" in row
    assert "API errors" in row


def test_a_deploy_that_never_went_live_is_never_called_live(production, alice, bob):
    Deployment.objects.create(environment=production, external_id="d9", version="v2-broken",
                              status="failed")  # failed before it served  # fmt: skip
    Deployment.objects.create(environment=production, external_id="d10", version="v2-next",
                              status="preflight")  # only just arrived  # fmt: skip
    assert production.live_deployment().version == "v1.2-faulty"


def test_a_deploy_that_went_live_after_a_rollback_is_live(production, alice, bob):
    rollback = run_rollback(production, alice, bob, target="v1.1")
    during = Deployment.objects.create(
        environment=production, external_id="d11", version="v1.3", status="watching",
        received_at=rollback.started_at, live_at=rollback.finished_at + timedelta(seconds=5),
    )  # fmt: skip
    assert production.live_deployment() == during


def test_one_provider_failing_does_not_stop_the_others_being_asked(production, monkeypatch):
    broken = Environment.objects.create(name="broken", provider="command",
                                        provider_config={"rollback": ["true"]})  # fmt: skip
    asked = Environment.observe

    def observe(env):
        if env.pk == broken.pk:
            raise OSError("the provider's tool is gone")
        return asked(env)

    monkeypatch.setattr(Environment, "observe", observe)
    results = observe_live_versions()
    assert results == {"broken": "failed: OSError", "production": "v1.2-faulty"}
