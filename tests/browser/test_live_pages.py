"""Two agents and a supervisor, each in their own browser context, on two daphne processes
sharing one Redis; the chatbot simulator runs as a third process."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from playwright.sync_api import Browser, Page, Route, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.support import ChatbotProcess, escalate, unique
from tests.support.procs import Daphne, login, wait_until


@dataclass
class Floor:
    a: Daphne
    b: Daphne
    ana: Page  # agent, workbench on A
    ben: Page  # agent, workbench on B
    sam: Page  # supervisor, dashboard on B


@pytest.fixture(scope="module")
def floor(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str], chatbot: ChatbotProcess
) -> Iterator[Floor]:
    a, b = daphne_pair
    pages = [
        sign_in(browser, a.url, "ana"),
        sign_in(browser, b.url, "ben"),
        sign_in(browser, b.url, "sam", "/dashboard/"),
    ]
    yield Floor(a, b, *pages)
    for page in pages:
        page.context.close()


def queue_row(page: Page, name: str):  # type: ignore[no-untyped-def]
    return page.locator(f'#queue li[data-name="{name}"]')


def remaining(deadline: float) -> float:
    """Milliseconds left until `deadline` (time.monotonic), for Playwright's timeouts."""
    return max(1.0, (deadline - time.monotonic()) * 1000)


def test_an_escalation_appears_in_both_workbenches_and_on_the_dashboard_within_a_second(floor: Floor) -> None:
    name = unique()
    started = time.monotonic()
    escalate(floor.b.url, name, "refund above the bot's limit")
    deadline = started + 1.0
    expect(queue_row(floor.ana, name)).to_be_visible(timeout=remaining(deadline))
    expect(queue_row(floor.ben, name)).to_be_visible(timeout=remaining(deadline))
    expect(floor.sam.locator(f'#sessions tr[data-name="{name}"]')).to_be_visible(timeout=remaining(deadline))
    assert time.monotonic() - started < 1.0
    expect(queue_row(floor.ana, name).locator(".row-meta")).to_have_text("refund above the bot's limit")
    expect(queue_row(floor.ana, name).locator(".timer")).to_have_text("0:00")


def test_when_one_agent_accepts_the_row_disappears_from_the_other_workbench(floor: Floor) -> None:
    name = unique()
    escalate(floor.a.url, name)
    expect(queue_row(floor.ben, name)).to_be_visible()
    queue_row(floor.ana, name).get_by_role("button", name=f"Accept {name}").click()
    expect(queue_row(floor.ben, name)).to_have_count(0, timeout=1000)
    expect(queue_row(floor.ana, name)).to_have_count(0)
    expect(floor.ana.locator(f'#mine li[data-name="{name}"]')).to_be_visible()
    expect(floor.ana.locator("#pane-title")).to_have_text(name)
    expect(floor.ana.locator("#pane-status")).to_have_text("With an agent")
    expect(floor.sam.locator(f'#sessions tr[data-name="{name}"]')).to_contain_text("ana")


def test_an_accept_that_loses_the_race_says_taken_by_someone_else_and_the_row_goes(floor: Floor) -> None:
    name = unique()
    escalate(floor.a.url, name)
    expect(queue_row(floor.ben, name)).to_be_visible()
    cleo = login(floor.a.url, "cleo", PASSWORD)

    def cleo_first(route: Route) -> None:
        # Another agent takes the session just before Ben's request reaches the server.
        from tests.support.procs import cookie_header, request

        status, body = request(
            "POST",
            f"{floor.a.url}/api/sessions/{name}/accept",
            token=None,
            headers={"Cookie": cookie_header(cleo), "X-CSRFToken": cleo["csrftoken"]},
        )
        assert status == 200, body
        route.continue_()

    floor.ben.route(f"**/api/sessions/{name}/accept", cleo_first)
    with floor.ben.expect_response(f"**/api/sessions/{name}/accept") as answer:
        queue_row(floor.ben, name).get_by_role("button", name=f"Accept {name}").click()
    assert answer.value.status == 409
    expect(floor.ben.locator("#toasts")).to_contain_text(f"{name} was taken by someone else")
    expect(queue_row(floor.ben, name)).to_have_count(0)
    expect(floor.ben.locator(f'#mine li[data-name="{name}"]')).to_have_count(0)


def test_an_agent_message_reaches_the_simulator_and_the_customer_answer_appears_in_the_transcript(
    floor: Floor, chatbot: ChatbotProcess
) -> None:
    name = unique()
    escalate(floor.b.url, name)
    queue_row(floor.ana, name).get_by_role("button", name=f"Accept {name}").click()
    expect(floor.ana.locator("#pane-title")).to_have_text(name)
    composer = floor.ana.locator("#composer-text")
    expect(composer).to_be_focused()
    composer.fill("Hi, I'm Ana. What is your order number?")
    composer.press("Enter")
    transcript = floor.ana.locator("#transcript")
    expect(transcript.locator(".msg-agent .msg-body")).to_have_text(["Hi, I'm Ana. What is your order number?"])
    wait_until(
        lambda: f"agent ana wrote in {name} (message " in chatbot.log(),
        timeout=5,
        what="the message in the simulator's log",
    )
    expect(transcript.locator(".msg-customer .msg-body")).to_have_count(1, timeout=5000)
    expect(transcript.locator(".msg-customer .msg-meta .who")).to_have_text(["Customer"])
    expect(composer).to_have_value("")


def test_the_supervisor_sees_the_agents_online_and_the_events_in_the_feed(floor: Floor) -> None:
    # Both have a workbench open (the list also holds every other available account of the
    # shared test database, offline, after them).
    for agent in ("ana", "ben"):
        row = floor.sam.locator(f'#agents li[data-agent="{agent}"]')
        expect(row).to_have_count(1)
        expect(row).to_have_attribute("data-workbench", "open")
    name = unique()
    escalate(floor.a.url, name, "billing dispute")
    feed = floor.sam.locator("#feed")
    expect(feed.locator('li[data-type="transfer_request"]', has_text=name)).to_contain_text("billing dispute")
    queue_row(floor.ben, name).get_by_role("button", name=f"Accept {name}").click()
    expect(feed.locator('li[data-type="agent_joined"]', has_text=name)).to_contain_text("ben joined")
    # The filter hides a type and brings it back.
    floor.sam.locator('#filters button[data-type="agent_joined"]').click()
    expect(feed.locator('li[data-type="agent_joined"]')).to_have_count(0)
    floor.sam.locator('#filters button[data-type="agent_joined"]').click()
    expect(feed.locator('li[data-type="agent_joined"]', has_text=name)).to_have_count(1)
    link = feed.locator('li[data-type="agent_joined"]', has_text=name).get_by_role("link", name=name)
    assert link.get_attribute("href") == f"/dashboard/sessions/{name}/"
