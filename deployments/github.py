"""The console as a GitHub App answering deployment protection rules.

GitHub sends `deployment_protection_rule` (signed with the App's webhook secret)
when a job targets an environment protected by the App. The console runs its
deploy gate and answers through the event's callback URL, as the App: a JWT
(RS256, signed with the App's private key, issued by its client ID, valid ten
minutes) is exchanged for an installation token, which posts `approved` or
`rejected` with a comment naming the reasons. A gate that is waiting (an
approval asked for, a backup under way) answers later, when it is decided.

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
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from deployments import gate
from deployments.models import GateCheck, GitHubApp
from opsconsole import http
from opsconsole.fields import reveal
from opsconsole.models import WebhookReceipt
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
    if check.allowed:
        text = f"opsconsole: {check.version} may deploy to {check.environment}."
    else:
        lines = [f"opsconsole refused {check.version} for {check.environment}:"]
        lines += [f"- {r['message']} ({r['code']})" for r in check.reasons]
        text = "\n".join(lines)
    return text[:MAX_COMMENT]


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
    """GitHub's events for the App; only deployment protection rules are acted on."""
    try:
        body = read_body(request, MAX_BODY)
        app = _verify(body, request.headers.get("X-Hub-Signature-256"))
        delivery = request.headers.get("X-GitHub-Delivery") or ""
        # GitHub signs no timestamp: a delivery id (and its signature) is accepted once.
        if not WebhookReceipt.first_time(
            "github", f"{delivery}:{request.headers['X-Hub-Signature-256']}"
        ):
            raise WebhookError(401, "delivery already received (replayed request)")
        event = request.headers.get("X-GitHub-Event", "")
        if event == "ping":
            return JsonResponse({"ok": True, "app": app.name})
        if event != "deployment_protection_rule":
            return JsonResponse({"ignored": event or "no event"}, status=202)
        payload = parse_json(body)
        check = _protection_rule(app, payload)
    except WebhookError as exc:
        return exc.response()
    return JsonResponse(
        {"check": check.pk, "answer": check.answer, "reasons": check.reasons}, status=202
    )


def _protection_rule(app: GitHubApp, payload: Any) -> GateCheck:
    if not isinstance(payload, dict):
        raise WebhookError(400, "the body must be a JSON object")
    if payload.get("action") != "requested":
        raise WebhookError(400, f"unexpected action {payload.get('action')!r}")
    callback = payload.get("deployment_callback_url")
    if not _callback_allowed(app, callback):
        raise WebhookError(400, f"deployment_callback_url is not on {app.api_url}")
    installation = (payload.get("installation") or {}).get("id")
    if not isinstance(installation, int):
        raise WebhookError(400, "missing installation.id")
    github_env = payload.get("environment")
    if not isinstance(github_env, str) or not github_env:
        raise WebhookError(400, "missing environment")
    deployment = payload.get("deployment") or {}
    sha = str(deployment.get("sha") or payload.get("sha") or "")
    repository = str((payload.get("repository") or {}).get("full_name") or "")[:200]
    sender = str((payload.get("sender") or {}).get("login") or "someone")[:100]
    env = app.console_environment(github_env)
    github = {
        "source": GateCheck.Source.GITHUB,
        "github_app": app,
        "github_repository": repository,
        "github_environment": github_env,
        "github_installation": installation,
        "github_callback_url": callback,
    }
    if env is None:
        raise WebhookError(
            404,
            f"no console environment for GitHub environment {github_env!r}; map it "
            f"in the GitHub App's environments",
        )
    version = sha[:12] or str(deployment.get("ref") or "unknown")[:200]
    if gate_problem := _bad_version(version, sha):
        raise WebhookError(400, gate_problem)
    run = callback.rstrip("/").rsplit("/", 2)[0]
    check = gate.ask(
        env,
        version=version,
        commit=sha,
        pipeline_url=run.replace(app.api_url.rstrip("/") + "/repos/", "https://github.com/")[:500]
        if "api.github.com" in app.api_url
        else "",
        asked_by=f"GitHub {repository} (deployment by {sender})",
        **github,
    )
    if check.answer != GateCheck.Answer.WAITING:
        transaction.on_commit(lambda: enqueue("deployments.tasks.answer_github", check.pk))
    return check


def _bad_version(version: str, sha: str) -> str | None:
    from deployments.models import Deployment

    if sha and (problem := Deployment.argv_value_problem("commit", sha)):
        return f"deployment.sha: {problem}"
    if problem := Deployment.argv_value_problem("version", version):
        return f"version: {problem}"
    return None
