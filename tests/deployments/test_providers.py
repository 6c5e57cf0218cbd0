"""Railway against a local GraphQL server; the command provider with real processes."""

import json
import sys

import pytest
from werkzeug import Response

from deployments.models import Deployment, Environment
from deployments.providers import ProviderError
from deployments.providers.railway import DEPLOYMENT, LATEST, ROLLBACK, VARIABLES
from tests.helpers import run_queued

IDS = {"project_id": "proj-1", "environment_id": "env-1", "service_id": "svc-1"}


@pytest.fixture
def railway(db, httpserver):
    env = Environment(name="production", provider="railway", provider_secret="rw-token",
                      provider_config={**IDS, "endpoint": httpserver.url_for("/graphql/v2"),
                                       "poll_interval_seconds": 0.05, "poll_timeout_seconds": 2})  # fmt: skip
    env.full_clean()
    env.save()
    return env


def target(env, external_id="dep-good"):
    return Deployment.objects.create(environment=env, external_id=external_id, version="v1")


def graphql_server(httpserver, statuses, *, can_rollback=True, seen=None):
    """Answers like Railway: deployment lookup, the rollback mutation, then the statuses in turn."""
    statuses = list(statuses)

    def handler(request):
        body = json.loads(request.data)
        if seen is not None:
            seen.append((body, dict(request.headers)))
        query = body["query"]
        if query == DEPLOYMENT:
            data = {
                "deployment": {
                    "id": body["variables"]["id"],
                    "status": "REMOVED",
                    "canRollback": can_rollback,
                }
            }
        elif query == ROLLBACK:
            data = {"deploymentRollback": True}
        elif query == LATEST:
            status = statuses.pop(0) if len(statuses) > 1 else statuses[0]
            data = {"deployments": {"edges": [{"node": {"id": "dep-new", "status": status}}]}}
        elif query == VARIABLES:
            data = {"variables": {"DATABASE_URL": "x", "REDIS_URL": "y",
                                  "RAILWAY_PUBLIC_DOMAIN": "api.up.railway.app"}}  # fmt: skip
        else:
            return Response(json.dumps({"errors": [{"message": "unknown query"}]}), status=400)
        return Response(json.dumps({"data": data}), content_type="application/json")

    httpserver.expect_request("/graphql/v2", method="POST").respond_with_handler(handler)


def test_railway_rollback_sends_the_exact_queries_with_the_token(railway, httpserver):
    seen = []
    graphql_server(httpserver, ["DEPLOYING", "DEPLOYING", "SUCCESS"], seen=seen)
    response = railway.backend.rollback(target(railway))
    assert response == {"rollback_of": "dep-good", "final": {"id": "dep-new", "status": "SUCCESS"}}
    queries = [b["query"] for b, _ in seen]
    assert queries[:2] == [DEPLOYMENT, ROLLBACK] and set(queries[2:]) == {LATEST}
    assert seen[1][0]["variables"] == {"id": "dep-good"}
    assert seen[2][0]["variables"] == {
        "input": {"projectId": "proj-1", "environmentId": "env-1", "serviceId": "svc-1"}
    }
    assert all(h["Authorization"] == "Bearer rw-token" for _, h in seen)


def test_railway_project_tokens_use_their_own_header(railway, httpserver):
    railway.provider_config["token_type"] = "project"
    railway.save()
    seen = []
    graphql_server(httpserver, ["SUCCESS"], seen=seen)
    assert railway.backend.variable_names() == {"DATABASE_URL", "REDIS_URL"}
    headers = seen[0][1]
    assert headers["Project-Access-Token"] == "rw-token" and "Authorization" not in headers


def test_railway_failed_deployment_is_a_provider_error(railway, httpserver):
    graphql_server(httpserver, ["DEPLOYING", "FAILED"])
    with pytest.raises(ProviderError, match="ended FAILED"):
        railway.backend.rollback(target(railway))


def test_railway_refuses_what_it_cannot_roll_back_to(railway, httpserver):
    graphql_server(httpserver, ["SUCCESS"], can_rollback=False)
    with pytest.raises(ProviderError, match="cannot be rolled back to"):
        railway.backend.rollback(target(railway))


def test_railway_http_500_is_a_provider_error_without_the_token(railway, httpserver):
    httpserver.expect_request("/graphql/v2").respond_with_data("upstream broke", status=500)
    with pytest.raises(ProviderError) as caught:
        railway.backend.rollback(target(railway))
    assert "HTTP 500" in caught.value.message and "rw-token" not in caught.value.message


def test_railway_graphql_errors_are_reported(railway, httpserver):
    httpserver.expect_request("/graphql/v2").respond_with_json(
        {"errors": [{"message": "Not Authorized"}]}
    )
    with pytest.raises(ProviderError, match="Not Authorized"):
        railway.backend.variable_names()


def test_a_failed_provider_call_fails_the_request_and_asks_for_a_human(
    railway, httpserver, alice, bob
):
    from datetime import timedelta

    from django.utils import timezone

    from alerts.models import Incident
    from deployments import rollbacks

    httpserver.expect_request("/graphql/v2").respond_with_data("down", status=500)
    old = target(railway)
    Deployment.objects.filter(pk=old.pk).update(status="succeeded", received_at=timezone.now() - timedelta(hours=3),
                                                live_at=timezone.now() - timedelta(hours=3))  # fmt: skip
    Deployment.objects.create(  # went live, then failed its checks
        environment=railway, external_id="dep-bad", version="v2", status="failed",
        live_at=timezone.now(),
    )  # fmt: skip
    request = rollbacks.request_rollback(railway, alice, reason="bad")
    request.approve(bob, confirmation="production")
    request = request.execute()
    assert request.status == "failed" and "HTTP 500" in request.error
    assert Incident.objects.get(fingerprint=f"rollback-failed:{railway.pk}").priority == "critical"


def command_env(db, **config):
    env = Environment(
        name="staging", provider="command", provider_config=config, two_person_rule=False
    )
    env.full_clean()
    env.save()
    return env


def gradual_command_env(db, tmp_path):
    """A command environment whose deploy and set_weights write to a log, rolling back
    gradually in two steps from a failed v2 to v1 (live two hours)."""
    from datetime import timedelta

    from django.utils import timezone

    log = tmp_path / "weights.log"
    script = f"import sys; open({str(log)!r}, 'a').write(' '.join(sys.argv[1:]) + chr(10))"
    env = command_env(db, rollback=["true"], deploy=[sys.executable, "-c", script, "deploy", "{version}"],
                      set_weights=[sys.executable, "-c", script, "weights", "{version}", "{percent}"])  # fmt: skip
    env.gradual_rollback, env.gradual_steps, env.gradual_step_seconds = True, [25, 100], 0
    env.full_clean()
    env.save()
    old = target(env)
    Deployment.objects.filter(pk=old.pk).update(status="succeeded", received_at=timezone.now() - timedelta(hours=2),
                                                live_at=timezone.now() - timedelta(hours=2))  # fmt: skip
    Deployment.objects.create(environment=env, external_id="new", version="v2", status="failed",
                              live_at=timezone.now())  # went live, then failed  # fmt: skip
    return env, log


def test_the_command_provider_fills_the_template_and_captures_output(db):
    env = command_env(
        db,
        rollback=[sys.executable, "-c", "import sys; print('rolled to', sys.argv[1])", "{version}"],
    )
    out = env.backend.rollback(target(env))
    assert out["stdout"].strip() == "rolled to v1"


def test_the_command_provider_reports_a_non_zero_exit(db):
    env = command_env(
        db,
        rollback=[
            sys.executable,
            "-c",
            "import sys; sys.stderr.write('no such release'); sys.exit(3)",
        ],
    )
    with pytest.raises(ProviderError, match="exited with code 3: no such release"):
        env.backend.rollback(target(env))


def test_the_command_provider_times_out(db):
    env = command_env(
        db, rollback=[sys.executable, "-c", "import time; time.sleep(10)"], timeout_seconds=0.5
    )
    with pytest.raises(ProviderError, match=r"timed out after 0\.5 s"):
        env.backend.rollback(target(env))


@pytest.mark.parametrize(
    ("provider", "config", "message"),
    [
        ("railway", {"project_id": "p"}, "Missing configuration: environment_id, service_id"),
        ("command", {"rollback": "kubectl rollout undo"}, "argv list"),
        ("local", {"port": 80}, r"between 1024"),
    ],
)
def test_provider_config_is_validated_on_save(db, provider, config, message):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match=message):
        Environment(
            name="x", provider=provider, provider_config=config, provider_secret="t"
        ).full_clean()


def test_railway_variables_validate_by_name_and_sync_with_skip_deploys(
    railway, httpserver, alice, bob
):
    from deployments.models import EnvironmentVariable
    from deployments.providers.railway import UPSERT

    seen = []
    graphql_server(httpserver, ["SUCCESS"], seen=seen)
    httpserver.clear_assertions()
    for name, value in (
        ("DATABASE_URL", "x"),
        ("REDIS_URL", "changed"),
        ("SENTRY_DSN", "https://k@s/1"),
    ):
        EnvironmentVariable.objects.create(environment=railway, name=name, value=value)
    assert railway.variable_diff() == {
        "missing": ["SENTRY_DSN"],
        "extra": [],
        "different": ["REDIS_URL"],
    }
    sync = railway.request_variable_sync(alice)
    assert sync.status == "requested" and sync.names == ["REDIS_URL", "SENTRY_DSN"]
    assert not any(b["query"] == UPSERT for b, _ in seen), "nothing pushed before approval"

    def upsert(request):
        body = json.loads(request.data)
        seen.append((body, dict(request.headers)))
        return Response(
            json.dumps({"data": {"variableCollectionUpsert": True}}),
            content_type="application/json",
        )

    httpserver.clear()
    httpserver.expect_request("/graphql/v2").respond_with_handler(upsert)
    sync.approve(bob, confirmation="production")
    assert sync.status == "approved"
    run_queued()
    sync.refresh_from_db()
    assert sync.status == "succeeded"
    # The upsert, then a read-back: what the provider holds now is the drift baseline.
    assert [b["query"] for b, _ in seen[-2:]] == [UPSERT, VARIABLES]
    body = seen[-2][0]
    assert body["variables"]["input"] == {
        "projectId": "proj-1", "environmentId": "env-1", "serviceId": "svc-1",
        "variables": {"DATABASE_URL": "x", "REDIS_URL": "changed", "SENTRY_DSN": "https://k@s/1"},
        "replace": False, "skipDeploys": True,
    }  # fmt: skip


def test_the_admin_validate_action_shows_names_never_values(admin_client, railway, httpserver):
    from deployments.models import EnvironmentVariable

    graphql_server(httpserver, ["SUCCESS"])
    EnvironmentVariable.objects.create(
        environment=railway, name="REDIS_URL", value="redis://:topsecret@h/0"
    )
    response = admin_client.post("/admin/deployments/environment/",
                                 {"action": "validate_variables", "_selected_action": [railway.pk]}, follow=True)  # fmt: skip
    page = response.content.decode()
    assert "different: REDIS_URL" in page and "extra: DATABASE_URL" in page
    assert "topsecret" not in page and "redis://" not in page


def test_the_command_provider_rolls_back_gradually_through_set_weights(db, alice, bob, tmp_path):

    from deployments import rollbacks

    env, log = gradual_command_env(db, tmp_path)
    env.base_url, env.endpoints, env.probe_requests = "http://127.0.0.1:9", [], 1
    env.save()
    request = rollbacks.request_rollback(env, alice, reason="x")
    request.approve(bob, confirmation="staging")
    request.execute()
    # Nothing answers on the health URL here, so the first step breaches and backs out.
    assert log.read_text().splitlines() == ["deploy v1", "weights v1 25", "weights v1 0"]


def test_without_set_weights_the_command_provider_offers_no_gradual_rollback(db):
    from django.core.exceptions import ValidationError

    env = Environment(
        name="x", provider="command", provider_config={"rollback": ["true"]}, gradual_rollback=True
    )
    with pytest.raises(ValidationError, match="set_weights"):
        env.full_clean()


def test_a_gradual_rollback_cut_short_by_a_dead_worker_is_never_left_split(
    db, alice, bob, tmp_path
):
    """The worker dies with 25 % of traffic on the target: the reconciler sends traffic back
    whole to what served before (and says so), once the worker's lease has run out."""
    from datetime import timedelta

    from django.utils import timezone

    from alerts.models import Incident
    from deployments import rollbacks
    from deployments.models import RollbackRequest
    from opsconsole.reconcile import reconcile

    env, log = gradual_command_env(db, tmp_path)
    request = rollbacks.request_rollback(env, alice, reason="x")
    request.approve(bob, confirmation="staging")

    backend_class = type(env.backend)
    real_set_share = backend_class.set_share

    def set_share_then_die(self, slot, percent):
        real_set_share(self, slot, percent)
        raise KeyboardInterrupt("SIGKILL")  # nothing of the worker runs after this

    backend_class.set_share = set_share_then_die
    try:
        with pytest.raises(KeyboardInterrupt):
            RollbackRequest.objects.get(pk=request.pk).execute()
    finally:
        backend_class.set_share = real_set_share
    request.refresh_from_db()
    assert request.status == "executing" and request.gradual_progress["percent"] == 25
    assert log.read_text().splitlines() == ["deploy v1", "weights v1 25"], "split 25/75"

    assert reconcile()["expired"] == 0, "its lease has not run out yet"
    RollbackRequest.objects.filter(pk=request.pk).update(
        lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile()["expired"] == 1
    assert log.read_text().splitlines()[-1] == "weights v1 0", "traffic went back whole"
    request.refresh_from_db()
    assert request.status == "failed"
    assert "stopped at 25 % of a gradual rollback; traffic was returned whole" in request.error
    incident = Incident.objects.get(fingerprint=env.fingerprint("rollback-failed"))
    assert incident.priority == "critical" and "returned whole" in incident.details["error"]


def test_railway_variables_import_into_the_console_and_drift_is_seen_there(
    railway, httpserver, bob
):
    from alerts.models import Incident
    from opsconsole.fields import reveal

    seen = []
    graphql_server(httpserver, ["SUCCESS"], seen=seen)
    assert railway.import_from_provider(bob) == ["DATABASE_URL", "REDIS_URL"]
    body, headers = seen[-1]
    assert body == {"query": VARIABLES, "variables": {"projectId": "proj-1",
                    "environmentId": "env-1", "serviceId": "svc-1", "unrendered": True}}  # fmt: skip
    assert headers["Authorization"] == "Bearer rw-token"
    assert {v.name: reveal(v.value) for v in railway.variables.all()} == {
        "DATABASE_URL": "x", "REDIS_URL": "y",
    }  # fmt: skip
    assert not railway.check_drift()

    def changed(request):
        data = {"variables": {"DATABASE_URL": "x", "REDIS_URL": "edited-in-railway"}}
        return Response(json.dumps({"data": data}), content_type="application/json")

    httpserver.clear()
    httpserver.expect_request("/graphql/v2").respond_with_handler(changed)
    assert railway.check_drift().changed == ["REDIS_URL"]
    incident = Incident.objects.get()
    assert "on Railway behind the console's back: REDIS_URL changed" in incident.title
    assert "edited" not in incident.title + str(incident.details)
