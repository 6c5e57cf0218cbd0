"""The console as a user meets it: `migrate`, `demo` and `serve` in their own processes
(gunicorn and a django-q2 cluster), driven through Debian's Chromium by Playwright.

Everything here is scoped to this package: Playwright's sync API keeps an event
loop on the thread while a browser is open, and the rest of the suite talks to
Django's ORM, which refuses to run beside one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from tests.peers import ensure_binary, wait_until
from tests.pgserver import free_port, free_port_block

ROOT = Path(__file__).resolve().parents[2]
PASSWORD = "journey-password-1"
SCREENSHOTS = Path(os.environ.get("OPSCONSOLE_SCREENSHOTS") or ROOT / "var" / "screenshots")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Work that goes through a worker (a rollback, a backup and its read-back, a restore).
WORKER_TIMEOUT_MS = 90_000


@dataclass
class Console:
    url: str
    env: dict[str, str]
    log: Path
    screenshots: Path = field(default=SCREENSHOTS)

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env,
            capture_output=True, text=True, timeout=120, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    def api_token(self, name: str, scope: str = "alerts:write", user: str | None = None) -> str:
        owner = ["--user", user] if user else []
        return self.manage("create_api_token", name, "--scope", scope, *owner).strip()

    def alert(self, name: str, summary: str) -> None:
        """Fire an alert the way Alertmanager would: an incident through the webhook."""
        token = self.api_token(f"alertmanager-{name}")
        payload = {
            "version": "4", "status": "firing", "receiver": "opsconsole",
            "alerts": [{"status": "firing", "fingerprint": name, "labels": {"alertname": name,
                        "severity": "critical"}, "annotations": {"summary": summary}}],
        }  # fmt: skip
        response = httpx.post(
            f"{self.url}/webhooks/alertmanager", json=payload,
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        )  # fmt: skip
        assert response.status_code < 300, response.text

    def screenshot(self, page, name: str) -> None:
        self.screenshots.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(self.screenshots / f"{name}.png"), full_page=True)


@pytest.fixture(scope="package")
def console(request, pg, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("console")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(
        OPSCONSOLE_VAR_DIR=str(workdir / "var"),
        OPSCONSOLE_ENV_FILE=os.devnull,
        OPSCONSOLE_BASE_URL=f"http://127.0.0.1:{port}",
        OPSCONSOLE_OUTBOUND_ALLOW="127.0.0.0/8,::1/128",
        ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        Q_WORKERS="2",
        WEB_CONCURRENCY="2",
    )
    database = None
    if request.config.getoption("--postgres"):
        database = pg.create_database("opsconsole_journeys")
        env["DATABASE_URL"] = pg.dsn(database)
    else:
        env["DATABASE_URL"] = f"sqlite:///{workdir / 'var' / 'console.sqlite3'}"
    console = Console(url=f"http://127.0.0.1:{port}", env=env, log=workdir / "serve.log")
    console.manage("migrate", "--noinput")
    console.manage("collectstatic", "--noinput", "--verbosity", "0")
    output = console.manage(
        "demo", "--password", PASSWORD, "--postgres-url", pg.admin_dsn,
        "--port", str(free_port_block(13)),
    )  # fmt: skip
    person = None
    for line in output.splitlines():
        words = line.split()
        if words and words[0] in ("alice", "bob", "carol"):
            person = words[0]
        if "authenticator key" in line:
            AUTHENTICATOR_KEYS[person] = line.split("authenticator key", 1)[1].split()[0]
    with open(console.log, "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        try:
            wait_until(f"{console.url}/health/ready", timeout=90)
        except TimeoutError:
            pytest.fail(f"the console did not get ready:\n{console.log.read_text()[-3000:]}")
        yield console
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)
        console.manage("demo", "stop")
        with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
            for (name,) in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE 'opsconsole_demo_shop%'"
            ).fetchall():
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            if database:
                conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


@pytest.fixture(scope="package")
def browser():
    chromium = ensure_binary("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, console):
    """A fresh browser profile per person: `new_page()` logged out, `new_page("bob")` in."""
    contexts = []

    def _new_page(username: str | None = None):
        context = browser.new_context(base_url=console.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        if username:
            log_in(page, username)
        return page

    yield _new_page
    for context in contexts:
        context.close()


# Authenticator keys the demo enrolled, from its output: {username: base32 key}.
AUTHENTICATOR_KEYS: dict[str, str] = {}
USED_STEPS: dict[str, int] = {}


def log_in(page, username: str) -> None:
    if "/admin/login/" not in page.url:
        page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_load_state()
    assert "/admin/login/" not in page.url, f"{username} could not log in"
    if "/admin/second-factor/" in page.url:  # an approver: the code from the authenticator
        import base64

        from django_otp.oath import totp

        key = AUTHENTICATOR_KEYS[username]
        secret = base64.b32decode(key + "=" * (-len(key) % 8))
        # A code is accepted once (replay protection) and one step early (tolerance):
        # a second login within the same 30 s uses the next step's code, a third waits.
        step = int(time.time()) // 30
        while USED_STEPS.get(username, -1) >= step + 1:
            time.sleep(1)
            step = int(time.time()) // 30
        drift = 0 if USED_STEPS.get(username, -1) < step else 1
        USED_STEPS[username] = step + drift
        page.fill("#id_code", f"{totp(secret, drift=drift):06d}")
        page.click("input[type=submit]")
        page.wait_for_load_state()
        assert "/admin/second-factor/" not in page.url, f"{username}'s code was refused"
