"""All tabs of one person share one stream (static/js/live.js, "One stream per browser").

Eight workbench tabs of one agent in one browser, over plain HTTP/1.1, where Chromium opens at
most six connections to a host: with a stream per tab the seventh tab could not even load its
snapshot. One tab (the leader) holds the one EventSource and relays to the others; when it closes,
another takes over, and an escalation made meanwhile still reaches every tab, once.
"""

from __future__ import annotations

import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import CSP_VIOLATIONS, PASSWORD
from tests.browser.page_parts import bubbles
from tests.browser.support import bot_says, escalate, unique
from tests.support.procs import Daphne, base_env, manage, migrate, run_python

TABS = 8
STREAM_PATH = "/api/events"
# How long a tab that took over waits for the roll call (ROLL_CALL_MS in live.js), and a margin:
# a tab that did not answer would cost a reconnect then.
ROLL_CALL_SECONDS = 3.5

# What an escalation publishes on sse:broadcast (and on the session's channel).
ESCALATION_TYPES = ("transfer_request", "status_change")

# Every event a tab's LiveStream applies is announced as `live:event`: keep them, per tab.
RECORDER = """
document.addEventListener("live:event", (e) => {
  const payload = e.detail.payload || {};
  (window.__applied ||= []).push({
    id: e.detail.id || null, type: e.detail.type, channel: e.detail.channel, name: payload.session_name || null,
  });
});
"""


@pytest.fixture
def server(redis_env: dict[str, str], browser_accounts: dict[str, str], tmp_path: Path) -> Iterator[Daphne]:
    """A daphne of this test's own that lets one person hold two streams at most (the default
    is ten): the server refuses what one stream per browser should never need."""
    env = {**redis_env, "SSE_RETRY_MS": "500", "SSE_MAX_STREAMS_PER_USER": "2"}
    daphne = Daphne(env, log_path=tmp_path / "one-connection.log").start()
    yield daphne
    daphne.stop()


@pytest.fixture
def memory_server(tmp_path: Path) -> Iterator[Daphne]:
    """`make run`'s set-up (the in-memory layer): its history dies with the process, so a page
    that comes back after a restart gets a `reset`."""
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'one.sqlite3'}", SSE_RETRY_MS="500", LOG_LEVEL="INFO")
    migrate(env)
    manage(env, "create_agent", "ana", "--password", PASSWORD)
    daphne = Daphne(env, log_path=tmp_path / "memory.log").start()
    yield daphne
    daphne.stop()


def signed_in_tabs(browser: Browser, base_url: str, username: str, paths: list[str]) -> Tabs:
    """One browser context of `username`: the first path signs in, each further one is a tab."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(10_000)
    context.add_init_script(RECORDER)
    tabs = Tabs(context, base_url)
    first = tabs.open("/accounts/login/?next=" + paths[0].replace("#", "%23"))
    first.fill("#id_username", username)
    first.fill("#id_password", PASSWORD)
    first.click("button[type=submit]")
    first.wait_for_url(f"{base_url}/workbench/*")
    for path in paths[1:]:
        tabs.open(path)
    for page in tabs.pages:
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    return tabs


class Tabs:
    """The tabs of one browser context, with the stream requests each made and its script errors."""

    def __init__(self, context: BrowserContext, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.pages: list[Page] = []
        self.streams: dict[int, list[str]] = {}
        self.errors: list[str] = []

    def open(self, path: str) -> Page:
        page = self.context.new_page()
        made = self.streams[id(page)] = []
        page.on("request", lambda request: made.append(request.url) if STREAM_PATH in request.url else None)
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.on(
            "console",
            lambda message: CSP_VIOLATIONS.append(message.text) if "Content Security Policy" in message.text else None,
        )
        page.goto(self.base_url + path)
        self.pages.append(page)
        return page

    def requests(self, page: Page) -> list[str]:
        return self.streams[id(page)]

    def leader(self) -> Page:
        """The one tab whose LiveStream leads (html[data-stream]), once there is exactly one."""
        deadline = time.monotonic() + 10
        while True:
            roles = [page.evaluate("() => document.documentElement.dataset.stream") for page in self.pages]
            if roles.count("leader") == 1 and roles.count("follower") == len(roles) - 1:
                return self.pages[roles.index("leader")]
            assert time.monotonic() < deadline, f"no single leader among the tabs: {roles}"
            self.pages[0].wait_for_timeout(100)


def applied(page: Page) -> list[dict[str, Any]]:
    return page.evaluate("() => window.__applied || []")  # type: ignore[no-any-return]


def assert_each_once(page: Page, label: str, names: list[str]) -> None:
    """No event applied twice by this tab, and each escalation's two broadcast events once."""
    events = applied(page)
    twice = [key for key, count in Counter(e["id"] for e in events if e["id"]).items() if count > 1]
    assert twice == [], f"{label} applied {twice} more than once"
    for name in names:
        kinds = sorted(
            e["type"]
            for e in events
            if e["name"] == name and e["channel"] == "sse:broadcast" and e["type"] in ESCALATION_TYPES
        )
        assert kinds == sorted(ESCALATION_TYPES), f"{label} applied {kinds} for {name}"


def test_eight_tabs_of_one_agent_share_one_stream_and_a_closed_leader_hands_over_with_no_gap(
    browser: Browser, server: Daphne
) -> None:
    # Two sessions for panes: the first tab shows one, the sixth another, so the tabs need
    # different channels and the stream carries their union.
    pane_first, pane_sixth = unique("pane"), unique("pane")
    escalate(server.url, pane_first)
    escalate(server.url, pane_sixth)

    paths = [f"/workbench/#{pane_first}"] + [
        f"/workbench/#{pane_sixth}" if n == 5 else "/workbench/" for n in range(1, TABS)
    ]
    tabs = signed_in_tabs(browser, server.url, "cleo", paths)
    first = tabs.pages[0]
    expect(tabs.pages[0].locator("#pane-title")).to_have_text(pane_first)
    expect(tabs.pages[5].locator("#pane-title")).to_have_text(pane_sixth)

    # One tab holds the stream (the first: it asked for the lock first); no other asked for one.
    leader = tabs.leader()
    assert leader is first
    assert tabs.requests(leader), "the leader opened no stream"
    for page in tabs.pages[1:]:
        assert tabs.requests(page) == [], "a follower opened a stream of its own"
    last = tabs.requests(leader)[-1]
    for channel in (f"sse%3Asession%3A{pane_first}", f"sse%3Asession%3A{pane_sixth}", "sse%3Aagent%3Acleo"):
        assert f"channel={channel}" in last, f"the stream does not carry {channel}: {last}"

    before = unique("before")
    escalate(server.url, before)
    for page in tabs.pages:
        expect(page.locator(f'#queue li[data-name="{before}"]')).to_be_visible()

    # The leader goes; an escalation made at once, while the next tab takes over, still
    # reaches every tab that is left.
    sixth = tabs.pages[5]
    leader.close()
    rest = tabs.pages[1:]
    tabs.pages = rest
    after = unique("after")
    escalate(server.url, after)
    for page in rest:
        expect(page.locator(f'#queue li[data-name="{after}"]')).to_be_visible()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")

    successor = tabs.leader()
    # The stream still carries the sixth tab's session: a customer's line shows there, once.
    bot_says(server.url, pane_sixth, "still there after the hand-over")
    expect(bubbles(sixth, "still there after the hand-over")).to_have_count(1)

    # A follower opens a session: the stream now carries it too, from that session's cursor.
    reader = next(page for page in rest if page is not successor and page is not sixth)
    reader.locator(f'#queue li[data-name="{after}"] .row-title').click()
    expect(reader.locator("#pane-title")).to_have_text(after)
    bot_says(server.url, after, "to the tab that opened it")
    expect(bubbles(reader, "to the tab that opened it")).to_have_count(1)
    expect(reader.locator(f'#queue li[data-name="{before}"]')).to_be_visible()

    # After the roll call no other tab opened a stream, and the successor opened one, plus the
    # one reconnect for the session the follower opened.
    successor.wait_for_timeout(ROLL_CALL_SECONDS * 1000)
    assert len(tabs.requests(successor)) == 2, tabs.requests(successor)
    assert f"channel=sse%3Asession%3A{after}" in tabs.requests(successor)[-1]
    for page in rest:
        if page is not successor:
            assert tabs.requests(page) == [], "a follower opened a stream of its own"

    for number, page in enumerate(rest):
        assert_each_once(page, f"tab {number + 2}", [before, after])
    sixth_lines = [e for e in applied(sixth) if e["type"] == "new_message" and e["name"] == pane_sixth]
    assert sorted(e["channel"] for e in sixth_lines) == ["sse:broadcast", f"sse:session:{pane_sixth}"]
    assert tabs.errors == []
    tabs.context.close()


def test_after_a_restart_every_tab_of_the_person_reloads_once_the_shared_stream_is_reset(
    browser: Browser, memory_server: Daphne
) -> None:
    tabs = signed_in_tabs(browser, memory_server.url, "ana", ["/workbench/"] * 3)
    leader = tabs.leader()

    memory_server.stop(signal.SIGKILL)
    for page in tabs.pages:  # the leader's word: its stream is down
        expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    # Escalated by another process while the server is down: in the database only.
    unheard = unique("unheard")
    run_python(
        "from dashboard import services\n"
        "from realtime.auth import Principal\n"
        f"services.escalate({unheard!r}, by=Principal('service', 'ai_chatbot'), reason='escalated while down')\n",
        memory_server.env,
    )
    memory_server.start()
    for page in tabs.pages:
        expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=8000)
        expect(page.locator(f'#queue li[data-name="{unheard}"]')).to_contain_text("escalated while down")
    assert "reset for a resume" in memory_server.log_text()

    # And the stream is live again for every tab, on the leader's connection only.
    live = unique("live")
    escalate(memory_server.url, live)
    for number, page in enumerate(tabs.pages):
        expect(page.locator(f'#queue li[data-name="{live}"]')).to_be_visible()
        assert_each_once(page, f"tab {number + 1}", [live])
    assert tabs.leader() is leader
    for page in tabs.pages:
        if page is not leader:
            assert tabs.requests(page) == [], "a follower opened a stream of its own"
    assert tabs.errors == []
    tabs.context.close()


@pytest.fixture
def narrow_server(redis_env: dict[str, str], browser_accounts: dict[str, str], tmp_path: Path) -> Iterator[Daphne]:
    """Three channels a stream at most: a workbench with a session open needs all three."""
    env = {**redis_env, "SSE_RETRY_MS": "500", "SSE_MAX_CHANNELS_PER_CONNECTION": "3", "SSE_MAX_STREAMS_PER_USER": "2"}
    daphne = Daphne(env, log_path=tmp_path / "narrow.log").start()
    yield daphne
    daphne.stop()


def test_a_tab_whose_channels_do_not_fit_the_shared_stream_keeps_its_own_until_they_do(
    browser: Browser, narrow_server: Daphne
) -> None:
    mine, other = unique("mine"), unique("other")
    escalate(narrow_server.url, mine)
    escalate(narrow_server.url, other)
    tabs = signed_in_tabs(browser, narrow_server.url, "ben", [f"/workbench/#{mine}", f"/workbench/#{other}"])
    leader, second = tabs.pages
    html = "html"
    expect(leader.locator(html)).to_have_attribute("data-stream", "leader")
    # Both sessions would make four channels: the second tab streams on its own.
    expect(second.locator(html)).to_have_attribute("data-stream", "overflow")
    assert f"channel=sse%3Asession%3A{other}" in tabs.requests(second)[-1]
    bot_says(narrow_server.url, other, "to the tab on its own")
    expect(bubbles(second, "to the tab on its own")).to_have_count(1)

    # Its pane closed, its channels fit again: it follows the leader and drops its own stream.
    second.locator("#pane-title").click()
    second.keyboard.press("Escape")
    expect(second.locator("#pane-title")).to_be_hidden()
    expect(second.locator(html)).to_have_attribute("data-stream", "follower")
    made = len(tabs.requests(second))
    name = unique("together")
    escalate(narrow_server.url, name)
    for number, page in enumerate(tabs.pages):
        expect(page.locator(f'#queue li[data-name="{name}"]')).to_be_visible()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        assert_each_once(page, f"tab {number + 1}", [name])
    assert len(tabs.requests(second)) == made
    assert tabs.errors == []
    tabs.context.close()
