"""Tracing with OpenTelemetry: one trace from a click, through the worker, to the page.

Configured the standard way, by the `OTEL_*` variables (endpoint, headers,
service name, sampler, propagators). With no OTLP endpoint set, or with
`OTEL_SDK_DISABLED=true`, nothing is set up: the API's no-op tracer answers
every call, no exporter thread starts and no library is instrumented.

What the console adds to a stock set-up:

- sampling per environment (`OPSCONSOLE_TRACES_SAMPLE_RATE`, defaulting to
  production 0.1, staging 0.5, development 1.0), parent-based, so a trace
  begun upstream (CI's deploy webhook) keeps its caller's decision;
- database queries and outbound calls made outside any request, task or tick
  (the broker's polling, the heartbeat threads) start no trace of their own;
- an alert-path tick that found nothing to do is not exported (the loops tick
  every second);
- every span leaves the process shaped and scrubbed (`ShapingExporter`): the
  log redaction applies to its attributes and events, query strings and the
  paths of routed requests are dropped, and database spans are named after
  what they did (`SELECT alerts_incident`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import Event, ReadableSpan, SpanProcessor
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from opsconsole.logs import REDACTED, SENSITIVE_KEY, redact_text

log = logging.getLogger("opsconsole.tracing")
tracer = trace.get_tracer("opsconsole")

DEFAULT_SAMPLE_RATES = {"production": 0.1, "staging": 0.5, "development": 1.0}
# Set on an alert-path tick's root span; whether it did anything decides its export.
TICK = "opsconsole.tick"
TICK_WORK = "opsconsole.tick.work"
CARRIER_KWARG = "_trace_context"

_provider: Any = None
_setup_lock = threading.Lock()


# --- configuration -----------------------------------------------------------------


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the environment asks for traces to be exported."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() in ("none", ""):
        return False
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )


def check_environment(environ: Mapping[str, str] | None = None) -> str | None:
    """What is wrong with the tracing variables, in one line, or None."""
    environ = os.environ if environ is None else environ
    if not configured(environ):
        return None
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter != "otlp":
        return f"OTEL_TRACES_EXPORTER must be otlp or none, not {exporter!r}"
    protocol = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()
    if protocol != "http/protobuf":
        return f"the console exports OTLP over http/protobuf only, not {protocol!r}"
    limit = environ.get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "").strip()
    if limit and not (limit.isdigit() and int(limit) > 0):
        return f"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT must be a positive number, not {limit!r}"
    return None


def sample_rate(environment: str, override: float | None = None) -> float:
    """The share of new traces kept: the override, or the environment's default."""
    rate = DEFAULT_SAMPLE_RATES.get(environment, 1.0) if override is None else override
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"the traces sample rate must be between 0 and 1, not {rate}")
    return rate


def enabled() -> bool:
    return _provider is not None


def setup(*, environment: str, rate: float | None = None, service_version: str = "") -> bool:
    """Set up the SDK and the instrumentations for this process, once. Returns whether
    tracing is on. Called from the console's AppConfig.ready(), so the web server, the
    jobs worker and the alert path each set up their own (django-q2's forked workers
    inherit it; the SDK restarts the export thread after a fork)."""
    global _provider
    if _provider is not None or not configured():
        return _provider is not None
    with _setup_lock:
        if _provider is not None:
            return True
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import SpanLimits, TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        # The variables (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES) win over these.
        resource = Resource.create()
        defaults = {
            "service.name": "opsconsole",
            "deployment.environment.name": environment,
            "service.version": service_version,
            "opsconsole.process": process_role(),
        }
        resource = resource.merge(
            Resource(
                {
                    k: v
                    for k, v in defaults.items()
                    if v
                    and (
                        k not in resource.attributes
                        or str(resource.attributes[k]).startswith("unknown_service")
                    )
                }
            )
        )
        rate = sample_rate(environment, rate)
        provider = TracerProvider(
            resource=resource,
            sampler=ConsoleSampler(_inner_sampler(rate), untrusted=_untrusted_sampler(rate)),
            # Bounded attributes (OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT may set another bound).
            span_limits=SpanLimits(
                max_attribute_length=int(
                    os.environ.get("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT") or 4096
                )
            ),
        )
        if not os.environ.get("OTEL_PROPAGATORS"):
            # W3C trace context only: no baggage from a caller rides along to Slack or
            # PagerDuty.
            propagate.set_global_textmap(TraceContextTextMapPropagator())
        provider.add_span_processor(
            DropIdleTicks(BatchSpanProcessor(ShapingExporter(OTLPSpanExporter())))
        )
        trace.set_tracer_provider(provider)
        _instrument_libraries()
        _provider = provider
        sampler = os.environ.get("OTEL_TRACES_SAMPLER") or f"parent-based ratio {rate}"
        log.info("tracing on: exporting spans over OTLP", extra={"sampler": sampler})
        return True


def _inner_sampler(rate: float):
    from opentelemetry.sdk.trace import sampling

    # OTEL_TRACES_SAMPLER, when set, is the operator's choice and wins over ours.
    if os.environ.get("OTEL_TRACES_SAMPLER"):
        return sampling._get_from_env_or_default()
    return sampling.ParentBased(sampling.TraceIdRatioBased(rate))


def _untrusted_sampler(rate: float):
    from opentelemetry.sdk.trace import sampling

    return None if os.environ.get("OTEL_TRACES_SAMPLER") else sampling.TraceIdRatioBased(rate)


def process_role(argv: Sequence[str] | None = None) -> str:
    """Which of the console's processes this is: web, worker, alertpath, or the command."""
    argv = sys.argv if argv is None else argv
    if argv and "gunicorn" in argv[0]:  # its script, or gunicorn/__main__.py with -m
        return "web"
    command = argv[1] if len(argv) > 1 else ""
    return {"qcluster": "worker", "runserver": "web", "serve": "serve"}.get(command, command)


def _instrument_libraries() -> None:
    from opentelemetry.instrumentation.botocore import BotocoreInstrumentor
    from opentelemetry.instrumentation.django import DjangoInstrumentor
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor

    # Django's middleware list is read when the first handler is built, after ready().
    DjangoInstrumentor().instrument(is_sql_commentor_enabled=False)
    PsycopgInstrumentor().instrument(enable_commenter=False, skip_dep_check=True)
    SQLite3Instrumentor().instrument()
    HTTPXClientInstrumentor().instrument(request_hook=_outbound_request_hook)
    BotocoreInstrumentor().instrument()
    RedisInstrumentor().instrument()


def shutdown() -> None:
    """Export what is buffered (end of a command)."""
    if _provider is not None:
        _provider.shutdown()


# --- what the console's code calls ---------------------------------------------------


def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    links: Sequence[Link] = (),
):
    """A child span of whatever is current (a context manager yielding the span)."""
    return tracer.start_as_current_span(
        name, kind=kind, attributes=_clean(attributes), links=links or None
    )


def root_span(name: str, attributes: Mapping[str, Any] | None = None, **kwargs: Any):
    """A span that starts a trace of its own, whatever is current."""
    return tracer.start_as_current_span(
        name, context=otel_context.Context(), attributes=_clean(attributes), **kwargs
    )


@contextlib.contextmanager
def continued(
    carrier: Mapping[str, str] | str | None,
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
) -> Iterator[Any]:
    """A span in the trace that `carrier` (W3C headers, or a bare traceparent) came from,
    linked to the current span; with no carrier, a child of the current span (or a new
    trace when there is none). The libraries' instrumentation follows the span's own
    sampling: a sampled page sent from an unsampled tick still gets its client span."""
    if isinstance(carrier, str):
        carrier = {"traceparent": carrier} if carrier else {}
    if not carrier:
        # Called in-process (a test, a command), or by a schedule: under whatever is current.
        started = span(name, attributes, kind=kind)
    else:
        here = trace.get_current_span().get_span_context()
        started = tracer.start_as_current_span(
            name,
            context=propagate.extract(carrier),
            kind=kind,
            attributes=_clean(attributes),
            links=[Link(here)] if here.is_valid else None,
        )
    with started as current, follow_sampling():
        yield current


@contextlib.contextmanager
def tick(loop: str) -> Iterator[Callable[[object], None]]:
    """The root span of one alert-path tick. Yields `done(result)`: a tick whose result
    says it did nothing is dropped before export."""
    with root_span(f"tick {loop}", {TICK: loop}) as current, follow_sampling():

        def done(result: object) -> None:
            # A count, a mapping of counts, or a word ("off": the loop has nothing to do).
            if isinstance(result, dict):
                worked = any(result.values())
            else:
                worked = bool(result) and result != "off"
            current.set_attribute(TICK_WORK, worked)
            if isinstance(result, int) and not isinstance(result, bool):
                current.set_attribute("opsconsole.tick.count", result)

        yield done


@contextlib.contextmanager
def process(argv: Sequence[str]) -> Iterator[Callable[[int | None], None]]:
    """A child span for one subprocess, named after its program. Yields `exited(code)`.

    Only the program's name is recorded: the rest of argv is the caller's business and
    may name hosts and databases, never anything secret, but it is not needed here."""
    program = os.path.basename(str(argv[0])) if argv else "?"
    started = time.monotonic()
    # Not the exception's text: a timeout's message repeats the whole argv.
    with tracer.start_as_current_span(
        f"exec {program}",
        attributes={"process.executable.name": program},
        record_exception=False,
        set_status_on_exception=False,
    ) as current:

        def exited(code: int | None) -> None:
            current.set_attribute("process.duration_ms", round((time.monotonic() - started) * 1000))
            if code is not None:
                current.set_attribute("process.exit.code", code)
                if code != 0:
                    current.set_status(Status(StatusCode.ERROR, f"exited with code {code}"))

        try:
            yield exited
        except BaseException as exc:
            current.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def inject() -> dict[str, str]:
    """The current trace context as W3C headers ({} when nothing is being traced)."""
    carrier: dict[str, str] = {}
    if trace.get_current_span().get_span_context().is_valid:
        propagate.inject(carrier)
    return carrier


def traceparent() -> str:
    """The current span as a W3C traceparent, or "" (stored on records that are acted on
    later, such as a notification, so the later work joins the trace)."""
    return inject().get("traceparent", "")


@contextlib.contextmanager
def follow_sampling() -> Iterator[None]:
    """Around the work of a request, task or tick: the libraries' instrumentation is on
    when the current span is recorded and off when it is not. The nine in ten requests a
    0.1 sampling drops then cost no span per query; their outbound calls carry no
    traceparent, and the services they call decide for themselves."""
    if _provider is None:
        yield
        return
    from opentelemetry.instrumentation.utils import _SUPPRESS_HTTP_INSTRUMENTATION_KEY

    quiet = not trace.get_current_span().is_recording()
    ctx = otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, quiet)
    ctx = otel_context.set_value(_SUPPRESS_HTTP_INSTRUMENTATION_KEY, quiet, ctx)
    token = otel_context.attach(ctx)
    try:
        yield
    finally:
        otel_context.detach(token)


def in_context(func: Callable[..., Any]) -> Callable[..., Any]:
    """`func` bound to the current trace context, for running in another thread."""
    if not enabled():
        return func
    captured = otel_context.get_current()

    def bound(*args: Any, **kwargs: Any) -> Any:
        token = otel_context.attach(captured)
        try:
            return func(*args, **kwargs)
        finally:
            otel_context.detach(token)

    return bound


def set_attributes(attributes: Mapping[str, Any]) -> None:
    """Add attributes to the current span (nothing when none is recording)."""
    current = trace.get_current_span()
    if current.is_recording():
        current.set_attributes(_clean(attributes) or {})


def _clean(attributes: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """OpenTelemetry takes str, bool, int, float and sequences of them; None is dropped."""
    if not attributes:
        return None
    out: dict[str, Any] = {}
    for key, value in attributes.items():
        if value is None:
            continue
        out[key] = value if isinstance(value, str | bool | int | float) else str(value)
    return out


# The outbound URL as `opsconsole.http.request` shows it in its log line: a webhook URL
# whose path is the credential is redacted there, and so in the span.
_shown_url: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "opsconsole_shown_url", default=None
)


@contextlib.contextmanager
def show_url(shown: str) -> Iterator[None]:
    """Within this block, outbound spans record `shown` as their URL."""
    token = _shown_url.set(shown)
    try:
        yield
    finally:
        _shown_url.reset(token)


def _outbound_request_hook(current, request) -> None:
    shown = _shown_url.get()
    if current.is_recording():
        # Not through opsconsole.http (which says what is safe to show): the host only.
        url = shown or _origin(str(request.url))
        current.set_attribute("url.full", url)
        current.set_attribute("http.url", url)


# --- sampling and export -------------------------------------------------------------


# Callers whose "sampled" flag the console follows: CI's deploy webhook, API clients.
# Anyone may send a traceparent to a login page or a 404; that decides nothing here.
TRUSTED_PARENT_PATHS = ("/webhooks/", "/api/")


class ConsoleSampler(Sampler):
    """The configured sampler, except that
    - a database query or outbound call with no parent starts no trace: the broker polls
      its table every fraction of a second and the heartbeat threads write every few;
      none of that is anybody's operation;
    - a request from outside keeps its caller's decision only on the webhook and API
      paths; elsewhere (`untrusted`) the console's own ratio decides, so nobody can make
      it record, and export, every query of every request they send."""

    def __init__(self, inner, untrusted=None):
        self.inner = inner
        self.untrusted = untrusted

    def should_sample(
        self,
        parent_context,
        trace_id,
        name,
        kind=None,
        attributes=None,
        links=None,
        trace_state=None,
    ):
        parent = trace.get_current_span(parent_context).get_span_context()
        if kind == SpanKind.CLIENT and not parent.is_valid:
            return SamplingResult(Decision.DROP)
        if parent.is_valid and not parent.is_remote and not parent.trace_flags.sampled:
            # Under a local span that is not recorded (most spans at 0.1): what the
            # parent-based sampler would say, without its work.
            return _DROP
        if (
            kind == SpanKind.SERVER
            and parent.is_valid
            and parent.is_remote
            and self.untrusted is not None
            and not _trusted_path(attributes)
        ):
            return self.untrusted.should_sample(
                parent_context, trace_id, name, kind, attributes, links, trace_state
            )
        return self.inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )

    def get_description(self) -> str:
        return f"ConsoleSampler{{{self.inner.get_description()}}}"


_DROP = SamplingResult(Decision.DROP)


def _trusted_path(attributes: Mapping[str, Any] | None) -> bool:
    attributes = attributes or {}
    path = str(attributes.get("url.path") or attributes.get("http.target") or "")
    return path.startswith(TRUSTED_PARENT_PATHS)


class DropIdleTicks(SpanProcessor):
    """A span processor: the spans of an alert-path tick are held until the tick ends,
    then passed on, or dropped when the tick found nothing to do."""

    MAX_HELD = 2000  # per tick; past it, a tick's spans flow through as they end

    def __init__(self, inner):
        self.inner = inner
        self._held: dict[int, list] = {}
        self._lock = threading.Lock()

    def on_start(self, span, parent_context=None) -> None:
        if span.parent is None and span.attributes and span.attributes.get(TICK):
            with self._lock:
                self._held[span.context.trace_id] = []
        self.inner.on_start(span, parent_context=parent_context)

    def on_end(self, span) -> None:
        trace_id = span.context.trace_id
        with self._lock:
            held = self._held.get(trace_id)
            if held is None:
                passed = [span]
            elif span.parent is None and span.attributes.get(TICK):
                del self._held[trace_id]
                idle = not span.attributes.get(TICK_WORK) and span.status.is_ok
                passed = [] if idle else [*held, span]
            elif len(held) < self.MAX_HELD:
                held.append(span)
                passed = []
            else:
                passed = [*held, span]
                held.clear()
        for each in passed:
            self.inner.on_end(each)

    def _on_ending(self, span) -> None:
        self.inner._on_ending(span)

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)


_SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|TABLE|JOIN)\s+\"?([A-Za-z_][\w.]*)\"?", re.I)
_ROUTE_PARAM = re.compile(r"<(?:[^<>:]+:)?([^<>]+)>")
_ID_NAMES = {"object_id", "pk", "id"}
EXCEPTION_KEPT = frozenset({"exception.type", "exception.escaped"})
URL_KEYS = ("url.full", "http.url", "http.target", "url.path")
DROPPED_KEYS = frozenset({"url.query", "db.statement.parameters", "db.query.parameter"})
MAX_SCANNED = 4096  # of a statement, when naming its span


def _without_query(url: str) -> str:
    return url.split("?", 1)[0].split("#", 1)[0]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}/"


def _unrouted(path: str) -> str:
    """A path Django did not route (a 404, a redirect to add a slash): its first segment
    only. The rest may be anything, an acknowledge link's token among them."""
    first = path.lstrip("/").split("/", 1)[0]
    return f"/{first}/…" if first else "/"


def route_template(route: str) -> str:
    """Django's `admin/x/<path:object_id>/change/` as `/admin/x/{id}/change/`."""

    def name(match: re.Match) -> str:
        return "{id}" if match.group(1) in _ID_NAMES else "{" + match.group(1) + "}"

    return "/" + _ROUTE_PARAM.sub(name, route.lstrip("^").rstrip("$")).lstrip("/")


def span_name(name: str, kind: SpanKind, attributes: Mapping[str, Any]) -> str:
    """What a span is called when it leaves: routed requests by their route template,
    database spans by operation and table."""
    if kind == SpanKind.SERVER and attributes.get("http.route"):
        method = attributes.get("http.request.method") or attributes.get("http.method")
        template = route_template(str(attributes["http.route"]))
        return f"{method} {template}" if method else template
    statement = attributes.get("db.statement") or attributes.get("db.query.text")
    if kind == SpanKind.CLIENT and isinstance(statement, str) and statement:
        return _statement_name(statement[:MAX_SCANNED]) or name
    return name


@functools.lru_cache(maxsize=2048)
def _statement_name(statement: str) -> str:
    # The ORM sends the same few hundred statements over and over: name each once.
    words = statement.split(None, 1)
    if not words:
        return ""
    table = _SQL_TABLE.search(statement)
    return f"{words[0].upper()} {table.group(1)}" if table else words[0].upper()


@functools.lru_cache(maxsize=512)
def _sensitive(key: str) -> bool:
    return bool(SENSITIVE_KEY.search(key))


def _redacted(text: str) -> str:
    # The same statements and routes come back in every trace: scan each short one once.
    return _redacted_short(text) if len(text) <= 1024 else redact_text(text)


@functools.lru_cache(maxsize=2048)
def _redacted_short(text: str) -> str:
    return redact_text(text)


def scrub_attributes(attributes: Mapping[str, Any], kind: SpanKind | None = None) -> dict[str, Any]:
    """The log redaction, applied to span attributes; no query strings, and for a routed
    request its route instead of its path (an acknowledge link's path is its token)."""
    out: dict[str, Any] = {}
    route = attributes.get("http.route")
    for key, value in attributes.items():
        if key in DROPPED_KEYS:
            continue
        if _sensitive(key):
            out[key] = REDACTED
            continue
        if key in URL_KEYS and isinstance(value, str):
            value = _without_query(value)
            if kind == SpanKind.SERVER:
                parts = urlsplit(value)
                path = route_template(str(route)) if route else _unrouted(parts.path)
                if key in ("http.target", "url.path"):
                    value = path
                else:
                    value = f"{parts.scheme}://{parts.netloc}{path}"
        if isinstance(value, str):
            value = _redacted(value)
        elif isinstance(value, list | tuple):
            value = [_redacted(v) if isinstance(v, str) else v for v in value]
        out[key] = value
    return out


class ShapingExporter(SpanExporter):
    """Wraps the OTLP exporter: each span is renamed and scrubbed on its way out."""

    def __init__(self, inner):
        self.inner = inner

    def export(self, spans):
        return self.inner.export([self.shape(s) for s in spans if not self.noise(s)])

    @staticmethod
    def noise(span) -> bool:
        """Django's SQL debug log quotes each statement's parameters with a query of its
        own on SQLite (DEBUG only): not the console's work, and half of every trace."""
        statement = (span.attributes or {}).get("db.statement") or ""
        return isinstance(statement, str) and statement.startswith("SELECT QUOTE(")

    @staticmethod
    def shape(original):
        attributes = dict(original.attributes or {})
        events, raised = [], []
        for event in original.events:
            kept = dict(event.attributes or {})
            if event.name == "exception":
                # The type only: an exception's message and traceback are raw text from a
                # library (a timeout repeats argv, a peer's error repeats its reply).
                kept = {k: v for k, v in kept.items() if k in EXCEPTION_KEPT}
                raised.append(str(kept.get("exception.type", "")))
            events.append(Event(event.name, scrub_attributes(kept), event.timestamp))
        status = original.status
        if status.description:
            description = status.description
            for name in filter(None, raised):
                short = name.rsplit(".", 1)[-1]
                if description.startswith((f"{name}:", f"{short}:")):
                    description = short  # the SDK's "Type: message" for an exception
            status = Status(status.status_code, _redacted(description))
        return ReadableSpan(
            name=_redacted(span_name(original.name, original.kind, attributes)),
            context=original.context,
            parent=original.parent,
            resource=original.resource,
            attributes=scrub_attributes(attributes, original.kind),
            events=events,
            links=original.links,
            kind=original.kind,
            status=status,
            start_time=original.start_time,
            end_time=original.end_time,
            instrumentation_scope=original.instrumentation_scope,
        )

    def shutdown(self) -> None:
        self.inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self.inner.force_flush(timeout_millis)
