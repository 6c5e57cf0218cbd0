"""The sample pipeline talks to the console the way the console checks: its shell steps run
for real (bash, jq, openssl, curl) against a live server."""

import re
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from django.utils import timezone

from alerts.models import Silence
from deployments.models import DeployApproval, Deployment, Environment, GateCheck
from opsconsole.models import ApiToken

PIPELINE = Path(__file__).resolve().parents[2] / "docs" / "github-actions-pipeline.yml"
GITHUB = {
    "PATH": "/usr/bin:/bin", "GITHUB_RUN_ID": "77", "GITHUB_RUN_ATTEMPT": "1",
    "GITHUB_SHA": "0123456789abcdef", "GITHUB_ACTOR": "octocat",
    "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/shorts",
}  # fmt: skip


@pytest.fixture(autouse=True)
def tools():
    for tool in ("jq", "openssl", "curl"):
        if not shutil.which(tool):
            from tests.peers import ensure_binary

            ensure_binary(tool, tool)


def step(job: str, name: str) -> tuple[str, dict]:
    """The shell of a step, and the job's env."""
    jobs = yaml.safe_load(PIPELINE.read_text())["jobs"]
    found = next(s for s in jobs[job]["steps"] if s.get("name") == name)
    return found["run"], jobs[job].get("env", {})


def run(job: str, name: str, **env) -> subprocess.CompletedProcess:
    script, job_env = step(job, name)
    return subprocess.run(["bash", "-e", "-c", script], env={**GITHUB, **job_env, **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_the_pipeline_has_the_designs_jobs_in_order():
    jobs = yaml.safe_load(PIPELINE.read_text())["jobs"]
    assert list(jobs) == ["test", "audit", "lint", "build", "deploy-staging", "smoke", "gate",
                          "deploy-production", "release"]  # fmt: skip
    assert jobs["deploy-production"]["needs"] == "gate" and jobs["gate"]["needs"] == "smoke"


@pytest.mark.django_db(transaction=True)
def test_both_deploy_jobs_report_to_the_signed_webhook(live_server):
    for name in ("staging", "production"):
        Environment.objects.create(name=name, provider="local", provider_config={"port": 18081},
                                   webhook_secret="wf-secret")  # fmt: skip
    for job in ("deploy-staging", "deploy-production"):
        result = run(job, "Tell opsconsole", OPSCONSOLE_URL=live_server.url,
                     OPSCONSOLE_WEBHOOK_SECRET="wf-secret", STATUS="succeeded")  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        assert re.search(r'"created": true', result.stdout)
    assert sorted(Deployment.objects.values_list("environment__name", "external_id", "version",
                                                 "started_by")) == [
        ("production", "gh-77-1-production", "0123456", "octocat"),
        ("staging", "gh-77-1-staging", "0123456", "octocat"),
    ]  # fmt: skip


@pytest.fixture
def production(transactional_db, django_user_model):
    from django.contrib.auth.models import Group

    alice = django_user_model.objects.create_user("alice", is_staff=True)
    alice.groups.add(Group.objects.get(name="Operator"))
    bob = django_user_model.objects.create_user("bob", is_staff=True)
    bob.groups.add(Group.objects.get(name="Approver"))
    env = Environment.objects.create(name="production", provider="local",
                                     provider_config={"port": 18082}, webhook_secret="wf-secret",
                                     require_deploy_approval=True, two_person_rule=True)  # fmt: skip
    _, token = ApiToken.issue("ci", scopes=["deploy:check"], created_by=alice)
    return env, token, bob


def test_the_gate_job_waits_for_the_approval_then_lets_the_deploy_go(live_server, production):
    _, token, bob = production
    script, job_env = step("gate", "Ask the opsconsole deploy gate")
    gate = subprocess.Popen(
        ["bash", "-e", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**GITHUB, **job_env, "OPSCONSOLE_URL": live_server.url,
             "OPSCONSOLE_DEPLOY_TOKEN": token, "GATE_POLL_SECONDS": "1"},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not DeployApproval.objects.exists():
            assert gate.poll() is None and time.monotonic() < deadline, "the gate step gave up"
            time.sleep(0.2)
        time.sleep(1.5)  # it polls at least once more, still waiting
        DeployApproval.objects.get().approve(bob, confirmation="production")
        output, _ = gate.communicate(timeout=20)
    finally:
        gate.kill()
    assert gate.returncode == 0, output
    lines = output.splitlines()
    assert lines[0].startswith("0123456 waits to production: waiting for approval")
    assert lines[-1] == "0123456 may deploy to production."
    answers = list(GateCheck.objects.order_by("at").values_list("answer", flat=True))
    assert answers[0] == "waiting" and answers[-1] == "allowed" and len(answers) >= 3
    check = GateCheck.objects.first()
    assert check.pipeline_url == "https://github.com/acme/shorts/actions/runs/77"
    assert check.commit == "0123456789abcdef" and check.asked_by == "token ci (alice)"


def test_the_gate_job_fails_with_every_reason_when_refused(live_server, production):
    env, token, _ = production
    env.require_deploy_approval = False
    env.save()
    now = timezone.now()
    Silence.objects.create(starts_at=now, ends_at=now + timedelta(hours=1), reason="Black Friday",
                           freeze_deploys=True)  # fmt: skip
    Deployment.objects.create(environment=env, external_id="d1", version="v1", status="watching")
    result = run("gate", "Ask the opsconsole deploy gate", OPSCONSOLE_URL=live_server.url,
                 OPSCONSOLE_DEPLOY_TOKEN=token)  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    errors = [line for line in result.stdout.splitlines() if line.startswith("::error::")]
    assert len(errors) == 2
    assert errors[0].startswith("::error::another deploy is in progress: v1 (Watching)")
    assert "Black Friday" in errors[1] and errors[1].endswith("(deploy_freeze)")
