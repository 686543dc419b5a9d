"""Killing the daphne process a page is connected to: the page says "reconnecting", and once
the process is back it shows every event it missed, each once, in order."""

from __future__ import annotations

import signal

from playwright.sync_api import Browser, expect

from tests.browser.conftest import sign_in
from tests.browser.support import bot_says, escalate, unique
from tests.support.procs import Daphne


def test_a_page_whose_daphne_restarts_shows_reconnecting_then_every_missed_event(
    browser: Browser, own_daphne: Daphne, redis_env: dict[str, str], browser_accounts: dict[str, str], tmp_path
) -> None:
    publisher = Daphne(redis_env, log_path=tmp_path / "publisher.log").start()
    try:
        agent = sign_in(browser, own_daphne.url, "cleo")
        supervisor = sign_in(browser, own_daphne.url, "sam", "/dashboard/")
        mine = unique()
        escalate(publisher.url, mine)
        agent.locator(f'#queue li[data-name="{mine}"]').get_by_role("button", name=f"Accept {mine}").click()
        expect(agent.locator("#pane-status")).to_have_text("With an agent")
        bot_says(publisher.url, mine, "before the restart", agent="cleo")
        messages = agent.locator("#transcript .msg-customer .msg-body")
        expect(messages).to_have_text(["before the restart"])

        own_daphne.stop(signal.SIGKILL)
        for page in (agent, supervisor):
            expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=3000)
            expect(page.locator("#conn")).to_have_text("Reconnecting…")

        missed = [unique(), unique()]
        for name in missed:
            escalate(publisher.url, name, "missed while down")
        for n in range(1, 4):
            bot_says(publisher.url, mine, f"missed {n}", agent="cleo")

        own_daphne.start()
        for page in (agent, supervisor):
            expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=8000)
        for name in missed:
            expect(agent.locator(f'#queue li[data-name="{name}"]')).to_be_visible()
            expect(supervisor.locator(f'#sessions tr[data-name="{name}"]')).to_be_visible()
            expect(supervisor.locator('#feed li[data-type="transfer_request"]', has_text=name)).to_have_count(1)
        expect(messages).to_have_text(["before the restart", "missed 1", "missed 2", "missed 3"])
        # And the stream is live again, not only caught up.
        bot_says(publisher.url, mine, "after the restart", agent="cleo")
        expect(messages).to_have_text(["before the restart", "missed 1", "missed 2", "missed 3", "after the restart"])
        agent.context.close()
        supervisor.context.close()
    finally:
        publisher.stop()
