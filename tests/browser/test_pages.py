"""The pages people act on: they follow running work in place, and say what they act on."""

from __future__ import annotations

import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import WORKER_TIMEOUT_MS


class SlowHealth(BaseHTTPRequestHandler):
    """A service whose health check takes 3 s: verification visibly takes a while."""

    def do_GET(self):
        time.sleep(3)
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def slow_environment(console):
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHealth)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    # A provider that takes 12 s to roll back: a page waiting for the decision looks every
    # 10 s, then every 3 s once it runs, so every state lasts long enough to be seen.
    rollback = [sys.executable, "-c", "import time; time.sleep(12)"]
    code = f"""
from datetime import timedelta
from django.utils import timezone
from deployments.models import Deployment, Environment
env = Environment.objects.create(
    name="slowstage", provider="command", base_url="http://127.0.0.1:{server.server_port}",
    provider_config={{"rollback": {rollback!r}, "timeout_seconds": 60}},
    stable_minutes=0, max_avg_response_ms=20000, probe_requests=1, probe_timeout_seconds=10,
)
then = timezone.now() - timedelta(hours=5)
Deployment.objects.create(environment=env, external_id="s1", version="v7.0", status="succeeded",
                          received_at=then, live_at=then)
live = Deployment.objects.create(environment=env, external_id="s2", version="v7.1",
                                 status="succeeded")
print(live.pk)
"""
    live = int(console.manage("shell", "-c", code).strip().splitlines()[-1])
    yield live
    server.shutdown()


def test_the_request_page_follows_the_rollback_through_every_state(
    console, new_page, slow_environment
):
    alice = new_page("alice")
    alice.goto(f"/admin/deployments/deployment/{slow_environment}/rollback/")
    alice.fill("#id_reason", "errors after v7.1")
    alice.click("input[type=submit] >> nth=-1")
    expect(alice.locator(".messagelist")).to_contain_text("Rollback of slowstage to v7.0")
    status = alice.locator(".field-status .readonly")
    expect(status).to_have_text("Requested")
    expect(alice.locator("#follow-status")).to_be_visible()
    alice.evaluate("window.loadedOnce = true")  # gone if the page were reloaded

    bob = new_page("bob")
    bob.goto(alice.url)
    bob.click(".approve-link")
    bob.fill("#id_confirmation", "slowstage")
    bob.click("input[type=submit] >> nth=-1")
    expect(bob.locator(".messagelist")).to_contain_text("Approved")

    # alice's page, never reloaded, follows the request through each state to the end.
    seen = ["Requested"]
    deadline = time.monotonic() + WORKER_TIMEOUT_MS / 1000
    while seen[-1] not in ("Succeeded", "Failed") and time.monotonic() < deadline:
        text = status.inner_text().strip()
        if text != seen[-1]:
            seen.append(text)
        time.sleep(0.2)
    assert seen[-1] == "Succeeded", seen
    assert "Executing" in seen and "Verifying" in seen, seen
    assert seen.index("Executing") < seen.index("Verifying"), seen
    assert alice.evaluate("window.loadedOnce") is True, "followed in place, not reloaded"
    expect(alice.locator("#follow-status")).to_contain_text("Finished")
    console.screenshot(alice, "pages-request-followed-to-the-end")

    # The finished page stops following; a finished list does not follow at all.
    alice.goto("/admin/deployments/rollbackrequest/?environment__name=slowstage")
    expect(alice.locator("#follow-status")).to_have_count(0)
