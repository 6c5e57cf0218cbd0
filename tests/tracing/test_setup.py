"""How tracing is configured, sampled, scrubbed and thinned, before any span leaves.

The SDK's in-memory exporter is the one seam faked here; what a real receiver gets
from a running console is in test_traces.py.
"""

from __future__ import annotations

import pytest
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind

from opsconsole import tracing
from tests.helpers import console_env, manage

PROBE = (
    "import threading; from opsconsole import tracing; from django.conf import settings; "
    "print('enabled', tracing.enabled()); "
    "print('threads', sorted(t.name for t in threading.enumerate())); "
    "print('middleware', settings.MIDDLEWARE[0])"
)


def test_with_no_endpoint_nothing_is_set_up_and_no_exporter_thread_starts(tmp_path):
    off = manage("shell", "-c", PROBE, env=console_env(tmp_path))
    assert off.returncode == 0, off.stderr
    assert "enabled False" in off.stdout
    assert "OtelBatchSpanRecordProcessor" not in off.stdout
    assert "opentelemetry" not in off.stdout.split("middleware", 1)[1]
    # The same probe with an endpoint: the thread and the middleware are there.
    on = manage(
        "shell", "-c", PROBE,
        env=console_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9"),
    )  # fmt: skip
    assert on.returncode == 0, on.stderr
    assert "enabled True" in on.stdout
    assert "OtelBatchSpanRecordProcessor" in on.stdout
    assert "opentelemetry" in on.stdout.split("middleware", 1)[1]
    # Switched off the standard ways, despite an endpoint.
    for variable in ({"OTEL_SDK_DISABLED": "true"}, {"OTEL_TRACES_EXPORTER": "none"}):
        env = console_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", **variable)
        assert "enabled False" in manage("shell", "-c", PROBE, env=env).stdout


@pytest.mark.parametrize(
    "variables, message",
    [
        ({"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, "http/protobuf only, not 'grpc'"),
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER must be otlp or none"),
        ({"OPSCONSOLE_TRACES_SAMPLE_RATE": "2"}, "between 0 and 1, not 2.0"),
        ({"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT": "lots"}, "must be a positive number"),
        (
            {"SENTRY_DSN": "http://k@127.0.0.1:9/1", "SENTRY_TRACES_SAMPLE_RATE": "0.5"},
            "unset SENTRY_TRACES_SAMPLE_RATE",
        ),
    ],
)
def test_bad_tracing_settings_stop_the_console_with_one_line(tmp_path, variables, message):
    env = console_env(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", **variables)
    result = manage("check", env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    # One line says what is wrong (the lines before it note generated development keys).
    errors = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_the_sample_rate_follows_the_environment_unless_set():
    assert tracing.sample_rate("production") == 0.1
    assert tracing.sample_rate("staging") == 0.5
    assert tracing.sample_rate("development") == 1.0
    assert tracing.sample_rate("production", 0.25) == 0.25
    with pytest.raises(ValueError):
        tracing.sample_rate("production", -0.1)


@pytest.fixture
def provider():
    """A provider shaped like the console's, exporting to memory, with a given rate."""

    def make(rate: float = 1.0):
        exported = InMemorySpanExporter()
        made = TracerProvider(sampler=tracing.ConsoleSampler(ParentBased(TraceIdRatioBased(rate))))
        made.add_span_processor(
            tracing.DropIdleTicks(SimpleSpanProcessor(tracing.ShapingExporter(exported)))
        )
        return made.get_tracer("test"), exported

    return make


def test_a_callers_sampling_decision_is_kept_and_orphan_queries_start_no_trace(provider):
    tracer, exported = provider(rate=0.0)
    # CI sampled its pipeline: the webhook's trace is kept though our own rate is 0.
    sampled = propagate.extract({"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"})
    with tracer.start_as_current_span("POST /webhooks/deploy", context=sampled):
        pass
    # New traces at rate 0: none.
    with tracer.start_as_current_span("tick alerts.rules", context=otel_context.Context()):
        pass
    assert [s.name for s in exported.get_finished_spans()] == ["POST /webhooks/deploy"]

    tracer, exported = provider(rate=1.0)
    unsampled = propagate.extract({"traceparent": f"00-{'a' * 32}-{'b' * 16}-00"})
    with tracer.start_as_current_span("POST /webhooks/deploy", context=unsampled):
        pass
    # The broker's polling: a query with no request, task or tick around it.
    with tracer.start_as_current_span(
        "SELECT", context=otel_context.Context(), kind=SpanKind.CLIENT
    ):
        pass
    with (
        tracer.start_as_current_span("task x", context=otel_context.Context()),
        tracer.start_as_current_span("SELECT", kind=SpanKind.CLIENT),
    ):
        pass
    assert [s.name for s in exported.get_finished_spans()] == ["SELECT", "task x"]


def test_a_tick_that_did_nothing_is_not_exported_with_its_queries(provider, monkeypatch):
    tracer, exported = provider()
    monkeypatch.setattr(tracing, "tracer", tracer)
    for result in (0, None, "off", {"expired": [], "redriven": []}, 3, {"expired": [1]}):
        with tracing.tick("alerts.deliver") as done:
            with tracer.start_as_current_span(
                "SELECT", kind=SpanKind.CLIENT, attributes={"db.statement": "SELECT 1"}
            ):
                pass
            done(result)
    kept = [s for s in exported.get_finished_spans() if s.name == "tick alerts.deliver"]
    assert [s.attributes.get("opsconsole.tick.count") for s in kept] == [3, None]
    assert len(exported.get_finished_spans()) == 4, "each kept tick with its query"
    # A tick that failed is kept, whatever it returned.
    with pytest.raises(RuntimeError), tracing.tick("alerts.rules"):
        raise RuntimeError("boom")
    assert exported.get_finished_spans()[-1].name == "tick alerts.rules"


def test_spans_are_named_for_what_they_did_and_carry_no_secret(provider):
    tracer, exported = provider()
    with tracer.start_as_current_span(
        "GET admin/alerts/incident/<path:object_id>/change/",
        kind=SpanKind.SERVER,
        attributes={
            "http.method": "GET",
            "http.route": "admin/alerts/incident/<path:object_id>/change/",
            "http.url": "https://ops.example/admin/alerts/incident/7/change/?token=s3cret",
            "http.target": "/admin/alerts/incident/7/change/?token=s3cret",
            "url.query": "token=s3cret",
        },
    ):
        with tracer.start_as_current_span(
            "SELECT",
            kind=SpanKind.CLIENT,
            attributes={
                "db.statement": 'SELECT "alerts_incident"."id" FROM "alerts_incident" WHERE id = %s',
                "db.statement.parameters": "('s3cret',)",
            },
        ):
            pass
        with tracer.start_as_current_span(
            "connect",
            kind=SpanKind.CLIENT,
            attributes={
                "db.connection_string": "postgresql://app:hunter2@db:5432/shop",
                "api_key": "k-s3cret",
                "note": "retrying with password=hunter2",
            },
        ) as failing:
            failing.record_exception(
                ValueError("could not reach postgresql://app:hunter2@db:5432/shop")
            )
    by_name = {s.name: s for s in exported.get_finished_spans()}
    server = by_name["GET /admin/alerts/incident/{id}/change/"]
    assert server.attributes["http.target"] == "/admin/alerts/incident/{id}/change/"
    assert server.attributes["http.url"] == "https://ops.example/admin/alerts/incident/{id}/change/"
    assert "url.query" not in server.attributes
    query = by_name["SELECT alerts_incident"]
    assert "db.statement.parameters" not in query.attributes
    connect = by_name["connect"]
    assert connect.attributes["api_key"] == "[redacted]"
    assert "hunter2" not in connect.attributes["db.connection_string"]
    assert "hunter2" not in connect.attributes["note"]
    for span in exported.get_finished_spans():
        shown = repr(dict(span.attributes)) + repr([dict(e.attributes) for e in span.events])
        assert "s3cret" not in shown and "hunter2" not in shown, span.name


def test_route_templates_read_like_paths():
    assert tracing.route_template("admin/x/<path:object_id>/change/") == "/admin/x/{id}/change/"
    assert tracing.route_template("ack/<str:token>/") == "/ack/{token}/"
    assert tracing.route_template("health/ready") == "/health/ready"


def test_nothing_is_current_when_tracing_is_off():
    """The API's no-op spans: helpers cost nothing and inject nothing."""
    assert not tracing.enabled()
    with tracing.span("x") as current:
        assert not current.is_recording()
        assert tracing.inject() == {}
        assert tracing.traceparent() == ""
    assert trace.get_current_span().get_span_context().is_valid is False


def test_only_webhook_and_api_callers_decide_for_the_console(provider):
    """A traceparent sent to any page by anyone does not make the console record (and
    export) every query of that request; CI's deploy webhook and API clients do."""
    exported = InMemorySpanExporter()
    made = TracerProvider(
        sampler=tracing.ConsoleSampler(
            ParentBased(TraceIdRatioBased(0.0)), untrusted=TraceIdRatioBased(0.0)
        )
    )
    made.add_span_processor(SimpleSpanProcessor(exported))
    tracer = made.get_tracer("test")
    sampled = propagate.extract({"traceparent": f"00-{'a' * 32}-{'b' * 16}-01"})
    for path in ("/webhooks/deploy", "/api/metrics", "/alerts/ack/x/", "/admin/login/"):
        with tracer.start_as_current_span(
            f"POST {path}", context=sampled, kind=SpanKind.SERVER, attributes={"http.target": path}
        ):
            pass
    assert [s.name for s in exported.get_finished_spans()] == [
        "POST /webhooks/deploy",
        "POST /api/metrics",
    ]


def test_exception_text_and_unrouted_paths_never_leave(provider):
    tracer, exported = provider()
    with pytest.raises(TimeoutError), tracer.start_as_current_span("exec deploy-tool"):
        raise TimeoutError("['deploy-tool', '--token', 'hunter2'] timed out after 5 s")
    ack = "/alerts/ack/eyJzZWNyZXQiOiJ0b2tlbiJ9:1abc:signature"
    with tracer.start_as_current_span(
        "GET",
        kind=SpanKind.SERVER,
        attributes={
            "http.method": "GET",
            "http.target": ack,
            "http.url": f"https://ops.example{ack}",
            "http.status_code": 404,
        },
    ):
        pass
    failed, unrouted = exported.get_finished_spans()
    assert failed.status.description == "TimeoutError"
    (event,) = failed.events
    assert dict(event.attributes) == {
        "exception.type": "TimeoutError",
        "exception.escaped": "False",
    }
    assert unrouted.attributes["http.target"] == "/alerts/…"
    assert unrouted.attributes["http.url"] == "https://ops.example/alerts/…"


def test_a_sampled_send_from_an_unsampled_tick_keeps_its_library_spans(provider, monkeypatch):
    """The libraries' instrumentation follows the span at hand: off in a tick the ratio
    dropped, on again for a page whose failing check was sampled."""
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    tracer, _ = provider(rate=0.0)
    monkeypatch.setattr(tracing, "tracer", tracer)
    monkeypatch.setattr(tracing, "_provider", object())  # as after setup()
    sampled_check = f"00-{'c' * 32}-{'d' * 16}-01"
    with tracing.tick("alerts.deliver") as done:
        assert not is_instrumentation_enabled(), "an unsampled tick queries untraced"
        with tracing.continued(sampled_check, "notify slack") as send:
            assert send.is_recording()
            assert is_instrumentation_enabled(), "the page's own HTTP call is traced"
        assert not is_instrumentation_enabled()
        done(1)
    assert is_instrumentation_enabled()


def test_the_process_is_named_in_the_resource():
    assert tracing.process_role(["/x/bin/gunicorn", "opsconsole.wsgi"]) == "web"
    assert tracing.process_role(["/x/lib/gunicorn/__main__.py", "opsconsole.wsgi"]) == "web"
    assert tracing.process_role(["manage.py", "qcluster"]) == "worker"
    assert tracing.process_role(["manage.py", "alertpath"]) == "alertpath"
