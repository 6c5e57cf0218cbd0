"""Traces as an OpenTelemetry backend receives them from a running console.

`manage.py serve` (web server, alert path, jobs worker) runs with the standard OTEL_*
variables pointing at an OTLP/HTTP receiver started here; the spans it receives are
decoded with opentelemetry-proto. An admin click that queues a backup is one trace
through the worker to the upload; a deploy webhook from CI joins the pipeline's trace;
a failing health check's page is one trace from the check to the outgoing request.
No secret appears in any span, and the worker's log lines carry the trace ids.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import psycopg
import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Group, User

from alerts.models import Channel, Notification
from backups.models import Backup, BackupPolicy, DatabaseTarget, StorageLocation
from deployments.models import Deployment, Environment
from dr.models import ServiceCheck
from opsconsole.webhooks import sign_timestamped
from tests.backups.conftest import SCHEMA
from tests.helpers import ROOT, console_database_url, page_only, wait_for
from tests.otlp import Receiver
from tests.pgserver import free_port

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]

PASSWORD = "alice-has-a-long-password"
CANARY = f"canary{uuid.uuid4().hex}"


@pytest.fixture(scope="module")
def receiver():
    with Receiver() as r:
        yield r


class SentryReceiver:
    """Sentry's envelope endpoint, as the SDK posts to it: the items by type."""

    def __init__(self):
        self.items: list[tuple[str, dict]] = []
        items = self.items

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                lines = body.split(b"\n")[1:]
                for header, payload in zip(lines[::2], lines[1::2], strict=False):
                    kind = json.loads(header).get("type", "")
                    try:
                        items.append((kind, json.loads(payload)))
                    except ValueError:
                        items.append((kind, {}))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.dsn = f"http://public@127.0.0.1:{self.server.server_address[1]}/1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[dict]:
        return [payload for kind, payload in self.items if kind == "event"]


@pytest.fixture(scope="module")
def sentry():
    received = SentryReceiver()
    yield received
    received.server.shutdown()


@pytest.fixture(scope="module")
def console(receiver, sentry, tmp_path_factory, django_db_setup, django_db_blocker):
    """The three processes, tracing to `receiver` and reporting errors to `sentry`, on the
    test database."""
    logs = tmp_path_factory.mktemp("console")
    port = free_port()
    with django_db_blocker.unblock():
        database_url = console_database_url()
    env = {
        **os.environ,
        **receiver.env(OTEL_SERVICE_NAME="opsconsole-test"),
        "DJANGO_SETTINGS_MODULE": "opsconsole.settings",
        "DATABASE_URL": database_url,
        "OPSCONSOLE_ENV_FILE": os.devnull,
        "OPSCONSOLE_OUTBOUND_ALLOW": "127.0.0.0/8",
        "PYTHONUNBUFFERED": "1",
        "LOG_FORMAT": "json",
        "WEB_CONCURRENCY": "1",
        "Q_WORKERS": "1",
        "SENTRY_DSN": sentry.dsn,
    }
    log = logs / "serve.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "manage.py"), "serve", "--port", str(port)],
            env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"

    def up():
        try:
            return httpx.get(f"{base}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        assert wait_for(up, timeout=60), log.read_text()[-3000:]
        yield base, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def log_lines(log: Path) -> list[dict]:
    lines = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
    return lines


def signed_in(base: str) -> httpx.Client:
    """alice, an operator (no second factor asked of her), signed in through the form."""
    alice = User.objects.create(
        username="alice",
        is_staff=True,
        # The console's own hasher: the tests' fast one is not in its settings.
        password=PBKDF2PasswordHasher().encode(PASSWORD, "saltsaltsalt", iterations=1000),
    )
    alice.groups.add(Group.objects.get(name="Operator"))
    client = httpx.Client(base_url=base, timeout=30)
    client.get("/admin/login/")
    response = client.post(
        "/admin/login/?next=/admin/",
        data={
            "username": "alice",
            "password": PASSWORD,
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
            "next": "/admin/",
        },
    )
    assert response.status_code == 302, response.text[-2000:]
    return client


def test_an_admin_backup_is_one_trace_from_the_click_to_the_upload(
    console, receiver, pg, s3_storage
):
    base, log = console
    source = pg.create_database("shorts")
    with psycopg.connect(pg.dsn(source), autocommit=True) as conn:
        conn.execute(SCHEMA)
    # trust auth: the server ignores the password, which is the canary here.
    dsn = pg.dsn(source).replace("://postgres@", f"://postgres:{CANARY}@")
    assert CANARY in dsn
    target = DatabaseTarget.objects.create(name="shorts", engine="postgresql", dsn=dsn)
    StorageLocation.objects.filter(pk=s3_storage.pk).update(secret=f"test{CANARY}")
    policy = BackupPolicy.objects.create(
        name="nightly", target=target, storage=s3_storage, schedule="0 2 * * *"
    )
    client = signed_in(base)
    client.get("/admin/backups/backuppolicy/")
    clicked = client.post(
        "/admin/backups/backuppolicy/",
        data={
            "action": "back_up_now",
            "_selected_action": [policy.pk],
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    assert clicked.status_code == 302, clicked.text[-2000:]
    done = wait_for(
        lambda: Backup.objects.filter(status=Backup.Status.VERIFIED).first(), timeout=90
    )
    assert done, (list(Backup.objects.values("status", "error")), log.read_text()[-3000:])

    click = receiver.wait_for(
        lambda s: s.name == "POST /admin/backups/backuppolicy/" and s.kind == "server",
        what="the admin click's server span",
    )
    receiver.wait_for(
        lambda s: s.trace_id == click.trace_id and s.name == "task backups.tasks.run_backup",
        timeout=30,
        what="the worker's task in the click's trace",
    )
    spans = {s.name: s for s in receiver.trace(click.trace_id)}
    print(receiver.tree(click.trace_id, ("opsconsole.bytes_stored", "process.exit.code")))

    # The request queued the task; the worker ran it in the same trace.
    enqueue = spans["enqueue backups.tasks.run_backup"]
    task = spans["task backups.tasks.run_backup"]
    assert enqueue.parent_id == click.span_id and enqueue.kind == "producer"
    assert task.parent_id == enqueue.span_id and task.kind == "consumer"
    backup = spans["backup shorts"]
    assert backup.parent_id == task.span_id
    assert backup.attributes["opsconsole.outcome"] == "succeeded"
    assert backup.attributes["opsconsole.bytes_stored"] == done.bytes_stored
    assert backup.attributes["opsconsole.backup"] == done.id
    # Each stage, and pg_dump as a child process with its exit code.
    dump = spans["backup.dump"]
    assert dump.parent_id == backup.span_id
    pg_dump = spans["exec pg_dump"]
    assert pg_dump.parent_id == dump.span_id
    assert pg_dump.attributes["process.exit.code"] == 0
    assert pg_dump.attributes["process.executable.name"] == "pg_dump"
    stream = spans["backup.compress_encrypt"]
    assert stream.attributes["opsconsole.bytes_out"] == done.bytes_stored
    upload = spans["backup.upload"]
    assert upload.parent_id == backup.span_id
    assert upload.attributes["opsconsole.storage.kind"] == "s3"
    # The storage calls are botocore's own spans, under the stages that made them.
    s3_calls = [
        s for s in receiver.trace(click.trace_id) if s.attributes.get("rpc.service") == "S3"
    ]
    methods = {s.attributes.get("rpc.method") for s in s3_calls}
    assert {"CreateMultipartUpload", "CompleteMultipartUpload"} <= methods, methods
    assert any(s.parent_id == upload.span_id for s in s3_calls)
    verify = spans["backup.verify"]
    assert verify.attributes["opsconsole.outcome"] == "verified"
    assert spans["exec pg_restore"].attributes["process.exit.code"] == 0
    # The database spans say what they did, never with what.
    queries = [
        s
        for s in receiver.trace(click.trace_id)
        if "db.system" in s.attributes or "db.system.name" in s.attributes
    ]
    assert any(s.name == "UPDATE backups_backup" for s in queries), {s.name for s in queries}
    # Web and worker are separate processes of one service.
    assert click.service == task.service == "opsconsole-test"

    # The worker's log lines carry the trace: the backup's own line has its span's ids.
    line = wait_for(
        lambda: next(
            (
                entry
                for entry in log_lines(log)
                if entry.get("logger") == "opsconsole.backups"
                and "bytes stored" in entry.get("message", "")
            ),
            None,
        ),
        timeout=10,
    )
    assert line, log.read_text()[-3000:]
    assert line["trace_id"] == click.trace_id
    assert line["span_id"] == backup.span_id
    # So does the access log line of the click.
    access = next(
        e
        for e in log_lines(log)
        if e.get("logger") == "opsconsole.access"
        and e.get("path") == "/admin/backups/backuppolicy/"
        and e.get("method") == "POST"
    )
    assert (access["trace_id"], access["span_id"]) == (click.trace_id, click.span_id)
    assert_no_secret_in_spans(receiver, [CANARY])


def test_a_deploy_webhook_joins_the_trace_of_the_pipeline_that_sent_it(console, receiver):
    base, _ = console
    Environment.objects.create(
        name="staging", provider="command", provider_config={}, webhook_secret=f"s{CANARY}"
    )
    pipeline_trace, pipeline_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    body = json.dumps(
        {"deployment_id": "gh-7", "environment": "staging", "version": "v7", "commit": "abc123"}
    ).encode()
    response = httpx.post(
        f"{base}/webhooks/deploy",
        content=body,
        headers={
            "Content-Type": "application/json",
            "traceparent": f"00-{pipeline_trace}-{pipeline_span}-01",
            **sign_timestamped(f"s{CANARY}", body, int(time.time())),
        },
        timeout=30,
    )
    assert response.status_code in (200, 201, 202), response.text
    assert Deployment.objects.filter(version="v7").exists()
    hook = receiver.wait_for(
        lambda s: s.trace_id == pipeline_trace and s.kind == "server",
        what="the webhook's server span in the pipeline's trace",
    )
    assert hook.name == "POST /webhooks/deploy"
    assert hook.parent_id == pipeline_span
    assert (
        hook.attributes.get("http.status_code", hook.attributes.get("http.response.status_code"))
        == response.status_code
    )
    # The work the webhook queued runs in the worker, in the same trace.
    task = receiver.wait_for(
        lambda s: s.trace_id == pipeline_trace and s.name.startswith("task deployments."),
        what="the queued work in the pipeline's trace",
    )
    enqueue = receiver.wait_for(lambda s: s.span_id == task.parent_id, what="the enqueue")
    assert enqueue.name == f"enqueue {task.name.removeprefix('task ')}"
    assert enqueue.parent_id == hook.span_id
    assert_no_secret_in_spans(receiver, [CANARY])


def test_a_failing_check_and_its_page_are_one_trace(console, receiver, httpserver):
    httpserver.expect_request(re.compile("/services/.*")).respond_with_data("ok")
    hook = httpserver.url_for(f"/services/T000/B000/{CANARY}")
    page_only(
        Channel.objects.create(
            name="pager", kind="slack", config={}, secret=hook, priorities=["critical"]
        )
    )
    httpserver.expect_request("/broken").respond_with_data("no", status=500)
    ServiceCheck.objects.create(
        name="api", kind="http", config={"url": httpserver.url_for("/broken")},
        interval_seconds=5, retries=1, timeout_seconds=2,
    )  # fmt: skip
    paged = wait_for(
        lambda: next((r for r, _ in httpserver.log if r.path.startswith("/services/")), None),
        timeout=60,
    )
    from alerts.models import Incident

    assert paged, (
        list(ServiceCheck.objects.values("state", "last_error")),
        list(Incident.objects.values("title", "status")),
        list(Notification.objects.values("channel__name", "status", "error")),
    )
    # The page itself carries the trace on to whoever receives it.
    traceparent = paged.headers.get("traceparent")
    assert traceparent, dict(paged.headers)
    _, trace_id, client_span_id, _ = traceparent.split("-")

    post = receiver.wait_for(
        lambda s: s.span_id == client_span_id, what="the outgoing page's client span"
    )
    # The send ends after its request, and may come in a later batch.
    receiver.wait_for(lambda s: s.span_id == post.parent_id, what="the send around the request")
    receiver.wait_for(lambda s: s.trace_id == trace_id and s.name == "check api", what="the check")
    spans = {s.name: s for s in receiver.trace(trace_id)}
    print(receiver.tree(trace_id, ("opsconsole.check.ok", "opsconsole.provider.status")))
    tick = spans["tick dr.checks"]
    assert tick.parent_id == ""
    check = spans["check api"]
    assert check.parent_id == tick.span_id
    assert check.status == 2 and check.attributes["opsconsole.check.ok"] is False
    notify = spans["notify slack"]
    assert post.parent_id == notify.span_id and post.kind == "client"
    assert notify.attributes["opsconsole.channel.kind"] == "slack"
    assert notify.attributes["opsconsole.provider.status"] == 200
    assert notify.attributes["opsconsole.notification.event"] == "firing"
    # Sent by the delivery loop's tick, which the send links to.
    assert notify.links and notify.links[0][0] != trace_id
    # The page's URL is its credential: recorded redacted, as in the log line.
    assert CANARY not in post.attributes.get("url.full", "") + post.attributes.get("http.url", "")
    assert (
        post.attributes.get("http.status_code", post.attributes.get("http.response.status_code"))
        == 200
    )
    sent = Notification.objects.filter(channel__name="pager", event="firing").get()
    assert sent.traceparent.split("-")[1] == trace_id
    assert_no_secret_in_spans(receiver, [CANARY])


def test_sentry_reports_an_error_with_the_trace_it_happened_in(console, receiver, sentry, pg):
    """With both configured, OpenTelemetry traces and Sentry reports errors, and each
    error names its OpenTelemetry trace: from an issue in Sentry to the trace in Jaeger."""
    base, _ = console
    closed = free_port()
    target = DatabaseTarget.objects.create(
        name="gone", engine="postgresql",
        dsn=f"postgresql://app:{CANARY}@127.0.0.1:{closed}/gone",
    )  # fmt: skip
    storage = StorageLocation.objects.create(name="here", kind="local", config={"path": "/tmp"})
    policy = BackupPolicy.objects.create(name="gone nightly", target=target, storage=storage)
    client = signed_in(base)
    client.get("/admin/backups/backuppolicy/")
    client.post(
        "/admin/backups/backuppolicy/",
        data={
            "action": "back_up_now",
            "_selected_action": [policy.pk],
            "csrfmiddlewaretoken": client.cookies["csrftoken"],
        },
    )
    event = wait_for(
        lambda: next(
            (
                e
                for e in sentry.events()
                if "failed" in json.dumps(e.get("logentry", {}))
                and "gone" in json.dumps(e.get("logentry", {}))
            ),
            None,
        ),
        timeout=60,
    )
    assert event, sentry.items
    failed = receiver.wait_for(
        lambda s: s.name == "backup gone" and s.status == 2, what="the failed backup's span"
    )
    trace_context = event["contexts"]["trace"]
    print(json.dumps(event.get("logentry")), trace_context)
    assert trace_context["trace_id"] == failed.trace_id
    assert trace_context["span_id"] == failed.span_id
    # The trace starts at the click that queued the backup.
    click = receiver.wait_for(
        lambda s: s.trace_id == failed.trace_id and s.kind == "server", what="the click"
    )
    assert click.name == "POST /admin/backups/backuppolicy/"
    # Sentry does not trace as well: no transactions of its own.
    assert not [kind for kind, _ in sentry.items if kind == "transaction"]
    assert CANARY not in json.dumps(sentry.items)
    assert_no_secret_in_spans(receiver, [CANARY])


def test_no_secret_of_any_record_reaches_a_span(console, receiver):
    """The security work's canaries: every encrypted field of every model holds its own;
    an operator opens every page; no span of any of it carries a canary."""
    from tests.security.test_secret_canaries import (
        admin_pages,
        make_records,
        routed_pages,
        set_canaries,
    )

    base, _ = console
    make_records()
    canaries = set_canaries()
    client = signed_in(base)
    served_before = sum(1 for s in receiver.all() if s.kind == "server")
    paths = sorted({*admin_pages(), *routed_pages()})
    statuses = {path: client.get(path).status_code for path in paths}
    assert sum(1 for code in statuses.values() if code == 200) > 50, statuses
    assert wait_for(
        lambda: sum(1 for s in receiver.all() if s.kind == "server") >= served_before + len(paths),
        timeout=30,
    ), "the pages' spans did not all arrive"
    # What a stranger can send: a token in a path nothing routes, in a query string, in a
    # body, with a trace context of their own.
    token = f"canary{uuid.uuid4().hex}"
    stranger = {"traceparent": f"00-{uuid.uuid4().hex}-{uuid.uuid4().hex[:16]}-01"}
    sent = [
        httpx.get(f"{base}{path}", headers=stranger, timeout=10)
        for path in (
            f"/alerts/ack/{token}",
            f"/alerts/ack/{token}/",
            f"/no/such/{token}/",
            f"/admin/?q={token}",
            f"/health?token={token}",
        )
    ]
    sent.append(
        httpx.post(
            f"{base}/webhooks/deploy?signature={token}",
            content=json.dumps({"deployment_id": token, "secret": token}),
            headers={"Content-Type": "application/json", **stranger},
            timeout=10,
        )
    )
    assert {r.status_code for r in sent} <= {200, 301, 302, 400, 401, 403, 404}
    served = served_before + len(paths)
    assert wait_for(
        lambda: sum(1 for s in receiver.all() if s.kind == "server") >= served + len(sent),
        timeout=30,
    ), "the stranger's requests' spans did not all arrive"
    canaries[token] = "a stranger's token"
    assert_no_secret_in_spans(receiver, list(canaries))


def assert_no_secret_in_spans(receiver: Receiver, secrets: list[str]) -> None:
    for s in receiver.all():
        for text in s.texts():
            for secret in secrets:
                assert secret not in text, f"a secret in span {s.name!r}: {text[:200]}"
