"""Request middleware: correlation id and the access log, in one place at the top of the chain."""

from __future__ import annotations

import logging
import re
import time

from django.utils.functional import empty

from opsconsole import tracing
from opsconsole.logs import new_correlation_id, reset_correlation_id, set_correlation_id

HEADER = "X-Correlation-ID"
# What a caller may hand us: anything else (newlines, huge values) could forge log lines.
_VALID_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")

access_log = logging.getLogger("opsconsole.access")


def _user_id(request) -> int | None:
    # Only report a user someone already looked up: evaluating the lazy user
    # here would cost the health endpoints a database query.
    user = request.__dict__.get("user")
    if user is None or getattr(user, "_wrapped", None) is empty:
        return None
    return user.pk if user.is_authenticated else None


class CorrelationIdMiddleware:
    """Takes X-Correlation-ID from the request or makes one, echoes it, logs one access line."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        given = request.headers.get(HEADER, "")
        correlation_id = given if _VALID_ID.match(given) else new_correlation_id()
        request.correlation_id = correlation_id
        token = set_correlation_id(correlation_id)
        started = time.monotonic()
        try:
            with tracing.follow_sampling():
                response = self.get_response(request)
            response[HEADER] = correlation_id
            duration_ms = round((time.monotonic() - started) * 1000, 1)
            access_log.info(
                "%s %s %s %sms",
                request.method,
                request.path,
                response.status_code,
                duration_ms,
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": duration_ms,
                    "user_id": _user_id(request),
                },
            )
            return response
        finally:
            reset_correlation_id(token)
