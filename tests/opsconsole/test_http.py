"""Outbound HTTP against a real local server: timeouts, classification, redaction, retries."""

import logging

import httpx
import pytest
from werkzeug import Response

from opsconsole import http
from opsconsole.http import HttpError


def test_it_sends_the_user_agent_and_correlation_id(httpserver):
    from opsconsole.logs import reset_correlation_id, set_correlation_id

    httpserver.expect_request(
        "/hook", headers={"User-Agent": http.USER_AGENT, "X-Correlation-ID": "c-1"}
    ).respond_with_json({"ok": True})
    token = set_correlation_id("c-1")
    try:
        assert http.request("POST", httpserver.url_for("/hook"), json={"a": 1}).json() == {
            "ok": True
        }
    finally:
        reset_correlation_id(token)


@pytest.mark.parametrize(
    ("status", "permanent"),
    [(400, True), (401, True), (404, True), (408, False), (429, False), (500, False), (503, False)],
)
def test_it_classifies_failures(httpserver, status, permanent):
    httpserver.expect_request("/x").respond_with_data("nope", status=status)
    with pytest.raises(HttpError) as caught:
        http.request("GET", httpserver.url_for("/x"))
    assert caught.value.status == status
    assert caught.value.permanent is permanent


def test_a_slow_server_times_out_as_a_temporary_failure(httpserver):
    import time

    def slow(request):
        time.sleep(1.0)
        return Response("late")

    httpserver.expect_request("/slow").respond_with_handler(slow)
    with pytest.raises(HttpError, match="timed out") as caught:
        http.request("GET", httpserver.url_for("/slow"), timeout=0.2)
    assert caught.value.permanent is False


def test_a_refused_connection_is_temporary():
    with pytest.raises(HttpError) as caught:
        http.request("GET", "http://127.0.0.1:9/unreachable", timeout=1)
    assert caught.value.permanent is False


def test_secrets_never_reach_errors_or_logs(httpserver, caplog):
    caplog.set_level(logging.INFO)
    httpserver.expect_request("/services/T0/B0/hook-secret").respond_with_data(
        "no_service", status=404
    )
    url = httpserver.url_for("/services/T0/B0/hook-secret").replace("http://", "http://user:pw123@")
    with pytest.raises(HttpError) as caught:
        http.request("POST", url + "?token=qs-secret", json={}, secrets=["hook-secret"])
    # Everything the console logged (the fake server's own access log aside).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith("werkzeug"))
    text = str(caught.value) + logged
    assert "[redacted]" in logged
    for secret in ("hook-secret", "pw123", "qs-secret"):
        assert secret not in text
    assert "HTTP 404" in str(caught.value)


def test_redact_headers():
    assert http.redact_headers({"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "a"}) == {
        "Authorization": "[redacted]",
        "X-Api-Key": "[redacted]",
        "Accept": "a",
    }


def test_retries_temporary_failures_with_backoff_then_succeeds(httpserver):
    httpserver.expect_ordered_request("/flaky").respond_with_data("busy", status=503)
    httpserver.expect_ordered_request("/flaky").respond_with_data(
        "busy", status=429, headers={"Retry-After": "2"}
    )
    httpserver.expect_ordered_request("/flaky").respond_with_json({"ok": 1})
    waits = []
    result = http.with_retries(
        lambda: http.request("GET", httpserver.url_for("/flaky")).json(),
        attempts=4, base=0.5, sleep=waits.append, rng=lambda: 1.0,
    )  # fmt: skip
    assert result == {"ok": 1}
    assert waits == [0.5, 2.0]  # exponential, then the server's Retry-After wins


def test_a_permanent_failure_is_not_retried(httpserver):
    httpserver.expect_request("/gone").respond_with_data("gone", status=410)
    waits = []
    with pytest.raises(HttpError):
        http.with_retries(
            lambda: http.request("GET", httpserver.url_for("/gone")), sleep=waits.append
        )
    assert waits == []
    assert len(httpserver.log) == 1


def test_it_gives_up_after_the_last_attempt(httpserver):
    httpserver.expect_request("/down").respond_with_data("down", status=502)
    with pytest.raises(HttpError, match="502"):
        http.with_retries(
            lambda: http.request("GET", httpserver.url_for("/down")),
            attempts=3,
            sleep=lambda s: None,
        )
    assert len(httpserver.log) == 3


def test_backoff_is_capped_and_jittered():
    delays = http.backoff_delays(8, base=1, cap=10, rng=lambda: 1.0)
    assert delays == [1, 2, 4, 8, 10, 10, 10]
    assert all(0 <= d <= 10 for d in http.backoff_delays(8, base=1, cap=10))


def test_unit_tests_can_swap_the_transport():
    transport = httpx.MockTransport(
        lambda request: httpx.Response(201, json={"seen": str(request.url)})
    )
    with http.use_transport(transport):
        assert http.request("POST", "https://hooks.example.com/x").json() == {
            "seen": "https://hooks.example.com/x"
        }
