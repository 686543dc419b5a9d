"""The workbench can be worked with the keyboard alone, and shows times in the viewer's locale."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import sign_in
from tests.browser.support import bot_says, escalate, unique
from tests.support.procs import Daphne


def tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Press Tab until `selector` has the focus, as a keyboard user would."""
    target = page.locator(selector)
    for _ in range(limit):
        page.keyboard.press("Tab")
        if target.evaluate("node => node === document.activeElement"):
            return
    raise AssertionError(f"{selector} cannot be reached with Tab")


def test_an_agent_accepts_replies_and_leaves_with_the_keyboard_alone_seeing_local_times(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    page = sign_in(browser, a.url, "cleo", locale="de-DE", timezone_id="Asia/Tokyo")
    name = unique()
    escalate(a.url, name)
    bot_says(a.url, name, "Hallo, ich brauche Hilfe.")
    # The queue is one Tab stop; End goes to its newest row, ArrowRight to that row's Accept.
    tab_to(page, '#queue [tabindex="0"]')
    page.keyboard.press("End")
    page.keyboard.press("ArrowRight")
    expect(page.locator(f'#queue li[data-name="{name}"] button.btn-primary')).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("#pane-status")).to_have_text("With an agent")
    expect(page.locator("#composer-text")).to_be_focused()
    page.keyboard.type("Guten Tag!")
    page.keyboard.press("Enter")
    expect(page.locator("#transcript .msg-agent .msg-body")).to_have_text(["Guten Tag!"])
    # Escape leaves the composer for the transcript, and Tab comes back to it.
    page.keyboard.press("Escape")
    expect(page.locator("#transcript")).to_be_focused()
    expect(page.locator("#pane-status")).to_be_visible()

    # Times: the customer's line, in Tokyo time, as a German reader writes it (24 h).
    stamp = page.locator("#transcript .msg-customer time").first
    shown = datetime.fromisoformat(stamp.get_attribute("datetime").replace("Z", "+00:00"))  # type: ignore[union-attr]
    expect(stamp).to_have_text(shown.astimezone(ZoneInfo("Asia/Tokyo")).strftime("%H:%M"))

    tab_to(page, "#pane-leave")
    page.keyboard.press("Enter")
    # Leaving asks first; focus is on the confirming button, so Enter confirms.
    expect(page.locator("#confirm")).to_be_visible()
    expect(page.locator("#confirm-ok")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator(f'#queue li[data-name="{name}"]')).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("#pane-empty")).to_be_visible()
    page.context.close()
