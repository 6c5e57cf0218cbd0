"""Deploy webhooks and the rollback API: signed or token-authenticated, JSON 4xx on bad input."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import URLValidator
from django.db import transaction
from django.http import JsonResponse
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from alerts.notify import absolute
from deployments import gate, intake
from deployments.models import Deployment, Environment
from deployments.rollbacks import request_rollback
from opsconsole.api import bearer_token
from opsconsole.tasks import enqueue
from opsconsole.webhooks import WebhookError, parse_json, read_body, verify_timestamped

WEBHOOK_MAX_BODY = 64 * 1024
REQUIRED = ("deployment_id", "environment", "version")
KNOWN = {*REQUIRED, "commit", "status", "url", "checks", "migrations", "started_by", "actor"}


def _validate(payload) -> dict:
    if not isinstance(payload, dict):
        raise WebhookError(400, "the body must be a JSON object")
    missing = [f for f in REQUIRED if payload.get(f) in (None, "")]
    if missing:
        raise WebhookError(400, f"missing field(s): {', '.join(missing)}", missing=missing)
    unknown = sorted(set(payload) - KNOWN)
    if unknown:
        raise WebhookError(400, f"unknown field(s): {', '.join(unknown)}", unknown=unknown)
    checks = payload.get("checks") or []
    if not isinstance(checks, list) or not all(
        isinstance(c, dict) and c.get("name") and isinstance(c.get("passed"), bool) for c in checks
    ):
        raise WebhookError(400, 'checks must be a list of {"name": ..., "passed": true|false}')
    if not isinstance(payload.get("migrations") or [], list):
        raise WebhookError(400, 'migrations must be a list of {"name": ..., "irreversible": bool}')
    _check_argv_values(
        {f: payload[f] for f in ("deployment_id", "version", "commit") if f in payload}
    )
    return payload


def _check_argv_values(values: dict) -> None:
    """Values that can reach a command provider's argv must look like what they are."""
    bad = {
        field: problem
        for field, value in values.items()
        if (problem := Deployment.argv_value_problem(field, value))
    }
    if bad:
        raise WebhookError(400, "; ".join(f"{f}: {p}" for f, p in bad.items()), invalid=sorted(bad))


@csrf_exempt
@login_not_required
@require_POST
def deploy_webhook(request):
    """A pipeline reports a deploy; signed with the environment's secret (or the global one).

    Authenticated before anything else is said: an unsigned request naming an
    environment that exists and one naming none get the same 401.
    """
    try:
        body = read_body(request, WEBHOOK_MAX_BODY)
        payload = parse_json(body)
        name = payload.get("environment") if isinstance(payload, dict) else None
        env = Environment.objects.filter(name=str(name)).first() if name else None
        global_secret = (
            [settings.OPSCONSOLE_WEBHOOK_SECRET] if settings.OPSCONSOLE_WEBHOOK_SECRET else []
        )
        verify_timestamped(
            source=f"deploy:{env.pk}" if env else "deploy",
            secrets=env.signing_secrets() if env else global_secret,
            timestamp=request.headers.get("X-Opsconsole-Timestamp"),
            signature=request.headers.get("X-Opsconsole-Signature"),
            body=body,
        )
        payload = _validate(payload)
        if env is None:  # signed with the global secret: the caller may know
            raise WebhookError(404, f"unknown environment {payload['environment']!r}")
    except WebhookError as exc:
        return exc.response()
    deployment, created = intake.receive(env, payload)
    transaction.on_commit(lambda: enqueue("deployments.tasks.process_deployment", deployment.pk))
    return JsonResponse(
        {"deployment": deployment.pk, "status": deployment.status, "created": created},
        status=201 if created else 200,
    )


@require_POST
@bearer_token("rollback:request")
def rollback_api(request):
    """Files a rollback request in the name of the token's owner; approval still applies
    (it never bypasses it), and the owner cannot approve it where two people are needed."""
    try:
        payload = parse_json(read_body(request, WEBHOOK_MAX_BODY))
        if not isinstance(payload, dict):
            raise WebhookError(400, "the body must be a JSON object")
        missing = [f for f in ("environment", "reason") if not payload.get(f)]
        if missing:
            raise WebhookError(400, f"missing field(s): {', '.join(missing)}", missing=missing)
        if payload.get("target_version") is not None:
            _check_argv_values({"target_version": payload["target_version"]})
        env = Environment.objects.filter(name=str(payload["environment"])).first()
        if env is None:
            raise WebhookError(404, f"unknown environment {payload['environment']!r}")
        try:
            rollback = request_rollback(
                env,
                request.api_token.created_by,
                token=request.api_token,
                reason=str(payload["reason"])[:2000],
                target_version=payload.get("target_version"),
            )
        except ValidationError as exc:
            raise WebhookError(409, exc.messages[0]) from None
        except PermissionDenied:
            raise WebhookError(
                403, "the token's owner may not request rollbacks (opsconsole.request_rollback)"
            ) from None
    except WebhookError as exc:
        return exc.response()
    return JsonResponse(
        {
            "rollback_request": rollback.pk,
            "status": rollback.status,
            "target_version": rollback.target_deployment.version,
        },
        status=201,
    )


GATE_FIELDS = {"environment", "version", "commit", "pipeline_url", "start_backup"}


def _gate_answer(check) -> JsonResponse:
    body = {
        "allowed": check.allowed,
        "answer": check.answer,
        "environment": check.environment.name,
        "version": check.version,
        "reasons": check.reasons,
        "summary": check.summary(),
        "check": check.pk,
        "check_url": absolute(reverse("admin:deployments_gatecheck_change", args=[check.pk])),
    }
    if check.retry_after:
        body["retry_after"] = check.retry_after
    if check.approval_id:
        body["approval"] = {
            "id": check.approval_id,
            "status": check.approval.status,
            "url": absolute(
                reverse("admin:deployments_deployapproval_change", args=[check.approval_id])
            ),
        }
    if check.backup_id:
        body["backup"] = {"id": check.backup_id, "status": check.backup.status}
    response = JsonResponse(body)
    if check.retry_after:
        response["Retry-After"] = str(check.retry_after)
    return response


@require_POST
@bearer_token("deploy:check")
def deploy_gate_api(request):
    """The pipeline asks before it deploys. 200 with `allowed` true or false (and
    `answer`: allowed, waiting or refused) and every reason; 4xx for a bad question."""
    try:
        payload = parse_json(read_body(request, WEBHOOK_MAX_BODY))
        if not isinstance(payload, dict):
            raise WebhookError(400, "the body must be a JSON object")
        missing = [f for f in ("environment", "version") if payload.get(f) in (None, "")]
        if missing:
            raise WebhookError(400, f"missing field(s): {', '.join(missing)}", missing=missing)
        unknown = sorted(set(payload) - GATE_FIELDS)
        if unknown:
            raise WebhookError(400, f"unknown field(s): {', '.join(unknown)}", unknown=unknown)
        _check_argv_values({f: payload[f] for f in ("version", "commit") if payload.get(f)})
        pipeline_url = payload.get("pipeline_url") or ""
        try:
            URLValidator(schemes=["http", "https"])(pipeline_url) if pipeline_url else None
        except ValidationError:
            raise WebhookError(
                400, "pipeline_url: an http(s) URL", invalid=["pipeline_url"]
            ) from None
        if not isinstance(payload.get("start_backup", False), bool):
            raise WebhookError(400, "start_backup: true or false", invalid=["start_backup"])
        env = Environment.objects.filter(name=str(payload["environment"])).first()
        if env is None:
            raise WebhookError(404, f"unknown environment {payload['environment']!r}")
    except WebhookError as exc:
        return exc.response()
    token = request.api_token
    check = gate.ask(
        env,
        version=str(payload["version"]),
        commit=str(payload.get("commit") or ""),
        pipeline_url=pipeline_url[:500],
        asked_by=f"token {token.name} ({token.created_by or 'no owner'})",
        user=token.created_by,
        token=token,
        start_backup=payload.get("start_backup", False),
    )
    return _gate_answer(check)
