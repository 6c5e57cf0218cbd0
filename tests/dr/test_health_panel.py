"""Health at a glance: a heartbeat bar that shows flapping, uptime, and certificate expiry."""

import datetime as dt
import re
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone

from alerts.models import Incident
from dr.models import CheckResult, ServiceCheck
from opsconsole import http
from tests.conftest import login
from tests.dr.test_health_checks import tick


def health_panel(client, user) -> str:
    body = login(client, user).get("/admin/dashboard/panels/").content.decode()
    return body.split('id="panel-health"')[1].split("</section>")[0]


def test_flapping_shows_in_the_bar_and_the_uptime(client, carol, db):
    """Staging failed 5 of 24 checks in four minutes while the state said Healthy."""
    check = ServiceCheck.objects.create(name="staging", kind="tcp", retries=3, state="healthy",
                                        config={"host": "127.0.0.1", "port": 9})  # fmt: skip
    now = timezone.now()
    failures = {3, 4, 9, 15, 16}  # never three in a row: retrying, never unhealthy
    CheckResult.objects.bulk_create(
        CheckResult(service_check=check, at=now - dt.timedelta(seconds=10 * (24 - i)),
                    ok=i not in failures, latency_ms=20, detail="" if i not in failures else "HTTP 500")
        for i in range(24)
    )  # fmt: skip
    panel = health_panel(client, carol)
    assert "staging: last 24 results, 19 up, 5 retrying, 0 down" in panel
    assert panel.count("<rect") == 24
    assert "failed, 20 ms: HTTP 500" in panel, "each bar says what happened on hover"
    assert "79.17 %" in panel, "uptime over 24 hours"


def test_three_failures_in_a_row_turn_red(client, carol, db):
    check = ServiceCheck.objects.create(name="api", kind="tcp", retries=3,
                                        config={"host": "127.0.0.1", "port": 9})  # fmt: skip
    now = timezone.now()
    CheckResult.objects.bulk_create(
        CheckResult(service_check=check, at=now - dt.timedelta(seconds=60 - i), ok=False,
                    latency_ms=5) for i in range(4)
    )  # fmt: skip
    panel = health_panel(client, carol)
    assert "api: last 4 results, 0 up, 2 retrying, 2 down" in panel
    colours = re.findall(r'fill="(#[0-9a-f]{6})"', panel)
    assert colours == ["#d4a72c", "#d4a72c", "#e5534b", "#e5534b"]


def certificate(days: int, tmp_path):
    """A CA and a server certificate for 127.0.0.1 that expires in `days` days."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                       critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    pem = tmp_path / f"server-{days}.pem"
    pem.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    )  # fmt: skip
    return ca.public_bytes(serialization.Encoding.PEM).decode(), pem


class Ok(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def https_server(tmp_path, monkeypatch):
    """A real TLS server on loopback; the console trusts its test CA (the one seam)."""
    servers = []

    def start(days: int) -> str:
        ca, pem = certificate(days, tmp_path)
        server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        trusted = ssl.create_default_context(cadata=ca)
        monkeypatch.setattr(http, "_ssl_context", lambda: trusted)
        return f"https://127.0.0.1:{server.server_port}/health"

    yield start
    for server in servers:
        server.shutdown()


def test_a_certificate_expiring_within_14_days_opens_one_incident_until_renewed(
    https_server, client, carol, db
):
    url = https_server(10)
    check = ServiceCheck(name="shop", kind="http", config={"url": url}, interval_seconds=30)
    check.full_clean()
    check.save()
    tick()
    check.refresh_from_db()
    assert check.state == "healthy"
    assert 9 <= (check.certificate_expires_at - timezone.now()).days <= 10
    incident = Incident.objects.get(fingerprint=f"check:{check.pk}:certificate:14 days")
    assert incident.priority == "high" and "expires in 9 days" in incident.title
    tick(31)
    assert Incident.objects.get(pk=incident.pk).count == 1, "said once, not every interval"
    assert "certificate until" in health_panel(client, carol)
    assert "state-bad" in health_panel(client, carol).split("certificate until")[0][-40:]

    # Renewed: a certificate for 60 more days resolves it.
    check.config = {"url": https_server(60)}
    check.save()
    tick(62)
    incident.refresh_from_db()
    assert incident.status == "resolved"


def test_plain_http_has_no_certificate(db, httpserver):
    httpserver.expect_request("/health").respond_with_data("ok")
    check = ServiceCheck(name="plain", kind="http", config={"url": httpserver.url_for("/health")})
    check.full_clean()
    check.save()
    tick()
    check.refresh_from_db()
    assert check.state == "healthy" and check.certificate_expires_at is None


def test_a_check_and_its_incidents_link_both_ways(client, carol, db):
    from alerts.incidents import raise_incident

    check = ServiceCheck.objects.create(name="checkout", kind="tcp",
                                        config={"host": "127.0.0.1", "port": 9})  # fmt: skip
    incident = raise_incident("health", check.fingerprint(), "checkout is unhealthy", "critical",
                              component="checkout")  # fmt: skip
    page = login(client, carol).get(f"/admin/dr/servicecheck/{check.pk}/change/").content.decode()
    assert f'href="/admin/alerts/incident/{incident.pk}/change/"' in page
    page = client.get(f"/admin/alerts/incident/{incident.pk}/change/").content.decode()
    assert f'href="/admin/dr/servicecheck/{check.pk}/change/"' in page


def test_the_certificate_incident_gets_louder_and_a_person_who_resolved_it_is_not_paged_again(db):
    from alerts.incidents import resolve_by_hand
    from dr.health import _certificate

    check = ServiceCheck.objects.create(name="shop", kind="http",
                                        config={"url": "https://127.0.0.1:9/"})  # fmt: skip
    now = timezone.now()
    check.certificate_expires_at = now + dt.timedelta(days=10)
    _certificate(check, now)
    first = Incident.objects.get(status="triggered")
    assert first.priority == "high" and "expires in 10 days" in first.title

    from django.contrib.auth.models import User

    root = User.objects.create_superuser("root", "root@example.com", "x")
    resolve_by_hand(first, root)
    _certificate(check, now + dt.timedelta(minutes=1))
    assert not Incident.objects.filter(status="triggered").exists(), "resolved by a person"

    _certificate(check, now + dt.timedelta(days=8))
    closer = Incident.objects.get(status="triggered")
    assert closer.priority == "critical" and "expires in 2 days" in closer.title
    _certificate(check, now + dt.timedelta(days=11))
    expired = Incident.objects.get(status="triggered")
    assert "has expired" in expired.title
    assert Incident.objects.get(pk=closer.pk).status == "resolved", "one open at a time"
    check.certificate_expires_at = None  # switched to plain HTTP
    _certificate(check, now + dt.timedelta(days=11))
    assert not Incident.objects.exclude(status="resolved").exists()
