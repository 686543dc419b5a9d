"""axe-core (from npm, pinned in package-lock.json) finds no serious or critical accessibility
violation on any page, in a wide window and a narrow one (420 px): sign-in, the workbench
(empty, each of its narrow views, with a session open, the "?" shortcuts), the dashboard (also
as an agent sees it), a session's page, the history, and the admin (its index, the sessions,
a session, the people)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import sign_in
from tests.browser.page_parts import accept
from tests.browser.support import bot_says, escalate, unique
from tests.support.procs import ROOT, Daphne

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def serious_violations(page: Page) -> list[dict[str, Any]]:
    if not AXE.exists():
        raise RuntimeError(f"{AXE.relative_to(ROOT)} is missing: run `npm ci` (make test does)")
    page.add_script_tag(content=Path(AXE).read_text())
    found: list[dict[str, Any]] = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
            .filter((v) => v.impact === "serious" || v.impact === "critical")
            .map((v) => ({id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" "))}))"""
    )
    return found


@pytest.mark.parametrize("width", [1280, 420])
def test_no_page_has_a_serious_or_critical_accessibility_violation(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str], width: int
) -> None:
    a, _ = daphne_pair
    problems: dict[str, list[dict[str, Any]]] = {}
    # The checker is injected as a script of the test's own: the page's policy would refuse it.
    page = sign_in(browser, a.url, "sam", width=width, bypass_csp=True)

    def check(where: str) -> None:
        problems[where] = serious_violations(page)

    def visit(where: str, path: str, live: bool = True) -> None:
        page.goto(f"{a.url}{path}")
        if live:
            expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        check(where)

    check("workbench")
    # A page's heading also while no session is open (axe counts its absence as moderate only).
    expect(page.get_by_role("heading", level=1)).to_have_text(["Workbench"])
    if width < 700:  # one view at a time: each is checked while it shows
        page.get_by_role("tab", name="Mine").click()
        check("workbench, my sessions")
        page.get_by_role("tab", name="Chat").click()
        check("workbench, the empty chat")
        page.get_by_role("tab", name="Queue").click()
    name = unique("a11y")
    escalate(a.url, name)
    bot_says(a.url, name, "I need help with my order")
    accept(page, name)
    check("workbench, a session open")
    page.keyboard.press("Escape")  # from the reply box to the transcript, where "?" is no text
    page.keyboard.press("?")
    expect(page.get_by_role("dialog", name="Keyboard shortcuts")).to_be_visible()
    check("workbench, the shortcuts")
    page.keyboard.press("Escape")

    visit("dashboard", "/dashboard/")
    visit("session page", f"/dashboard/sessions/{name}/")
    visit("history", "/history/", live=False)
    visit("admin", "/admin/", live=False)
    visit("admin, the sessions", f"/admin/dashboard/chatsession/?q={name}", live=False)
    page.locator(f'#result_list a:text("{name}")').click()
    expect(page.locator("#session-timeline")).to_be_visible()
    check("admin, a session")
    visit("admin, the people", "/admin/auth/user/", live=False)
    page.context.close()

    agent = sign_in(browser, a.url, "ana", width=width, bypass_csp=True)
    agent.goto(f"{a.url}/dashboard/")
    expect(agent.get_by_role("heading", name="This page is for supervisors")).to_be_visible()
    problems["dashboard, to an agent"] = serious_violations(agent)
    agent.context.close()

    login = browser.new_page(bypass_csp=True, viewport={"width": width, "height": 800})
    login.goto(f"{a.url}/accounts/login/?why=expired&next=/workbench/")
    problems["sign-in"] = serious_violations(login)
    login.close()
    assert {where: found for where, found in problems.items() if found} == {}
