"""Sentry for the console itself: scrubbed events, 404s dropped, repeats suppressed."""

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from opsconsole import sentry
from opsconsole.tasks import console_task


class CaptureTransport(Transport):
    def __init__(self, options=None):
        super().__init__(options)
        self.events: list[dict] = []

    def capture_envelope(self, envelope):
        for item in envelope.items:
            if item.type == "event":
                self.events.append(item.payload.json)


@pytest.fixture
def events(monkeypatch, settings):
    settings.ROOT_URLCONF = "tests.testapp.urls"
    monkeypatch.setattr(sentry, "suppressor", sentry.RepeatSuppressor(limit=10, window=300))
    transport = CaptureTransport()
    sentry.init(dsn="http://public@127.0.0.1:9/1", environment="staging", transport=transport)
    yield transport.events
    sentry_sdk.get_client().close()


def boom(client, **headers):
    client.raise_request_exception = False
    return client.post(
        "/boom?token=tok-in-query&page=1",
        {"password": "form-password", "comment": "hello"},
        HTTP_AUTHORIZATION="Bearer bearer-secret",
        HTTP_X_API_KEY="api-key-secret",
        HTTP_COOKIE="sessionid=cookie-secret",
        **headers,
    )


def test_events_are_scrubbed_of_credentials(client, events):
    assert boom(client).status_code == 500
    sentry_sdk.flush()
    assert len(events) == 1
    event = events[0]
    text = repr(event)
    for secret in ("bearer-secret", "api-key-secret", "cookie-secret", "tok-in-query",
                   "form-password", "s3cr3t", "hunter2-in-a-local"):  # fmt: skip
        assert secret not in text, secret
    assert event["request"]["data"] == {"password": "[redacted]", "comment": "hello"}
    assert event["environment"] == "staging"
    assert event["exception"]["values"][-1]["type"] == "RuntimeError"


def test_before_send_strips_credential_headers_query_parameters_and_body_fields():
    # What the SDK would attach with header and query collection switched on.
    event = {
        "request": {
            "url": "https://console.example.com/api/x",
            "headers": {
                "Authorization": "Bearer b",
                "Cookie": "c=1",
                "X-Api-Key": "k",
                "Accept": "*/*",
            },
            "cookies": {"sessionid": "s"},
            "query_string": "api_key=k1&token=t1&page=2",
            "data": {"user": {"password": "p", "name": "n"}, "secret_answer": "x"},
        },
        "exception": {"values": [{"type": "E", "value": "at redis://:pw@cache:6379"}]},
    }
    out = sentry.before_send(event, {})
    assert out["request"]["headers"] == {"Accept": "*/*"}
    assert "cookies" not in out["request"]
    assert out["request"]["query_string"] == "page=2"
    assert out["request"]["data"] == {
        "user": {"password": "[redacted]", "name": "n"},
        "secret_answer": "[redacted]",
    }
    assert out["exception"]["values"][0]["value"] == "at redis://:[redacted]@cache:6379"


def test_an_error_repeated_more_than_ten_times_in_five_minutes_is_dropped_but_counted(
    client, events
):
    for _ in range(13):
        boom(client)
    sentry_sdk.flush()
    assert len(events) == 10
    assert sum(sentry.suppressor.suppressed.values()) == 3


def test_404s_are_not_reported(client, events):
    from django.http import Http404

    try:
        raise Http404("no such page")
    except Http404:
        sentry_sdk.capture_exception()
    sentry_sdk.capture_event(
        {"logger": "django.request", "logentry": {"message": "Not Found: /x"}, "level": "error"}
    )
    sentry_sdk.capture_exception(RuntimeError("a real error"))  # the one that goes through
    sentry_sdk.flush()
    assert [e["exception"]["values"][-1]["type"] for e in events] == ["RuntimeError"]
    event = {
        "logger": "django.request",
        "logentry": {"message": "Not Found: %s"},
        "level": "warning",
    }
    assert sentry.before_send(event, {}) is None


def test_suppression_window_slides():
    now = [0.0]
    s = sentry.RepeatSuppressor(limit=2, window=300, clock=lambda: now[0])
    assert [s.allow("f") for _ in range(3)] == [True, True, False]
    now[0] = 301.0
    assert s.allow("f") is True
    assert s.suppressed["f"] == 1


@console_task
def failing_task(dsn):
    raise ConnectionError(f"could not reach {dsn}")


def test_exceptions_inside_tasks_are_captured_and_scrubbed(db, events):
    with pytest.raises(ConnectionError):
        failing_task("postgres://u:task-secret@db/app")
    sentry_sdk.flush()
    assert len(events) == 1
    assert events[0]["tags"]["task"].endswith("failing_task")
    assert "task-secret" not in repr(events[0])


def test_traces_sample_rate_follows_the_environment():
    for env, rate in (("production", 0.1), ("staging", 0.5), ("development", 1.0)):
        sentry.init(
            dsn="http://public@127.0.0.1:9/1", environment=env, transport=CaptureTransport()
        )
        assert sentry_sdk.get_client().options["traces_sample_rate"] == rate
        sentry_sdk.get_client().close()
    with pytest.raises(ValueError, match="between 0 and 1"):
        sentry.init(
            dsn="http://public@127.0.0.1:9/1", environment="production", traces_sample_rate=2
        )
