"""The loop with the local provider: real sample services on loopback, real probes."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone

from alerts.models import Incident, Notification
from deployments import intake, rollbacks, watch
from deployments.models import Deployment, RollbackRequest
from opsconsole.reconcile import reconcile
from tests.deployments.conftest import post_webhook
from tests.helpers import run_queued


def deploy(client, env, version, deployment_id, captured):
    """What a pipeline does: put the version live, then tell the console."""
    env.backend.deploy(version)
    with captured(execute=False):
        response = post_webhook(client, {"deployment_id": deployment_id, "environment": env.name,
                                         "version": version, "status": "succeeded", "started_by": "ci"})  # fmt: skip
    assert response.status_code == 201, response.json()
    deployment = Deployment.objects.get(pk=response.json()["deployment"])
    intake.process(deployment)
    deployment.refresh_from_db()
    return deployment


def settle(deployment, env, minutes_ago=120):
    """Make a deployment an old, healthy one (a rollback target must have run an hour)."""
    start = timezone.now() - timedelta(minutes=minutes_ago)
    Deployment.objects.filter(pk=deployment.pk).update(
        status="succeeded",
        received_at=start,
        live_at=start,
        finished_at=start + timedelta(minutes=10),
    )


def test_a_healthy_deploy_is_watched_then_succeeds(
    client, local_env, django_capture_on_commit_callbacks
):
    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    assert v1.status == "watching"
    assert v1.checks.filter(phase="post_deploy", passed=True).count() == 4
    watch.watch_tick()
    sample = v1.samples.get()
    assert sample.passed and sample.error_rate == 0 and sample.availability == 100
    watch.watch_tick(timezone.now() + timedelta(minutes=11))
    v1.refresh_from_db()
    assert v1.status == "succeeded"


def test_a_faulty_deploy_is_rolled_back_automatically(
    client, local_env, django_capture_on_commit_callbacks
):
    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    settle(v1, local_env)
    with django_capture_on_commit_callbacks(execute=False) as queued:
        v2 = deploy(client, local_env, "v2-faulty", "d2", django_capture_on_commit_callbacks)
        if v2.status == "watching":  # verification can pass by luck; the watch will not
            for _ in range(5):
                watch.watch_tick()
                v2.refresh_from_db()
                if v2.status != "watching":
                    break
    v2.refresh_from_db()
    assert v2.status == "failed"
    request = RollbackRequest.objects.get()
    assert (request.status, request.automatic, request.target_deployment) == (
        "approved",
        True,
        Deployment.objects.get(pk=v1.pk),
    )
    assert queued, "the rollback was queued for a worker"
    request = request.execute()
    assert request.status == "succeeded", request.error
    assert local_env.backend.live_version() == "v1"
    v2.refresh_from_db()
    assert v2.status == "rolled_back"
    assert v1.checks.filter(phase="rollback", name="live version", passed=True).exists()
    breach = Incident.objects.get(fingerprint=f"deploy:{local_env.pk}")
    assert breach.priority == "critical" and breach.status == "resolved"
    # A rollback that works is news, not an alarm: announced on the channels, no incident.
    assert not Incident.objects.filter(title__startswith="Rolling back").exists()
    titles = [
        n.payload["title"] for n in Notification.objects.filter(event="announce").order_by("pk")
    ]
    assert titles[-2:] == [f"Rolling back {local_env} to v1", f"{local_env} is back on v1"]


def test_ask_mode_alice_requests_only_bob_approves(
    client, local_env, alice, bob, django_capture_on_commit_callbacks
):
    local_env.rollback_mode = "ask"
    local_env.save()
    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    settle(v1, local_env)
    deploy(client, local_env, "v2", "d2", django_capture_on_commit_callbacks)
    request = rollbacks.request_rollback(local_env, alice, reason="users report errors")
    assert request.status == "requested" and request.requested_by == alice
    with pytest.raises(PermissionDenied):
        request.approve(alice, confirmation="production")
    with pytest.raises(ValidationError, match="Type 'production'"):
        request.approve(bob, confirmation="prod")
    with django_capture_on_commit_callbacks(execute=False) as queued:
        request.approve(bob, confirmation="production")
    assert queued
    assert RollbackRequest.objects.get(pk=request.pk).execute().status == "succeeded"
    assert local_env.backend.live_version() == "v1"


def test_without_a_stable_target_the_rollback_is_refused_with_an_incident(
    client, local_env, alice, django_capture_on_commit_callbacks
):
    deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)  # still young
    with pytest.raises(ValidationError, match="roll back by hand"):
        rollbacks.request_rollback(local_env, alice, reason="x")
    assert (
        Incident.objects.get(fingerprint=f"no-rollback-target:{local_env.pk}").priority
        == "critical"
    )
    assert not RollbackRequest.objects.exists()


def test_a_second_rollback_request_is_refused_naming_the_first(
    client, local_env, alice, bob, django_capture_on_commit_callbacks
):
    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    settle(v1, local_env)
    deploy(client, local_env, "v2", "d2", django_capture_on_commit_callbacks)
    first = rollbacks.request_rollback(local_env, alice, reason="one")
    with pytest.raises(ValidationError, match=f"already requested \\(#{first.pk}, to v1\\)"):
        rollbacks.request_rollback(local_env, bob, reason="two")


def test_carol_may_not_request(local_env, carol):
    with pytest.raises(PermissionDenied):
        rollbacks.request_rollback(local_env, carol, reason="x")


def test_a_rollback_warns_when_it_crosses_an_irreversible_migration(
    client, local_env, alice, django_capture_on_commit_callbacks
):
    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    settle(v1, local_env)
    v2 = deploy(client, local_env, "v2", "d2", django_capture_on_commit_callbacks)
    Deployment.objects.filter(pk=v2.pk).update(
        migrations=[{"name": "0042_drop_legacy", "irreversible": True}]
    )
    request = rollbacks.request_rollback(local_env, alice, reason="x")
    assert "0042_drop_legacy" in request.warnings


def test_the_rollback_api_files_a_request_and_never_bypasses_approval(
    client, local_env, api_token, django_capture_on_commit_callbacks
):
    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    settle(v1, local_env)
    deploy(client, local_env, "v2", "d2", django_capture_on_commit_callbacks)
    response = client.post("/api/rollback", {"environment": "production", "reason": "bad"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_token}")  # fmt: skip
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "requested" and response.json()["target_version"] == "v1"
    again = client.post("/api/rollback", {"environment": "production", "reason": "bad"},
                        content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_token}")  # fmt: skip
    assert again.status_code == 409 and "already requested" in again.json()["error"]
    assert client.post("/api/rollback", {}, content_type="application/json").status_code == 401
    bad = client.post("/api/rollback", {"environment": "production"}, content_type="application/json",
                      HTTP_AUTHORIZATION=f"Bearer {api_token}")  # fmt: skip
    assert bad.status_code == 400 and bad.json()["missing"] == ["reason"]


def test_a_deploy_freeze_fails_preflight(client, local_env, django_capture_on_commit_callbacks):
    from alerts.models import Silence

    Silence.objects.create(freeze_deploys=True, starts_at=timezone.now() - timedelta(minutes=1),
                           ends_at=timezone.now() + timedelta(hours=1), reason="Black Friday")  # fmt: skip
    d = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    check = d.checks.get(phase="preflight", name="no deploy freeze")
    assert not check.passed and "Black Friday" in check.detail


def test_a_clean_watch_announces_the_deploy_on_the_channels(
    client, local_env, django_capture_on_commit_callbacks
):
    from alerts.notify import build_message

    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    Deployment.objects.filter(pk=v1.pk).update(started_by="octocat")
    watch.watch_tick(timezone.now() + timedelta(minutes=11))
    note = Notification.objects.get(event="announce")
    assert note.incident is None
    message = build_message(note)
    assert message.title == "production is on v1: the watch ended clean"
    assert (
        message.details["deployed_by"] == "octocat" and message.details["url"] == local_env.base_url
    )


def test_the_error_rate_metric_can_trigger_the_rollback(
    client, local_env, django_capture_on_commit_callbacks
):
    from alerts.models import MetricSample

    local_env.error_rate_metric = "api.error_rate"
    local_env.error_rate_labels = {"environment": "production"}
    local_env.rollback_mode = "ask"
    local_env.save()
    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    settle(v1, local_env)
    v2 = deploy(client, local_env, "v2", "d2", django_capture_on_commit_callbacks)
    MetricSample.objects.create(key="api.error_rate", value=12.5, labels={"environment": "production"},
                                observed_at=timezone.now())  # fmt: skip
    watch.watch_tick()
    sample = v2.samples.get()
    assert sample.metric_error_rate == 12.5 and not sample.passed
    assert "api.error_rate at 12.5 %" in sample.breach
    assert RollbackRequest.objects.get().status == "requested"


def test_preflight_wants_a_recent_backup_and_can_take_one(
    client, local_env, django_capture_on_commit_callbacks, tmp_path
):
    from backups.models import Backup, DatabaseTarget

    db_target = DatabaseTarget.objects.create(
        name="shorts db", engine="sqlite", dsn=f"sqlite:///{tmp_path}/x.db"
    )
    local_env.backup_target = db_target
    local_env.backup_before_deploy = True
    local_env.save()
    d = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    check = d.checks.get(name="recent backup")
    assert not check.passed and "no good backup of shorts db yet; taking one now" in check.detail
    assert Backup.objects.get(target=db_target).trigger == "pre-deploy"


def test_local_variables_sync_at_once_without_the_two_person_rule(local_env, alice):
    import os

    from deployments.models import EnvironmentVariable

    local_env.two_person_rule = False
    local_env.save()
    EnvironmentVariable.objects.create(environment=local_env, name="READ_ONLY", value="true")
    assert local_env.variable_diff()["missing"] == ["READ_ONLY"]
    sync = local_env.request_variable_sync(alice)
    assert sync.status == "approved", "no second person needed: queued at once"
    run_queued()
    sync.refresh_from_db()
    assert sync.status == "succeeded"
    assert local_env.backend.variables() == {"READ_ONLY": "true"}
    assert oct(os.stat(local_env.backend.varsfile).st_mode & 0o777) == "0o600"
    assert not any(local_env.variable_diff().values())


def rollback_ready(client, local_env, captured, bad_version):
    v1 = deploy(client, local_env, "v1", "d1", captured)
    settle(v1, local_env)
    deploy(client, local_env, bad_version, "d2", captured)
    return v1


def test_a_gradual_rollback_shifts_traffic_in_steps_watching_each(
    client, local_env, alice, bob, django_capture_on_commit_callbacks
):
    local_env.gradual_rollback, local_env.gradual_steps, local_env.gradual_step_seconds = (
        True,
        [10, 50, 100],
        0,
    )
    local_env.full_clean()
    local_env.save()
    v1 = rollback_ready(client, local_env, django_capture_on_commit_callbacks, "v2")
    request = rollbacks.request_rollback(local_env, alice, reason="slow")
    request.approve(bob, confirmation="production")
    request = RollbackRequest.objects.get(pk=request.pk).execute()
    assert request.status == "succeeded", request.error
    steps = list(
        v1.checks.filter(phase="rollback", name__endswith="% of traffic").values_list(
            "name", "passed"
        )
    )
    assert steps == [
        ("10 % of traffic", True),
        ("50 % of traffic", True),
        ("100 % of traffic", True),
    ]
    assert request.provider_response["gradual"] == [10, 50, 100]
    assert local_env.backend.live_version() == "v1"


def test_a_gradual_rollback_backs_out_when_a_step_breaches(
    client, local_env, alice, bob, django_capture_on_commit_callbacks
):
    local_env.gradual_rollback, local_env.gradual_steps, local_env.gradual_step_seconds = (
        True,
        [50, 100],
        0,
    )
    local_env.save()
    v1 = rollback_ready(client, local_env, django_capture_on_commit_callbacks, "v2")
    # The "good" old version turns out broken too: the first step must catch it. Every
    # request it serves fails, and enough probes go out that some surely reach it at 50 %.
    Deployment.objects.filter(pk=v1.pk).update(version="v1-faulty")
    local_env.backend.set_variables({"SAMPLE_ERROR_RATE": "1.0"})
    local_env.probe_requests = 24
    local_env.save()
    request = rollbacks.request_rollback(local_env, alice, reason="x")
    request.approve(bob, confirmation="production")
    request = RollbackRequest.objects.get(pk=request.pk).execute()
    assert request.status == "failed" and "stopped at 50 %" in request.error
    assert local_env.backend.live_version() == "v2", "traffic went back to what was live"


def test_gradual_rollback_is_refused_where_the_provider_has_no_weights(db):
    from deployments.models import Environment

    env = Environment(
        name="k8s",
        provider="command",
        provider_config={"rollback": ["true"]},
        gradual_rollback=True,
    )
    with pytest.raises(ValidationError, match="has no traffic weights"):
        env.full_clean()


def test_a_rollback_whose_worker_died_is_failed_and_frees_the_environment(local_env, alice):
    v1 = Deployment.objects.create(environment=local_env, external_id="d1", version="v1",
                                   status="succeeded")  # fmt: skip
    stuck = RollbackRequest.objects.create(
        environment=local_env, target_deployment=v1, status="executing",
        started_at=timezone.now() - timedelta(minutes=1),
        lease_expires_at=timezone.now() + timedelta(seconds=20),
    )  # fmt: skip
    assert reconcile()["expired"] == 0, "not yet: its worker renewed the lease"
    RollbackRequest.objects.filter(pk=stuck.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile()["expired"] == 1
    stuck.refresh_from_db()
    assert stuck.status == "failed" and "lease ran out" in stuck.error
    incident = Incident.objects.get(fingerprint=f"rollback-failed:{local_env.pk}")
    assert incident.priority == "critical" and "manual intervention" in incident.title
    settle(v1, local_env)
    again = rollbacks.request_rollback(
        local_env, alice, reason="after looking", target_version="v1"
    )
    assert again.status == "requested", "the environment is free for a new rollback"


# --- The watch: each threshold of the rollback policy on its own ----------------------


def watched(env, version, variables=None):
    """`version` of the sample service live and under watch, as after a clean verification."""
    if variables:
        env.backend.set_variables(variables)
    env.backend.deploy(version)
    now = timezone.now()
    return Deployment.objects.create(
        environment=env, external_id=version, version=version, status="watching",
        live_at=now, watch_until=now + timedelta(minutes=10),
    )  # fmt: skip


def policy(env, **limits):
    """Thresholds that cannot trip, except the ones given."""
    values = {"max_error_rate": 100.0, "max_avg_response_ms": 60_000.0, "min_availability": 0.0}
    for field, value in {**values, **limits}.items():
        setattr(env, field, value)
    env.rollback_mode = "ask"
    env.save()


def test_the_watch_rolls_back_on_the_error_rate_alone(local_env):
    policy(local_env, max_error_rate=5.0)
    deployment = watched(local_env, "v2-faulty", {"SAMPLE_ERROR_RATE": "1.0"})
    watch.watch_tick()
    sample = deployment.samples.get()
    assert sample.error_rate > 50 and sample.breach.startswith("error rate"), sample.breach
    deployment.refresh_from_db()
    assert deployment.status == "failed"


def test_the_watch_rolls_back_on_slow_responses_alone(local_env):
    policy(local_env, max_avg_response_ms=150.0)
    deployment = watched(local_env, "v2-slow", {"SAMPLE_DELAY_MS": "400"})
    watch.watch_tick()
    sample = deployment.samples.get()
    assert sample.error_rate == 0 and sample.availability == 100
    assert sample.breach.startswith("average response"), sample.breach
    deployment.refresh_from_db()
    assert deployment.status == "failed"


def test_the_same_slow_version_passes_a_policy_that_allows_it(local_env):
    policy(local_env, max_avg_response_ms=5_000.0)
    deployment = watched(local_env, "v2-slow", {"SAMPLE_DELAY_MS": "400"})
    watch.watch_tick()
    assert deployment.samples.get().passed
    deployment.refresh_from_db()
    assert deployment.status == "watching"


def test_the_watch_rolls_back_on_availability_alone(local_env):
    # The service answers 401 where the environment expects 200: unavailable, not an error.
    local_env.endpoints = [{"path": "/api/auth/status", "ok": [200]}]
    policy(local_env, min_availability=90.0)
    deployment = watched(local_env, "v2")
    watch.watch_tick()
    sample = deployment.samples.get()
    assert sample.error_rate == 0 and sample.availability == 50
    assert sample.breach.startswith("availability"), sample.breach
    deployment.refresh_from_db()
    assert deployment.status == "failed"


def test_a_version_that_ran_an_hour_with_two_percent_errors_is_no_rollback_target(local_env):
    local_env.stable_max_error_rate = 1.0
    local_env.save()
    now = timezone.now()

    def ran(version, hours_ago, error_rate):
        start = now - timedelta(hours=hours_ago)
        d = Deployment.objects.create(
            environment=local_env, external_id=version, version=version, status="succeeded",
            received_at=start, live_at=start, ended_at=start + timedelta(minutes=70),
        )  # fmt: skip
        d.samples.create(error_rate=error_rate, avg_ms=20, p95_ms=30, availability=100, passed=True)
        return d

    clean = ran("v1", 5, 0.5)
    ran("v2", 3, 2.0)
    current = Deployment.objects.create(environment=local_env, external_id="v3", version="v3")
    assert local_env.stable_target(before=current) == clean


def test_a_rollback_filed_with_a_token_is_its_owners_and_they_cannot_approve_it(
    client, local_env, bob, django_user_model, django_capture_on_commit_callbacks
):
    from django.contrib.auth.models import Group

    from opsconsole.models import ApiToken

    v1 = deploy(client, local_env, "v1", "d1", django_capture_on_commit_callbacks)
    settle(v1, local_env)
    deploy(client, local_env, "v2", "d2", django_capture_on_commit_callbacks)
    dave = django_user_model.objects.create_user("dave")
    dave.groups.add(Group.objects.get(name="Approver"))
    row, token = ApiToken.issue("ci", scopes=["rollback:request"], created_by=bob)
    response = client.post("/api/rollback", {"environment": "production", "reason": "bad"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip
    assert response.status_code == 201, response.json()
    request = RollbackRequest.objects.get(pk=response.json()["rollback_request"])
    assert (request.requested_by, request.requested_by_token) == (bob, row)
    with pytest.raises(PermissionDenied, match="two-person rule"):
        request.approve(bob, confirmation="production")
    request.approve(dave, confirmation="production")
    assert request.status == "approved"


def test_a_token_without_the_scope_or_past_its_expiry_is_refused(client, local_env, bob):
    from opsconsole.models import ApiToken

    _, metrics_only = ApiToken.issue("metrics", scopes=["metrics:write"], created_by=bob)
    response = client.post("/api/rollback", {"environment": "production", "reason": "x"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {metrics_only}")  # fmt: skip
    assert response.status_code == 403 and "rollback:request" in response.json()["error"]
    _, expired = ApiToken.issue("old", scopes=["rollback:request"], created_by=bob,
                                  expires_at=timezone.now() - timedelta(seconds=1))  # fmt: skip
    response = client.post("/api/rollback", {"environment": "production", "reason": "x"},
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {expired}")  # fmt: skip
    assert response.status_code == 401 and "expired" in response.json()["error"]
    assert not RollbackRequest.objects.exists()


@pytest.mark.parametrize(
    "field, value",
    [("version", "--output=/etc/passwd"), ("version", "v1; rm -rf /"), ("deployment_id", "-x"),
     ("commit", "not-hex"), ("version", "v" * 201)],
)  # fmt: skip
def test_webhook_values_that_could_reach_an_argv_are_refused(client, local_env, field, value):
    payload = {"deployment_id": "d9", "environment": "production", "version": "v9",
               "status": "succeeded", field: value}  # fmt: skip
    response = post_webhook(client, payload)
    assert response.status_code == 400 and field in response.json()["error"]
    assert not Deployment.objects.exists()
