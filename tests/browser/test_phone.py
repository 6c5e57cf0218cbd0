"""At phone size (390 x 844): no page scrolls sideways or cuts values off, and every button
is a 44 px tap target. One journey, acknowledging from the dashboard, runs at that size."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in

FITS = """() => {
  const problems = [];
  if (document.documentElement.scrollWidth > window.innerWidth)
    problems.push('the page is ' + document.documentElement.scrollWidth + ' px wide');
  for (const el of document.querySelectorAll('#content *')) {
    const r = el.getBoundingClientRect();
    if (r.width && r.right > window.innerWidth + 1) {
      let p = el.parentElement, inside = false;
      for (; p; p = p.parentElement) {
        const o = getComputedStyle(p).overflowX;
        if (o === 'auto' || o === 'scroll' || o === 'hidden') { inside = true; break; }
      }
      problems.push((inside ? 'cut off: ' : 'sticks out: ') + el.tagName.toLowerCase() + '.' + el.className + ' ' + (el.textContent || '').trim().slice(0, 40));
    }
  }
  const targets = '#content button, #content input[type=submit], #content .button, #content .object-tools a, #content a.need-action';
  for (const el of document.querySelectorAll(targets)) {
    const r = el.getBoundingClientRect();
    if (r.width && r.height && (r.height < 44 || r.width < 44))
      problems.push('small tap target: ' + (el.textContent || el.value || '').trim().slice(0, 30) + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));
  }
  return problems.slice(0, 20);
}"""


@pytest.fixture
def phone(browser, console):
    contexts = []

    def _phone(username: str, width: int = 390):
        context = browser.new_context(base_url=console.url, is_mobile=True, has_touch=True,
                                      viewport={"width": width, "height": 844})  # fmt: skip
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        log_in(page, username)
        return page

    yield _phone
    for context in contexts:
        context.close()


def fits(page) -> None:
    problems = page.evaluate(FITS)
    assert not problems, f"{page.url}:\n" + "\n".join(problems)


@pytest.mark.parametrize("width", [360, 414])
def test_the_pages_people_act_on_fit_a_phone(console, phone, width):
    console.alert(f"PhoneCheck{width}", f"Checkout is failing ({width})")
    alice = phone("alice", width)
    for url in ("/admin/", "/admin/alerts/incident/", "/admin/alerts/inboxmessage/",
                "/admin/deployments/deployment/", "/admin/deployments/rollbackrequest/",
                "/admin/backups/restorerequest/"):  # fmt: skip
        alice.goto(url)
        fits(alice)
    for listing in ("/admin/alerts/incident/", "/admin/deployments/deployment/",
                    "/admin/deployments/rollbackrequest/", "/admin/backups/restorerequest/"):  # fmt: skip
        alice.goto(listing)
        first = alice.locator("#result_list tbody tr th a").first
        if first.count():
            first.click()
            fits(alice)


def test_acknowledging_from_the_dashboard_on_a_phone(console, phone):
    console.alert("PhoneJourney", "Payments are failing")
    alice = phone("alice")
    alice.goto("/admin/")
    need = alice.locator("#panel-needs .need").filter(has_text="Payments are failing")
    expect(need).to_contain_text("Acknowledge incident")
    fits(alice)
    console.screenshot(alice, "phone-needs-you")
    need.locator("button", has_text="Acknowledge").tap()
    expect(alice.locator(".messagelist")).to_contain_text("Acknowledged")
    mine = alice.locator("#panel-needs .need").filter(has_text="Payments are failing")
    expect(mine).to_contain_text("Your incident, still open")
    mine.locator("a").first.tap()
    expect(alice.locator("#incident-now")).to_contain_text("by alice")
    fits(alice)
    console.screenshot(alice, "phone-incident")
    alice.goto("/admin/alerts/inboxmessage/")
    fits(alice)
