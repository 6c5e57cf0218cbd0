"""Health checks: retries, recovery, concurrency, parent/child suppression, real peers."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from werkzeug import Response

from alerts.models import Incident, Silence
from dr.health import run_due
from dr.models import CheckResult, ServiceCheck


def http_check(httpserver, name, path, retries=3, timeout=2.0, **fields):
    check = ServiceCheck(name=name, kind="http", config={"url": httpserver.url_for(path)}, retries=retries,
                         timeout_seconds=timeout, interval_seconds=30, **fields)  # fmt: skip
    check.full_clean()
    check.save()
    return check


def tick(offset_s: int = 0):
    return run_due(timezone.now() + timedelta(seconds=offset_s))


def test_the_original_checks_ship_disabled_until_configured(db):
    shipped = {
        c.name: (c.kind, c.interval_seconds, c.timeout_seconds, c.retries, c.enabled)
        for c in ServiceCheck.objects.all()
    }
    assert shipped["Primary API"] == ("http", 30, 5, 3, False)
    assert shipped["Database"] == ("postgres", 60, 10, 2, False)
    assert shipped["Redis"] == ("redis", 30, 3, 3, False)
    assert shipped["YouTube API (upstream)"] == ("http", 300, 15, 1, False)


def test_failures_degrade_then_make_it_unhealthy_then_it_recovers(db, httpserver, channels):
    state = {"status": 500}
    httpserver.expect_request("/health").respond_with_handler(
        lambda r: Response("x", status=state["status"])
    )
    check = http_check(httpserver, "api", "/health", retries=3)
    seen = []
    for i in range(3):
        tick(i * 31)
        check.refresh_from_db()
        seen.append((check.state, check.consecutive_failures))
    assert seen == [("degraded", 1), ("degraded", 2), ("unhealthy", 3)]
    incident = Incident.objects.get(fingerprint=f"check:{check.pk}")
    assert incident.priority == "critical" and "HTTP 500, expected 200" in incident.title
    state["status"] = 200
    tick(4 * 31)
    check.refresh_from_db()
    assert (check.state, check.consecutive_successes, check.last_error) == ("healthy", 1, "")
    incident.refresh_from_db()
    assert incident.status == "resolved"
    assert CheckResult.objects.filter(service_check=check).count() == 4


def test_a_check_is_not_run_before_it_is_due(db, httpserver):
    httpserver.expect_request("/health").respond_with_data("ok")
    check = http_check(httpserver, "api", "/health")
    assert tick() == 1
    assert tick(5) == 0, "30 s interval"
    assert tick(31) == 1
    assert CheckResult.objects.filter(service_check=check).count() == 2


def test_a_hanging_target_does_not_delay_a_fast_one(db, httpserver):
    import socket

    hole = socket.socket()  # accepts connections and never answers
    hole.bind(("127.0.0.1", 0))
    hole.listen(8)
    httpserver.expect_request("/fast").respond_with_data("ok")
    slow = ServiceCheck.objects.create(name="slow", kind="http", timeout_seconds=1.0,
                                       config={"url": f"http://127.0.0.1:{hole.getsockname()[1]}/hang"})  # fmt: skip
    fast = http_check(httpserver, "fast", "/fast")
    tick()
    hole.close()
    slow.refresh_from_db()
    fast.refresh_from_db()
    assert fast.state == "healthy", fast.last_error
    assert slow.state == "degraded" and "timed out" in slow.last_error


def test_checks_of_one_tick_run_at_the_same_time(db):
    """Two targets that answer only once both requests have arrived: checks run one
    after the other would each wait out their timeout and fail."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    both_arrived = threading.Barrier(2, timeout=5)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            try:
                both_arrived.wait()
                status = 200
            except threading.BrokenBarrierError:
                status = 503
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        checks = [
            ServiceCheck.objects.create(
                name=name,
                kind="http",
                timeout_seconds=3.0,
                retries=1,
                config={"url": f"{base}/{name}"},
            )
            for name in ("one", "two")
        ]
        tick()
    finally:
        server.shutdown()
        server.server_close()
    for check in checks:
        check.refresh_from_db()
        assert check.state == "healthy", check.last_error


def test_a_child_of_an_unhealthy_parent_opens_no_incident(db, httpserver, channels):
    httpserver.expect_request("/db").respond_with_data("down", status=503)
    httpserver.expect_request("/api").respond_with_data("down", status=503)
    parent = http_check(httpserver, "database", "/db", retries=1)
    child = http_check(httpserver, "api", "/api", retries=1, parent=parent)
    tick()
    child.refresh_from_db()
    assert child.state == "unhealthy"
    assert Incident.objects.filter(fingerprint=f"check:{parent.pk}").exists()
    assert not Incident.objects.filter(fingerprint=f"check:{child.pk}").exists()


def test_a_silence_on_the_check_pauses_its_notifications(db, httpserver, channels):
    httpserver.expect_request("/x").respond_with_data("down", status=500)
    check = http_check(httpserver, "billing", "/x", retries=1)
    Silence.objects.create(component="billing", starts_at=timezone.now() - timedelta(minutes=1),
                           ends_at=timezone.now() + timedelta(hours=1), reason="maintenance")  # fmt: skip
    tick()
    incident = Incident.objects.get(fingerprint=f"check:{check.pk}")
    assert incident.silenced and not incident.notifications.exists()


def test_keyword_and_json_path(db, httpserver):
    httpserver.expect_request("/status").respond_with_json({"db": {"ok": False}, "version": "v1"})
    url = httpserver.url_for("/status")
    by_json = ServiceCheck.objects.create(
        name="json", kind="http", timeout_seconds=2,
        config={"url": url, "json_path": "db.ok", "json_value": True},
    )  # fmt: skip
    by_keyword = ServiceCheck.objects.create(
        name="keyword", kind="http", timeout_seconds=2, config={"url": url, "keyword": "healthy"}
    )
    tick()
    by_json.refresh_from_db()
    by_keyword.refresh_from_db()
    assert "db.ok is not the expected value (it is a boolean)" in by_json.last_error
    assert "'healthy' not in the response" in by_keyword.last_error


def test_tcp_check_against_a_real_listener_and_a_closed_port(db):
    import socket

    from tests.pgserver import free_port

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    up = ServiceCheck.objects.create(
        name="up", kind="tcp", config={"host": "127.0.0.1", "port": listener.getsockname()[1]}
    )
    down = ServiceCheck.objects.create(
        name="down", kind="tcp", config={"host": "127.0.0.1", "port": free_port()}
    )
    tick()
    up.refresh_from_db()
    down.refresh_from_db()
    listener.close()
    assert (
        up.state == "healthy" and down.state == "degraded" and "cannot connect" in down.last_error
    )


@pytest.mark.postgres
def test_postgres_check_against_the_test_server(db, pg):
    good = ServiceCheck.objects.create(
        name="pg", kind="postgres", secret=pg.admin_dsn, timeout_seconds=5
    )
    bad = ServiceCheck.objects.create(
        name="pg missing", kind="postgres", secret=pg.dsn("no_such_db"), timeout_seconds=5
    )
    tick()
    good.refresh_from_db()
    bad.refresh_from_db()
    assert good.state == "healthy" and good.last_error == ""
    assert bad.state == "degraded" and "no_such_db" in bad.last_error


def test_redis_check_against_a_real_server(db, tmp_path):
    import subprocess

    from tests.peers import ensure_binary
    from tests.pgserver import free_port

    port = free_port()
    server = subprocess.Popen([ensure_binary("redis-server", "redis-server"), "--port", str(port), "--save", "",
                               "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)  # fmt: skip
    try:
        check = ServiceCheck.objects.create(
            name="cache", kind="redis", secret=f"redis://127.0.0.1:{port}/0", timeout_seconds=2
        )
        for _ in range(50):
            tick(31 * _)
            check.refresh_from_db()
            if check.state == "healthy":
                break
            time.sleep(0.1)
        assert check.state == "healthy"
    finally:
        server.terminate()
        server.wait(10)


def test_validation_messages(db):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="Configure what to check"):
        ServiceCheck(name="x", kind="http", config={"url": ""}).full_clean()
    with pytest.raises(ValidationError, match="no longer than the interval"):
        ServiceCheck(
            name="y",
            kind="tcp",
            config={"host": "h", "port": 1},
            timeout_seconds=60,
            interval_seconds=30,
        ).full_clean()


def test_checks_keep_to_their_schedule_not_to_when_a_run_finished(db, httpserver):
    httpserver.expect_request("/health").respond_with_data("ok")
    check = http_check(httpserver, "api", "/health")
    first_due = check.next_due_at
    tick()
    check.refresh_from_db()
    assert check.next_due_at == first_due + timedelta(seconds=30)
    # A worker that was gone for five minutes skips the missed slots instead of bursting.
    tick(300)
    check.refresh_from_db()
    assert check.next_due_at > timezone.now() + timedelta(seconds=300 - 31)
    assert (check.next_due_at - first_due).total_seconds() % 30 == 0
