"""The History page over real daphne processes: a word said in a closed session finds it as it is
typed, mine by default and everyone's on request; the query stays in the URL; the result opens the
transcript read-only."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.support import bot_says, unique
from tests.browser.test_accessibility import serious_violations
from tests.support.procs import Daphne, request, wait_until
from tests.support.sessions import login


def closed_session(base_url: str, agent: str, customer: str, said: str) -> str:
    """A session the bot escalates naming its customer, in which the customer says `said`; `agent`
    accepts it and closes it with a note. Returns its name once the record holds the message."""
    name = unique("hist")
    data = {"customer": {"id": unique("c"), "name": customer}}
    status, body = request("POST", base_url + "/api/manual/escalate", {"session_name": name, "data": data})
    assert status == 201, body
    person = login(base_url, agent, PASSWORD)
    assert person.post(f"{base_url}/api/sessions/{name}/accept")[0] == 200
    bot_says(base_url, name, said, agent=agent)
    assert person.post(f"{base_url}/api/sessions/{name}/close", {"note": "Refund sent by bank transfer."})[0] == 200
    # The customer's line reaches the record through the server's recorder, a moment after it is published.
    wait_until(
        lambda: any(m["text"] == said for m in person.get(f"{base_url}/api/sessions/{name}")[1]["messages"]),
        timeout=10,
        what="the message to be recorded",
    )
    return name


def result(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#results li[data-name="{name}"]')


def test_history_search_finds_a_message_from_a_closed_session(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    word = "kettle" + uuid.uuid4().hex[:8]  # one word no other test says
    said = f"My {word} arrived broken and I would like my money back, please."
    name = closed_session(a.url, "ana", "Zoë Quist", said)

    # Ana handled it: her History (mine, the default) finds it as she types the start of the word.
    ana = sign_in(browser, b.url, "ana", path="/history/", live=False)
    expect(ana.locator('#history-scope input[value=""]')).to_be_checked()
    ana.locator("#history-q").press_sequentially(word[:-3], delay=30)
    row = result(ana, name)
    expect(row).to_be_visible()
    expect(ana.locator("#results li")).to_have_count(1)
    expect(row.locator(".result-title")).to_have_text("Zoë Quist")
    expect(row.locator(".result-name")).to_have_text(name)
    expect(row.locator(".result-meta")).to_contain_text("Agent: ana")
    expect(row.locator(".result-note")).to_have_text("Note: Refund sent by bank transfer.")
    expect(row.locator(".result-snippet")).to_have_text("Customer: " + said)
    # What matched is marked: the typed start of the word (with PostgreSQL the whole word).
    expect(row.locator(".result-snippet mark")).to_have_text(re.compile("^" + word[:-3]))
    expect(ana.locator("#history-status")).to_have_text(f"1 closed session of yours matches “{word[:-3]}”.")
    expect(ana).to_have_url(re.compile(r"/history/\?q=" + re.escape(quote(word[:-3])) + "$"))

    # The URL can be reloaded (or shared): the same search comes back.
    ana.reload()
    expect(ana.locator("#history-q")).to_have_value(word[:-3])
    expect(result(ana, name)).to_be_visible()

    # The result opens the transcript, read-only: no composer, no close.
    result(ana, name).locator(".result-title").click()
    expect(ana).to_have_url(f"{b.url}/dashboard/sessions/{name}/?from=history")
    expect(ana.locator("#transcript .msg-body").filter(has_text=said)).to_be_visible()
    expect(ana.locator("#pane-status")).to_have_text("Closed")
    expect(ana.locator("#pane-close")).to_have_count(0)
    expect(ana.locator("#composer-text")).to_have_count(0)
    ana.context.close()

    # Ben did not handle it: not among his, found among everyone's, by the customer's name too.
    ben = sign_in(browser, a.url, "ben", path="/history/", live=False)
    ben.goto(f"{a.url}/history/?q={word}")
    expect(ben.locator("#history-status")).to_have_text(
        f"No closed session of yours matches “{word}”. Try Everyone's, or fewer words."
    )
    expect(ben.locator("#results li")).to_have_count(0)
    ben.locator('#history-scope label:has-text("Everyone\'s")').click()
    expect(result(ben, name)).to_be_visible()
    expect(ben).to_have_url(re.compile(r"scope=all"))
    ben.locator("#history-q").fill("zoë quist")
    expect(result(ben, name)).to_be_visible()
    expect(result(ben, name).locator(".result-snippet")).to_have_count(0)  # the name matched, not a message
    # Characters that mean something to SQL or to full-text search are only searched for: between
    # words they separate them; alone, they match names that contain them (here none).
    ben.locator("#history-q").fill(f"{word} %_'&|:*")
    expect(ben.locator("#history-status")).to_have_text(f"1 closed session matches “{word} %_'&|:*”.")
    ben.locator("#history-q").fill("%_")
    expect(ben.locator("#history-status")).to_have_text("No closed session matches “%_”. Try fewer or shorter words.")
    ben.locator("#history-q").fill("x" * 200)
    expect(ben.locator("#history-status")).to_contain_text("No closed session matches")
    ben.context.close()


def test_the_history_page_works_with_the_keyboard_and_has_no_serious_accessibility_violation(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    word = "toaster" + uuid.uuid4().hex[:8]
    name = closed_session(a.url, "cleo", "Priya Nakamura", f"The {word} smokes.")
    # The checker is injected as a script of the test's own: the page's policy would refuse it.
    page = sign_in(browser, a.url, "cleo", path="/history/", live=False, bypass_csp=True)
    expect(page.locator("#history-status")).not_to_be_empty()
    assert serious_violations(page) == []

    page.keyboard.press("Tab")  # the skip link first
    page.keyboard.press("Enter")
    for _ in range(8):  # then through the top bar to the search box
        if page.evaluate("document.activeElement.id") == "history-q":
            break
        page.keyboard.press("Tab")
    expect(page.locator("#history-q")).to_be_focused()
    page.keyboard.type(word)
    page.keyboard.press("Enter")  # searches at once, without reloading the page
    expect(result(page, name)).to_be_visible()
    page.keyboard.press("Tab")  # to the scope switch; the arrow keys choose
    page.keyboard.press("ArrowRight")
    expect(page.locator('#history-scope input[value="all"]')).to_be_checked()
    expect(page.locator("#history-status")).to_have_text(f"1 closed session matches “{word}”.")
    page.keyboard.press("Tab")
    expect(result(page, name).locator(".result-title")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{a.url}/dashboard/sessions/{name}/?from=history")
    page.context.close()
