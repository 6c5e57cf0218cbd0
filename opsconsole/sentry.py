"""Error tracking for the console itself.

`before_send` scrubs credentials from every event, drops 404s, and drops an
error once its fingerprint was sent more than `limit` times in `window`
seconds, counting what it drops so the volume can still be alerted on.
"""

from __future__ import annotations

import hashlib
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

from django.http import Http404

from opsconsole.logs import REDACTED, redact, redact_text

STRIPPED_HEADERS = {"authorization", "cookie", "x-api-key", "proxy-authorization", "set-cookie"}
STRIPPED_QUERY = {"api_key", "apikey", "token", "access_token", "key", "signature"}
DEFAULT_SAMPLE_RATES = {"production": 0.1, "staging": 0.5}


class RepeatSuppressor:
    """Lets a fingerprint through at most `limit` times per sliding `window` seconds."""

    def __init__(
        self, limit: int = 10, window: float = 300.0, clock: Callable[[], float] = time.monotonic
    ):
        self.limit = limit
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._sent: dict[str, deque[float]] = {}
        self.suppressed: Counter[str] = Counter()

    def allow(self, fingerprint: str) -> bool:
        now = self.clock()
        with self._lock:
            times = self._sent.setdefault(fingerprint, deque())
            while times and now - times[0] > self.window:
                times.popleft()
            if len(times) >= self.limit:
                self.suppressed[fingerprint] += 1
                return False
            times.append(now)
            # Forget fingerprints that went quiet, so the map cannot grow without bound.
            if len(self._sent) > 1000:
                for key in [k for k, v in self._sent.items() if not v or now - v[-1] > self.window]:
                    del self._sent[key]
            return True


suppressor = RepeatSuppressor()


def fingerprint(event: dict[str, Any]) -> str:
    """What makes two events "the same error": type and where it was raised, or the log template."""
    if event.get("fingerprint") and event["fingerprint"] != ["{{ default }}"]:
        basis = "|".join(map(str, event["fingerprint"]))
    elif event.get("exception", {}).get("values"):
        exc = event["exception"]["values"][-1]
        frames = (exc.get("stacktrace") or {}).get("frames") or []
        where = [f"{f.get('module')}:{f.get('function')}" for f in frames[-5:]]
        basis = "|".join([str(exc.get("type")), *where])
    else:
        entry = event.get("logentry") or {}
        basis = f"{event.get('logger')}|{entry.get('message') or event.get('message')}"
    return hashlib.sha256(basis.encode()).hexdigest()[:16]


def _scrub_request(request: dict[str, Any]) -> None:
    headers = request.get("headers")
    if isinstance(headers, dict):
        request["headers"] = {k: v for k, v in headers.items() if k.lower() not in STRIPPED_HEADERS}
    request.pop("cookies", None)
    query = request.get("query_string")
    if isinstance(query, str) and query:
        request["query_string"] = urlencode(
            [
                (k, v)
                for k, v in parse_qsl(query, keep_blank_values=True)
                if k.lower() not in STRIPPED_QUERY
            ]
        )
    elif isinstance(query, dict):
        request["query_string"] = {
            k: v for k, v in query.items() if k.lower() not in STRIPPED_QUERY
        }
    if "data" in request:
        request["data"] = redact(request["data"])
    if isinstance(request.get("url"), str):
        request["url"] = redact_text(request["url"])


def _scrub_exceptions(event: dict[str, Any]) -> None:
    for exc in (event.get("exception") or {}).get("values") or []:
        if isinstance(exc.get("value"), str):
            exc["value"] = redact_text(exc["value"])
        for frame in (exc.get("stacktrace") or {}).get("frames") or []:
            if "vars" in frame:
                frame["vars"] = redact(frame["vars"])
            # Source lines too: a literal connection URL in code is still a credential.
            for key in ("pre_context", "post_context"):
                if isinstance(frame.get(key), list):
                    frame[key] = [redact_text(line) for line in frame[key]]
            if isinstance(frame.get("context_line"), str):
                frame["context_line"] = redact_text(frame["context_line"])


def _is_404(event: dict[str, Any], hint: dict[str, Any]) -> bool:
    exc_info = hint.get("exc_info")
    if exc_info and isinstance(exc_info[1], Http404):
        return True
    status = (event.get("contexts") or {}).get("response", {}).get("status_code")
    if status == 404:
        return True
    message = (event.get("logentry") or {}).get("message") or ""
    return event.get("logger") == "django.request" and message.startswith("Not Found")


def before_send(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any] | None:
    if _is_404(event, hint):
        return None
    if isinstance(event.get("request"), dict):
        _scrub_request(event["request"])
    _scrub_exceptions(event)
    for key in ("extra", "contexts"):
        if key in event:
            event[key] = redact(event[key])
    if isinstance(event.get("logentry"), dict):
        event["logentry"] = redact(event["logentry"])
    for crumb in (event.get("breadcrumbs") or {}).get("values") or []:
        if isinstance(crumb.get("message"), str):
            crumb["message"] = redact_text(crumb["message"])
        if "data" in crumb:
            crumb["data"] = redact(crumb["data"])
    if not suppressor.allow(fingerprint(event)):
        return None
    return event


def init(
    *,
    dsn: str,
    environment: str,
    traces_sample_rate: float | None = None,
    release: str | None = None,
    transport: Any = None,
    opentelemetry: bool = False,
) -> Any:
    """Start the SDK. The sample rate defaults by environment; REDACTED fills stripped values.

    With `opentelemetry`, OpenTelemetry does the tracing and Sentry only the errors:
    Sentry's own transactions are off, and each event carries the trace id and span id
    of the OpenTelemetry span it happened in (the SDK's OTLP integration, without its
    exporter or propagator: the console sets those up itself)."""
    # Imported here: the SDK costs a process that reports to no Sentry a few MB.
    import sentry_sdk
    from sentry_sdk.integrations.django import DjangoIntegration

    integrations: list[Any] = [DjangoIntegration()]
    if opentelemetry:
        if traces_sample_rate is not None:
            raise ValueError(
                "with OpenTelemetry tracing on, Sentry does not trace: "
                "unset SENTRY_TRACES_SAMPLE_RATE (its errors link to the OpenTelemetry trace)"
            )
        from sentry_sdk.integrations.otlp import OTLPIntegration

        integrations.append(
            OTLPIntegration(setup_otlp_traces_exporter=False, setup_propagator=False)
        )
        rate = None
    else:
        rate = traces_sample_rate
        if rate is None:
            rate = DEFAULT_SAMPLE_RATES.get(environment, 1.0)
        if not 0.0 <= rate <= 1.0:
            raise ValueError(f"traces sample rate must be between 0 and 1, not {rate}")
    options: dict[str, Any] = {
        "dsn": dsn,
        "environment": environment,
        "release": release,
        "traces_sample_rate": rate,
        "before_send": before_send,
        # Frame locals hold decrypted secrets under innocent names (url, params,
        # session_key); no key-name scrubber can find them all, so send none.
        "include_local_variables": False,
        "integrations": integrations,
    }
    if transport is not None:
        options["transport"] = transport
    return sentry_sdk.init(**options)


def capture_exception(**tags: str) -> None:
    """Report the exception being handled, with `tags`, where Sentry was set up."""
    sdk = sys.modules.get("sentry_sdk")
    if sdk is None:
        return  # never initialised in this process: nothing would be sent
    with sdk.new_scope() as scope:
        for name, value in tags.items():
            scope.set_tag(name, value)
        sdk.capture_exception()


__all__ = ["REDACTED", "before_send", "capture_exception", "fingerprint", "init", "suppressor"]
