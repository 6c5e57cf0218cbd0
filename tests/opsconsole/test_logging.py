"""Log lines: JSON that parses, secrets redacted at any depth, a correlation id per request."""

import json
import logging

import pytest

from opsconsole.logs import (
    REDACTED,
    ContextFilter,
    JsonFormatter,
    RedactingFilter,
    redact,
    redact_text,
)


def test_redact_handles_nested_dicts_and_lists():
    data = {
        "service": "api",
        "config": {"password": "p1", "nested": [{"api_key": "k1"}, {"Authorization": "Bearer t"}]},
        "items": [{"client_secret": "s1", "name": "ok"}],
        "SENTRY_DSN": "https://abc@o1.ingest.sentry.io/1",
        "cookies": {"sessionid": "x"},
        "count": 3,
    }
    clean = redact(data)
    assert clean == {
        "service": "api",
        "config": {
            "password": REDACTED,
            "nested": [{"api_key": REDACTED}, {"Authorization": REDACTED}],
        },
        "items": [{"client_secret": REDACTED, "name": "ok"}],
        "SENTRY_DSN": REDACTED,
        "cookies": REDACTED,
        "count": 3,
    }
    assert data["config"]["password"] == "p1", "the original must not be modified"


def test_redact_removes_credentials_inside_urls():
    assert redact_text("dumping postgres://backup:hunter2@db.internal:5432/app now") == (
        f"dumping postgres://backup:{REDACTED}@db.internal:5432/app now"
    )
    assert redact(["https://api.example.com/x?token=abc123&page=2"]) == [
        f"https://api.example.com/x?token={REDACTED}&page=2"
    ]


def _record(msg, *args, **extra):
    record = logging.LogRecord("opsconsole.test", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_output_parses_and_carries_extras():
    record = _record(
        "connecting to %s", "redis://:sekret@cache:6379/0", target={"token": "t0k", "host": "cache"}
    )
    ContextFilter().filter(record)
    RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    data = json.loads(line)
    assert data["level"] == "INFO"
    assert data["logger"] == "opsconsole.test"
    assert data["message"] == f"connecting to redis://:{REDACTED}@cache:6379/0"
    assert data["target"] == {"token": REDACTED, "host": "cache"}
    assert data["environment"] == "development"
    assert "timestamp" in data and "correlation_id" in data
    assert "sekret" not in line and "t0k" not in line


def test_exceptions_are_one_json_line_too():
    try:
        raise ValueError("bad password=letmein")
    except ValueError:
        import sys

        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info())
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError" in json.loads(line)["exception"]
    assert "letmein" not in line


@pytest.fixture
def captured_json(caplog):
    """The access/log records as the console's JSON formatter would print them."""
    caplog.set_level(logging.INFO)
    ctx, red, fmt = ContextFilter(), RedactingFilter(), JsonFormatter()

    def lines(logger_prefix=""):
        out = []
        for record in caplog.records:
            if record.name.startswith(logger_prefix):
                ctx.filter(record)
                red.filter(record)
                out.append(json.loads(fmt.format(record)))
        return out

    return lines


def test_a_given_correlation_id_is_echoed_and_logged(client, captured_json):
    response = client.get("/health", HTTP_X_CORRELATION_ID="deploy-42.abc")
    assert response["X-Correlation-ID"] == "deploy-42.abc"
    access = captured_json("opsconsole.access")
    assert access[-1]["correlation_id"] == "deploy-42.abc"
    assert (access[-1]["method"], access[-1]["path"], access[-1]["status"]) == (
        "GET",
        "/health",
        200,
    )
    assert isinstance(access[-1]["duration_ms"], float)


def test_a_missing_or_hostile_correlation_id_is_replaced(client, captured_json):
    first = client.get("/health")["X-Correlation-ID"]
    second = client.get("/health", HTTP_X_CORRELATION_ID="x\ninjected log line")["X-Correlation-ID"]
    assert len(first) == 32 and len(second) == 32 and first != second
    assert "\n" not in second


def test_every_log_line_of_a_request_carries_its_correlation_id(
    admin_client, captured_json, settings
):
    settings.SLOW_QUERY_MS = 0  # make every query "slow" so the request writes more than one line
    admin_client.get("/admin/", HTTP_X_CORRELATION_ID="trace-me")
    lines = [line for line in captured_json() if line["correlation_id"] == "trace-me"]
    loggers = {line["logger"] for line in lines}
    assert {"opsconsole.access", "opsconsole.db.slow"} <= loggers
    slow = next(line for line in lines if line["logger"] == "opsconsole.db.slow")
    assert slow["level"] == "WARNING" and "sql" in slow and slow["duration_ms"] >= 0


def test_access_log_names_the_user(admin_client, admin_user, captured_json):
    admin_client.get("/admin/")
    assert captured_json("opsconsole.access")[-1]["user_id"] == admin_user.pk


def test_fast_queries_are_not_logged_as_slow(admin_client, captured_json):
    admin_client.get("/admin/")
    assert not captured_json("opsconsole.db.slow")


@pytest.mark.parametrize(
    "adversarial",
    [
        "a-" * 32_768,
        "token" * 13_107,
        "a://" * 16_384,
        "x" * 65_536,
        "p" + "a" * 65_535,
        "a:" * 32_768,
        "postgres://u:" + ":" * 65_000,
        "-=" * 32_768,
    ],
)
def test_redaction_is_linear_on_adversarial_input(adversarial):
    """64 KB shaped to make a backtracking pattern quadratic. The bound that matters is
    structural (no pattern retries from every position); the timing is in bench/, and
    this only guards against a regression by orders of magnitude."""
    import time

    started = time.process_time()
    out = redact_text(adversarial)
    spent = time.process_time() - started
    assert len(out) <= 16 * 1024 + 40
    assert spent < 1.0, f"{spent:.2f} s of CPU for 64 KB"


def test_a_secret_across_the_length_bound_is_redacted_whole():
    text = "x " * 8190 + "postgres://app:" + "s3cr3t" * 100 + "@db/app"
    out = redact_text(text)
    assert "s3cr3t" not in out and out.endswith("more characters]")
