"""Outages over real processes: a private redis-server that the tests stop and start again, two
daphne processes on one SQLite file, and Chromium.

- While a server process has lost Redis, each of its pages says so in a banner, and the banner
  goes once Redis is back.
- A message an agent sends on one process while Redis is down shows at once on the agent's own
  page, and exactly once on a supervisor's page on the other process after Redis returns.
- On `make run`'s set-up (the in-memory layer, one daphne) a transcript outlives a restart of
  the server: the database is the record, not the bus's history.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.page_parts import PAUSED, PAUSED_REST, accept, bubbles, bus_banner, transcript_lines, write
from tests.browser.support import bot_says, escalate, unique
from tests.support.procs import Daphne, RedisServer, base_env, manage, migrate

# The server's promises: `bus_status` degraded within 2 s of losing Redis, ok within 5 s of its
# return. The tests allow some more, for a loaded machine and the browser's own work.
DEGRADED_WITHIN_MS = 5_000
RECOVERED_WITHIN_MS = 10_000
# After recovery, how long to go on watching that no second copy of a message arrives (a replay
# from history, a stored event published late).
QUIET_SECONDS = 3.0


@pytest.fixture
def outage(
    redis_env: dict[str, str], browser_accounts: dict[str, str], tmp_path: Path
) -> Iterator[tuple[RedisServer, Daphne, Daphne]]:
    """A redis-server of this test's own (never the machine's shared one) and two daphne
    processes on it, sharing the suite's SQLite file (and so its accounts)."""
    redis = RedisServer().start()
    env = {**redis_env, "REDIS_URL": redis.url, "SSE_RETRY_MS": "500"}
    servers: list[Daphne] = []
    try:
        servers.append(Daphne(env, log_path=tmp_path / "a.log").start())
        servers.append(Daphne(env, log_path=tmp_path / "b.log").start())
        yield redis, servers[0], servers[1]
    finally:
        for label, server in zip("ab", servers, strict=False):
            server.stop()
            # Shown by pytest only when the test failed: what each process said.
            print(f"--- daphne {label} ---\n{server.log_text()[-6000:]}")
        redis.stop()


def expect_banner(page: Page, timeout: float) -> None:
    expect(bus_banner(page)).to_be_visible(timeout=timeout)
    expect(bus_banner(page)).to_have_text(f"{PAUSED} {PAUSED_REST}")
    # Apart from the connection: the page is still connected to its own server.
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#conn-banner")).to_be_hidden()


def remaining_ms(deadline: float) -> float:
    return max(1.0, (deadline - time.monotonic()) * 1000)


def test_every_page_shows_a_banner_while_its_server_has_lost_redis_and_drops_it_when_redis_is_back(
    browser: Browser, outage: tuple[RedisServer, Daphne, Daphne]
) -> None:
    redis, a, b = outage
    name = unique()
    escalate(a.url, name)
    pages = {
        "workbench on A": sign_in(browser, a.url, "ana"),
        "dashboard on B": sign_in(browser, b.url, "sam", "/dashboard/"),
        "session page on A": sign_in(browser, a.url, "sam", f"/dashboard/sessions/{name}/"),
    }
    for page in pages.values():
        expect(bus_banner(page)).to_have_count(0)

    redis.stop()
    deadline = time.monotonic() + DEGRADED_WITHIN_MS / 1000
    for page in pages.values():
        expect_banner(page, remaining_ms(deadline))
        # Read out politely, as a status.
        region = page.get_by_role("status").filter(has_text=PAUSED)
        expect(region).to_have_attribute("aria-live", "polite")

    # A page opened on a degraded process is told at once, right after its stream opens.
    reopened = pages["session page on A"]
    reopened.reload()
    expect(reopened.locator("#conn")).to_have_attribute("data-state", "live")
    expect_banner(reopened, 3000)

    redis.start()
    deadline = time.monotonic() + RECOVERED_WITHIN_MS / 1000
    for page in pages.values():
        expect(bus_banner(page)).to_have_count(0, timeout=remaining_ms(deadline))
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    # And the pages are live across processes again.
    again = unique()
    escalate(b.url, again)
    expect(pages["workbench on A"].locator(f'#queue li[data-name="{again}"]')).to_be_visible()
    for page in pages.values():
        page.context.close()


def test_a_message_sent_while_redis_is_down_shows_at_once_for_the_agent_and_once_on_the_other_process_after(
    browser: Browser, outage: tuple[RedisServer, Daphne, Daphne]
) -> None:
    redis, a, b = outage
    name = unique()
    escalate(a.url, name)
    agent = sign_in(browser, a.url, "ana")
    accept(agent, name)
    supervisor = sign_in(browser, b.url, "sam", f"/dashboard/sessions/{name}/")
    write(agent, "before the outage")
    expect(bubbles(supervisor, "before the outage")).to_have_count(1)

    redis.stop()
    expect_banner(agent, DEGRADED_WITHIN_MS)
    expect_banner(supervisor, DEGRADED_WITHIN_MS)
    text = f"sent while Redis is down {uuid.uuid4().hex[:6]}"
    with agent.expect_response(f"**/api/sessions/{name}/messages") as answer:
        write(agent, text)
    assert answer.value.status == 200, answer.value.text()
    # The agent's own page: at once, once, confirmed (not left looking "sending").
    expect(bubbles(agent, text)).to_have_count(1, timeout=1000)
    expect(agent.locator("#transcript .msg.pending")).to_have_count(0)
    expect(agent.locator("#toasts")).not_to_contain_text("Not sent")

    redis.start()
    deadline = time.monotonic() + RECOVERED_WITHIN_MS / 1000
    expect(bubbles(supervisor, text)).to_have_count(1, timeout=remaining_ms(deadline))
    for page in (agent, supervisor):
        expect(bus_banner(page)).to_have_count(0, timeout=remaining_ms(deadline))
    time.sleep(QUIET_SECONDS)
    for who, page in (("agent on A", agent), ("supervisor on B", supervisor)):
        assert bubbles(page, text).count() == 1, f"{who}: {transcript_lines(page)}"
        assert bubbles(page, "before the outage").count() == 1, f"{who}: {transcript_lines(page)}"

    # Live again, and the record agrees: a reload shows each message once.
    write(agent, "after the outage")
    expect(bubbles(supervisor, "after the outage")).to_have_count(1)
    supervisor.reload()
    expect(supervisor.locator("#conn")).to_have_attribute("data-state", "live")
    for line in ("before the outage", text, "after the outage"):
        expect(bubbles(supervisor, line)).to_have_count(1)
    assert [line for line in transcript_lines(supervisor) if line.startswith("msg-agent")] == [
        "msg-agent: before the outage",
        f"msg-agent: {text}",
        "msg-agent: after the outage",
    ]
    agent.context.close()
    supervisor.context.close()


# --- make run: the in-memory layer, one process ------------------------------------------------


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Daphne]:
    """What `make run` users get: no REDIS_URL, one daphne, a SQLite file (no simulator here: the
    test plays the bot through the service token)."""
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", SSE_RETRY_MS="500")
    migrate(env)
    manage(env, "create_agent", "ana", "--password", PASSWORD)
    manage(env, "create_agent", "sam", "--password", PASSWORD, "--supervisor")
    server = Daphne(env, log_path=tmp_path / "daphne.log").start()
    yield server
    server.stop()


def test_a_transcript_written_before_the_server_restarts_is_there_after_the_restart_and_a_reload(
    browser: Browser, make_run: Daphne
) -> None:
    server = make_run
    name = unique()
    escalate(server.url, name, "wants a person")
    bot_says(server.url, name, "My parcel never came.")
    agent = sign_in(browser, server.url, "ana")
    agent.locator(f'#queue li[data-name="{name}"] .row-title').click()
    expect(bubbles(agent, "My parcel never came.")).to_have_count(1)
    accept(agent, name)
    write(agent, "I'm on it.")
    expect(agent.locator("#transcript .msg.pending")).to_have_count(0)
    bot_says(server.url, name, "Thank you!", agent="ana")
    expect(bubbles(agent, "Thank you!")).to_have_count(1)
    before = transcript_lines(agent)
    assert before == [
        "sys: The bot asked for an agent: wants a person",
        "msg-customer: My parcel never came.",
        "sys: You joined",
        "msg-agent: I'm on it.",
        "msg-customer: Thank you!",
    ], before

    server.stop()
    expect(agent.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    server.start()
    # The page comes back by itself; its old ids mean nothing to the new process (reset), so it
    # reloads its snapshot: the transcript must come from the record.
    expect(agent.locator("#conn")).to_have_attribute("data-state", "live", timeout=10_000)
    expect(agent.locator("#transcript > *")).to_have_count(len(before), timeout=5000)
    assert transcript_lines(agent) == before

    agent.reload()
    expect(agent.locator("#conn")).to_have_attribute("data-state", "live")
    expect(agent.locator("#pane-title")).to_have_text(name)
    expect(agent.locator("#transcript > *")).to_have_count(len(before))
    assert transcript_lines(agent) == before

    # A supervisor who opens the session's page only now reads the same conversation.
    supervisor = sign_in(browser, server.url, "sam", f"/dashboard/sessions/{name}/")
    expect(supervisor.locator("#transcript .msg")).to_have_count(3)
    assert [line for line in transcript_lines(supervisor) if not line.startswith("sys")] == [
        "msg-customer: My parcel never came.",
        "msg-agent: I'm on it.",
        "msg-customer: Thank you!",
    ]
    # And it is live: a new line reaches both pages, once.
    bot_says(server.url, name, "Is it on its way?", agent="ana")
    for page in (agent, supervisor):
        expect(bubbles(page, "Is it on its way?")).to_have_count(1)
    agent.context.close()
    supervisor.context.close()
