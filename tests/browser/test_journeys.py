"""The eight journeys of the README's walk-through, in a real browser against the live console."""

from __future__ import annotations

import json
import re
import time
import uuid
from datetime import UTC
from pathlib import Path

import httpx
from playwright.sync_api import expect

from tests.browser.conftest import WORKER_TIMEOUT_MS


def run_action(page, row_text: list[str], action: str, first_column: str | None = None) -> None:
    """Tick the change-list row holding every text in `row_text` (and `first_column` as its
    linked first column), run `action` on it."""
    row = page.locator("#result_list tbody tr")
    if first_column:
        row = row.filter(
            has=page.locator("th", has_text=re.compile(f"^{re.escape(first_column)}$"))
        )
    for text in row_text:
        row = row.filter(has_text=text)
    expect(row).to_have_count(1)
    row.locator("input.action-select").check()
    page.select_option("select[name=action]", action)
    page.click("button[name=index]")
    page.wait_for_load_state()


def readonly(page, field: str):
    return page.locator(f".field-{field} .readonly")


def test_1_rollback_requested_by_alice_approved_by_bob(console, new_page):
    alice = new_page("alice")
    alice.goto("/admin/deployments/deployment/")
    run_action(alice, ["production"], "request_rollback", first_column="v1.1")
    # Nothing ran yet: the live version was ticked, so the page proposes the stable one
    # before it and says what going back means.
    facts = alice.locator("table.facts")
    expect(facts).to_contain_text("Back to")
    expect(facts.locator("tr", has_text="Back to")).to_contain_text("v1.0")
    expect(facts.locator("tr", has_text="Live now")).to_contain_text("v1.1")
    expect(facts.locator("tr", has_text="Its record")).to_contain_text("ran")
    expect(facts.locator("tr", has_text="Migrations")).to_be_visible()
    assert not alice.locator(".messagelist").count()
    alice.click("input[type=submit] >> nth=-1")  # no reason: the browser holds the form
    assert alice.eval_on_selector("#id_reason", "e => e.validity.valueMissing")
    expect(alice.locator("table.facts")).to_be_visible()
    alice.fill("#id_reason", "checkout errors since v1.1")
    console.screenshot(alice, "1-alice-confirms-the-rollback")
    alice.click("input[type=submit] >> nth=-1")
    expect(alice.locator(".messagelist")).to_contain_text(
        "Rollback of production to v1.0 requested."
    )
    request_url = alice.url
    expect(alice.locator(".approve-link")).to_have_count(0)
    expect(alice.locator(".approval-refusal")).to_contain_text("Awaiting approval")
    console.screenshot(alice, "1-alice-has-no-approve-button")

    bob = new_page("bob")
    bob.goto(request_url)
    bob.click(".approve-link")
    expect(bob.locator("table.facts")).to_contain_text("v1.0")
    bob.fill("#id_confirmation", "prod")
    bob.click("input[type=submit], button[type=submit] >> nth=-1")
    expect(bob.locator(".errorlist")).to_contain_text("production")
    bob.fill("#id_confirmation", "production")
    bob.click("input[type=submit], button[type=submit] >> nth=-1")
    expect(bob.locator(".messagelist")).to_contain_text("Approved")
    expect(readonly(bob, "status")).to_have_text("Succeeded", timeout=WORKER_TIMEOUT_MS)
    console.screenshot(bob, "1-bob-approved-rollback-succeeded")

    bob.goto("/admin/deployments/deployment/")
    rows = bob.locator("#result_list tbody tr").filter(has_text="production")
    rolled_back = rows.filter(has=bob.locator("th", has_text="v1.1"))
    expect(rolled_back).to_contain_text("Rolled back")
    expect(rolled_back).to_contain_text("rolled back to v1.0")
    live = rows.filter(has=bob.locator("th", has_text="v1.0"))
    expect(live).to_contain_text("Active")
    expect(live).to_contain_text("live again since")


def test_2_alert_rule_error_then_preview_then_save(console, new_page):
    alice = new_page("alice")
    alice.goto("/admin/alerts/alertrule/")
    alice.locator("#result_list tbody tr th a").first.click()
    alice.fill("#id_message_template", "Error rate is {value} on {hostname}")
    alice.click("input[name=_save]")
    error = alice.locator(".field-message_template .errorlist")
    expect(error).to_contain_text("Unknown placeholder")
    expect(error).to_contain_text("hostname")
    console.screenshot(alice, "2-rule-unknown-placeholder")

    alice.fill("#id_message_template", "Error rate is {value} (threshold {threshold})")
    alice.click("#rule-preview-button")
    expect(alice.locator("#preview-backtest")).to_contain_text(
        re.compile(r"Would have fired \d+ time\(s\) in the last 7 days")
    )
    console.screenshot(alice, "2-rule-preview-backtest")
    alice.click("input[name=_save]")
    expect(alice.locator(".messagelist")).to_contain_text("was changed successfully")


def test_3_back_up_now_then_restore_into_a_new_database(console, new_page):
    alice = new_page("alice")
    alice.goto("/admin/backups/databasetarget/")
    run_action(alice, ["shop"], "back_up_now")
    expect(alice.locator(".messagelist")).to_contain_text("Queued 1 backup(s)")
    alice.goto("/admin/backups/backup/")
    row = alice.locator("#result_list tbody tr").first
    expect(row).to_contain_text(re.compile("Queued|Running|Succeeded|Verified"))
    console.screenshot(alice, "3-backup-in-progress")
    expect(row).to_contain_text("Verified", timeout=WORKER_TIMEOUT_MS)  # the list reloads itself
    console.screenshot(alice, "3-backup-verified")

    run_action(alice, ["Verified"], "request_restore")
    expect(alice.locator(".messagelist")).to_contain_text("an approver must approve it")
    restore_url = alice.url
    new_database = readonly(alice, "new_database").inner_text().strip()
    assert new_database.startswith("opsconsole_demo_shop_restore_")

    bob = new_page("bob")
    bob.goto(restore_url)
    bob.click(".approve-link")
    # What bob approves is on the page: the backup's age, size and verification.
    facts = bob.locator("table.facts")
    expect(facts.locator("tr", has_text="Taken")).to_contain_text("ago")
    expect(facts.locator("tr", has_text="Size")).to_contain_text("stored")
    expect(facts.locator("tr", has_text="Verification")).to_contain_text("checked")
    expect(facts.locator("tr", has_text="Into")).to_contain_text(new_database)
    bob.fill("#id_confirmation", "shop")
    bob.click("input[type=submit], button[type=submit] >> nth=-1")
    expect(readonly(bob, "status")).to_have_text("Succeeded", timeout=WORKER_TIMEOUT_MS)
    expect(bob.locator("table.facts tr", has_text="Took")).to_contain_text(
        re.compile(r"checks \d+\.\d s")
    )
    expect(readonly(bob, "error")).to_have_text("-")
    expect(bob.locator("input[name=_save]"), "a decided request is not edited").to_have_count(0)
    console.screenshot(bob, "3-restore-succeeded")


def test_4_signed_ack_link_after_login_stops_escalation(console, new_page):
    name = f"CheckoutErrors{uuid.uuid4().hex[:6]}"
    console.alert(name, "Checkout answers 500")
    alice = new_page("alice")
    message = alice.locator("#result_list tbody tr").filter(has_text="[FIRING]")
    # The alert path delivers within a second or two of the alert; the inbox list does not
    # refresh itself, so look again as a person would until the message is there.
    deadline = time.monotonic() + 30
    while True:
        alice.goto(f"/admin/alerts/inboxmessage/?q={name}")
        if message.count() == 1 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(message).to_have_count(1)
    console.screenshot(alice, "4-inbox")
    link = message.locator("a.inbox-ack").get_attribute("href")
    assert "/alerts/ack/" in link

    stranger = new_page()  # the link opened from a phone, not logged in yet
    stranger.goto(link)
    assert "/admin/login/" in stranger.url
    from tests.browser.conftest import log_in

    log_in(stranger, "alice")
    expect(stranger.locator("h1")).to_have_text("Acknowledge incident")
    stranger.click("input[value=Acknowledge]")
    expect(stranger.locator(".messagelist")).to_contain_text("Escalation stopped")
    now = stranger.locator("#incident-now")
    expect(now.locator("tr", has_text="Status")).to_contain_text("Acknowledged by alice")
    expect(now).not_to_contain_text("Escalation")  # no next level once acknowledged
    console.screenshot(stranger, "4-acknowledged")


def test_5_carol_sees_nothing_that_changes_anything(console, new_page):
    name = f"DiskFull{uuid.uuid4().hex[:6]}"
    console.alert(name, "Disk is 97 % full")
    carol = new_page("carol")
    requested = []
    carol.on("request", lambda r: requested.append(r.url))
    carol.goto("/admin/")
    expect(carol.locator("#panel-incidents")).to_contain_text(name)
    # The dashboard refreshes its panels in place: a new incident appears, the page stays.
    carol.evaluate("window.stayed = true")
    later = f"QueueStuck{uuid.uuid4().hex[:6]}"
    console.alert(later, "Jobs are not being picked up")
    expect(carol.locator("#panel-incidents")).to_contain_text(later, timeout=30_000)
    assert carol.evaluate("window.stayed === true"), "no full reload"
    assert all(url.startswith(console.url) for url in requested), "nothing from elsewhere"
    # Searching and filtering change nothing; any other visible button, action or link would.
    changing = (
        "#content input[type=submit]:not(#changelist-search *), "
        "#content button:not(#changelist-search *):not(#changelist-filter *), "
        "select[name=action], input.action-select, a.addlink, .approve-link, textarea"
    )
    expect(carol.locator(changing).filter(visible=True)).to_have_count(0)
    console.screenshot(carol, "5-viewer-dashboard")
    pages = [
        "/admin/deployments/deployment/",
        "/admin/deployments/rollbackrequest/",
        "/admin/backups/backup/",
        "/admin/backups/databasetarget/",
        "/admin/alerts/incident/",
        "/admin/alerts/alertrule/",
        "/admin/dr/runbook/",
        "/admin/dr/failoveraction/",
    ]
    for url in pages:
        carol.goto(url)
        expect(carol.locator(changing).filter(visible=True), url).to_have_count(0)
        first = carol.locator("#result_list tbody tr th a").first
        if first.count():
            first.click()
            expect(carol.locator(changing).filter(visible=True), carol.url).to_have_count(0)

    carol.goto(f"/admin/alerts/incident/?q={name}")
    carol.locator("#result_list tbody tr th a").first.click()
    incident_id = re.search(r"/incident/(\d+)/", carol.url).group(1)
    csrf = next(c["value"] for c in carol.context.cookies() if c["name"] == "csrftoken")
    forged = carol.request.post(
        f"/admin/alerts/incident/{incident_id}/acknowledge/",
        form={"csrfmiddlewaretoken": csrf},
        headers={"Referer": carol.url, "X-CSRFToken": csrf},
    )
    assert forged.status == 403
    carol.reload()
    expect(carol.locator("#incident-now tr", has_text="Status")).to_contain_text("Triggered")


def test_6_the_gate_refuses_with_reasons_and_waits_for_bobs_approval(console, new_page):
    token = console.api_token(f"ci-{uuid.uuid4().hex[:6]}", "deploy:check", user="alice")

    def ask(environment: str, version: str) -> dict:
        response = httpx.post(
            f"{console.url}/api/deploys/check", timeout=30,
            json={"environment": environment, "version": version, "commit": "9f2c1ab"},
            headers={"Authorization": f"Bearer {token}"},
        )  # fmt: skip
        assert response.status_code == 200, response.text
        return response.json()

    name = f"StagingDown{uuid.uuid4().hex[:6]}"
    alert = {"version": "4", "status": "firing", "receiver": "opsconsole", "alerts": [{
        "status": "firing", "fingerprint": name, "labels": {"alertname": name,
        "severity": "critical", "service": "staging"}, "annotations": {"summary": name}}]}  # fmt: skip
    response = httpx.post(f"{console.url}/webhooks/alertmanager", json=alert, timeout=10,
                          headers={"Authorization": f"Bearer {console.api_token(name)}"})  # fmt: skip
    assert response.status_code < 300, response.text
    refused = ask("staging", "v1.4")
    assert refused["answer"] == "refused" and "open_incident" in [
        r["code"] for r in refused["reasons"]
    ]

    alice = new_page("alice")
    alice.goto("/admin/deployments/gatecheck/")
    row = alice.locator("#result_list tbody tr").filter(has_text="staging").first
    expect(row).to_contain_text("Refused")
    expect(row).to_contain_text("incident open on staging")
    alice.goto(refused["check_url"].removeprefix(console.url))
    expect(alice.locator(".gate-reasons")).to_contain_text("critical incident open on staging")
    console.screenshot(alice, "6-alice-sees-why-the-gate-refused")

    waiting = ask("production", "v1.4")
    assert waiting["answer"] == "waiting" and waiting["reasons"][0]["code"] == "approval_pending"
    approval_path = waiting["approval"]["url"].removeprefix(console.url)
    alice.goto(approval_path)
    expect(alice.locator(".approve-link")).to_have_count(0)
    bob = new_page("bob")
    bob.goto(approval_path)
    bob.click(".approve-link")
    bob.fill("#id_confirmation", "production")
    bob.click("input[type=submit], button[type=submit] >> nth=-1")
    expect(bob.locator(".messagelist")).to_contain_text("Approved")
    console.screenshot(bob, "6-bob-approved-the-production-deploy")
    allowed = ask("production", "v1.4")
    assert allowed["allowed"] is True, allowed


def test_7_variables_import_and_drift_on_the_environment_page(console, new_page, tmp_path):
    bob = new_page("bob")
    bob.goto("/admin/deployments/environment/")
    bob.locator("#result_list tbody tr th a", has_text="staging").click()
    env_url = bob.url
    dotenv = tmp_path / ".env"
    dotenv.write_text('# staging\nexport FEATURE_FLAGS="shorts,likes"\nLOG_LEVEL=warn\n')
    bob.set_input_files("#id_dotenv", str(dotenv))
    bob.click("#environment-variables button:has-text('Import file')")
    expect(bob.locator(".messagelist")).to_contain_text(
        "Imported 2 variable(s) from the file: FEATURE_FLAGS, LOG_LEVEL"
    )
    expect(bob.locator("body")).not_to_contain_text("shorts,likes")

    # Someone edits a variable on the provider by hand.
    varsfile = (
        Path(console.env["OPSCONSOLE_VAR_DIR"]) / "local-provider" / "staging" / "variables.json"
    )
    values = json.loads(varsfile.read_text())
    values["JWT_SECRET"] = "set-by-hand-on-the-provider-0123456789"
    varsfile.write_text(json.dumps(values))
    bob.click("#environment-variables button:has-text('Check drift now')")
    expect(bob.locator(".messagelist")).to_contain_text("Drift: JWT_SECRET changed")
    expect(bob.locator(".variables-drift")).to_contain_text("Changed: JWT_SECRET")
    expect(bob.locator("body")).not_to_contain_text("set-by-hand")
    console.screenshot(bob, "7-drift-on-the-environment-page")

    carol = new_page("carol")
    carol.goto("/admin/alerts/incident/?q=behind")
    expect(carol.locator("#result_list")).to_contain_text("JWT_SECRET changed")
    carol.goto(env_url)
    expect(carol.locator(".variables-drift")).to_contain_text("Changed: JWT_SECRET")
    expect(carol.locator("#environment-variables button")).to_have_count(0)

    bob.goto(env_url)
    bob.click("#environment-variables button:has-text('Import from')")
    expect(bob.locator(".messagelist")).to_contain_text("JWT_SECRET")
    expect(bob.locator(".variables-drift")).to_contain_text("No drift")


def test_8_continuous_wal_then_a_restore_to_a_moment(console, new_page, pg):
    import psycopg

    shop = pg.dsn("opsconsole_demo_shop")
    bob = new_page("bob")
    bob.goto("/admin/backups/databasetarget/")
    run_action(bob, ["shop"], "switch_on_wal")
    expect(bob.locator(".messagelist")).to_contain_text("continuous WAL on")
    bob.goto("/admin/backups/walarchive/")
    bob.locator("#result_list tbody tr th a").first.click()
    bob.fill("#id_partial_every_seconds", "2")
    bob.click("input[name=_continue]")
    expect(bob.locator(".messagelist")).to_contain_text("was changed successfully")
    archive_url = bob.url
    deadline = time.monotonic() + 90  # serve starts the receiver within 30 s
    while "Streaming" not in bob.locator(".field-status").inner_text():
        assert time.monotonic() < deadline, bob.locator("#content").inner_text()[:2000]
        time.sleep(2)
        bob.reload()
    bob.goto("/admin/backups/backup/?kind__exact=base")
    base_row = bob.locator("#result_list tbody tr").first
    expect(base_row).to_contain_text("Verified", timeout=WORKER_TIMEOUT_MS)
    base_id = base_row.locator("th a").inner_text().strip()

    with psycopg.connect(shop, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pitr_probe (id serial PRIMARY KEY)")
        conn.execute("INSERT INTO pitr_probe SELECT FROM generate_series(1, 5)")
        time.sleep(1.2)
        moment = conn.execute("SELECT clock_timestamp() AT TIME ZONE 'UTC'").fetchone()[0]
        time.sleep(1.2)
        conn.execute("DELETE FROM pitr_probe")  # the mistake
        conn.execute("SELECT pg_switch_wal()")
    # Wait until the archive covers the moment (its live RPO says how far back it is).
    deadline = time.monotonic() + 60
    while True:
        bob.goto(archive_url)
        rpo = re.search(r"(\d+) s", bob.locator(".field-recovery_point").inner_text())
        if rpo and time.time() - int(rpo[1]) - 1 > moment.replace(tzinfo=UTC).timestamp():
            break
        assert time.monotonic() < deadline, bob.locator("#content").inner_text()[:1500]
        time.sleep(1)
    console.screenshot(bob, "8-wal-archive-streaming")
    # On the dashboard, the target's live RPO is now under a minute, and within target.
    bob.goto("/admin/")
    rpo_cell = (
        bob.locator("table.objectives tbody tr")
        .filter(has=bob.locator("th", has_text=re.compile(r"^shop$")))
        .locator("td")
        .nth(0)
    )
    expect(rpo_cell).to_have_text(re.compile(r"^[01] / \d+ min$"))
    expect(rpo_cell).to_have_class(re.compile("state-ok"))

    alice = new_page("alice")
    alice.goto(f"/admin/backups/restorerequest/add/?backup={base_id}")
    alice.fill("#id_new_database", "shop_before_the_delete")
    alice.fill("#id_recover_to_0", moment.strftime("%Y-%m-%d"))
    alice.fill("#id_recover_to_1", moment.strftime("%H:%M:%S"))
    alice.fill("#id_reason", "rows deleted by mistake")
    alice.click("input[name=_save]")
    expect(alice.locator(".messagelist")).to_contain_text("was added successfully")
    alice.locator("#result_list tbody tr th a").first.click()
    restore_url = alice.url

    bob.goto(restore_url)
    bob.click(".approve-link")
    bob.fill("#id_confirmation", "shop")
    bob.click("input[type=submit], button[type=submit] >> nth=-1")
    expect(readonly(bob, "status")).to_have_text(
        re.compile("Succeeded|Failed"), timeout=WORKER_TIMEOUT_MS
    )
    assert readonly(bob, "status").inner_text().strip() == "Succeeded", readonly(
        bob, "error"
    ).inner_text()
    expect(bob.locator("table.facts tr", has_text="Took")).to_contain_text(
        re.compile(r"replay \d+\.\d s")
    )
    console.screenshot(bob, "8-restored-to-a-moment")
    with psycopg.connect(pg.dsn("shop_before_the_delete")) as conn:
        assert conn.execute("SELECT count(*) FROM pitr_probe").fetchone()[0] == 5
    with psycopg.connect(pg.admin_dsn, autocommit=True) as conn:
        conn.execute('DROP DATABASE IF EXISTS "shop_before_the_delete" WITH (FORCE)')
