"""A narrow window (420 px) shows the workbench one view at a time (Queue / Mine / Chat), each
filling the window; each list is one Tab stop with the arrow keys inside it, kept right while
rows come and go; "?" lists the page's shortcuts in a dialog (static/js/keys.js, layout.js)."""

from __future__ import annotations

from playwright.sync_api import Browser, Locator, Page, expect

from tests.browser.conftest import sign_in
from tests.browser.page_parts import accept
from tests.browser.support import escalate, unique
from tests.browser.test_keyboard_and_locale import tab_to
from tests.support.procs import Daphne

HEIGHT = 800  # sign_in's window height


def focused(locator: Locator) -> bool:
    return bool(locator.evaluate("node => node === document.activeElement"))


def tabbable_in(page: Page, selector: str) -> list[str]:
    """What Tab stops at inside `selector`: its controls with a tabindex of 0 or more."""
    return page.locator(selector).evaluate(  # type: ignore[no-any-return]
        """list => [...list.querySelectorAll("a[href], button, input, select, textarea")]
            .filter((node) => node.tabIndex >= 0 && !node.disabled).map((node) => node.textContent.trim())"""
    )


def bottom_of(locator: Locator) -> float:
    box = locator.bounding_box()
    assert box is not None, "not shown"
    return float(box["y"] + box["height"])


def test_at_420_px_the_workbench_shows_the_queue_my_sessions_or_the_chat_each_filling_the_window(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    names = [unique(f"narrow{i}") for i in range(3)]
    for name in names:
        escalate(a.url, name, reason="parcel arrived broken")
    page = sign_in(browser, a.url, "ben", width=420)
    tabs = page.get_by_role("tablist", name="Workbench views")
    queue_tab, mine_tab, chat_tab = (tabs.get_by_role("tab", name=n) for n in ("Queue", "Mine", "Chat"))
    for name in names:
        expect(page.locator(f'#queue li[data-name="{name}"]')).to_be_visible()

    # The queue alone, under the bar, down to the bottom of the window: no box cut to a fixed
    # height, no chat below it; the list scrolls inside.
    expect(queue_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("section.mine")).to_be_hidden()
    expect(page.locator("#pane")).to_be_hidden()
    assert abs(bottom_of(page.locator("section.queue")) - HEIGHT) <= 1
    assert page.locator("#queue").evaluate("n => [getComputedStyle(n).maxHeight, getComputedStyle(n).overflowY]") == [
        "none",
        "auto",
    ]
    assert page.evaluate("document.scrollingElement.scrollHeight <= innerHeight")  # the page itself never scrolls
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")
    # The bar's counts are the lists' own.
    expect(queue_tab.locator(".count")).to_have_text(page.locator("#queue-count").inner_text())
    expect(mine_tab.locator(".count")).to_have_text(page.locator("#mine-count").inner_text())

    # The bar is one Tab stop; the arrow keys move along it and show each view.
    mine_tab.click()
    expect(page.locator("section.mine")).to_be_visible()
    expect(page.locator("section.queue")).to_be_hidden()
    assert abs(bottom_of(page.locator("section.mine")) - HEIGHT) <= 1
    expect(mine_tab).to_be_focused()
    page.keyboard.press("ArrowRight")
    expect(chat_tab).to_be_focused()
    expect(chat_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#pane-empty")).to_be_visible()
    expect(page.locator(".sidebar")).to_be_hidden()
    page.keyboard.press("ArrowRight")  # round to the first
    expect(queue_tab).to_be_focused()
    expect(page.locator("#queue")).to_be_visible()
    assert tabbable_in(page, "#view-tabs") == ["Queue " + page.locator("#queue-count").inner_text()]

    # Opening a session shows the chat; accepting it, the reply box at the bottom of the window.
    page.locator(f'#queue li[data-name="{names[1]}"] .row-title').click()
    expect(chat_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator(".sidebar")).to_be_hidden()
    expect(page.locator("#pane-title")).to_have_text(names[1])
    page.locator("#pane-accept").click()
    expect(page.locator("#composer-text")).to_be_focused()
    composer = page.locator("#composer")
    assert HEIGHT - 120 <= bottom_of(composer) <= HEIGHT  # only the key hint below it
    expect(page.locator("#transcript")).to_be_visible()
    expect(mine_tab.locator(".count")).to_have_text(page.locator("#mine-count").inner_text())
    assert page.evaluate("document.scrollingElement.scrollWidth <= innerWidth")

    # Escape: to the transcript, then the pane closes and the list it came from is back, with
    # the focus in it (not lost on a hidden element).
    page.keyboard.press("Escape")
    expect(page.locator("#transcript")).to_be_focused()
    page.keyboard.press("Escape")
    expect(queue_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#queue")).to_be_visible()
    # Where the focus ends up once the pane has closed (read once, it could be read mid-move).
    page.wait_for_function("document.activeElement.closest('#queue, #view-tabs') !== null", timeout=5000)
    # The accepted session is under Mine.
    mine_tab.click()
    expect(page.locator(f'#mine li[data-name="{names[1]}"]')).to_be_visible()
    # A page opened on a session (its address, after a reload or a new sign-in) starts on Chat.
    page.goto(f"{a.url}/workbench/#{names[1]}")
    page.reload()
    expect(chat_tab).to_have_attribute("aria-selected", "true")
    expect(page.locator("#pane-title")).to_have_text(names[1])
    expect(page.locator("#composer-text")).to_be_visible()
    page.context.close()


def test_each_list_is_one_tab_stop_with_arrow_keys_and_question_mark_lists_the_shortcuts(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    # Escalated in this order and named so, the newest are the queue's last rows in this order.
    first, second, third = unique("k1"), unique("k2"), unique("k3")
    for name in (first, second, third):
        escalate(a.url, name)
    cleo = sign_in(browser, a.url, "cleo")
    row = lambda name: cleo.locator(f'#queue li[data-name="{name}"]')  # noqa: E731
    title = lambda name: row(name).locator(".row-title")  # noqa: E731
    accept_button = lambda name: row(name).get_by_role("button", name=f"Accept {name}")  # noqa: E731
    expect(row(third)).to_be_visible()

    # One Tab stop for the whole queue (it had two per row), and Tab goes on past the list.
    assert len(tabbable_in(cleo, "#queue")) == 1
    tab_to(cleo, '#queue [tabindex="0"]')
    cleo.keyboard.press("Tab")
    assert cleo.evaluate("document.activeElement.closest('#queue') === null")
    cleo.keyboard.press("Shift+Tab")
    assert cleo.evaluate("document.activeElement.closest('#queue') !== null")

    cleo.keyboard.press("End")
    expect(title(third)).to_be_focused()
    cleo.keyboard.press("ArrowUp")
    expect(title(second)).to_be_focused()
    cleo.keyboard.press("ArrowRight")
    expect(accept_button(second)).to_be_focused()
    cleo.keyboard.press("ArrowDown")  # the same control, one row down
    expect(accept_button(third)).to_be_focused()
    cleo.keyboard.press("ArrowLeft")
    expect(title(third)).to_be_focused()
    cleo.keyboard.press("ArrowDown")  # at the end: stays
    expect(title(third)).to_be_focused()
    cleo.keyboard.press("Home")
    expect(cleo.locator("#queue > li").first.locator(".row-title")).to_be_focused()
    cleo.keyboard.press("End")
    # The one stop follows the focus.
    assert tabbable_in(cleo, "#queue") == [title(third).inner_text()]

    # Rows come and go live: a new one is not a Tab stop; when the row in focus goes (another
    # agent took it), the focus moves to the row that took its place, not to the top of the page.
    fourth = unique("k4")
    escalate(a.url, fourth)
    expect(row(fourth)).to_be_visible()
    expect(title(third)).to_be_focused()
    assert tabbable_in(cleo, "#queue") == [title(third).inner_text()]
    ana = sign_in(browser, a.url, "ana")
    accept(ana, third)
    ana.context.close()
    expect(row(third)).to_have_count(0)
    expect(title(fourth)).to_be_focused()
    assert tabbable_in(cleo, "#queue") == [title(fourth).inner_text()]

    # Enter opens the row; "?" lists the shortcuts; Escape closes that list only (the pane stays)
    # and the focus goes back where it was.
    cleo.keyboard.press("ArrowUp")
    expect(title(second)).to_be_focused()
    cleo.keyboard.press("Enter")
    expect(cleo.locator("#pane-title")).to_have_text(second)
    expect(title(second)).to_be_focused()
    cleo.keyboard.press("?")
    shortcuts = cleo.get_by_role("dialog", name="Keyboard shortcuts")
    expect(shortcuts).to_be_visible()
    expect(shortcuts).to_contain_text("Next and previous row")
    expect(shortcuts).to_contain_text("In the reply box: go to the transcript")
    expect(shortcuts.get_by_role("button", name="Close")).to_be_focused()
    cleo.keyboard.press("Escape")
    expect(shortcuts).to_be_hidden()
    expect(cleo.locator("#pane-head")).to_be_visible()
    expect(title(second)).to_be_focused()

    # Accept from the list with the keyboard; in the reply box "?" is just a character.
    cleo.keyboard.press("ArrowRight")
    expect(accept_button(second)).to_be_focused()
    cleo.keyboard.press("Enter")
    expect(cleo.locator("#composer-text")).to_be_focused()
    cleo.keyboard.type("Anything else?")
    expect(cleo.locator("#composer-text")).to_have_value("Anything else?")
    expect(shortcuts).to_be_hidden()
    # Escape in a confirmation closes the confirmation only, not the pane behind it too.
    cleo.locator("#pane-leave").click()
    expect(cleo.locator("#confirm")).to_be_visible()
    cleo.keyboard.press("Escape")
    expect(cleo.locator("#confirm")).to_be_hidden()
    expect(cleo.locator("#pane-status")).to_have_text("With an agent")

    # My sessions is one Tab stop too, and keeps the focus when its rows are rebuilt (closing the pane does).
    assert len(tabbable_in(cleo, "#mine")) == 1
    cleo.locator(f'#mine li[data-name="{second}"] .row-title').focus()
    cleo.keyboard.press("Escape")  # the page's Escape closes the pane; the row keeps the focus
    expect(cleo.locator("#pane-empty")).to_be_visible()
    expect(cleo.locator(f'#mine li[data-name="{second}"] .row-title')).to_be_focused()
    cleo.context.close()
