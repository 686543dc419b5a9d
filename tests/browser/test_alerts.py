"""Alerts in the workbench (static/js/alerts.js): while the tab is hidden, a chime and a desktop
notification when a customer joins the queue or writes in one of mine; nothing while it is
visible; the permission asked only on the click that turns notifications on; each agent's
choice remembered.

Chromium's own notifications and page visibility cannot be watched from a test, so an init
script puts a recording `Notification` in the page and lets the test hide the page (headless
Chromium keeps every tab visible, also behind another tab). The Web Audio API is the real
one; the script only counts the AudioContexts made and the tones started.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import sign_in
from tests.browser.page_parts import accept, bubbles
from tests.browser.support import escalate, unique
from tests.support.procs import Daphne, request

# `ANSWER` is what the browser's permission prompt answers. The permission is kept in the
# page's localStorage, so it outlives a reload as a browser's does.
RECORDER = """
(() => {
  const record = { notes: [], asked: 0, askedOnClick: [], audioContexts: 0, tones: 0, focused: 0 };
  window.__alerts = record;
  const permission = () => localStorage.getItem("test:permission") || "default";
  class RecordingNotification extends EventTarget {
    constructor(title, options = {}) {
      super();
      Object.assign(this, { title, body: options.body, tag: options.tag, closed: false });
      record.notes.push(this);
    }
    close() { this.closed = true; }
    static get permission() { return permission(); }
    static requestPermission() {
      record.asked += 1;
      record.askedOnClick.push(navigator.userActivation.isActive);
      localStorage.setItem("test:permission", ANSWER);
      return Promise.resolve(ANSWER);
    }
  }
  window.Notification = RecordingNotification;
  window.focus = () => { record.focused += 1; };

  let hidden = false;
  Object.defineProperty(document, "hidden", { configurable: true, get: () => hidden });
  const state = () => (hidden ? "hidden" : "visible");
  Object.defineProperty(document, "visibilityState", { configurable: true, get: state });
  window.__setHidden = (value) => {
    hidden = value;
    document.dispatchEvent(new Event("visibilitychange"));
  };

  const RealAudioContext = window.AudioContext;
  window.AudioContext = class extends RealAudioContext {
    constructor(...args) {
      super(...args);
      record.audioContexts += 1;
    }
  };
  const start = OscillatorNode.prototype.start;
  OscillatorNode.prototype.start = function (...args) {
    record.tones += 1;
    return start.apply(this, args);
  };
})();
"""


def open_workbench(browser: Browser, base_url: str, username: str, answer: str = "granted") -> Page:
    return sign_in(browser, base_url, username, init_script=RECORDER.replace("ANSWER", json.dumps(answer)))


def recorded(page: Page) -> dict[str, Any]:
    """What the page did: notifications (title, body, tag, closed), permission requests, sound."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => ({...window.__alerts, notes: window.__alerts.notes.map(
            (n) => ({title: n.title, body: n.body, tag: n.tag, closed: n.closed}))})"""
    )


def wait_for_notes(page: Page, count: int) -> list[dict[str, Any]]:
    page.wait_for_function("(count) => window.__alerts.notes.length >= count", arg=count)
    notes: list[dict[str, Any]] = recorded(page)["notes"]
    return notes


def turn_on(page: Page, *labels: str) -> None:
    """Open the alerts panel from its bell, tick `labels`, close it with Escape."""
    page.locator("#alerts-button").click()
    panel = page.locator("#alerts-panel")
    expect(panel).to_be_visible()
    for label in labels:
        panel.get_by_label(label).check()
    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()


def customer_writes(base_url: str, name: str, agent: str, text: str, message_id: str, *, replay: bool = False) -> None:
    """A customer's message as the ai_chatbot publishes it: one `message_id` on every channel
    (with `replay`, only on the agent's, as a server replays what another process missed)."""
    channels = [f"sse:agent:{agent}"] if replay else [f"sse:session:{name}", "sse:broadcast", f"sse:agent:{agent}"]
    for channel in channels:
        payload = {"session_name": name, "message_id": message_id, "data": {"text": text, "sender": "customer"}}
        status, body = request(
            "POST", base_url + "/api/publish", {"channel": channel, "type": "new_message", "payload": payload}
        )
        assert status == 202, body


def test_a_hidden_tab_shows_the_count_chimes_and_notifies_when_a_customer_joins_the_queue(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    page = open_workbench(browser, a.url, "cleo")
    # Nothing asked and no audio made on load: browsers allow both only on a click.
    assert recorded(page)["asked"] == 0
    assert recorded(page)["audioContexts"] == 0
    expect(page.locator("#alerts-button")).to_have_accessible_name("Alerts: off")

    turn_on(page, "Sound", "Desktop notifications")
    done = recorded(page)
    assert done["asked"] == 1 and done["askedOnClick"] == [True]
    assert done["audioContexts"] == 1
    assert done["tones"] == 1  # the sample played on turning sound on
    expect(page.locator("#alerts-button")).to_have_accessible_name("Alerts: sound and desktop notifications on")

    # While the tab is visible the page itself shows a newcomer: no sound, no notification.
    seen = unique("seen")
    escalate(a.url, seen)
    expect(page.locator(f'#queue li[data-name="{seen}"]')).to_be_visible()
    assert recorded(page)["notes"] == [] and recorded(page)["tones"] == 1

    page.evaluate("window.__setHidden(true)")
    before = int(page.locator("#queue-count").inner_text())
    name = unique("alerted")
    status, body = request(
        "POST",
        a.url + "/api/manual/escalate",
        {"session_name": name, "reason": "refund above the bot's limit", "data": {"customer": {"name": "Maria Lopez"}}},
    )
    assert status == 201, body
    expect(page).to_have_title(f"({before + 1}) Workbench · Helpdesk")
    [note] = wait_for_notes(page, 1)
    assert note["title"] == "Waiting: refund above the bot's limit"
    assert note["body"] == f"Maria Lopez ({name}) is in the queue"
    assert note["tag"] == f"helpdesk:{name}"
    page.wait_for_function("() => window.__alerts.tones === 2")

    # A burst chimes at most once (one chime per two seconds), and each customer still gets
    # their own notification.
    page.evaluate(
        """() => ["x1", "x2", "x3"].forEach((name) => document.dispatchEvent(
            new CustomEvent("workbench:queued", {detail: {name, reason: "burst"}})))"""
    )
    assert recorded(page)["tones"] in (2, 3)
    assert [n["tag"] for n in recorded(page)["notes"][1:]] == ["helpdesk:x1", "helpdesk:x2", "helpdesk:x3"]

    # Clicking the notification brings the tab forward and opens that customer's session.
    page.evaluate("() => window.__alerts.notes[0].dispatchEvent(new Event('click'))")
    expect(page.locator("#pane-title")).to_have_text("Maria Lopez")
    assert page.evaluate("location.hash") == f"#{name}"
    assert recorded(page)["focused"] == 1
    assert recorded(page)["notes"][0]["closed"]

    # Back in the tab: the notifications still on screen go.
    page.evaluate("window.__setHidden(false)")
    assert all(n["closed"] for n in recorded(page)["notes"])

    # The choice is remembered for this agent, and the permission is not asked again on load.
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#alerts-button")).to_have_accessible_name("Alerts: sound and desktop notifications on")
    assert recorded(page)["asked"] == 0 and recorded(page)["audioContexts"] == 0
    assert json.loads(page.evaluate("localStorage.getItem('alerts:cleo')")) == {"sound": True, "desktop": True}
    page.context.close()


def test_a_customer_writing_in_my_session_notifies_once_per_message(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    page = open_workbench(browser, a.url, "ana")
    name = unique("writes")
    status, body = request(
        "POST",
        a.url + "/api/manual/escalate",
        {"session_name": name, "reason": "wants a human", "data": {"customer": {"name": "Jon Park"}}},
    )
    assert status == 201, body
    accept(page, name)
    turn_on(page, "Desktop notifications")
    # Escape closed the panel, not also the session.
    expect(page.locator("#pane-head")).to_be_visible()
    expect(page.locator("#pane-title")).to_have_text("Jon Park")

    # Visible: the transcript shows it; no notification.
    first = uuid.uuid4().hex
    customer_writes(b.url, name, "ana", "Are you there?", first)
    expect(bubbles(page, "Are you there?")).to_have_count(1)
    assert recorded(page)["notes"] == []

    page.evaluate("window.__setHidden(true)")
    customer_writes(b.url, name, "ana", "Are you there?", first, replay=True)  # not news
    second, long_text = uuid.uuid4().hex, "My parcel " + "never came " * 20
    customer_writes(b.url, name, "ana", long_text, second)
    [note] = wait_for_notes(page, 1)
    assert note["title"] == "Jon Park"
    assert note["body"].startswith("My parcel never came") and note["body"].endswith("…")
    assert len(note["body"]) == 120
    assert note["tag"] == f"helpdesk:{name}"
    # The same message on its other channels, and replayed after an outage: notified once.
    customer_writes(b.url, name, "ana", long_text, second, replay=True)
    third = uuid.uuid4().hex
    customer_writes(b.url, name, "ana", "Hello?", third)
    notes = wait_for_notes(page, 2)
    assert [n["body"] for n in notes] == [note["body"], "Hello?"]
    page.context.close()


def test_a_refused_permission_turns_the_box_off_and_says_so(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    page = open_workbench(browser, a.url, "ben", answer="denied")
    assert recorded(page)["asked"] == 0
    # With the keyboard alone: the bell opens the panel on its first box; Space ticks one.
    page.locator("#alerts-button").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#alerts-sound")).to_be_focused()
    page.keyboard.press("Tab")
    box = page.locator("#alerts-panel").get_by_label("Desktop notifications")
    expect(box).to_be_focused()
    page.keyboard.press("Space")
    expect(box).not_to_be_checked()
    expect(page.locator("#alerts-note")).to_contain_text("Notifications are blocked for this site")
    assert recorded(page)["asked"] == 1 and recorded(page)["askedOnClick"] == [True]
    expect(page.locator("#alerts-button")).to_have_accessible_name("Alerts: off")
    page.keyboard.press("Escape")
    expect(page.locator("#alerts-button")).to_be_focused()

    page.evaluate("window.__setHidden(true)")
    name = unique("refused")
    escalate(a.url, name)
    expect(page.locator(f'#queue li[data-name="{name}"]')).to_have_count(1)
    assert recorded(page)["notes"] == []
    # Remembered off; on load the browser is not asked again.
    page.reload()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    assert recorded(page)["asked"] == 0
    expect(page.locator("#alerts-desktop")).not_to_be_checked()
    expect(page.locator("#alerts-note")).to_contain_text("Notifications are blocked for this site")
    page.context.close()
