"""Deployments in the admin: request as an operator, approve as someone else after typing the name."""

from datetime import timedelta

from django.utils import timezone

from deployments.models import Deployment, Environment, RollbackRequest
from tests.conftest import login


def setup_env(db):
    env = Environment.objects.create(name="production", provider="command",
                                     provider_config={"rollback": ["true"]})  # fmt: skip
    old = Deployment.objects.create(environment=env, external_id="a", version="v1", status="succeeded",
                                    received_at=timezone.now() - timedelta(hours=3),
                                    live_at=timezone.now() - timedelta(hours=3))  # fmt: skip
    new = Deployment.objects.create(
        environment=env, external_id="b", version="v2", status="watching"
    )
    return env, old, new


def test_alice_requests_from_the_deployment_list_and_has_no_approve_button(client, alice, db):
    _, old, new = setup_env(db)
    login(client, alice)
    response = client.post(
        "/admin/deployments/deployment/",
        {"action": "request_rollback", "_selected_action": [new.pk]},
    )
    assert response.status_code == 302
    request = RollbackRequest.objects.get()
    assert (request.requested_by, request.target_deployment) == (alice, old)
    page = client.get(f"/admin/deployments/rollbackrequest/{request.pk}/change/").content.decode()
    assert "Approve…" not in page
    assert (
        client.post(
            f"/admin/deployments/rollbackrequest/{request.pk}/approve/",
            {"confirmation": "production"},
        ).status_code
        == 403
    )


def test_bob_approves_after_typing_the_environment_name(
    client, alice, bob, db, django_capture_on_commit_callbacks
):
    env, _, new = setup_env(db)
    from deployments import rollbacks

    request = rollbacks.request_rollback(env, alice, reason="errors", from_deployment=new)
    login(client, bob)
    assert (
        "Approve…"
        in client.get(f"/admin/deployments/rollbackrequest/{request.pk}/change/").content.decode()
    )
    wrong = client.post(
        f"/admin/deployments/rollbackrequest/{request.pk}/approve/", {"confirmation": "staging"}
    )
    assert wrong.status_code == 200 and "exactly to confirm" in wrong.content.decode()
    with django_capture_on_commit_callbacks(execute=False) as queued:
        client.post(
            f"/admin/deployments/rollbackrequest/{request.pk}/approve/",
            {"confirmation": "production"},
        )
    request.refresh_from_db()
    assert request.status == "approved" and request.decided_by == bob and queued


def test_the_deployment_page_shows_its_timeline(client, carol, db):
    *_, new = setup_env(db)
    new.record_check("ci", "tests", True)
    new.record_check("post_deploy", "http://x/health", False, "expected [200]")
    page = (
        login(client, carol).get(f"/admin/deployments/deployment/{new.pk}/change/").content.decode()
    )
    assert "Timeline of checks" in page and "expected [200]" in page
    assert "no samples yet" in page
    assert (
        "request_rollback"
        not in login(client, carol).get("/admin/deployments/deployment/").content.decode()
    )


def test_the_watch_is_drawn_as_svg_without_any_script(client, carol, db):
    from deployments.models import HealthSample

    *_, new = setup_env(db)
    for rate in (0.0, 1.5, 9.0):
        HealthSample.objects.create(
            deployment=new,
            error_rate=rate,
            avg_ms=120,
            p95_ms=200,
            availability=100,
            passed=rate < 5,
        )
    page = (
        login(client, carol).get(f"/admin/deployments/deployment/{new.pk}/change/").content.decode()
    )
    chart = page.split('<svg class="sparkline"')[1].split("</svg>")[0]
    assert "<polyline points=" in chart and 'class="limit"' in chart and "last 9, max 9" in chart


def test_every_setting_of_an_environment_can_be_set_in_the_browser(admin_client, db):
    from deployments.admin import EnvironmentAdmin

    shown = {f for _, options in EnvironmentAdmin.fieldsets for f in options["fields"]}
    editable = {
        f.name
        for f in Environment._meta.get_fields()
        if getattr(f, "editable", False) and not f.auto_created and f.concrete
    }
    assert editable - shown == set()
    page = admin_client.get("/admin/deployments/environment/add/").content.decode()
    for name in ("error_rate_metric", "backup_target", "backup_max_age_hours",
                 "backup_before_deploy", "gradual_steps", "gradual_step_seconds"):  # fmt: skip
        assert f'name="{name}"' in page, name
