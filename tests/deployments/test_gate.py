"""POST /api/deploys/check: the deploy gate refuses for each reason alone, allows when all
are clear, waits for approvals and backups, and records every question."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from alerts.incidents import raise_incident
from alerts.models import Silence
from deployments.models import (
    DeployApproval,
    Deployment,
    Environment,
    GateCheck,
    TemplateVariable,
    VariableTemplate,
)
from opsconsole.models import ApiToken
from tests.helpers import run_queued


@pytest.fixture
def env(db):
    env = Environment.objects.create(
        name="production", provider="local", provider_config={"port": 18970}, two_person_rule=True
    )
    env.backend.varsfile.unlink(missing_ok=True)
    env.backend.set_variables({"DATABASE_URL": "postgres://db/shop", "LOG_LEVEL": "info"})
    yield env
    env.backend.varsfile.unlink(missing_ok=True)


@pytest.fixture
def token(alice):
    _, token = ApiToken.issue("ci", scopes=["deploy:check"], created_by=alice)
    return token


def ask(client, token, **fields):
    body = {"environment": "production", "version": "v2.0", "commit": "abc1234", **fields}
    return client.post(
        "/api/deploys/check", data=json.dumps(body), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip


def refused_for(response) -> list[str]:
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["allowed"] is False and body["answer"] == "refused", body
    return [r["code"] for r in body["reasons"]]


def test_all_clear_is_allowed_and_recorded_with_who_asked(client, env, token):
    response = ask(client, token, pipeline_url="https://github.com/acme/shorts/actions/runs/7")
    assert response.status_code == 200
    body = response.json()
    assert body["allowed"] is True and body["reasons"] == []
    assert body["summary"] == "v2.0 may deploy to production."
    check = GateCheck.objects.get()
    assert (check.answer, check.version, check.commit, check.asked_by) == (
        "allowed", "v2.0", "abc1234", "token ci (alice)",
    )  # fmt: skip
    assert check.pipeline_url.endswith("/runs/7") and body["check_url"].endswith(
        f"/admin/deployments/gatecheck/{check.pk}/change/"
    )


def test_a_deploy_freeze_refuses(client, env, token):
    now = timezone.now()
    Silence.objects.create(starts_at=now - timedelta(minutes=1), ends_at=now + timedelta(hours=2),
                           reason="Black Friday", freeze_deploys=True)  # fmt: skip
    response = ask(client, token)
    assert refused_for(response) == ["deploy_freeze"]
    assert "Black Friday" in response.json()["reasons"][0]["message"]


def test_an_open_critical_or_high_incident_on_its_components_refuses(client, env, token):
    raise_incident("test", "other", "Disk full on staging", "critical", component="staging")
    raise_incident("test", "minor", "Slow page", "medium", component="production")
    assert ask(client, token).json()["allowed"] is True, "another component, a medium one"
    raise_incident("test", "api-down", "API down", "high", component="production")
    response = ask(client, token)
    assert refused_for(response) == ["open_incident"]
    assert response.json()["reasons"][0]["message"] == (
        "high incident open on production: API down"
    )
    env.components = ["staging"]
    env.save()
    assert "2 more" not in ask(client, token).json()["reasons"][0]["message"]
    assert "and 1 more" in ask(client, token).json()["reasons"][0]["message"]


def test_another_deploy_in_progress_means_wait_until_its_watch_ends(client, env, token):
    Deployment.objects.create(environment=env, external_id="d1", version="v1.9", status="watching",
                              watch_until=timezone.now() + timedelta(minutes=4))  # fmt: skip
    body = ask(client, token).json()
    assert (body["answer"], [r["code"] for r in body["reasons"]]) == (
        "waiting",
        ["deploy_in_progress"],
    )
    assert body["reasons"][0]["message"] == "another deploy is in progress: v1.9 (Watching)"
    assert 230 <= body["retry_after"] <= 240


def test_missing_required_variables_refuse_naming_them(client, env, token):
    env.required_variables = ["DATABASE_URL", "SENTRY_DSN"]
    env.save()
    response = ask(client, token)
    assert refused_for(response) == ["variables_missing"]
    assert response.json()["reasons"][0]["message"] == "missing on the provider: SENTRY_DSN"


def test_values_that_break_the_template_refuse_without_showing_them(client, env, token):
    template = VariableTemplate.objects.create(name="shorts-api")
    TemplateVariable.objects.create(template=template, name="DATABASE_URL", kind="url")
    TemplateVariable.objects.create(template=template, name="LOG_LEVEL", kind="enum",
                                    rule="debug, info, warning")  # fmt: skip
    TemplateVariable.objects.create(template=template, name="WORKERS", kind="number",
                                    required=False)  # fmt: skip
    env.variable_template = template
    env.save()
    assert ask(client, token).json()["allowed"] is True
    env.backend.set_variables({"LOG_LEVEL": "chatty-secret-value", "WORKERS": "four"})
    response = ask(client, token)
    assert refused_for(response) == ["variables_invalid"]
    message = response.json()["reasons"][0]["message"]
    assert message == ("LOG_LEVEL is not one of debug, info, warning; WORKERS is not a number")
    assert "chatty" not in response.content.decode() and "four" not in response.content.decode()


def test_drift_on_the_provider_refuses(client, env, token):
    env.check_drift()  # the first look is the baseline
    assert ask(client, token).json()["allowed"] is True
    env.backend.set_variables({"DATABASE_URL": "postgres://elsewhere/shop"})
    response = ask(client, token)
    assert refused_for(response) == ["variables_drift"]
    assert response.json()["reasons"][0]["message"] == (
        "changed on the provider behind the console's back: DATABASE_URL changed"
    )
    assert "elsewhere" not in response.content.decode()


def test_an_old_backup_refuses_or_starts_one_and_says_when_to_ask_again(
    client, env, token, tmp_path
):
    from backups.models import Backup, DatabaseTarget, StorageLocation

    target = DatabaseTarget.objects.create(name="shop", engine="sqlite",
                                           dsn=f"sqlite:///{tmp_path}/x.db")  # fmt: skip
    storage = StorageLocation.default()
    old = Backup.objects.create(target=target, storage=storage, status="verified",
                                started_at=timezone.now() - timedelta(hours=30, seconds=40),
                                finished_at=timezone.now() - timedelta(hours=30))  # fmt: skip
    Backup.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=30))
    env.backup_target = target
    env.save()
    response = ask(client, token)
    assert refused_for(response) == ["backup_too_old"]
    assert "is 30 h old (limit 24 h)" in response.json()["reasons"][0]["message"]
    assert Backup.objects.count() == 1, "nothing started unless asked"

    response = ask(client, token, start_backup=True)
    body = response.json()
    assert body["answer"] == "waiting" and body["allowed"] is False
    started = Backup.objects.exclude(pk=old.pk).get()
    assert started.trigger == "pre-deploy" and body["backup"]["id"] == started.pk
    # The last one took 40 s: ask again in about that long.
    assert 40 <= body["retry_after"] <= 50 and response["Retry-After"] == str(body["retry_after"])
    again = ask(client, token, start_backup=True).json()
    assert again["answer"] == "waiting" and Backup.objects.count() == 2, "one backup, not two"


def test_an_environment_that_asks_waits_for_a_second_person(client, env, token, alice, bob):
    env.require_deploy_approval = True
    env.save()
    response = ask(client, token)
    body = response.json()
    assert body["answer"] == "waiting" and body["reasons"][0]["code"] == "approval_pending"
    approval = DeployApproval.objects.get()
    assert body["approval"]["url"].endswith(
        f"/admin/deployments/deployapproval/{approval.pk}/change/"
    )
    assert body["approval"]["url"] in body["reasons"][0]["message"]
    assert approval.requested_by == alice and approval.version == "v2.0"
    assert not approval.can_approve(alice), "the token's owner is the requester"
    assert ask(client, token).json()["approval"]["id"] == approval.pk, "asked once, filed once"

    approval.approve(bob, confirmation="production")
    run_queued()
    response = ask(client, token)
    assert response.json()["allowed"] is True
    assert ask(client, token, version="v2.1").json()["answer"] == "waiting", "per version"


def test_a_rejected_deploy_is_refused_with_the_note(client, env, token, bob):
    env.require_deploy_approval = True
    env.save()
    ask(client, token)
    DeployApproval.objects.get().reject(bob, note="not before the migration is reviewed")
    response = ask(client, token)
    assert refused_for(response) == ["approval_rejected"]
    assert "not before the migration" in response.json()["reasons"][0]["message"]


def test_a_token_whose_owner_may_not_ask_is_refused(client, env, carol):
    env.require_deploy_approval = True
    env.save()
    _, token = ApiToken.issue("viewer-ci", scopes=["deploy:check"], created_by=carol)
    assert refused_for(ask(client, token)) == ["approval_required"]
    _, ownerless = ApiToken.issue("ownerless", scopes=["deploy:check"])
    response = ask(client, ownerless)
    assert refused_for(response) == ["approval_required"]
    assert "cannot tell who deploys" in response.json()["reasons"][0]["message"]
    assert not DeployApproval.objects.exists()


def test_every_reason_at_once(client, env, token):
    env.required_variables = ["SENTRY_DSN"]
    env.save()
    Deployment.objects.create(environment=env, external_id="d1", version="v1.9", status="verifying")
    raise_incident("test", "down", "API down", "critical", component="production")
    now = timezone.now()
    Silence.objects.create(starts_at=now, ends_at=now + timedelta(hours=1), reason="freeze",
                           freeze_deploys=True)  # fmt: skip
    assert refused_for(ask(client, token)) == [
        "variables_missing", "deploy_in_progress", "deploy_freeze", "open_incident",
    ], "refused, not waiting: some reasons do not pass by themselves"  # fmt: skip


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        ({"version": "v1"}, 400, "missing field(s): environment"),
        ({"environment": "production", "version": "v1", "branch": "x"}, 400, "unknown field(s): branch"),
        ({"environment": "production", "version": "-rf"}, 400, "version: letters"),
        ({"environment": "production", "version": "v1", "commit": "zz"}, 400, "commit: a hexadecimal"),
        ({"environment": "production", "version": "v1", "pipeline_url": "file:///x"}, 400, "pipeline_url"),
        ({"environment": "production", "version": "v1", "start_backup": "yes"}, 400, "start_backup"),
        ({"environment": "nowhere", "version": "v1"}, 404, "unknown environment 'nowhere'"),
    ],
)  # fmt: skip
def test_bad_questions_get_a_json_error_naming_what_is_wrong(
    client, env, token, body, status, names
):
    response = client.post("/api/deploys/check", data=json.dumps(body),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")  # fmt: skip
    assert response.status_code == status
    assert names in response.json()["error"]
    assert not GateCheck.objects.exists()


def test_the_gate_needs_a_token_with_its_scope(client, env):
    assert (
        client.post("/api/deploys/check", data="{}", content_type="application/json").status_code
        == 401
    )
    _, other = ApiToken.issue("metrics", scopes=["metrics:write"])
    response = ask(client, other)
    assert response.status_code == 403 and "deploy:check" in response.json()["error"]
    assert not GateCheck.objects.exists()


def test_a_body_sent_as_a_form_by_plain_curl_d_is_read_as_json(client, env, token):
    response = client.post(
        "/api/deploys/check", data='{"environment": "production", "version": "v1.4"}',
        content_type="application/x-www-form-urlencoded", HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip
    assert response.status_code == 200 and response.json()["allowed"] is True


def test_an_approval_lets_one_deploy_through(client, env, token, bob):
    env.require_deploy_approval = True
    env.save()
    ask(client, token)
    first = DeployApproval.objects.get()
    first.approve(bob, confirmation="production")
    assert ask(client, token).json()["allowed"] is True
    assert ask(client, token).json()["allowed"] is True, "until it is used"
    Deployment.objects.create(environment=env, external_id="gh-1", version="abc1234",
                              commit="ABC1234", status="succeeded")  # fmt: skip
    again = ask(client, token).json()
    assert again["answer"] == "waiting" and again["approval"]["id"] != first.pk


def test_a_failed_pre_deploy_backup_refuses_instead_of_starting_another(
    client, env, token, tmp_path
):
    from backups.models import Backup, DatabaseTarget

    target = DatabaseTarget.objects.create(name="shop", engine="sqlite",
                                           dsn=f"sqlite:///{tmp_path}/x.db")  # fmt: skip
    env.backup_target = target
    env.save()
    assert ask(client, token, start_backup=True).json()["answer"] == "waiting"
    Backup.objects.update(status="failed", error="pg_dump: connection refused")
    response = ask(client, token, start_backup=True)
    assert refused_for(response) == ["backup_too_old"]
    message = response.json()["reasons"][0]["message"]
    assert "the backup taken before a deploy" in message and "failed" in message
    assert "connection refused" not in message and Backup.objects.count() == 1
