"""The pages' own logic, driven by a scripted stream: the `bus_status` banner and showing each
chat message once, whatever order and however often the snapshot, the answer to the page's
own send and the stream bring it.

The pages, the logins, the snapshots and the commands are a real daphne (in-memory layer); only
`EventSource` is replaced, by a script the test drives, so a test can play exactly what a
degraded server and a replay after an outage send. tests/browser/test_outage.py does the same
over real processes and a real outage.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.page_parts import PAUSED, PAUSED_REST, bubbles, write
from tests.browser.page_parts import bus_banner as banner
from tests.browser.support import escalate, unique
from tests.support.procs import Daphne, base_env, manage, migrate

# Replaces the browser's EventSource: each one the page opens is kept in window.__streams, and the
# test opens it, sends it events and drops it (as the browser does when a connection breaks).
FAKE_EVENT_SOURCE = """
(() => {
  const streams = [];
  class ScriptedEventSource extends EventTarget {
    constructor(url) {
      super();
      this.url = url;
      this.readyState = 0;
      this.onopen = null;
      this.onerror = null;
      streams.push(this);
    }
    close() { this.readyState = 2; }
    _open() { this.readyState = 1; if (this.onopen) this.onopen(new Event("open")); }
    _send(type, envelope, id) {
      this.dispatchEvent(new MessageEvent(type, { data: JSON.stringify(envelope), lastEventId: id || "" }));
    }
    _drop() { this.readyState = 0; if (this.onerror) this.onerror(new Event("error")); }
  }
  ScriptedEventSource.CONNECTING = 0;
  ScriptedEventSource.OPEN = 1;
  ScriptedEventSource.CLOSED = 2;
  window.EventSource = ScriptedEventSource;
  window.__streams = streams;
  window.__current = () => streams.filter((s) => s.readyState !== 2).at(-1);
})();
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daphne]:
    tmp = tmp_path_factory.mktemp("scripted")
    env = base_env(DATABASE_URL=f"sqlite:///{tmp / 'scripted.sqlite3'}")
    migrate(env)
    manage(env, "create_agent", "ana", "--password", PASSWORD)
    manage(env, "create_agent", "sam", "--password", PASSWORD, "--supervisor")
    daphne = Daphne(env, log_path=tmp / "daphne.log").start()
    yield daphne
    daphne.stop()


def open_page(browser: Browser, base_url: str, username: str, path: str, width: int = 1280) -> Page:
    """Signed in as `username` on `path`, its (scripted) stream opened."""
    page = sign_in(browser, base_url, username, path, width=width, init_script=FAKE_EVENT_SOURCE, live=False)
    open_stream(page)
    return page


def streams(page: Page) -> int:
    """How many EventSources the page has made so far."""
    return int(page.evaluate("() => window.__streams.length"))


def reconnected(page: Page, before: int) -> None:
    """The page made a new EventSource (its channels changed): open it."""
    page.wait_for_function("(n) => window.__streams.length > n", arg=before)
    open_stream(page)


def open_stream(page: Page) -> None:
    page.wait_for_function("() => window.__current && window.__current()")
    page.evaluate("() => window.__current()._open()")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")


def send(page: Page, event_type: str, envelope: dict[str, Any]) -> None:
    page.evaluate("([type, envelope]) => window.__current()._send(type, envelope, envelope.id)", [event_type, envelope])


def bus_status(page: Page, state: str) -> None:
    envelope = {
        "channel": "sse:broadcast",
        "type": "bus_status",
        "source": "system",
        "timestamp": time.time(),
        "payload": {"state": state, "reason": "redis unreachable" if state == "degraded" else "redis is back"},
    }
    send(page, "bus_status", envelope)


def message(
    name: str,
    text: str,
    message_id: str | None,
    event_id: str | None,
    sender: str = "customer",
    agent: str | None = None,
    channel: str | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"text": text, "sender": sender, **({"agent": agent} if agent else {})}
    payload: dict[str, Any] = {"session_name": name, "data": data}
    if message_id is not None:
        payload["message_id"] = message_id
    return {
        "id": event_id,
        "channel": channel or f"sse:session:{name}",
        "type": "new_message",
        "source": "agent_workbench" if sender == "agent" else "ai_chatbot",
        "timestamp": time.time(),
        "payload": payload,
    }


def settle(page: Page) -> None:
    """Long enough for anything queued in the page to have run (there is no network here)."""
    page.wait_for_timeout(300)


# --- the banner ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/workbench/", "/dashboard/", "/dashboard/sessions/{name}/"])
def test_every_page_shows_the_banner_while_its_stream_says_degraded_and_clears_it_on_ok(
    browser: Browser, server: Daphne, path: str
) -> None:
    name = unique()
    escalate(server.url, name)
    page = open_page(browser, server.url, "sam", path.format(name=name))
    expect(banner(page)).to_have_count(0)

    bus_status(page, "degraded")
    expect(banner(page)).to_be_visible()
    expect(banner(page)).to_have_text(f"{PAUSED} {PAUSED_REST}")
    # A polite live region, apart from the connection state: the page is still live.
    region = page.get_by_role("status").filter(has_text=PAUSED)
    expect(region).to_have_attribute("aria-live", "polite")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#conn-banner")).to_be_hidden()
    assert page.evaluate("document.documentElement.dataset.bus") == "degraded"

    bus_status(page, "ok")
    expect(banner(page)).to_have_count(0)
    # Said once, to screen readers, that it is over.
    expect(page.locator("#bus-status")).to_have_text("Live updates from other servers are back.")
    assert page.evaluate("document.documentElement.dataset.bus") == "ok"
    page.context.close()


def test_a_lost_connection_replaces_the_banner_and_a_new_connection_clears_it(browser: Browser, server: Daphne) -> None:
    page = open_page(browser, server.url, "sam", "/dashboard/")
    bus_status(page, "degraded")
    expect(banner(page)).to_be_visible()

    page.evaluate("() => window.__current()._drop()")
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    expect(page.locator("#conn-banner")).to_be_visible()
    expect(banner(page)).to_have_count(0)  # one banner at a time: the connection's

    # The browser reconnects, to a healthy process this time: it says nothing, and nothing shows.
    page.evaluate("() => window.__current()._open()")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    settle(page)
    expect(banner(page)).to_have_count(0)

    # To a degraded one: it says so right after opening.
    page.evaluate("() => window.__current()._drop()")
    page.evaluate("() => window.__current()._open()")
    bus_status(page, "degraded")
    expect(banner(page)).to_be_visible()
    page.context.close()


def test_a_reconnect_for_another_session_keeps_the_banner_only_while_the_server_says_degraded(
    browser: Browser, server: Daphne
) -> None:
    first, second = unique(), unique()
    escalate(server.url, first)
    escalate(server.url, second)
    page = open_page(browser, server.url, "ana", "/workbench/")
    bus_status(page, "degraded")
    expect(banner(page)).to_be_visible()
    page.evaluate("document.querySelector('#bus-status .bus-banner').dataset.mark = 'first'")

    # Opening a session reconnects with its channel; the (still degraded) server says so again:
    # the same banner stays, neither blinking nor read out again.
    page.locator(f'#queue li[data-name="{first}"] .row-title').click()
    reconnected(page, 1)
    bus_status(page, "degraded")
    page.wait_for_timeout(2000)
    expect(banner(page)).to_have_attribute("data-mark", "first")

    # Another session, and this time the server says nothing (it is healthy): the banner goes.
    page.locator(f'#queue li[data-name="{second}"] .row-title').click()
    reconnected(page, 2)
    expect(banner(page)).to_have_count(0, timeout=3000)
    page.context.close()


# --- each chat message once -----------------------------------------------------------------


def detail_with(page: Page, name: str, events: list[dict[str, Any]]) -> None:
    """Serve `events` as the session's snapshot events (the session itself stays the server's)."""

    def handle(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["events"] = events
        route.fulfill(response=response, body=json.dumps(body))

    page.route(re.compile(rf"/api/sessions/{name}$"), handle)


def test_the_session_page_shows_snapshot_messages_without_ids_and_skips_their_replays(
    browser: Browser, server: Daphne
) -> None:
    name = unique()
    escalate(server.url, name)
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    ctx.add_init_script(FAKE_EVENT_SOURCE)
    page = ctx.new_page()
    detail_with(
        page,
        name,
        [
            message(name, "stored during the outage", "m-1", None),  # not published yet
            message(name, "published before", "m-2", "100-1"),
            message(name, "an old event, no message_id", None, "100-2"),
        ],
    )
    page.goto(f"{server.url}/accounts/login/?next=/dashboard/sessions/{name}/")
    page.fill("#id_username", "sam")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    open_stream(page)
    for text in ("stored during the outage", "published before", "an old event, no message_id"):
        expect(bubbles(page, text)).to_have_count(1)

    # Once Redis is back the stored event goes out with an id, and history replays the rest.
    send(page, "new_message", message(name, "stored during the outage", "m-1", "200-1"))
    send(page, "new_message", message(name, "published before", "m-2", "100-1"))
    send(page, "new_message", message(name, "published before", "m-2", "200-2"))
    send(page, "new_message", message(name, "an old event, no message_id", None, "100-2"))
    send(page, "new_message", message(name, "new after the outage", "m-3", "200-3"))
    expect(bubbles(page, "new after the outage")).to_have_count(1)
    settle(page)
    for text in ("stored during the outage", "published before", "an old event, no message_id"):
        expect(bubbles(page, text)).to_have_count(1)
    assert page.locator("#transcript .msg").count() == 4
    ctx.close()


def accepted_session(browser: Browser, base_url: str) -> tuple[Page, str]:
    """Ana's workbench with a session she has just accepted (the stream is scripted: the queue
    comes from the snapshot)."""
    name = unique()
    escalate(base_url, name)
    page = open_page(browser, base_url, "ana", "/workbench/")
    before = streams(page)
    page.locator(f'#queue li[data-name="{name}"]').get_by_role("button", name=f"Accept {name}").click()
    expect(page.locator("#pane-status")).to_have_text("With an agent")
    reconnected(page, before)  # the workbench reconnects with the session's channel
    return page, name


def test_an_agents_own_message_shows_once_from_the_answer_the_local_event_and_the_replay(
    browser: Browser, server: Daphne
) -> None:
    page, name = accepted_session(browser, server.url)
    session = f"sse:session:{name}"

    # The answer first (it names the stored message), then a copy without an id, then the
    # event once Redis is back (an id), then the same on the agent's own channel.
    with page.expect_response(f"**/api/sessions/{name}/messages") as answer:
        write(page, "sent while degraded")
    stored = answer.value.json()["message_id"]
    expect(bubbles(page, "sent while degraded")).to_have_count(1)
    expect(page.locator("#transcript .msg.pending")).to_have_count(0)
    send(page, "new_message", message(name, "sent while degraded", stored, None, "agent", "ana", session))
    send(page, "new_message", message(name, "sent while degraded", stored, "300-1", "agent", "ana", session))
    send(page, "new_message", message(name, "sent while degraded", stored, "300-2", "agent", "ana", "sse:agent:ana"))
    settle(page)
    expect(bubbles(page, "sent while degraded")).to_have_count(1)

    # The stream first, the answer after (held back here).
    held: list[Route] = []
    page.route(f"**/api/sessions/{name}/messages", lambda route: held.append(route))
    write(page, "the stream was faster")
    page.wait_for_function("() => document.querySelector('#transcript .msg.pending')")
    for _ in range(50):
        if held:
            break
        page.wait_for_timeout(100)
    assert held, "the send never reached the network"

    # The answer (held back) is older than the stream's copy: it names another message_id
    # only in this script; the page must tie the two by its own pending send.
    def answer_without_message_id(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body.pop("message_id", None)
        body["events"] = []
        route.fulfill(response=response, body=json.dumps(body))

    send(page, "new_message", message(name, "the stream was faster", "m-11", "301-1", "agent", "ana", session))
    answer_without_message_id(held[0])
    page.wait_for_timeout(500)
    expect(bubbles(page, "the stream was faster")).to_have_count(1)
    expect(page.locator("#transcript .msg.pending")).to_have_count(0)
    page.unroute(f"**/api/sessions/{name}/messages")

    # An answer that names the message: its later events are recognised by the message_id alone.
    def answer_with_message_id(route: Route) -> None:
        response = route.fetch()
        body = response.json()
        body["message_id"] = "m-12"
        route.fulfill(response=response, body=json.dumps(body))

    page.route(f"**/api/sessions/{name}/messages", answer_with_message_id)
    write(page, "named by the answer")
    expect(page.locator("#transcript [data-message-id='m-12']")).to_have_count(1)
    send(page, "new_message", message(name, "named by the answer", "m-12", "302-1", "agent", "ana", session))
    settle(page)
    expect(bubbles(page, "named by the answer")).to_have_count(1)

    # The same words written twice are two messages, shown twice, however often each comes back.
    page.unroute(f"**/api/sessions/{name}/messages")
    ids = []
    for _ in range(2):
        with page.expect_response(f"**/api/sessions/{name}/messages") as answer:
            write(page, "ok")
        ids.append(answer.value.json()["message_id"])
    assert ids[0] != ids[1]
    expect(bubbles(page, "ok")).to_have_count(2)
    send(page, "new_message", message(name, "ok", ids[0], "303-1", "agent", "ana", session))
    send(page, "new_message", message(name, "ok", ids[1], "303-2", "agent", "ana", session))
    send(page, "new_message", message(name, "ok", ids[0], "304-1", "agent", "ana", session))
    settle(page)
    expect(bubbles(page, "ok")).to_have_count(2)
    page.context.close()


def test_a_customer_message_replayed_to_the_workbench_is_shown_and_counted_unread_once(
    browser: Browser, server: Daphne
) -> None:
    page, name = accepted_session(browser, server.url)
    session = f"sse:session:{name}"
    send(page, "new_message", message(name, "where is my parcel?", "m-20", None, channel=session))
    send(page, "new_message", message(name, "where is my parcel?", "m-20", "400-1", channel=session))
    settle(page)
    expect(bubbles(page, "where is my parcel?")).to_have_count(1)

    # With the pane closed, the agent channel's copies count as unread: once per message.
    before = streams(page)
    page.locator("#transcript").focus()
    page.keyboard.press("Escape")
    reconnected(page, before)
    send(page, "new_message", message(name, "still there?", "m-21", None, channel="sse:agent:ana"))
    send(page, "new_message", message(name, "still there?", "m-21", "401-1", channel="sse:agent:ana"))
    send(page, "new_message", message(name, "hello?", "m-22", "401-2", channel="sse:agent:ana"))
    expect(page.locator(f'#mine li[data-name="{name}"] .unread')).to_have_text("2")
    page.context.close()


def test_the_dashboard_feed_shows_a_replayed_message_once(browser: Browser, server: Daphne) -> None:
    page = open_page(browser, server.url, "sam", "/dashboard/")
    page.locator('#filters button[data-type="new_message"]').click()
    name = unique()
    for event_id in (None, "500-1", "500-2"):
        send(page, "new_message", message(name, "once in the feed", "m-30", event_id, channel="sse:broadcast"))
    settle(page)
    expect(page.locator('#feed li[data-type="new_message"]', has_text="once in the feed")).to_have_count(1)
    # Switching the filter off and on again renders from the page's list: still once.
    page.locator('#filters button[data-type="new_message"]').click()
    page.locator('#filters button[data-type="new_message"]').click()
    expect(page.locator('#feed li[data-type="new_message"]', has_text="once in the feed")).to_have_count(1)
    page.context.close()


def test_a_message_that_claims_to_be_an_agents_but_comes_from_the_bot_is_not_shown_as_one(
    browser: Browser, server: Daphne
) -> None:
    name = unique()
    escalate(server.url, name)
    page = open_page(browser, server.url, "sam", f"/dashboard/sessions/{name}/")
    forged = message(name, "I am an agent, give me your card number", "m-40", "600-1", "agent", "ana")
    forged["source"] = "ai_chatbot"
    send(page, "new_message", forged)
    expect(bubbles(page, "I am an agent, give me your card number")).to_have_count(1)
    expect(page.locator("#transcript .msg-agent")).to_have_count(0)
    page.context.close()


def test_an_event_on_a_sessions_channel_that_names_another_session_is_ignored(browser: Browser, server: Daphne) -> None:
    name, other = unique(), unique()
    escalate(server.url, name)
    escalate(server.url, other)
    page = open_page(browser, server.url, "sam", f"/dashboard/sessions/{name}/")
    # Published on this session's channel but about another one: not shown here.
    stray = message(other, "meant for another session", "m-50", "700-1", channel=f"sse:session:{name}")
    send(page, "new_message", stray)
    nameless = message(name, "no session named", "m-51", "700-2")
    del nameless["payload"]["session_name"]
    send(page, "new_message", nameless)
    send(page, "new_message", message(name, "about this session", "m-52", "700-3"))
    expect(bubbles(page, "about this session")).to_have_count(1)
    expect(bubbles(page, "meant for another session")).to_have_count(0)
    expect(bubbles(page, "no session named")).to_have_count(0)
    page.context.close()
