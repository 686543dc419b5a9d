"""Supervision in the pages: a transfer moves a session between two agents' workbenches live (on
two server processes), a supervisor joins a conversation, writes and parts, each person's
Available / Away keeps them out of the transfer dialog and shows on the dashboard, and a session
whose agent closed their workbench is flagged there once the presence grace period is over."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.page_parts import accept, bubbles, transcript_lines, write
from tests.browser.support import escalate, unique
from tests.browser.test_accessibility import serious_violations
from tests.support.procs import Daphne, manage
from tests.support.sessions import login

# The dashboard asks for presence every 5 s; a flag or a state shows within one round (and a bit).
PRESENCE_ROUND_MS = 8000


def set_state(base_url: str, agent: str, state: str) -> None:
    """What a supervisor may do for anyone: make `agent` available or away (the API, not a page)."""
    status, body = login(base_url, "sam", PASSWORD).post(
        f"{base_url}/api/agents/{agent}/availability", {"state": state}
    )
    assert status == 200, body


def watch_queue(page: Page, name: str) -> None:
    """Note on the page whether `name` ever shows in its queue from now on (a transfer must not
    pass through the queue: other agents would see a customer they cannot take, and hear it)."""
    page.evaluate(
        """(name) => {
            window.queuedMeanwhile = false;
            const queue = document.getElementById("queue");
            new MutationObserver(() => {
                if ([...queue.children].some((row) => row.dataset.name === name)) window.queuedMeanwhile = true;
            }).observe(queue, { childList: true });
        }""",
        name,
    )


def choose(page: Page, agent: str | None) -> None:
    """In the open transfer dialog, pick `agent` (None: back to the queue) and confirm."""
    dialog = page.locator("#transfer")
    expect(dialog).to_be_visible()
    ok = page.locator("#transfer-ok")
    expect(ok).to_be_disabled()  # nothing is chosen until the person chooses
    if agent is None:
        dialog.locator("label.transfer-option", has_text="Back to the queue").click()
        expect(ok).to_have_text("Back to the queue")
    else:
        dialog.locator("label.transfer-option", has=page.locator(f'input[value="{agent}"]')).click()
        expect(ok).to_have_text(f"Transfer to {agent}")
    ok.click()
    expect(dialog).to_be_hidden()


def test_a_transfer_moves_the_session_between_two_agents_pages_live(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    set_state(a.url, "ben", "available")
    ana = sign_in(browser, a.url, "ana")
    ben = sign_in(browser, b.url, "ben")  # on the other process
    name = unique("moved")
    escalate(a.url, name, reason="wants a refund")
    accept(ana, name)
    write(ana, "Hi, Ana here.")
    expect(bubbles(ana, "Hi, Ana here.")).to_have_count(1)
    watch_queue(ana, name)
    watch_queue(ben, name)

    # Sam, on the session's page on process B: Transfer offers ben (his workbench is open), not ana.
    sam = sign_in(browser, b.url, "sam", path=f"/dashboard/sessions/{name}/")
    expect(sam.locator("#facts")).to_contain_text("Agent: ana")
    sam.locator("#pane-transfer").click()
    dialog = sam.locator("#transfer")
    offered = dialog.locator("label.transfer-option", has=sam.locator('input[value="ben"]'))
    expect(offered).to_contain_text("workbench open")
    expect(dialog.locator('input[value="ana"]')).to_have_count(0)  # the session's own agent
    expect(dialog.locator('input[value="sam"]')).to_have_count(0)  # a supervisor is away by default
    choose(sam, "ben")
    expect(sam.locator("#facts")).to_contain_text("Agent: ben")

    # Ana loses it at once, with a notice; her pane still shows it, now ben's.
    expect(ana.locator(f'#mine li[data-name="{name}"]')).to_have_count(0)
    expect(ana.locator("#toasts")).to_contain_text(f"{name} was transferred to ben by sam")
    expect(ana.locator("#composer")).to_be_hidden()
    expect(ana.locator("#composer-note")).to_have_text("ben is handling this session.")
    expect(ana.locator("#transcript .sys").last).to_contain_text("sam transferred the session from you to ben")

    # Ben has it in My sessions, with its reason (from the server), and a notice.
    row = ben.locator(f'#mine li[data-name="{name}"]')
    expect(row).to_be_visible()
    expect(ben.locator("#toasts")).to_contain_text(f"sam gave you {name}")
    expect(row.locator(".row-meta")).to_have_text("wants a refund")
    row.locator(".row-title").click()
    expect(ben.locator("#composer-text")).to_be_focused()
    assert "sys: sam transferred the session from ana to you" in transcript_lines(ben)
    write(ben, "Ben here, I'll take it from here.")
    expect(bubbles(ana, "Ben here, I'll take it from here.")).to_have_count(1)  # across processes
    assert ana.evaluate("window.queuedMeanwhile") is False
    assert ben.evaluate("window.queuedMeanwhile") is False

    # Ben gives it back to the queue himself: it leaves his sessions and waits in ana's queue.
    ben.locator("#pane-transfer").click()
    expect(ben.locator('#transfer input[value="ben"]')).to_have_count(0)
    choose(ben, None)
    expect(ben.locator(f'#mine li[data-name="{name}"]')).to_have_count(0)
    expect(ben.locator("#toasts")).to_contain_text(f"{name} is back in the queue")
    expect(ana.locator(f'#queue li[data-name="{name}"] .row-meta')).to_have_text("wants a refund")
    for page in (ana, ben, sam):
        page.context.close()


def test_a_supervisor_joins_writes_and_parts_and_the_agent_sees_it(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    ana = sign_in(browser, a.url, "ana")
    name = unique("joined")
    escalate(a.url, name)
    accept(ana, name)

    # Sam opens the session in his workbench on process B: he may join or transfer, not write yet.
    sam = sign_in(browser, b.url, "sam", path="/dashboard/")
    sam.goto(f"{b.url}/workbench/#{name}")
    expect(sam.locator("#pane-status")).to_have_text("With an agent")
    expect(sam.locator("#composer-note")).to_have_text(
        "ana is handling this session. Join it to write to the customer too."
    )
    expect(sam.locator("#pane-transfer")).to_be_visible()
    expect(sam.locator("#pane-leave")).to_be_hidden()
    sam.locator("#pane-join").click()

    expect(sam.locator("#composer-text")).to_be_focused()
    mine = sam.locator(f'#mine li[data-name="{name}"]')
    expect(mine.locator(".row-meta")).to_have_text("joinedwith ana")
    expect(sam.locator("#pane-join")).to_be_hidden()
    expect(sam.locator("#pane-part")).to_be_visible()
    expect(sam.locator("#pane-sub")).to_contain_text("with ana · you joined")

    # Ana keeps her session, hears of it, and sees the system line.
    expect(ana.locator("#transcript .sys").last).to_contain_text("sam joined")
    expect(ana.locator("#toasts")).to_contain_text(f"sam joined {name}")
    expect(ana.locator("#pane-sub")).to_contain_text("with you · sam joined")
    expect(ana.locator(f'#mine li[data-name="{name}"]')).to_be_visible()

    # Both write; each sees the other's line.
    write(sam, "Sam here, from the supervisors.")
    expect(bubbles(ana, "Sam here, from the supervisors.")).to_have_count(1)
    expect(ana.locator("#transcript .msg-agent.other .who")).to_have_text(["sam"])
    expect(ana.locator(f'#mine li[data-name="{name}"] .row-preview')).to_have_text(
        "sam: Sam here, from the supervisors."
    )
    write(ana, "Thanks, Sam.")
    expect(bubbles(sam, "Thanks, Sam.")).to_have_count(1)

    # The session's page (a second tab of sam's) says who joined; Part there, and the workbench follows.
    page = sam.context.new_page()
    page.goto(f"{b.url}/dashboard/sessions/{name}/")
    expect(page.locator("#facts")).to_contain_text("Supervisor joined: sam")
    expect(page.locator("#pane-write")).to_be_visible()
    page.locator("#pane-part").click()
    expect(page.locator("#facts")).not_to_contain_text("Supervisor joined")
    expect(page.locator("#pane-join")).to_be_visible()

    expect(mine).to_have_count(0)
    expect(sam.locator("#composer")).to_be_hidden()
    expect(sam.locator("#pane-join")).to_be_visible()
    expect(ana.locator("#transcript .sys").last).to_contain_text("sam left")
    expect(ana.locator("#composer")).to_be_visible()  # still hers
    expect(ana.locator(f'#mine li[data-name="{name}"]')).to_be_visible()
    ana.context.close()
    sam.context.close()


def test_an_away_agent_is_not_offered_and_the_dashboard_shows_each_state(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    set_state(a.url, "ben", "available")
    ben = sign_in(browser, b.url, "ben")
    try:
        expect(ben.get_by_role("radio", name="Available")).to_be_checked()
        ben.locator("#availability label", has_text="Away").click()
        expect(ben.locator("#toasts")).to_contain_text("You are away")
        ben.reload()  # remembered by the server
        expect(ben.get_by_role("radio", name="Away")).to_be_checked()

        sam = sign_in(browser, a.url, "sam", path="/dashboard/")
        listed = sam.locator('#agents li[data-agent="ben"]')
        expect(listed).to_contain_text("Away")
        expect(listed).to_contain_text("online since")

        ana = sign_in(browser, a.url, "ana")
        name = unique("offered")
        escalate(a.url, name)
        accept(ana, name)
        ana.locator("#pane-transfer").click()
        expect(ana.locator("#transfer")).not_to_contain_text("Loading who is available")
        expect(ana.locator('#transfer input[value="ben"]')).to_have_count(0)
        ana.keyboard.press("Escape")
        expect(ana.locator("#transfer")).to_be_hidden()

        # Available again, by keyboard: offered again, and the dashboard says so within a round.
        ben.get_by_role("radio", name="Away").focus()
        ben.keyboard.press("ArrowLeft")
        expect(ben.get_by_role("radio", name="Available")).to_be_checked()
        expect(ben.locator("#toasts")).to_contain_text("You are available")
        expect(listed).to_contain_text("Available", timeout=PRESENCE_ROUND_MS)
        ana.locator("#pane-transfer").click()
        expect(ana.locator('#transfer input[value="ben"]')).to_have_count(1)
        ana.keyboard.press("Escape")
        ana.context.close()
        sam.context.close()
    finally:
        set_state(a.url, "ben", "available")  # the other tests' ben
        ben.context.close()


@pytest.fixture
def short_grace(redis_env: dict[str, str], tmp_path: Path) -> Iterator[Daphne]:
    """A daphne whose agents stay online only 2 s after their last workbench closes."""
    server = Daphne({**redis_env, "SSE_PRESENCE_GRACE_SECONDS": "2"}, log_path=tmp_path / "grace.log").start()
    yield server
    server.stop()


def test_a_session_whose_agent_closed_their_workbench_is_flagged_and_can_be_transferred(
    browser: Browser, short_grace: Daphne, redis_env: dict[str, str], browser_accounts: dict[str, str]
) -> None:
    # An agent of this test's own: no other test's page keeps them online.
    otto = unique("otto")
    manage(redis_env, "create_agent", otto, "--password", PASSWORD)
    agent = sign_in(browser, short_grace.url, otto)
    name = unique("orphan")
    escalate(short_grace.url, name)
    accept(agent, name)

    sam = sign_in(browser, short_grace.url, "sam", path="/dashboard/")
    listed = sam.locator(f'#agents li[data-agent="{otto}"]')
    expect(listed).to_have_attribute("data-workbench", "open", timeout=PRESENCE_ROUND_MS)
    expect(listed).to_contain_text("Available")
    row = sam.locator(f'#sessions tr[data-name="{name}"]')
    expect(row).to_contain_text(otto)
    expect(row.locator(".flag")).to_have_count(0)

    agent.context.close()  # the workbench goes; after the grace period, so does the agent
    expect(row.locator(".flag")).to_have_text("agent offline", timeout=PRESENCE_ROUND_MS + 2000)
    expect(listed).to_have_attribute("data-workbench", "closed")
    expect(listed).to_contain_text("offline")

    row.get_by_role("button", name=f"Transfer {name}").click()
    expect(sam.locator(f'#transfer input[value="{otto}"]')).to_have_count(0)  # its own agent
    choose(sam, None)
    expect(row.locator(".status")).to_have_text("Waiting")
    expect(row.locator(".flag")).to_have_count(0)
    sam.context.close()


def test_the_supervision_controls_pass_the_accessibility_check_wide_and_narrow(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    """axe-core on what this adds: the switch, a joined session, the transfer dialog, the session
    page's buttons (no serious or critical violation, at 1280 and 420 px)."""
    a, _ = daphne_pair
    ana = sign_in(browser, a.url, "ana")
    name = unique("checked")
    escalate(a.url, name)
    accept(ana, name)
    # The checker is injected as a script of the test's own: the page's policy would refuse it.
    sam = sign_in(browser, a.url, "sam", path="/dashboard/", bypass_csp=True)
    problems = {}
    for width in (1280, 420):
        sam.set_viewport_size({"width": width, "height": 800})
        sam.goto(f"{a.url}/workbench/#{name}")
        expect(sam.locator("#pane-join")).to_be_visible()
        sam.locator("#pane-join").click()
        expect(sam.locator("#pane-part")).to_be_visible()
        problems[f"workbench, joined, {width}"] = serious_violations(sam)
        sam.locator("#pane-transfer").click()
        expect(sam.locator("#transfer")).not_to_contain_text("Loading who is available")
        problems[f"transfer dialog, {width}"] = serious_violations(sam)
        sam.keyboard.press("Escape")
        sam.goto(f"{a.url}/dashboard/sessions/{name}/")
        expect(sam.locator("#pane-part")).to_be_visible()
        problems[f"session page, {width}"] = serious_violations(sam)
        sam.locator("#pane-part").click()
        expect(sam.locator("#pane-join")).to_be_visible()
    assert {where: found for where, found in problems.items() if found} == {}
    ana.context.close()
    sam.context.close()
