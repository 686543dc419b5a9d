"""`make run`'s story: no Redis, SIMULATE_CHATBOT=true, one daphne process. A newcomer who
signs in sees the queue filling up within seconds, and the simulated customer answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.support.procs import Daphne, base_env, manage, migrate


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Daphne]:
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}", SIMULATE_CHATBOT="true")
    migrate(env)
    manage(env, "create_agent", "newcomer", "--password", PASSWORD)
    server = Daphne(env, log_path=tmp_path / "demo.log").start()
    yield server
    server.stop()


def test_a_newcomer_sees_the_queue_fill_and_the_simulated_customer_answers(
    browser: Browser, demo_server: Daphne
) -> None:
    page = sign_in(browser, demo_server.url, "newcomer")
    rows = page.locator("#queue li")
    # The simulator opens a customer every few seconds and hands over three in four at random:
    # two or three resolved by the bot in a row happen, so the first escalation may take a while.
    expect(rows.first).to_be_visible(timeout=45_000)
    assert "chatbot simulator is running" in demo_server.log_text()
    name = rows.first.get_attribute("data-name")
    assert name is not None and name.startswith("cust_")
    rows.first.get_by_role("button", name=f"Accept {name}").click()
    transcript = page.locator("#transcript")
    # The conversation so far: the bot's lines and the customer's, told apart.
    expect(transcript.locator(".msg-bot .msg-meta .who").first).to_have_text("Bot")
    expect(transcript.locator(".msg-customer").first).to_be_visible()
    expect(transcript.locator(".sys", has_text="The bot asked for an agent")).to_have_count(1)
    customer_lines = transcript.locator(".msg-customer").count()
    page.locator("#composer-text").fill("Hello, I'm here to help.")
    page.locator("#composer-text").press("Enter")
    expect(transcript.locator(".msg-customer")).to_have_count(customer_lines + 1, timeout=8000)
    page.context.close()
