"""Operators cannot reach inside the network: the outbound policy, and no response content
in errors, labels or results. A fake metadata server answers on loopback."""

import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from opsconsole import http, outbound

SECRET_ACCESS_KEY = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"


@pytest.fixture
def metadata_server():
    """Answers like a cloud metadata service, with a credential in every body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            body = (f'{{"Code": "Success", "AccessKeyId": "AKIAEXAMPLE", '
                    f'"SecretAccessKey": "{SECRET_ACCESS_KEY}"}}').encode()  # fmt: skip
            status = 403 if self.path.startswith("/forbidden") else 200
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(
    "address",
    ["169.254.169.254", "169.254.170.2", "fe80::1", "fd00:ec2::254", "0.0.0.0",  # noqa: S104 - refused, not bound
     "::ffff:169.254.169.254"],
)  # fmt: skip
def test_metadata_and_link_local_addresses_are_never_reachable(address, settings):
    import ipaddress

    settings.OPSCONSOLE_OUTBOUND_ALLOW = ["0.0.0.0/0", "::/0"]  # not even when everything is
    assert "never reachable" in outbound.refusal(ipaddress.ip_address(address))


def test_private_and_loopback_need_the_allowlist(settings):
    import ipaddress

    settings.OPSCONSOLE_OUTBOUND_ALLOW = []
    for private in (
        "127.0.0.1",
        "10.1.2.3",
        "172.20.0.1",
        "192.168.1.1",
        "100.64.0.1",
        "::1",
        "fd12::1",
    ):
        assert "OPSCONSOLE_OUTBOUND_ALLOW" in outbound.refusal(ipaddress.ip_address(private))
    assert outbound.refusal(ipaddress.ip_address("93.184.216.34")) is None
    settings.OPSCONSOLE_OUTBOUND_ALLOW = ["10.0.0.0/8"]
    assert outbound.refusal(ipaddress.ip_address("10.1.2.3")) is None
    assert outbound.refusal(ipaddress.ip_address("192.168.1.1")) is not None


def test_an_http_request_to_a_refused_address_never_connects(settings, metadata_server):
    settings.OPSCONSOLE_OUTBOUND_ALLOW = []
    with pytest.raises(http.HttpError) as caught:
        http.request("GET", metadata_server + "/latest/meta-data/")
    assert caught.value.permanent and "OPSCONSOLE_OUTBOUND_ALLOW" in caught.value.message


def test_the_connection_goes_to_the_address_that_was_checked(
    settings, monkeypatch, metadata_server
):
    """A name that resolves to a public address when checked and an internal one when the
    client resolves again (DNS rebinding) must still land on the checked address."""
    port = int(metadata_server.rsplit(":", 1)[1])
    answers = iter(["127.0.0.1", "169.254.169.254"])
    real = socket.getaddrinfo

    def rebinding(host, *args, **kwargs):
        if host == "rebind.test":
            ip = next(answers, "169.254.169.254")
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    settings.OPSCONSOLE_OUTBOUND_ALLOW = ["127.0.0.0/8"]
    response = http.request("GET", f"http://rebind.test:{port}/ok")
    assert response.status_code == 200, "connected to 127.0.0.1, the one address checked"
    with pytest.raises(http.HttpError, match="never reachable"):
        http.request("GET", f"http://rebind.test:{port}/ok")


@pytest.mark.django_db
def test_an_http_json_source_never_shows_the_answer(settings, metadata_server):
    from alerts.models import MetricSource

    settings.OPSCONSOLE_OUTBOUND_ALLOW = ["127.0.0.0/8"]
    for path in ("SecretAccessKey", "Code"):
        src = MetricSource.objects.create(name=path, kind="http_json", metric_key="k",
                                          config={"url": metadata_server + "/creds", "path": path})  # fmt: skip
        assert src.collect() == 0
        src.refresh_from_db()
        assert "not a number" in src.last_error and "string of" in src.last_error
        assert SECRET_ACCESS_KEY not in src.last_error and "Success" not in src.last_error


@pytest.mark.django_db
def test_a_4xx_body_goes_into_no_error(settings, metadata_server):
    settings.OPSCONSOLE_OUTBOUND_ALLOW = ["127.0.0.0/8"]
    with pytest.raises(http.HttpError) as caught:
        http.request("GET", metadata_server + "/forbidden", secrets=[])
    assert "HTTP 403" in caught.value.message and "bytes, application/json" in caught.value.message
    assert SECRET_ACCESS_KEY not in caught.value.message


@pytest.mark.django_db
def test_prometheus_labels_are_bounded(settings):
    from alerts.sources.base import bounded_labels

    labels = bounded_labels({f"l{i}": "x" * 5000 for i in range(50)})
    assert len(labels) == 10 and all(len(v) == 200 for v in labels.values())


@pytest.mark.django_db
def test_a_failover_webhook_keeps_the_status_and_size_not_the_body(
    settings, metadata_server, alice, bob
):
    from dr.models import FailoverAction
    from tests.helpers import run_queued

    settings.OPSCONSOLE_OUTBOUND_ALLOW = ["127.0.0.0/8"]
    action = FailoverAction.objects.create(name="flip", kind="webhook",
                                           config={"url": metadata_server + "/creds"})  # fmt: skip
    run = action.request(alice)
    run.approve(bob, confirmation="flip")
    run_queued()
    run.refresh_from_db()
    assert run.status == "succeeded" and run.result["status"] == 200
    assert SECRET_ACCESS_KEY not in str(run.result)


@pytest.mark.django_db
def test_a_tcp_check_is_no_port_scanner(settings):
    from dr.health import run_due
    from dr.models import ServiceCheck

    settings.OPSCONSOLE_OUTBOUND_ALLOW = []
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    try:
        check = ServiceCheck.objects.create(name="scan", kind="tcp", retries=1,
                                            config={"host": "127.0.0.1", "port": listener.getsockname()[1]})  # fmt: skip
        run_due()
        check.refresh_from_db()
        assert check.state != "healthy" and "OPSCONSOLE_OUTBOUND_ALLOW" in check.last_error
    finally:
        listener.close()


def test_a_bad_allowlist_is_a_one_line_configuration_error(tmp_path):
    from tests.helpers import console_env, manage

    result = manage(
        "check", env=console_env(tmp_path, OPSCONSOLE_OUTBOUND_ALLOW="10.0.0.0/8,nonsense")
    )
    assert result.returncode != 0
    assert "OPSCONSOLE_OUTBOUND_ALLOW: 'nonsense' is not a network" in result.stderr
    assert "Traceback" not in result.stderr


def test_unit_tests_replace_the_transport_at_one_seam():
    with http.use_transport(httpx.MockTransport(lambda r: httpx.Response(204))):
        assert http.request("GET", "http://169.254.169.254/").status_code == 204
