"""The one way the console's integrations talk HTTP to the outside world.

Every integration (channels, providers, pull sources, checks, failover
webhooks) sends through `request()`: shared timeouts, user agent, redaction of
secrets in logs and errors, and one classification of failures into permanent
(do not retry, flag the integration) and temporary (retry with backoff). Every
connection obeys the outbound policy (`opsconsole.outbound`), and no error
carries a response's content, only its status, size and type. It is also the
seam unit tests replace, with `use_transport()`. (S3 goes through
boto3 with its own timeouts and retries, and Sentry through its SDK.)
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import certifi
import httpx

from opsconsole import tracing
from opsconsole.logs import REDACTED, SENSITIVE_KEY, get_correlation_id, redact_text
from opsconsole.outbound import GuardedTransport

log = logging.getLogger("opsconsole.http")

USER_AGENT = "opsconsole/0.1 (+self-hosted operations console)"
DEFAULT_TIMEOUT = httpx.Timeout(connect=5.0, read=15.0, write=15.0, pool=5.0)
# 408 Request Timeout, 425 Too Early and 429 Too Many Requests say "try later";
# every other 4xx says the request itself is wrong and will stay wrong.
TEMPORARY_4XX = frozenset({408, 425, 429})

_transport: httpx.BaseTransport | None = None
T = TypeVar("T")


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Building a context loads the CA bundle: ~10 ms each time. One for the process
    # keeps a probe round of a thousand requests cheap.
    return ssl.create_default_context(cafile=certifi.where())


class HttpError(Exception):
    """A failed outbound call. `permanent` means retrying cannot help."""

    def __init__(
        self,
        message: str,
        *,
        permanent: bool,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.permanent = permanent
        self.status = status
        self.retry_after = retry_after


def redact_url(url: str, secrets: Sequence[str] = ()) -> str:
    """The URL without credentials, sensitive query values or the given secret strings."""
    url = str(url)
    # The secrets first, as given: rebuilding the URL can change how they are spelled
    # (a trailing "?" or "#", an upper-case scheme) and then they would no longer match.
    for secret in secrets:
        if secret:
            url = url.replace(secret, REDACTED)
    try:
        parts = urlsplit(url)
    except ValueError:
        return REDACTED
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{REDACTED}@{host}" if ":" in userinfo else f"{REDACTED}@{host}"
    query = urlencode(
        [(k, REDACTED if SENSITIVE_KEY.search(k) else v) for k, v in parse_qsl(parts.query, True)],
        safe="[]",
    )
    text = urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


def redact_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k: REDACTED if SENSITIVE_KEY.search(k) else v for k, v in headers.items()}


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time()) if when else None


@contextlib.contextmanager
def use_transport(transport: httpx.BaseTransport) -> Iterator[None]:
    """Route every outbound call through `transport` (unit tests: httpx.MockTransport)."""
    global _transport
    previous, _transport = _transport, transport
    try:
        yield
    finally:
        _transport = previous


CERTIFICATE_EXPIRES = "opsconsole.certificate_expires"


def _note_certificate(response: httpx.Response) -> None:
    """Over TLS, keep when the server's certificate expires in the response's extensions
    (health checks warn before it does); read while the connection is still open."""
    stream = response.extensions.get("network_stream")
    ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
    if ssl_object is None:
        return
    not_after = (ssl_object.getpeercert() or {}).get("notAfter")
    if not_after:
        seconds = ssl.cert_time_to_seconds(not_after)
        response.extensions[CERTIFICATE_EXPIRES] = datetime.fromtimestamp(seconds, UTC)


def request(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    data: Any = None,
    content: bytes | str | None = None,
    params: Mapping[str, Any] | None = None,
    auth: httpx.Auth | tuple[str, str] | None = None,
    timeout: float | httpx.Timeout | None = None,
    secrets: Sequence[str] = (),
    raise_for_status: bool = True,
) -> httpx.Response:
    """Send one request; raise HttpError (permanent or not) on failure.

    `secrets` lists strings that must never appear in a log line or an error,
    such as a webhook URL whose path is the credential.
    """
    shown = redact_url(url, secrets)
    all_headers = {"User-Agent": USER_AGENT, **(headers or {})}
    if cid := get_correlation_id():
        all_headers.setdefault("X-Correlation-ID", cid)
    started = time.monotonic()
    try:
        with (
            tracing.show_url(shown),
            httpx.Client(
                timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
                transport=_transport or GuardedTransport(verify=_ssl_context()),
                follow_redirects=False,
                event_hooks={"response": [_note_certificate]},
            ) as client,
        ):
            response = client.request(
                method,
                url,
                headers=all_headers,
                json=json,
                data=data,
                content=content,
                params=params,
                auth=auth,
            )
    except httpx.TimeoutException as exc:
        raise HttpError(
            f"{method} {shown}: timed out ({type(exc).__name__})", permanent=False
        ) from None
    except httpx.InvalidURL:
        raise HttpError(f"{method} {shown}: invalid URL", permanent=True) from None
    except httpx.UnsupportedProtocol:
        raise HttpError(f"{method} {shown}: unsupported URL scheme", permanent=True) from None
    except httpx.ConnectError as exc:
        refused = "OPSCONSOLE_OUTBOUND_ALLOW" in str(exc) or "never reachable" in str(exc)
        reason = redact_text(str(exc) or type(exc).__name__)
        for secret in secrets:
            reason = reason.replace(secret, REDACTED) if secret else reason
        raise HttpError(f"{method} {shown}: {reason}", permanent=refused) from None
    except httpx.HTTPError as exc:
        reason = redact_text(str(exc) or type(exc).__name__)
        for secret in secrets:
            reason = reason.replace(secret, REDACTED) if secret else reason
        raise HttpError(f"{method} {shown}: {reason}", permanent=False) from None
    elapsed_ms = round((time.monotonic() - started) * 1000, 1)
    log.info(
        "%s %s -> %s",
        method,
        shown,
        response.status_code,
        extra={"status": response.status_code, "duration_ms": elapsed_ms},
    )
    if raise_for_status and response.status_code >= 400:
        status = response.status_code
        # Never the body: what a server answers is not ours to show (an operator could
        # point a URL at an internal service and read its reply in the error).
        raise HttpError(
            f"{method} {shown}: HTTP {status} ({describe_body(response)})",
            permanent=400 <= status < 500 and status not in TEMPORARY_4XX,
            status=status,
            retry_after=_retry_after(response),
        )
    return response


def describe_body(response: httpx.Response) -> str:
    """What may be said of a response's content: its size and type, nothing of it."""
    kind = response.headers.get("Content-Type", "").split(";")[0].strip() or "no type"
    return f"{len(response.content)} bytes, {kind}"


def backoff_delay(
    attempt: int, *, base: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random
) -> float:
    """Full-jitter exponential backoff: a random wait up to base * 2**attempt, at most `cap`."""
    return rng() * min(cap, base * 2**attempt)


def backoff_delays(
    attempts: int, *, base: float = 0.5, cap: float = 30.0, rng: Callable[[], float] = random.random
) -> list[float]:
    """The waits between `attempts` tries."""
    return [backoff_delay(n, base=base, cap=cap, rng=rng) for n in range(max(0, attempts - 1))]


def with_retries(
    call: Callable[[], T],
    *,
    attempts: int = 4,
    base: float = 0.5,
    cap: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """Run `call`, retrying temporary HttpErrors with backoff; permanent ones raise at once.

    A server's Retry-After is honoured when it asks for longer than our backoff.
    """
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, not {attempts}")
    delays = backoff_delays(attempts, base=base, cap=cap, rng=rng)
    attempt = 0
    while True:
        try:
            return call()
        except HttpError as exc:
            if exc.permanent or attempt == attempts - 1:
                raise
            wait = max(delays[attempt], min(exc.retry_after or 0.0, cap))
            log.warning(
                "temporary failure, retrying in %.1fs: %s",
                wait,
                exc.message,
                extra={"attempt": attempt + 1, "attempts": attempts},
            )
            sleep(wait)
            attempt += 1
