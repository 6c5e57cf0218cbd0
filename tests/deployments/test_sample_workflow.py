"""The sample GitHub Actions step signs the way the console checks: run its shell for real."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from deployments.models import Deployment, Environment

WORKFLOW = Path(__file__).resolve().parents[2] / "docs" / "github-actions-deploy-webhook.yml"


@pytest.mark.django_db(transaction=True)
def test_the_sample_workflow_step_is_accepted_by_the_webhook(live_server):
    for tool in ("jq", "openssl", "curl"):
        if not shutil.which(tool):
            from tests.peers import ensure_binary

            ensure_binary(tool, tool)
    Environment.objects.create(name="production", provider="local", provider_config={"port": 18081},
                               webhook_secret="wf-secret")  # fmt: skip
    step = yaml.safe_load(WORKFLOW.read_text())["jobs"]["deploy"]["steps"][-1]
    script = step["run"]
    env = {
        "PATH": "/usr/bin:/bin", "OPSCONSOLE_URL": live_server.url, "OPSCONSOLE_WEBHOOK_SECRET": "wf-secret",
        "STATUS": "succeeded", "GITHUB_RUN_ID": "77", "GITHUB_RUN_ATTEMPT": "1", "GITHUB_SHA": "0123456789abcdef",
        "GITHUB_ACTOR": "octocat", "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "acme/shorts",
    }  # fmt: skip
    result = subprocess.run(
        ["bash", "-e", "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r'"created": true', result.stdout)
    deployment = Deployment.objects.get()
    assert (deployment.external_id, deployment.version, deployment.started_by) == (
        "gh-77-1",
        "0123456",
        "octocat",
    )
