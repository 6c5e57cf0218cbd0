"""Signed inbound webhooks and the machine APIs: signatures, replay protection, JSON errors.

Every receiver answers bad input with a 4xx and a JSON body naming what is
wrong, and reads at most a bounded body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from django.http import JsonResponse

from opsconsole.models import WebhookReceipt

MAX_SKEW_SECONDS = 300


class WebhookError(Exception):
    """Refuse the request with this status and message."""

    def __init__(self, status: int, message: str, **details: Any):
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = details

    def response(self) -> JsonResponse:
        return json_error(self.status, self.message, **self.details)


def json_error(status: int, message: str, **details: Any) -> JsonResponse:
    return JsonResponse({"error": message, **details}, status=status)


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signatures_match(expected: str, given: str) -> bool:
    """Constant-time comparison that treats any text as a (wrong) signature: a header
    with non-ASCII characters is refused, never an error."""
    return hmac.compare_digest(expected.encode(), given.encode("utf-8", "replace"))


def sign_timestamped(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers for an outgoing signed request: HMAC-SHA256 of "<timestamp>.<body>"."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "X-Opsconsole-Timestamp": ts,
        "X-Opsconsole-Signature": "sha256=" + hmac_hex(secret, ts.encode() + b"." + body),
    }


def read_body(request, limit: int) -> bytes:
    """The raw body, refusing (413) anything larger than `limit` bytes before reading it."""
    try:
        declared = int(request.headers.get("Content-Length") or 0)
    except ValueError:
        raise WebhookError(400, "Content-Length is not a number") from None
    if declared > limit:
        raise WebhookError(413, f"body too large: {declared} bytes, the limit is {limit}")
    body = request.read(limit + 1)
    if len(body) > limit:
        raise WebhookError(413, f"body too large: the limit is {limit} bytes")
    return body


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WebhookError(400, f"malformed JSON: {exc}") from None


def verify_timestamped(
    *,
    source: str,
    secrets: list[str],
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    now: float | None = None,
) -> None:
    """Check "<timestamp>.<body>" against any of `secrets`; refuse stale or replayed requests."""
    if not timestamp or not signature:
        raise WebhookError(401, "missing X-Opsconsole-Timestamp or X-Opsconsole-Signature")
    try:
        ts = int(timestamp)
    except ValueError:
        raise WebhookError(401, "X-Opsconsole-Timestamp is not Unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - ts) > MAX_SKEW_SECONDS:
        raise WebhookError(401, "timestamp outside the accepted 5-minute window")
    given = signature.removeprefix("sha256=")
    message = timestamp.encode() + b"." + body
    if not any(signatures_match(hmac_hex(s, message), given) for s in secrets if s):
        raise WebhookError(401, "bad signature")
    if not WebhookReceipt.first_time(source, given):
        raise WebhookError(401, "signature already used (replayed request)")
