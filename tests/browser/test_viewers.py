"""'Who is viewing' shows two viewers: the people who have a session open right now, on any
process, see each other ("Also viewing: ..."), and see someone go within a few seconds of
them closing the pane or the tab (static/js/viewers.js, realtime/viewers.py)."""

from __future__ import annotations

import re

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import sign_in
from tests.browser.support import escalate, unique
from tests.support.procs import Daphne

# Someone who opens or closes a session is seen within the pages' poll (3 s) and the server's
# linger (2 s); the rest is a margin for a busy test machine.
SEEN_WITHIN_MS = 12_000


def open_in_workbench(page: Page, name: str) -> None:
    """Open a waiting customer's conversation in the pane (reading, not accepting)."""
    page.locator(f'#queue li[data-name="{name}"] .row-title').click()
    expect(page.locator("#pane-status")).to_have_text("Waiting")


def also_viewing(*names: str) -> re.Pattern[str]:
    """The line naming exactly `names`, in any order (it lists them by when they came)."""
    orders = [", ".join(order) for order in _orders(list(names))]
    return re.compile("^Also viewing: (" + "|".join(re.escape(order) for order in orders) + ")$")


def _orders(names: list[str]) -> list[list[str]]:
    if len(names) <= 1:
        return [names]
    return [[first, *rest] for i, first in enumerate(names) for rest in _orders(names[:i] + names[i + 1 :])]


def test_who_is_viewing_shows_two_viewers_across_processes_and_they_go_when_they_close(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    name = unique("viewed")
    escalate(a.url, name)

    ana = sign_in(browser, a.url, "ana")
    open_in_workbench(ana, name)
    line = ana.locator("#pane-viewers")
    expect(line).to_have_attribute("aria-live", "polite")
    expect(line).to_be_hidden()  # nobody else (she is never listed to herself)
    expect(line).to_have_text("")

    ben = sign_in(browser, b.url, "ben")  # on the other process
    open_in_workbench(ben, name)
    sam = sign_in(browser, a.url, "sam", path=f"/dashboard/sessions/{name}/")

    # Each sees the two others, wherever their streams are.
    expect(line).to_have_text(also_viewing("ben", "sam"), timeout=SEEN_WITHIN_MS)
    expect(line).to_be_visible()
    expect(ben.locator("#pane-viewers")).to_have_text(also_viewing("ana", "sam"), timeout=SEEN_WITHIN_MS)
    expect(sam.locator("#viewers")).to_have_text(also_viewing("ana", "ben"), timeout=SEEN_WITHIN_MS)
    expect(sam.locator("#viewers")).to_have_attribute("aria-live", "polite")

    # ben closes the pane (Escape): ana and sam see him go.
    ben.keyboard.press("Escape")
    expect(ben.locator("#pane-head")).to_be_hidden()
    expect(line).to_have_text(also_viewing("sam"), timeout=SEEN_WITHIN_MS)
    expect(sam.locator("#viewers")).to_have_text(also_viewing("ana"), timeout=SEEN_WITHIN_MS)

    # sam closes the tab: ana is alone again, and the line goes.
    sam.context.close()
    expect(line).to_have_text("", timeout=SEEN_WITHIN_MS)
    expect(line).to_be_hidden()

    # ben comes back to the session; ana's line follows the session in her pane only.
    open_in_workbench(ben, name)
    expect(line).to_have_text(also_viewing("ben"), timeout=SEEN_WITHIN_MS)
    ana.keyboard.press("Escape")
    expect(ana.locator("#pane-head")).to_be_hidden()
    expect(ben.locator("#pane-viewers")).to_have_text("", timeout=SEEN_WITHIN_MS)
    ana.context.close()
    ben.context.close()
