"""The console as a GitHub App answering deployment protection rules.

GitHub sends `deployment_protection_rule` (signed with the App's webhook secret)
when a job targets an environment protected by the App. The console runs its
deploy gate and answers through the event's callback URL, as the App: a JWT
(RS256, signed with the App's private key, issued by its client ID, valid ten
minutes) is exchanged for an installation token, which posts `approved` or
`rejected` with a comment naming the kinds of reasons (their details stay in the
console). A gate that is waiting (an approval asked for, a backup under way)
answers later, when it is decided.

The answer is sent by a worker, never in GitHub's request. The installation
token is only ever sent to the App's own API URL: a callback URL elsewhere is
refused, so a forged payload cannot make the console hand its token away.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import jwt
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from alerts.notify import absolute
from deployments import gate
from deployments.models import Deployment, GateCheck, GitHubApp
from opsconsole import http
from opsconsole.fields import reveal
from opsconsole.tasks import enqueue
from opsconsole.webhooks import WebhookError, hmac_hex, parse_json, read_body, signatures_match

log = logging.getLogger("opsconsole.deployments.github")

MAX_BODY = 1024 * 1024  # GitHub caps payloads at 25 MB; this event is a few KB.
API_VERSION = "2022-11-28"
# GitHub allows a JWT of at most ten minutes; iat a minute back absorbs clock drift.
JWT_LIFETIME_SECONDS = 540
MAX_COMMENT = 1000


class GitHubError(Exception):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# --- as the App ------------------------------------------------------------------------
def app_jwt(app: GitHubApp, now: float | None = None) -> str:
    """The App's JWT: RS256 over {iat, exp, iss}, as GitHub documents."""
    issued = int(now if now is not None else time.time()) - 60
    key = reveal(app.private_key)
    if not key:
        raise GitHubError(f"the GitHub App {app} has no private key")
    return jwt.encode(
        {"iat": issued, "exp": issued + 60 + JWT_LIFETIME_SECONDS, "iss": app.app_id},
        key,
        algorithm="RS256",
    )


def _api(app: GitHubApp, method: str, url: str, token: str, payload: dict | None = None):
    try:
        return http.request(
            method,
            url,
            json=payload,
            timeout=20,
            secrets=[token],
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": API_VERSION,
            },
        )
    except http.HttpError as exc:
        raise GitHubError(f"GitHub API: {exc.message}") from None


def installation_token(app: GitHubApp, installation: int) -> str:
    url = f"{app.api_url.rstrip('/')}/app/installations/{installation}/access_tokens"
    response = _api(app, "POST", url, app_jwt(app))
    try:
        token = response.json()["token"]
    except (ValueError, KeyError, TypeError):
        raise GitHubError("GitHub API: no token in the installation token answer") from None
    if not isinstance(token, str) or not token:
        raise GitHubError("GitHub API: an empty installation token")
    return token


def comment_for(check: GateCheck) -> str:
    """What GitHub shows on the run. Anyone who reads the repository sees it: the kind of
    each reason and a link to the console (behind its login), never the details."""
    if check.allowed:
        return f"opsconsole: {check.version} may deploy to {check.environment}."
    lines = [f"opsconsole refused {check.version} for {check.environment}:"]
    lines += [
        f"- {gate.REASON_WORDS.get(r['code'], r['code'])} ({r['code']})" for r in check.reasons
    ]
    lines.append(
        f"Details: {absolute(reverse('admin:deployments_gatecheck_change', args=[check.pk]))}"
    )
    return "\n".join(lines)[:MAX_COMMENT]


def answer(check: GateCheck) -> None:
    """Tell GitHub the gate's answer for a decided check, once."""
    if check.answer == GateCheck.Answer.WAITING or check.github_state:
        return
    app = check.github_app
    if app is None:
        raise GitHubError("the GitHub App of this check was deleted")
    state = "approved" if check.allowed else "rejected"
    token = installation_token(app, check.github_installation)
    _api(
        app,
        "POST",
        check.github_callback_url,
        token,
        {
            "environment_name": check.github_environment,
            "state": state,
            "comment": comment_for(check),
        },
    )
    GateCheck.objects.filter(pk=check.pk).update(
        github_state=state, answered_at=timezone.now(), github_error=""
    )
    log.info("told GitHub %s for %s (check %s)", state, check.github_repository, check.pk)


# --- GitHub's webhook ---------------------------------------------------------------------
def _verify(body: bytes, signature: str | None) -> GitHubApp:
    """The App whose webhook secret signed `body` (X-Hub-Signature-256)."""
    if not signature or not signature.startswith("sha256="):
        raise WebhookError(401, "missing X-Hub-Signature-256")
    given = signature.removeprefix("sha256=")
    for app in GitHubApp.objects.all():
        secret = reveal(app.webhook_secret)
        if secret and signatures_match(hmac_hex(secret, body), given):
            return app
    raise WebhookError(401, "bad signature")


def _callback_allowed(app: GitHubApp, url: Any) -> bool:
    base = app.api_url.rstrip("/") + "/repos/"
    return isinstance(url, str) and url.startswith(base) and ".." not in url and "?" not in url


@csrf_exempt
@login_not_required
@require_POST
def webhook(request):
    """GitHub's events for the App; only deployment protection rules are acted on.

    The answer is worked out by a worker (the provider may take longer to list variables
    than GitHub waits for a webhook); here the question is recorded, once per deployment:
    a redelivery or a replay gets the same record back and changes nothing."""
    try:
        body = read_body(request, MAX_BODY)
        app = _verify(body, request.headers.get("X-Hub-Signature-256"))
        event = request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return JsonResponse({"ok": True, "app": app.name})
        if event != "deployment_protection_rule":
            return JsonResponse({"ignored": event or "no event"}, status=202)
        question = _question(app, parse_json(body))
        with transaction.atomic():
            check, created = _record(app, question)
    except WebhookError as exc:
        return exc.response()
    return JsonResponse(
        {"check": check.pk, "answer": check.answer, "duplicate": not created},
        status=202 if created else 200,
    )


def _text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _question(app: GitHubApp, payload: Any) -> dict[str, Any]:
    """The protection rule's fields, each checked: a signed but odd payload is a 400."""
    if not isinstance(payload, dict):
        raise WebhookError(400, "the body must be a JSON object")
    if payload.get("action") != "requested":
        raise WebhookError(400, f"unexpected action {str(payload.get('action'))[:40]!r}")
    parts = {
        key: payload.get(key) if isinstance(payload.get(key), dict) else {}
        for key in ("installation", "deployment", "repository", "sender")
    }
    callback = payload.get("deployment_callback_url")
    if not _callback_allowed(app, callback) or len(callback) > 500:
        raise WebhookError(400, f"deployment_callback_url is not on {app.api_url}")
    installation = parts["installation"].get("id")
    if type(installation) is not int or not 0 < installation < 2**63:
        raise WebhookError(400, "missing installation.id")
    deployment_id = parts["deployment"].get("id")
    if deployment_id is not None and (
        type(deployment_id) is not int or not 0 < deployment_id < 2**63
    ):
        raise WebhookError(400, "deployment.id must be a number")
    github_env = _text(payload.get("environment"), 201)
    if not github_env or len(github_env) > 200:
        raise WebhookError(400, "missing environment (at most 200 characters)")
    repository = _text(parts["repository"].get("full_name"), 200)
    if not app.answers_for(repository):
        raise WebhookError(403, f"the App does not answer for {repository or 'this repository'}")
    sha = _text(parts["deployment"].get("sha") or payload.get("sha"), 64)
    version = sha[:12] or _text(parts["deployment"].get("ref"), 200) or "unknown"
    if sha and (problem := Deployment.argv_value_problem("commit", sha)):
        raise WebhookError(400, f"deployment.sha: {problem}")
    if problem := Deployment.argv_value_problem("version", version):
        raise WebhookError(400, f"version: {problem}")
    env = app.console_environment(github_env)
    if env is None:
        raise WebhookError(
            404, f"no console environment for GitHub environment {github_env!r}; map it "
            f"in the GitHub App's environments"
        )  # fmt: skip
    run_url = callback.rstrip("/").rsplit("/", 1)[0]  # …/repos/OWNER/REPO/actions/runs/ID
    return {
        "env": env, "version": version, "commit": sha,
        "pipeline_url": run_url.replace("https://api.github.com/repos/", "https://github.com/")
        if run_url.startswith("https://api.github.com/repos/") else "",
        "sender": _text(parts["sender"].get("login"), 100) or "someone",
        "repository": repository, "github_env": github_env, "installation": installation,
        "deployment_id": deployment_id, "callback": callback,
    }  # fmt: skip


def _record(app: GitHubApp, q: dict[str, Any]) -> tuple[GateCheck, bool]:
    same = GateCheck.objects.filter(
        source=GateCheck.Source.GITHUB, github_callback_url=q["callback"],
        github_environment=q["github_env"], github_deployment=q["deployment_id"],
    )  # fmt: skip
    if found := same.order_by("at").first():
        return found, False
    check = GateCheck.objects.create(
        environment=q["env"], version=q["version"], commit=q["commit"],
        pipeline_url=q["pipeline_url"], source=GateCheck.Source.GITHUB,
        asked_by=f"GitHub {q['repository']} (deployment by {q['sender']})",
        answer=GateCheck.Answer.WAITING,
        reasons=[{"code": "checking", "message": "received; the gate is checking"}],
        github_app=app, github_repository=q["repository"], github_environment=q["github_env"],
        github_installation=q["installation"], github_deployment=q["deployment_id"],
        github_callback_url=q["callback"], github_sender=q["sender"],
    )  # fmt: skip
    transaction.on_commit(lambda: enqueue("deployments.tasks.recheck_gate", check.pk))
    return check, True
