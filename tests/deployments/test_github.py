"""GitHub's deployment protection rule against a local server standing in for GitHub's API:
the signed event, the App's JWT (checked with the real RSA key), the installation token,
and the exact approve/reject call."""

import hashlib
import hmac
import json
import time
import uuid
from datetime import timedelta

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ValidationError
from django.utils import timezone
from werkzeug import Response

from alerts.models import Silence
from deployments import github
from deployments.models import DeployApproval, Environment, GateCheck, GitHubApp
from tests.helpers import run_queued

WEBHOOK_SECRET = "gh-webhook-secret"
INSTALLATION_TOKEN = "ghs_installationtoken123"
SHA = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def rsa_key():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    return pem, key.public_key()


@pytest.fixture
def env(db):
    return Environment.objects.create(name="production", provider="local",
                                      provider_config={"port": 18975}, two_person_rule=True)  # fmt: skip


@pytest.fixture
def app(db, rsa_key, httpserver):
    app = GitHubApp(name="opsconsole", app_id="Iv23liTest", private_key=rsa_key[0],
                    webhook_secret=WEBHOOK_SECRET, api_url=httpserver.url_for("/api/v3"))  # fmt: skip
    app.full_clean()
    app.save()
    return app


@pytest.fixture
def github_api(httpserver):
    """GitHub's two endpoints; every request is kept for the assertions."""
    seen = []

    def handler(request):
        seen.append((request.method, request.path, dict(request.headers), request.get_data()))
        if request.path == "/api/v3/app/installations/42/access_tokens":
            body = {"token": INSTALLATION_TOKEN, "expires_at": "2030-01-01T00:00:00Z"}
            return Response(json.dumps(body), status=201, content_type="application/json")
        return Response("", status=204)

    httpserver.expect_request("/api/v3/app/installations/42/access_tokens").respond_with_handler(
        handler
    )
    httpserver.expect_request(
        "/api/v3/repos/acme/shorts/actions/runs/77/deployment_protection_rule"
    ).respond_with_handler(handler)
    return seen


def event(httpserver, environment="production", **extra):
    return {
        "action": "requested", "environment": environment, "event": "push",
        "ref": "refs/heads/main",
        "deployment_callback_url": httpserver.url_for(
            "/api/v3/repos/acme/shorts/actions/runs/77/deployment_protection_rule"),
        "deployment": {"id": 9, "sha": SHA, "ref": "main", "environment": environment},
        "repository": {"full_name": "acme/shorts"}, "installation": {"id": 42},
        "sender": {"login": "octocat"}, **extra,
    }  # fmt: skip


def deliver(client, payload, *, secret=WEBHOOK_SECRET, event_name="deployment_protection_rule",
            delivery=None, body=None):  # fmt: skip
    body = body if body is not None else json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    return client.post(
        "/webhooks/github", data=body, content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature, HTTP_X_GITHUB_EVENT=event_name,
        HTTP_X_GITHUB_DELIVERY=delivery or str(uuid.uuid4()),
    )  # fmt: skip


def test_the_app_jwt_is_rs256_signed_by_its_key_with_githubs_claims(app, rsa_key):
    now = 1_900_000_000
    token = github.app_jwt(app, now=now)
    assert jwt.get_unverified_header(token)["alg"] == "RS256"
    claims = jwt.decode(token, rsa_key[1], algorithms=["RS256"], options={"verify_exp": False,
                        "verify_iat": False})  # fmt: skip
    assert claims == {"iss": "Iv23liTest", "iat": now - 60, "exp": now + 540}
    assert claims["exp"] - claims["iat"] <= 600, "GitHub refuses a JWT over ten minutes"
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, other, algorithms=["RS256"], options={"verify_exp": False})


def test_the_private_key_must_be_a_pem_rsa_key(db):
    app = GitHubApp(name="x", app_id="1", private_key="-----BEGIN nonsense")
    with pytest.raises(ValidationError, match="Not a PEM private key"):
        app.full_clean()


def test_an_allowed_deploy_is_approved_through_the_callback_as_the_app(
    client, env, app, github_api, httpserver, rsa_key
):
    response = deliver(client, event(httpserver))
    assert response.status_code == 202, response.content
    assert response.json()["answer"] == "waiting", "recorded; the gate runs on a worker"
    assert github_api == [], "GitHub is answered by a worker, not in its own request"
    before = int(time.time())
    run_queued()
    (m1, path1, headers1, _), (m2, path2, headers2, body2) = github_api
    assert (m1, path1) == ("POST", "/api/v3/app/installations/42/access_tokens")
    app_token = headers1["Authorization"].removeprefix("Bearer ")
    claims = jwt.decode(app_token, rsa_key[1], algorithms=["RS256"])
    assert claims["iss"] == "Iv23liTest" and before - 61 <= claims["iat"] <= before - 59
    assert claims["exp"] - claims["iat"] == 600
    assert headers1["X-Github-Api-Version"] == "2022-11-28"
    assert (m2, path2) == (
        "POST",
        "/api/v3/repos/acme/shorts/actions/runs/77/deployment_protection_rule",
    )
    assert headers2["Authorization"] == f"Bearer {INSTALLATION_TOKEN}"
    assert json.loads(body2) == {
        "environment_name": "production", "state": "approved",
        "comment": f"opsconsole: {SHA[:12]} may deploy to production.",
    }  # fmt: skip
    received, check = GateCheck.objects.order_by("at", "pk")
    assert (received.answer, received.github_state) == ("waiting", "superseded")
    assert (check.answer, check.source, check.github_state, check.commit) == (
        "allowed", "github", "approved", SHA,
    )  # fmt: skip
    assert check.asked_by == "GitHub acme/shorts (deployment by octocat)"
    assert check.github_deployment == 9 and check.github_sender == "octocat"
    assert check.pipeline_url == "", "a callback on a stand-in API is not a github.com run page"


def test_a_refused_deploy_is_rejected_with_the_reasons(client, env, app, github_api, httpserver):
    now = timezone.now()
    Silence.objects.create(starts_at=now, ends_at=now + timedelta(hours=3), reason="Black Friday",
                           freeze_deploys=True)  # fmt: skip
    deliver(client, event(httpserver))
    run_queued()
    body = json.loads(github_api[-1][3])
    assert body["state"] == "rejected" and body["environment_name"] == "production"
    check = GateCheck.objects.get(github_state="rejected")
    assert body["comment"] == (
        f"opsconsole refused {SHA[:12]} for production:\n"
        "- a deploy freeze is on (deploy_freeze)\n"
        f"Details: http://127.0.0.1:8000/admin/deployments/gatecheck/{check.pk}/change/"
    ), "the kind of reason only: anyone who reads the repository sees the comment"
    assert "Black Friday" in check.reasons[0]["message"], "the details stay in the console"


def test_a_waiting_deploy_is_answered_once_someone_approves(
    client, env, app, github_api, httpserver, alice, bob
):
    env.require_deploy_approval = True
    env.save()
    app.people = {"octocat": "alice"}
    app.save()
    deliver(client, event(httpserver))
    run_queued()
    assert github_api == [], "nothing said while waiting"
    approval = DeployApproval.objects.get()
    assert approval.requested_by == alice, "the GitHub user's console account"
    assert not approval.can_approve(alice), "who deploys does not approve their own deploy"
    approval.approve(bob, confirmation="production")
    run_queued()
    assert json.loads(github_api[-1][3])["state"] == "approved"
    answers = list(GateCheck.objects.order_by("at", "pk").values_list("answer", "github_state"))
    assert answers == [
        ("waiting", "superseded"),
        ("waiting", "superseded"),
        ("allowed", "approved"),
    ]


def test_a_rejected_approval_rejects_the_github_deployment(
    client, env, app, github_api, httpserver, bob, django_user_model
):
    django_user_model.objects.create_user("octocat")  # the same name on GitHub and here
    env.require_deploy_approval = True
    env.save()
    deliver(client, event(httpserver))
    run_queued()
    DeployApproval.objects.get().reject(bob, note="wait for Monday")
    run_queued()
    body = json.loads(github_api[-1][3])
    assert body["state"] == "rejected" and "(approval_rejected)" in body["comment"]
    assert "wait for Monday" not in body["comment"]


def test_a_two_person_environment_refuses_a_deploy_by_someone_it_cannot_name(
    client, env, app, github_api, httpserver
):
    env.require_deploy_approval = True
    env.save()
    deliver(client, event(httpserver))
    run_queued()
    assert json.loads(github_api[-1][3])["state"] == "rejected"
    check = GateCheck.objects.get(github_state="rejected")
    assert check.reasons == [{"code": "approval_required", "message": (
        "production needs a second person's approval, and the console cannot tell who "
        "deploys (GitHub acme/shorts (deployment by octocat) has no console account)")}]  # fmt: skip
    assert not DeployApproval.objects.exists()


def test_a_forged_signature_or_a_replay_is_refused_and_nothing_happens(
    client, env, app, github_api, httpserver
):
    response = deliver(client, event(httpserver), secret="not-the-secret")
    assert response.status_code == 401 and response.json()["error"] == "bad signature"
    payload = json.dumps(event(httpserver)).encode()
    unsigned = client.post("/webhooks/github", data=payload, content_type="application/json",
                           HTTP_X_GITHUB_EVENT="deployment_protection_rule")  # fmt: skip
    assert unsigned.status_code == 401
    assert deliver(client, None, body=payload, delivery="d-1").status_code == 202
    run_queued()
    # A replay (or GitHub's own redelivery), under any delivery id, is the same question.
    for delivery in ("d-1", "d-2"):
        again = deliver(client, None, body=payload, delivery=delivery)
        assert again.status_code == 200 and again.json()["duplicate"] is True
    run_queued()
    assert GateCheck.objects.count() == 2 and len(github_api) == 2, "asked once, answered once"
    rerun = event(httpserver)
    rerun["deployment"]["id"] = 10  # a re-run of the job: a new deployment, a new question
    assert deliver(client, rerun).status_code == 202


def test_a_callback_url_off_the_apps_api_is_refused(client, env, app, httpserver):
    payload = event(httpserver, deployment_callback_url="https://attacker.example/repos/x")
    response = deliver(client, payload)
    assert response.status_code == 400 and "deployment_callback_url" in response.json()["error"]
    assert not GateCheck.objects.exists()


def test_unknown_environments_other_events_and_pings(client, env, app, httpserver):
    response = deliver(client, event(httpserver, environment="qa"))
    assert response.status_code == 404 and "'qa'" in response.json()["error"]
    app.environments = {"qa": "production"}
    app.save()
    assert deliver(client, event(httpserver, environment="qa")).status_code == 202
    assert GateCheck.objects.get().github_environment == "qa"
    assert deliver(client, {"zen": "hi"}, event_name="ping").json() == {
        "ok": True,
        "app": "opsconsole",
    }
    assert deliver(client, {}, event_name="push").status_code == 202


def test_an_answer_lost_with_its_worker_is_sent_by_the_next_sweep(
    client, env, app, github_api, httpserver
):
    from deployments.tasks import recheck_waiting_gates

    deliver(client, event(httpserver))
    run_queued()  # the gate ran; its answer was queued for GitHub...
    GateCheck.objects.filter(answer="allowed").update(github_state="")
    github_api.clear()  # ...and the worker that held it died before sending it
    assert recheck_waiting_gates() == 0, "not before a minute has passed"
    GateCheck.objects.update(at=timezone.now() - timedelta(minutes=2))
    assert recheck_waiting_gates() == 1
    run_queued()
    assert json.loads(github_api[-1][3])["state"] == "approved"
    assert recheck_waiting_gates() == 0, "answered once"


def test_a_github_api_failure_is_kept_on_the_check_and_retried(client, env, app, httpserver):
    httpserver.expect_request("/api/v3/app/installations/42/access_tokens").respond_with_data(
        "bad credentials", status=401
    )
    deliver(client, event(httpserver))
    with pytest.raises(github.GitHubError):
        run_queued()
    check = GateCheck.objects.get(answer="allowed")
    assert "HTTP 401" in check.github_error and check.github_state == ""
    assert INSTALLATION_TOKEN not in check.github_error


def test_a_callback_on_githubs_api_gives_the_run_page_as_the_pipeline(db, env, rsa_key):
    app = GitHubApp.objects.create(name="gh", app_id="1", private_key=rsa_key[0],
                                   webhook_secret="s", repositories=["acme/shorts"])  # fmt: skip
    payload = {
        "action": "requested", "environment": "production",
        "deployment_callback_url": "https://api.github.com/repos/acme/shorts/actions/runs/77/"
                                   "deployment_protection_rule",
        "deployment": {"id": 9, "sha": SHA}, "repository": {"full_name": "acme/shorts"},
        "installation": {"id": 42}, "sender": {"login": "octocat"},
    }  # fmt: skip
    question = github._question(app, payload)
    assert question["pipeline_url"] == "https://github.com/acme/shorts/actions/runs/77"
    with pytest.raises(github.WebhookError, match="does not answer for acme/other"):
        github._question(app, {**payload, "repository": {"full_name": "acme/other"}})
    for bad in ({"installation": {"id": True}}, {"installation": []}, {"deployment": {"id": "9"}},
                {"environment": "x" * 201}, {"sender": "octocat"}):  # fmt: skip
        try:
            github._question(app, {**payload, **bad})
        except github.WebhookError as exc:
            assert exc.status == 400, bad
