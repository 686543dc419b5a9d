"""Leave puts a customer back in their old place with their reason, as seen by another agent
live; Leave and Close ask first; Close keeps an optional resolution note, shown on the session's
page and in the admin."""

from __future__ import annotations

import time

from playwright.sync_api import Browser, expect

from tests.browser.conftest import sign_in
from tests.browser.page_parts import accept
from tests.browser.support import escalate, unique
from tests.support.procs import Daphne


def test_a_customer_an_agent_leaves_goes_back_to_their_old_place_with_their_reason(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    ana = sign_in(browser, a.url, "ana")
    ben = sign_in(browser, b.url, "ben")  # on the other process
    first, second = unique("first"), unique("second")
    escalate(a.url, first, reason="refund above the bot's limit")
    time.sleep(1.1)  # a second apart, so the waiting times differ
    escalate(a.url, second, reason="wants a human")
    expect(ben.locator(f'#queue li[data-name="{first}"]')).to_be_visible()
    expect(ben.locator(f'#queue li[data-name="{second}"]')).to_be_visible()

    accept(ana, first)
    expect(ben.locator(f'#queue li[data-name="{first}"]')).to_have_count(0)

    # Leave asks first; Cancel changes nothing.
    ana.locator("#pane-leave").click()
    expect(ana.locator("#confirm")).to_be_visible()
    ana.locator('#confirm button[value="cancel"]').click()
    expect(ana.locator("#confirm")).to_be_hidden()
    expect(ana.locator("#pane-status")).to_have_text("With an agent")
    ana.locator("#pane-leave").click()
    ana.locator("#confirm-ok").click()

    # On the other process, the customer is back before the newer one, with the bot's reason,
    # waiting since their escalation (not from zero).
    row = ben.locator(f'#queue li[data-name="{first}"]')
    expect(row).to_be_visible()
    names = [
        n
        for n in ben.locator("#queue li").evaluate_all("rows => rows.map(r => r.dataset.name)")
        if n in (first, second)
    ]
    assert names == [first, second]
    expect(row.locator(".row-meta")).to_have_text("refund above the bot's limit")
    waited = row.locator(".timer").inner_text()
    minutes, seconds = (int(x) for x in waited.split(":"))
    assert minutes * 60 + seconds >= 1, waited
    ana.context.close()
    ben.context.close()


def test_close_asks_for_an_optional_note_that_the_session_page_and_admin_show(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    ana = sign_in(browser, a.url, "ana")
    name = unique("noted")
    escalate(a.url, name)
    accept(ana, name)
    ana.locator("#pane-close").click()
    expect(ana.locator("#confirm-note")).to_be_focused()
    ana.keyboard.type("Refund sent; customer happy.")
    ana.locator("#confirm-ok").click()
    expect(ana.locator(f'#mine li[data-name="{name}"]')).to_have_count(0)
    ana.context.close()

    sam = sign_in(browser, a.url, "sam", path=f"/dashboard/sessions/{name}/")
    expect(sam.locator("#facts")).to_contain_text("Note: Refund sent; customer happy.")
    sam.goto(f"{a.url}/admin/dashboard/chatsession/?q={name}")
    sam.locator(f'#result_list a:text("{name}")').click()
    expect(sam.locator(".field-resolution_note")).to_contain_text("Refund sent; customer happy.")
    sam.context.close()


def test_the_tab_title_and_icon_show_how_many_customers_wait(
    browser: Browser, own_daphne: Daphne, browser_accounts: dict[str, str]
) -> None:
    """The queue is shared with the other tests (one database): the count is read first."""
    page = sign_in(browser, own_daphne.url, "cleo")
    before = int(page.locator("#queue-count").inner_text())
    name = unique("titled")
    escalate(own_daphne.url, name)
    expect(page.locator(f'#queue li[data-name="{name}"]')).to_be_visible()
    expect(page).to_have_title(f"({before + 1}) Workbench · Helpdesk")
    icon = page.locator("#favicon")
    assert (icon.get_attribute("href") or "").startswith("data:image/png;base64,")
    accept(page, name)
    expected = f"({before}) Workbench · Helpdesk" if before else "Workbench · Helpdesk"
    expect(page).to_have_title(expected)
    if not before:
        assert icon.get_attribute("href") == "/static/img/favicon.svg"
    page.context.close()
