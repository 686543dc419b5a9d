"""Canned replies in the composer: a supervisor adds one in the admin, an agent types "/" and
its shortcut, and Enter inserts it with the customer's name filled in (and does not send).
The list works with the keyboard alone and with the mouse, at 420 px wide too."""

from __future__ import annotations

import json
import uuid

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import sign_in
from tests.browser.page_parts import accept, bubbles
from tests.browser.support import escalate, unique
from tests.browser.test_accessibility import serious_violations
from tests.support.procs import Daphne, request, run_python


def escalate_customer(base_url: str, name: str, customer: str) -> None:
    """An escalation in which the bot names the customer (`data.customer`)."""
    status, body = request(
        "POST", base_url + "/api/manual/escalate", {"session_name": name, "data": {"customer": customer}}
    )
    assert status == 201, body


def add_replies(env: dict[str, str], *replies: tuple[str, str, str]) -> None:
    """Canned replies straight into the shared test database: (shortcut, title, text)."""
    rows = json.dumps([{"shortcut": s, "title": t, "text": x} for s, t, x in replies])
    run_python(f"from dashboard.models import CannedReply\nfor row in {rows}: CannedReply.objects.create(**row)\n", env)


def expect_options(page: Page, shortcuts: list[str]) -> None:
    """The open list shows exactly these shortcuts, top to bottom (once the replies are loaded)."""
    expect(page.locator("#canned-list")).to_be_visible()
    expect(page.locator("#canned-list [role=option] .canned-shortcut")).to_have_text(shortcuts)


def expect_highlighted(page: Page, index: int) -> None:
    option = page.locator("#canned-list [role=option]").nth(index)
    expect(option).to_have_attribute("aria-selected", "true")
    expect(page.locator("#composer-text")).to_have_attribute("aria-activedescendant", f"canned-opt-{index}")
    expect(page.locator('#canned-list [aria-selected="true"]')).to_have_count(1)


def test_slash_inserts_a_reply_with_the_name_filled_in(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    shortcut = "hi-" + uuid.uuid4().hex[:10]
    # A supervisor writes the reply in the admin (on the other server process).
    sam = sign_in(browser, b.url, "sam", path="/admin/dashboard/cannedreply/add/", live=False)
    sam.fill("#id_shortcut", shortcut)
    sam.fill("#id_title", "Warm welcome")
    sam.fill("#id_text", "Hi {customer_name}, this is {agent_name} on {session_name}. {order_id} stays as written.")
    sam.locator("input[name=_save]").click()
    expect(sam.locator("#result_list")).to_contain_text(shortcut)
    sam.context.close()

    ana = sign_in(browser, a.url, "ana")
    name = unique("canned")
    escalate_customer(a.url, name, "Maria Lopez")
    accept(ana, name)
    composer = ana.locator("#composer-text")
    ana.keyboard.type("Sure! /" + shortcut[:7])

    expect_options(ana, ["/" + shortcut])
    expect_highlighted(ana, 0)
    expect(ana.locator("#canned-opt-0 .canned-preview")).to_contain_text("Hi Maria Lopez, this is ana")

    ana.keyboard.press("Enter")
    filled = f"Sure! Hi Maria Lopez, this is ana on {name}. {{order_id}} stays as written."
    expect(composer).to_have_value(filled)
    expect(ana.locator("#canned")).to_be_hidden()
    expect(composer).to_be_focused()
    # Enter inserted and sent nothing (a send shows its bubble at once, before the server answers).
    expect(ana.locator("#transcript .msg-agent")).to_have_count(0)
    assert composer.get_attribute("aria-activedescendant") is None
    # The workbench saw the change: the draft is kept.
    assert ana.evaluate("name => sessionStorage.getItem('draft:' + name)", name) == filled

    ana.keyboard.press("Enter")  # the list is closed: Enter sends, as always
    expect(bubbles(ana, filled)).to_have_count(1)
    expect(composer).to_have_value("")
    ana.context.close()


def test_the_list_by_keyboard_and_mouse_at_420_px(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str], redis_env: dict[str, str]
) -> None:
    a, _ = daphne_pair
    tag, word = uuid.uuid4().hex[:8], uuid.uuid4().hex[:8]
    add_replies(
        redis_env,
        (f"k{tag}-alpha", "Apology", "Sorry for the wait."),
        (f"k{tag}-beta", "Billing", "Your invoice is attached."),
        (f"k{tag}-gamma", "Goodbye", "Bye {customer_name}!"),
        (f"ship-{tag}", f"Parcel {word} sent", "Hi {customer_name}, your parcel left our warehouse today."),
    )
    # The checker is injected as a script of the test's own: the page's policy would refuse it.
    cleo = sign_in(browser, a.url, "cleo", width=420, bypass_csp=True)
    name = unique("narrow")
    escalate(a.url, name)  # the bot does not name this customer
    accept(cleo, name)
    composer = cleo.locator("#composer-text")

    cleo.keyboard.type(f"/k{tag}")
    expect_options(cleo, [f"/k{tag}-alpha", f"/k{tag}-beta", f"/k{tag}-gamma"])
    expect_highlighted(cleo, 0)
    popup = cleo.locator("#canned").bounding_box()
    assert popup is not None and popup["x"] >= 0 and popup["x"] + popup["width"] <= 420, popup
    cleo.keyboard.press("ArrowDown")
    expect_highlighted(cleo, 1)
    cleo.keyboard.press("ArrowUp")
    cleo.keyboard.press("ArrowUp")  # from the first, up wraps to the last
    expect_highlighted(cleo, 2)
    assert serious_violations(cleo) == []

    # Escape closes the list and stays in the box; typing on in the same word keeps it closed.
    cleo.keyboard.press("Escape")
    expect(cleo.locator("#canned")).to_be_hidden()
    expect(composer).to_be_focused()
    cleo.keyboard.type("-al")
    expect(composer).to_have_value(f"/k{tag}-al")
    expect(cleo.locator("#canned")).to_be_hidden()
    cleo.keyboard.press("Control+A")
    cleo.keyboard.press("Backspace")

    # The title is searched too; Tab inserts, and an unnamed customer is "there".
    cleo.keyboard.type("/" + word)
    expect_options(cleo, [f"/ship-{tag}"])
    cleo.keyboard.press("Tab")
    expect(composer).to_have_value("Hi there, your parcel left our warehouse today.")
    expect(composer).to_be_focused()

    # A click inserts too, at the caret's "/word", and the focus stays in the box.
    cleo.keyboard.type(f" /k{tag}-b")
    expect_options(cleo, [f"/k{tag}-beta"])
    cleo.locator("#canned-opt-0").click()
    expect(composer).to_have_value("Hi there, your parcel left our warehouse today. Your invoice is attached.")
    expect(composer).to_be_focused()

    # Nothing matches: the list says so and Enter sends nothing until Escape closes it.
    cleo.keyboard.type(" /zz" + tag)
    expect(cleo.locator("#canned .canned-note")).to_contain_text(f"No canned reply matches “/zz{tag}”.")
    cleo.keyboard.press("Enter")
    expect(cleo.locator("#transcript .msg-agent")).to_have_count(0)
    cleo.keyboard.press("Escape")
    expect(composer).to_be_focused()
    cleo.keyboard.press("Enter")
    sent = f"Hi there, your parcel left our warehouse today. Your invoice is attached. /zz{tag}"
    expect(bubbles(cleo, sent)).to_have_count(1)
    cleo.context.close()


def test_a_slash_inside_a_word_opens_nothing(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    """Dates, URLs and "and/or" are written as usual: only a "/" after a space (or first) opens the list."""
    a, _ = daphne_pair
    ben = sign_in(browser, a.url, "ben")
    name = unique("plain")
    escalate(a.url, name)
    accept(ben, name)
    ben.keyboard.type("See https://example.com/help and/or 3/4")
    expect(ben.locator("#canned")).to_be_hidden()
    ben.keyboard.press("Enter")
    expect(bubbles(ben, "See https://example.com/help and/or 3/4")).to_have_count(1)
    ben.context.close()
