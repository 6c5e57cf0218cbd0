"""HTTP entry points: metrics push, Sentry and Alertmanager webhooks, the signed ack link."""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from datetime import UTC
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core import signing
from django.db import transaction
from django.http import HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from alerts import incidents, notify
from alerts.metrics import parse_sample
from alerts.models import Incident, MetricSample, Priority
from opsconsole import permissions
from opsconsole.api import bearer_token
from opsconsole.models import WebhookReceipt
from opsconsole.webhooks import (
    MAX_SKEW_SECONDS,
    WebhookError,
    parse_json,
    read_body,
    signatures_match,
)

SENTRY_MAX_EVENT_AGE = 24 * 3600

METRICS_MAX_BODY = 1024 * 1024
METRICS_MAX_SAMPLES = 1000


@require_POST
@bearer_token("metrics:write")
def push_metrics(request):
    """All or nothing: any bad sample refuses the whole batch, naming each by index."""
    try:
        body = parse_json(read_body(request, METRICS_MAX_BODY))
        if not isinstance(body, list):
            raise WebhookError(400, "the body must be a JSON list of samples")
        if not body:
            raise WebhookError(400, "the list of samples is empty")
        if len(body) > METRICS_MAX_SAMPLES:
            raise WebhookError(
                400, f"{len(body)} samples; send at most {METRICS_MAX_SAMPLES} per request"
            )
        now = timezone.now()
        samples, problems = [], []
        for index, entry in enumerate(body):
            errors, sample = parse_sample(entry, now)
            if errors:
                problems.append({"index": index, "errors": errors})
            else:
                samples.append(sample)
        if problems:
            raise WebhookError(
                400, f"{len(problems)} invalid sample(s); nothing was saved", invalid=problems
            )
    except WebhookError as exc:
        return exc.response()
    with transaction.atomic():
        MetricSample.objects.bulk_create(samples, batch_size=1000)
    return JsonResponse({"accepted": len(samples)}, status=202)


SENTRY_PRIORITY = {"fatal": Priority.CRITICAL, "error": Priority.HIGH, "warning": Priority.MEDIUM}


def _sentry_event_time(payload: Any) -> float | None:
    event = (payload.get("data") or {}).get("event") if isinstance(payload, dict) else None
    if not isinstance(event, dict):
        return None
    stamp = event.get("timestamp")
    if isinstance(stamp, int | float) and not isinstance(stamp, bool) and math.isfinite(stamp):
        return float(stamp)
    parsed = parse_datetime(str(event.get("datetime") or ""))
    if parsed is None:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()


@csrf_exempt
@login_not_required
@require_POST
def sentry_webhook(request):
    """Sentry issue alerts (`event_alert`) open incidents; verified by Sentry-Hook-Signature."""
    try:
        secret = settings.SENTRY_WEBHOOK_SECRET
        if not secret:
            raise WebhookError(404, "the Sentry webhook is not configured (SENTRY_WEBHOOK_SECRET)")
        body = read_body(request, 1024 * 1024)
        signature = request.headers.get("Sentry-Hook-Signature", "")
        expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not signature or not signatures_match(expected, signature):
            raise WebhookError(401, "bad or missing Sentry-Hook-Signature")
        stamp = request.headers.get("Sentry-Hook-Timestamp", "")
        if not stamp.isdigit() or abs(time.time() - int(stamp)) > MAX_SKEW_SECONDS:
            raise WebhookError(
                401, "missing Sentry-Hook-Timestamp, or outside the accepted 5-minute window"
            )
        payload = parse_json(body)
        resource = request.headers.get("Sentry-Hook-Resource", "event_alert")
        if resource != "event_alert":
            return JsonResponse({"ignored": resource}, status=202)
        event = (payload.get("data") or {}).get("event") if isinstance(payload, dict) else None
        if not isinstance(event, dict):
            raise WebhookError(400, "missing data.event in the Sentry payload")
        # The timestamp header is not signed: the event's own time (inside the signed body)
        # must be recent too, and receipts outlive it, so no capture can be replayed.
        happened = _sentry_event_time(payload)
        if happened is None or abs(time.time() - happened) > SENTRY_MAX_EVENT_AGE:
            raise WebhookError(
                401, "the event's data.event.datetime is missing or older than a day"
            )
        if not WebhookReceipt.first_time("sentry", signature):
            raise WebhookError(401, "signature already used (replayed request)")
    except WebhookError as exc:
        return exc.response()
    issue = str(event.get("issue_id") or event.get("event_id") or "unknown")
    rule = (payload.get("data") or {}).get("triggered_rule") or "Sentry alert"
    incident = incidents.raise_incident(
        source="sentry",
        fingerprint=f"sentry:{issue}",
        title=f"{event.get('title') or 'Sentry issue'}"[:300],
        priority=SENTRY_PRIORITY.get(str(event.get("level")), Priority.HIGH),
        component=str(event.get("project") or "sentry"),
        details={
            "sentry_rule": rule,
            "url": event.get("web_url") or event.get("url"),
            "level": event.get("level"),
        },
    )
    return JsonResponse({"incident": incident.pk}, status=202)


ALERTMANAGER_PRIORITY = {
    "critical": Priority.CRITICAL,
    "page": Priority.CRITICAL,
    "high": Priority.HIGH,
    "error": Priority.HIGH,
    "warning": Priority.MEDIUM,
    "medium": Priority.MEDIUM,
    "info": Priority.LOW,
    "low": Priority.LOW,
}


@require_POST
@bearer_token("alerts:write")
def alertmanager_webhook(request):
    """Alertmanager's webhook receiver: firing alerts open incidents, resolved ones resolve them."""
    try:
        payload = parse_json(read_body(request, 1024 * 1024))
        if not isinstance(payload, dict) or not isinstance(payload.get("alerts"), list):
            raise WebhookError(
                400, "expected an Alertmanager webhook payload with an 'alerts' list"
            )
        bad = [
            i
            for i, a in enumerate(payload["alerts"])
            if not isinstance(a, dict) or not a.get("fingerprint")
        ]
        if bad:
            raise WebhookError(400, "alerts without a fingerprint", invalid=bad)
    except WebhookError as exc:
        return exc.response()
    opened, resolved = [], []
    for alert in payload["alerts"]:
        fingerprint = f"alertmanager:{alert['fingerprint']}"
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items()}
        annotations = alert.get("annotations") or {}
        if alert.get("status") == "resolved":
            if incidents.resolve_incident(fingerprint, reason="resolved in Alertmanager"):
                resolved.append(fingerprint)
            continue
        name = labels.get("alertname", "Alertmanager alert")
        summary = annotations.get("summary") or annotations.get("description") or ""
        incident = incidents.raise_incident(
            source="alertmanager",
            fingerprint=fingerprint,
            title=f"{name}: {summary}" if summary else name,
            priority=ALERTMANAGER_PRIORITY.get(labels.get("severity", "").lower(), Priority.HIGH),
            component=labels.get("service") or labels.get("job") or "prometheus",
            details={
                "labels": labels,
                "annotations": annotations,
                "starts_at": alert.get("startsAt"),
                "generator": alert.get("generatorURL"),
            },
        )
        opened.append(incident.pk)
    return JsonResponse({"incidents": opened, "resolved": len(resolved)}, status=202)


@require_http_methods(["GET", "POST"])
def acknowledge_link(request, token: str):
    """The signed, expiring link from a notification; login first, then a confirmation."""
    try:
        incident = notify.incident_from_token(token)
    except signing.SignatureExpired:
        return render(request, "alerts/ack.html", {"error": "This link has expired."}, status=410)
    except (signing.BadSignature, Incident.DoesNotExist):
        return render(request, "alerts/ack.html", {"error": "This link is not valid."}, status=404)
    allowed = request.user.has_perm(permissions.ACKNOWLEDGE_INCIDENT)
    if request.method == "POST":
        if incidents.acknowledge(incident, request.user):  # PermissionDenied -> 403
            messages.success(request, f"Acknowledged: {incident.title}. Escalation stopped.")
        else:
            messages.info(
                request, f"This incident is already {incident.get_status_display().lower()}."
            )
        return HttpResponseRedirect(reverse("admin:alerts_incident_change", args=[incident.pk]))
    return render(request, "alerts/ack.html", {"incident": incident, "allowed": allowed})
