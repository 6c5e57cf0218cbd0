"""Deploy webhooks and the rollback API: signed or token-authenticated, JSON 4xx on bad input."""

from __future__ import annotations

from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from deployments import intake
from deployments.models import Environment
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
    return payload


@csrf_exempt
@login_not_required
@require_POST
def deploy_webhook(request):
    try:
        body = read_body(request, WEBHOOK_MAX_BODY)
        payload = _validate(parse_json(body))
        env = Environment.objects.filter(name=str(payload["environment"])).first()
        # Authenticate before saying whether the environment exists... except that the
        # secret is per environment: an unknown one has none, so 404 is all we can say.
        if env is None:
            raise WebhookError(404, f"unknown environment {payload['environment']!r}")
        secrets = env.signing_secrets()
        if not secrets:
            raise WebhookError(401, "no signing secret is configured for this environment")
        verify_timestamped(
            source=f"deploy:{env.pk}",
            secrets=secrets,
            timestamp=request.headers.get("X-Opsconsole-Timestamp"),
            signature=request.headers.get("X-Opsconsole-Signature"),
            body=body,
        )
    except WebhookError as exc:
        return exc.response()
    deployment, created = intake.receive(env, payload)
    transaction.on_commit(lambda: enqueue("deployments.tasks.process_deployment", deployment.pk))
    return JsonResponse(
        {"deployment": deployment.pk, "status": deployment.status, "created": created},
        status=201 if created else 200,
    )


@require_POST
@bearer_token()
def rollback_api(request):
    """Files a rollback request; approval still applies (it never bypasses it)."""
    try:
        payload = parse_json(read_body(request, WEBHOOK_MAX_BODY))
        if not isinstance(payload, dict):
            raise WebhookError(400, "the body must be a JSON object")
        missing = [f for f in ("environment", "reason") if not payload.get(f)]
        if missing:
            raise WebhookError(400, f"missing field(s): {', '.join(missing)}", missing=missing)
        env = Environment.objects.filter(name=str(payload["environment"])).first()
        if env is None:
            raise WebhookError(404, f"unknown environment {payload['environment']!r}")
        try:
            rollback = request_rollback(
                env,
                None,
                reason=str(payload["reason"])[:2000],
                target_version=payload.get("target_version"),
            )
        except ValidationError as exc:
            raise WebhookError(409, exc.messages[0]) from None
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
