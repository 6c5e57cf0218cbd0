"""Sentry and Alertmanager webhooks: authenticated, replay-proof, through the one door."""

import hashlib
import hmac
import json
import time

import pytest

from alerts.models import Incident

SENTRY_SECRET = "sentry-client-secret"


def sentry_post(client, payload, *, secret=SENTRY_SECRET, timestamp=None, resource="event_alert",
                signature=None):  # fmt: skip
    body = json.dumps(payload).encode()
    signature = signature or hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    headers = {"HTTP_SENTRY_HOOK_SIGNATURE": signature, "HTTP_SENTRY_HOOK_RESOURCE": resource}
    if timestamp != "omit":
        headers["HTTP_SENTRY_HOOK_TIMESTAMP"] = str(timestamp or int(time.time()))
    return client.post("/webhooks/sentry", data=body, content_type="application/json", **headers)


@pytest.fixture
def sentry_secret(settings):
    settings.SENTRY_WEBHOOK_SECRET = SENTRY_SECRET


EVENT = {
    "action": "triggered",
    "data": {
        "event": {"issue_id": "4242", "title": "ZeroDivisionError: division by zero", "level": "error",
                  "web_url": "https://sentry.example/issues/4242/", "project": "api",
                  "timestamp": time.time() - 30},
        "triggered_rule": "Any new issue",
    },
}  # fmt: skip


def test_a_signed_sentry_alert_opens_an_incident(client, sentry_secret, channels):
    response = sentry_post(client, EVENT)
    assert response.status_code == 202, response.json()
    incident = Incident.objects.get()
    assert (incident.fingerprint, incident.source, incident.priority) == (
        "sentry:4242",
        "sentry",
        "high",
    )
    assert incident.title == "ZeroDivisionError: division by zero"
    assert incident.details["url"] == "https://sentry.example/issues/4242/"


def test_a_bad_signature_is_401_and_opens_nothing(client, sentry_secret, channels):
    response = sentry_post(client, EVENT, secret="wrong")
    assert response.status_code == 401
    assert "Sentry-Hook-Signature" in response.json()["error"]
    assert not Incident.objects.exists()


def test_a_replayed_sentry_request_is_refused(client, sentry_secret, channels):
    stamp = int(time.time())
    assert sentry_post(client, EVENT, timestamp=stamp).status_code == 202
    again = sentry_post(client, EVENT, timestamp=stamp)
    assert again.status_code == 401
    assert "replayed" in again.json()["error"]


def test_a_stale_sentry_request_is_refused(client, sentry_secret, channels):
    response = sentry_post(client, EVENT, timestamp=int(time.time()) - 3600)
    assert response.status_code == 401


def test_a_sentry_request_from_the_future_is_refused(client, sentry_secret, channels):
    response = sentry_post(client, EVENT, timestamp=int(time.time()) + 3600)
    assert response.status_code == 401
    assert not Incident.objects.exists()
    assert sentry_post(client, EVENT, timestamp=int(time.time()) + 30).status_code == 202


def test_a_sentry_request_without_its_timestamp_is_refused(client, sentry_secret, channels):
    response = sentry_post(client, EVENT, timestamp="omit")
    assert response.status_code == 401 and "Sentry-Hook-Timestamp" in response.json()["error"]
    assert not Incident.objects.exists()


def test_an_old_sentry_event_with_a_fresh_timestamp_is_refused(client, sentry_secret, channels):
    # The header is not signed: a captured delivery must not pass with a new one.
    old = {**EVENT, "data": {**EVENT["data"], "event": {**EVENT["data"]["event"],
                                                         "timestamp": time.time() - 3 * 86400}}}  # fmt: skip
    response = sentry_post(client, old)
    assert response.status_code == 401 and "older than a day" in response.json()["error"]
    assert not Incident.objects.exists()


def test_a_sentry_signature_with_non_ascii_text_is_401(client, sentry_secret, channels):
    client.raise_request_exception = False
    assert sentry_post(client, EVENT, signature="\u00e9t\u00e9").status_code == 401


def test_sentry_payload_without_an_event_is_400(client, sentry_secret, channels):
    response = sentry_post(client, {"data": {}})
    assert response.status_code == 400
    assert response.json()["error"] == "missing data.event in the Sentry payload"


def test_sentry_webhook_is_404_until_configured(client, db):
    assert sentry_post(client, EVENT).status_code == 404


def alertmanager_post(client, payload, token):
    return client.post(
        "/webhooks/alertmanager", data=json.dumps(payload), content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )  # fmt: skip


def am_alert(status="firing", fingerprint="abc123", severity="critical"):
    return {
        "status": status,
        "labels": {"alertname": "HighLatency", "severity": severity, "service": "api"},
        "annotations": {"summary": "p95 latency above 2 s"},
        "startsAt": "2026-11-26T02:00:00Z",
        "fingerprint": fingerprint,
    }


def test_alertmanager_firing_then_resolved(client, api_token, channels):
    response = alertmanager_post(
        client, {"version": "4", "status": "firing", "alerts": [am_alert()]}, api_token
    )
    assert response.status_code == 202
    incident = Incident.objects.get()
    assert (incident.fingerprint, incident.priority, incident.component) == (
        "alertmanager:abc123",
        "critical",
        "api",
    )
    assert incident.title == "HighLatency: p95 latency above 2 s"
    response = alertmanager_post(
        client, {"version": "4", "status": "resolved", "alerts": [am_alert("resolved")]}, api_token
    )
    assert response.json()["resolved"] == 1
    incident.refresh_from_db()
    assert incident.status == "resolved"


def test_alertmanager_needs_the_bearer_token(client, channels):
    response = alertmanager_post(client, {"alerts": [am_alert()]}, "oc_wrong")
    assert response.status_code == 401
    assert not Incident.objects.exists()


def test_alertmanager_bad_payloads_are_400(client, api_token, channels):
    assert alertmanager_post(client, {"nothing": 1}, api_token).status_code == 400
    response = alertmanager_post(client, {"alerts": [{"status": "firing"}]}, api_token)
    assert response.status_code == 400
    assert response.json()["invalid"] == [0]
    assert not Incident.objects.exists()
