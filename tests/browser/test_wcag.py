"""WCAG 2.1 AA, checked with axe-core, on the pages the browser tests visit, in light and
dark mode. Runs after the journeys, so their records (requests, incidents, backups) are
there to be shown."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
LISTS = [
    "/admin/deployments/deployment/",
    "/admin/deployments/rollbackrequest/",
    "/admin/deployments/environment/",
    "/admin/deployments/deployapproval/",
    "/admin/alerts/incident/",
    "/admin/alerts/alertrule/",
    "/admin/backups/backup/",
    "/admin/backups/restorerequest/",
    "/admin/backups/walarchive/",
    "/admin/dr/servicecheck/",
]
PAGES = ["/admin/", "/admin/alerts/inboxmessage/", "/admin/second-factor/"]


def violations(page) -> list[str]:
    results = Axe().run(page, options=WCAG)
    return [
        f"{page.url} {violation['id']}: {node['target']} {node.get('failureSummary', '')[:200]}"
        for violation in results.response["violations"]
        for node in violation["nodes"]
    ]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_console_meets_wcag_21_aa(console, new_page, scheme):
    visitor = new_page()
    visitor.emulate_media(color_scheme=scheme)
    visitor.goto("/admin/login/")
    problems = violations(visitor)

    bob = new_page("bob")
    bob.emulate_media(color_scheme=scheme)
    for url in PAGES:
        bob.goto(url)
        problems += violations(bob)
    for url in LISTS:
        bob.goto(url)
        problems += violations(bob)
        first = bob.locator("#result_list tbody tr th a").first
        if first.count():
            first.click()
            bob.wait_for_load_state()
            problems += violations(bob)
    # The pages a decision is made on: confirming a rollback (alice), approving it (bob).
    alice = new_page("alice")
    alice.emulate_media(color_scheme=scheme)
    alice.goto("/admin/deployments/deployment/")
    alice.locator("#result_list tbody tr").filter(has_text="staging").locator("th a").first.click()
    alice.click(".rollback-link")
    problems += violations(alice)
    if alice.locator("#id_reason").count():
        alice.fill("#id_reason", "checking the approve page")
        alice.click("input[type=submit] >> nth=-1")
    bob.goto("/admin/deployments/rollbackrequest/?status__exact=requested")
    bob.locator("#result_list tbody tr th a").first.click()
    problems += violations(bob)
    bob.click(".approve-link")
    expect(bob.locator("#id_confirmation")).to_be_visible()
    problems += violations(bob)
    assert not problems, "\n".join(problems)
