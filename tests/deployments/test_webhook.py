"""POST /webhooks/deploy: signed, replay-proof, idempotent; every bad input named."""

import json
import time

import pytest

from deployments.models import Deployment, Environment
from tests.deployments.conftest import SECRET, post_webhook

PAYLOAD = {
    "deployment_id": "gh-101",
    "environment": "production",
    "version": "v1.4.0",
    "commit": "abc123",
}


@pytest.fixture
def env(db):
    return Environment.objects.create(
        name="production", provider="local", provider_config={"port": 18080}, webhook_secret=SECRET
    )


def test_a_signed_webhook_records_the_deployment_once(client, env):
    first = post_webhook(
        client,
        {
            **PAYLOAD,
            "checks": [
                {"name": "tests", "passed": True},
                {"name": "audit", "passed": False, "detail": "1 CVE"},
            ],
        },
    )
    assert first.status_code == 201, first.json()
    again = post_webhook(client, {**PAYLOAD, "status": "deploying"})
    assert again.status_code == 200
    deployment = Deployment.objects.get()
    assert (deployment.version, deployment.commit, deployment.status) == (
        "v1.4.0",
        "abc123",
        "preflight",
    )
    assert sorted(deployment.checks.values_list("name", "passed")) == [
        ("audit", False),
        ("tests", True),
    ]
    from deployments import intake

    intake.process(deployment)
    deployment.refresh_from_db()
    assert deployment.status == "deploying"
    assert deployment.checks.filter(
        phase="preflight", name="nothing else in progress", passed=True
    ).exists()


def test_a_stale_timestamp_is_401(client, env):
    response = post_webhook(client, PAYLOAD, timestamp=int(time.time()) - 600)
    assert response.status_code == 401
    assert "5-minute window" in response.json()["error"]
    assert not Deployment.objects.exists()


def test_a_timestamp_from_the_future_beyond_the_window_is_401(client, env):
    response = post_webhook(client, PAYLOAD, timestamp=int(time.time()) + 600)
    assert response.status_code == 401
    assert "5-minute window" in response.json()["error"]
    assert not Deployment.objects.exists()
    assert post_webhook(client, PAYLOAD, timestamp=int(time.time()) + 60).status_code == 201


def test_a_reused_signature_is_401(client, env):
    stamp = int(time.time())
    assert post_webhook(client, PAYLOAD, timestamp=stamp).status_code == 201
    replay = post_webhook(client, PAYLOAD, timestamp=stamp)
    assert replay.status_code == 401 and "replayed" in replay.json()["error"]


def test_a_bad_signature_is_401(client, env):
    assert post_webhook(client, PAYLOAD, secret="wrong").status_code == 401
    assert post_webhook(client, PAYLOAD, signature="sha256=00").status_code == 401
    assert not Deployment.objects.exists()


def test_the_global_secret_signs_for_environments_without_their_own(client, env, settings):
    env.webhook_secret = ""
    env.save()
    settings.OPSCONSOLE_WEBHOOK_SECRET = "global-secret"
    assert post_webhook(client, PAYLOAD).status_code == 401
    assert post_webhook(client, PAYLOAD, secret="global-secret").status_code == 201


def test_malformed_json_is_400(client, env):
    response = post_webhook(client, None, raw=b"{not json")
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]


def test_missing_fields_are_named(client, env):
    response = post_webhook(client, {"environment": "production"})
    assert response.status_code == 400
    assert response.json()["missing"] == ["deployment_id", "version"]


def test_bad_checks_are_400(client, env):
    response = post_webhook(client, {**PAYLOAD, "checks": [{"name": "x"}]})
    assert response.status_code == 400 and "checks" in response.json()["error"]


def test_an_unknown_environment_is_401_like_a_bad_signature(client, env):
    unknown = post_webhook(client, {**PAYLOAD, "environment": "moon"})
    known_but_forged = post_webhook(client, PAYLOAD, secret="guess")
    assert unknown.status_code == known_but_forged.status_code == 401
    assert unknown.json() == known_but_forged.json(), "nothing tells the two apart"


def test_an_unknown_environment_signed_with_the_global_secret_is_404(client, env, settings):
    settings.OPSCONSOLE_WEBHOOK_SECRET = "global-secret"
    response = post_webhook(client, {**PAYLOAD, "environment": "moon"}, secret="global-secret")
    assert response.status_code == 404 and "moon" in response.json()["error"]


def test_a_signature_with_non_ascii_text_is_401_not_500(client, env):
    client.raise_request_exception = False
    response = post_webhook(client, PAYLOAD, signature="sha256=\u00e9\u00e9\u2603")
    assert response.status_code == 401 and response.json()["error"] == "bad signature"


def test_a_body_over_64kb_is_413(client, env):
    big = json.dumps({**PAYLOAD, "commit": "x" * 70_000}).encode()
    assert post_webhook(client, None, raw=big).status_code == 413


def test_a_reported_failure_fails_the_deployment_and_opens_an_incident(
    client, env, django_capture_on_commit_callbacks
):
    from alerts.models import Incident

    post_webhook(client, PAYLOAD)
    with django_capture_on_commit_callbacks(execute=True):
        post_webhook(client, {**PAYLOAD, "status": "failed"})
    assert Deployment.objects.get().status == "failed"
    assert Incident.objects.get(fingerprint=f"deploy:{env.pk}").priority == "high"


@pytest.mark.django_db(transaction=True)
def test_concurrent_webhooks_for_the_same_deployments_neither_deadlock_nor_fail(live_server):
    """CI's "started" racing its "deployed", across many deployments at once (found by the benchmark)."""
    import threading

    import httpx

    from opsconsole.webhooks import sign_timestamped

    Environment.objects.create(name="production", provider="local", provider_config={"port": 18082},
                               webhook_secret=SECRET)  # fmt: skip
    bodies = []
    for i in range(60):
        dep = i - i % 2
        body = json.dumps({"deployment_id": f"ci-{dep}", "environment": "production", "version": f"v{dep}",
                           "status": "deploying" if i % 2 == 0 else "started"}).encode()  # fmt: skip
        bodies.append(
            (body, {"Content-Type": "application/json", **sign_timestamped(SECRET, body)})
        )
    statuses = []

    def client(part):
        with httpx.Client(timeout=20) as http:
            for body, headers in part:
                statuses.append(
                    http.post(
                        f"{live_server.url}/webhooks/deploy", content=body, headers=headers
                    ).status_code
                )

    threads = [threading.Thread(target=client, args=(bodies[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(set(statuses)) <= [200, 201] and len(statuses) == 60, statuses
    assert Deployment.objects.count() == 30
    newest = Deployment.objects.order_by("-received_at").first()
    assert (
        Deployment.objects.exclude(pk=newest.pk).filter(status__in=Deployment.ACTIVE).count() <= 3
    )
