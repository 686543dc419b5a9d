"""What the workbench shows from the server's record: unread counts that survive a reload, SLA
stages for the queue and for replies (also counted on the dashboard), and the customer panel."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.page_parts import accept, write
from tests.browser.support import bot_says, escalate, unique
from tests.support.procs import Daphne, request, wait_until
from tests.support.sessions import login


def unread_on_server(base_url: str, username: str, name: str) -> Any:
    agent = login(base_url, username, PASSWORD)
    status, body = agent.get(f"{base_url}/api/sessions/{name}")
    assert status == 200, body
    return body["unread"]


def test_unread_counts_survive_a_reload_and_opening_a_session_reads_it(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    ana = sign_in(browser, a.url, "ana")
    quiet, busy = unique("quiet"), unique("busy")
    escalate(a.url, quiet)
    escalate(a.url, busy)
    accept(ana, busy)
    accept(ana, quiet)  # the pane shows `quiet`; `busy` is in My sessions

    bot_says(b.url, busy, "Are you still there?", agent="ana")  # through the other process
    bot_says(b.url, busy, "Hello?", agent="ana")
    badge = ana.locator(f'#mine li[data-name="{busy}"] .unread')
    expect(badge).to_have_text("2")
    expect(ana.locator(f'#mine li[data-name="{busy}"] .row-preview')).to_have_text("Hello?")
    wait_until(lambda: unread_on_server(a.url, "ana", busy) == 2, timeout=10, what="the record to count both")

    ana.reload()
    expect(ana.locator(f'#mine li[data-name="{busy}"] .unread')).to_have_text("2")

    ana.locator(f'#mine li[data-name="{busy}"] .row-title').click()
    expect(ana.locator(f'#mine li[data-name="{busy}"] .unread')).to_have_count(0)
    wait_until(lambda: unread_on_server(a.url, "ana", busy) == 0, timeout=10, what="the read marker")
    ana.goto(f"{a.url}/workbench/")  # no session open: nothing marks it read on load
    ana.wait_for_selector('#conn[data-state="live"]')
    expect(ana.locator(f'#mine li[data-name="{busy}"]')).to_be_visible()
    expect(ana.locator(f'#mine li[data-name="{busy}"] .unread')).to_have_count(0)
    ana.context.close()


@pytest.fixture
def short_sla(redis_env: dict[str, str], tmp_path: Path) -> Iterator[Daphne]:
    """A daphne whose SLA stages come after 2 s (warning) and 4 s (overdue)."""
    stages = {"QUEUE_SLA_SECONDS": "2", "QUEUE_OVERDUE_SECONDS": "4", "REPLY_SLA_SECONDS": "2"}
    server = Daphne({**redis_env, **stages, "REPLY_OVERDUE_SECONDS": "4"}, log_path=tmp_path / "sla.log").start()
    yield server
    server.stop()


def test_queue_and_reply_waits_turn_warning_then_overdue_and_the_dashboard_counts_them(
    browser: Browser, short_sla: Daphne, browser_accounts: dict[str, str]
) -> None:
    ana = sign_in(browser, short_sla.url, "ana")
    sam = sign_in(browser, short_sla.url, "sam", path="/dashboard/")
    waiting, talking = unique("waiting"), unique("talking")
    escalate(short_sla.url, waiting)
    escalate(short_sla.url, talking)
    accept(ana, talking)

    queue_timer = ana.locator(f'#queue li[data-name="{waiting}"] .timer')
    reply_timer = ana.locator(f'#mine li[data-name="{talking}"] .reply-timer')
    expect(queue_timer).to_have_class("timer sla-warning", timeout=4000)
    expect(reply_timer).to_have_class("timer reply-timer sla-warning", timeout=4000)
    expect(queue_timer).to_have_class("timer sla-overdue", timeout=4000)
    expect(reply_timer).to_have_class("timer reply-timer sla-overdue", timeout=4000)
    expect(queue_timer).to_have_attribute("title", "Overdue: waiting longer than 4 s")

    # The dashboard shows both on the session's row and counts them (the shared test database
    # holds other sessions too, whose clocks move meanwhile: only "at least" is certain there).
    row = sam.locator(f'#sessions tr[data-name="{talking}"]')
    expect(row.locator('.timer[data-kind="reply"]')).to_have_class("timer num sla-overdue")
    expect(sam.locator(f'#sessions tr[data-name="{waiting}"] .timer')).to_have_class("timer num sla-overdue")
    expect(sam.locator("#stat-queue-card")).to_have_class("stat overdue")
    expect(sam.locator("#stat-reply-card")).to_have_class("stat overdue")
    assert int(sam.locator("#stat-queue-overdue").inner_text()) >= 1
    assert int(sam.locator("#stat-reply-overdue").inner_text()) >= 1

    # The agent answers: the reply clock stops, here and on the dashboard (the answer is on the
    # broadcast, so at once, not at the next re-read of the clocks).
    write(ana, "Hello, I'm Ana. How can I help?")
    expect(reply_timer).to_have_count(0)
    expect(row.locator('.timer[data-kind="reply"]')).to_have_count(0, timeout=3000)
    ana.context.close()
    sam.context.close()


def test_the_customer_panel_shows_who_it_is_and_their_earlier_sessions(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    customer = {"id": unique("c"), "name": "Grace Okafor", "email": "grace@example.com", "plan": "Business"}
    earlier, now = unique("earlier"), unique("now")
    for name in (earlier, now):
        status, body = request(
            "POST",
            a.url + "/api/manual/escalate",
            {"session_name": name, "reason": "billing", "data": {"customer": customer}},
        )
        assert status == 201, body
        if name == earlier:
            assert request("POST", f"{a.url}/api/sessions/{earlier}/close", {"note": "card updated"})[0] == 200

    ana = sign_in(browser, a.url, "ana")
    row = ana.locator(f'#queue li[data-name="{now}"]')
    expect(row.locator(".row-title")).to_contain_text("Grace Okafor")
    accept(ana, now)

    expect(ana.locator("#pane-title")).to_have_text("Grace Okafor")
    panel = ana.locator("#customer-panel")
    expect(panel.locator(".customer-name")).to_have_text("Grace Okafor")
    expect(panel.locator(".customer-facts")).to_contain_text("grace@example.com")
    expect(panel.locator(".customer-facts")).to_contain_text("Business")
    expect(panel.locator(".customer-history li")).to_have_count(1)
    expect(panel.locator(".customer-history li")).to_contain_text("card updated")
    expect(ana.locator(f'#mine li[data-name="{now}"] .row-title')).to_contain_text("Grace Okafor")

    # A customer the bot did not name: the session's name, and the panel says so.
    plain = unique("plain")
    escalate(a.url, plain)
    ana.locator(f'#queue li[data-name="{plain}"] .row-title').click()
    expect(ana.locator("#pane-title")).to_have_text(plain)
    expect(panel).to_contain_text("The bot did not say who this is.")
    expect(panel).not_to_contain_text("null")
    expect(panel.locator(".customer-history")).to_have_count(0)

    ana.locator(f'#mine li[data-name="{now}"] .row-title').click()
    panel.locator(f'.customer-history a:text("{earlier}")').click()
    ana.wait_for_url(f"**/dashboard/sessions/{earlier}/")
    expect(ana.locator("#facts")).to_contain_text("Customer: Grace Okafor")
    ana.context.close()
