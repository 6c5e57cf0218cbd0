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
    # Nothing is filed from the list: the confirmation page names the target first.
    assert response.status_code == 302
    assert response["Location"] == f"/admin/deployments/deployment/{new.pk}/rollback/"
    assert not RollbackRequest.objects.exists()
    page = client.get(response["Location"]).content.decode()
    assert "Back to" in page and "v1" in page and "Live now" in page and "v2" in page
    assert "ran 3\xa0hours" in page, "the target's record"
    assert "Request rollback to v1" in page
    refused = client.post(response["Location"], {"target": old.pk, "reason": ""})
    assert "Say why" in refused.content.decode() and not RollbackRequest.objects.exists()
    filed = client.post(response["Location"], {"target": old.pk, "reason": "checkout errors"})
    request = RollbackRequest.objects.get()
    assert filed["Location"] == f"/admin/deployments/rollbackrequest/{request.pk}/change/"
    assert (request.requested_by, request.target_deployment, request.reason) == (
        alice, old, "checkout errors",
    )  # fmt: skip
    page = client.get(filed["Location"]).content.decode()
    assert "Approve…" not in page and "What is being decided" in page
    assert (
        client.post(
            f"/admin/deployments/rollbackrequest/{request.pk}/approve/",
            {"confirmation": "production"},
        ).status_code
        == 403
    )


def test_ticking_an_older_version_rolls_back_to_it_and_viewers_cannot(client, alice, carol, db):
    env, old, _ = setup_env(db)
    older = Deployment.objects.create(environment=env, external_id="0", version="v0",
                                      status="succeeded",
                                      received_at=timezone.now() - timedelta(days=2))  # fmt: skip
    login(client, alice)
    page = client.get(f"/admin/deployments/deployment/{older.pk}/rollback/").content.decode()
    assert "Request rollback to v0" in page
    assert f'href="?target={old.pk}"' in page, "the other version is offered too"
    client.post(f"/admin/deployments/deployment/{older.pk}/rollback/",
                {"target": older.pk, "reason": "v1 has the same bug"})  # fmt: skip
    assert RollbackRequest.objects.get().target_deployment == older
    login(client, carol)
    assert client.get(f"/admin/deployments/deployment/{old.pk}/rollback/").status_code == 403
    assert client.post(f"/admin/deployments/deployment/{old.pk}/rollback/",
                       {"target": old.pk, "reason": "x"}).status_code == 403  # fmt: skip
    assert RollbackRequest.objects.count() == 1


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
    timeline = page.split('id="timeline"')[1].split("</section>")[0]
    assert "<strong>CI</strong>" in timeline and "tests: passed" in timeline
    assert "http://x/health: failed (expected [200])" in timeline
    assert page.index('id="timeline"') < page.index("error rate (%)"), "the story before the charts"
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


def test_a_failed_version_is_not_offered_as_a_target(client, alice, db):
    env, old, _ = setup_env(db)
    broken = Deployment.objects.create(environment=env, external_id="x", version="v1.5-broken",
                                       status="failed",
                                       received_at=timezone.now() - timedelta(hours=2))  # fmt: skip
    page = login(client, alice).get(f"/admin/deployments/deployment/{broken.pk}/rollback/")
    body = page.content.decode()
    assert "v1.5-broken is failed: not a version to go back to" in body
    assert "Request rollback to" not in body and f'href="?target={old.pk}"' in body
    client.post(f"/admin/deployments/deployment/{broken.pk}/rollback/",
                {"target": broken.pk, "reason": "x"})  # fmt: skip
    assert not RollbackRequest.objects.exists()
