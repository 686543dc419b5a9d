"""axe-core (from npm, pinned in package-lock.json) finds no serious or critical accessibility
violation on any page: sign-in, the workbench (empty and with a session open), the dashboard
and a session's page."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_no_page_has_a_serious_or_critical_accessibility_violation(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    # The checker is injected as a script of the test's own: the page's policy would refuse it.
    page = sign_in(browser, a.url, "sam", bypass_csp=True)
    problems: dict[str, list[dict[str, Any]]] = {}
    problems["workbench"] = serious_violations(page)
    name = unique("a11y")
    escalate(a.url, name)
    bot_says(a.url, name, "I need help with my order")
    accept(page, name)
    problems["workbench, a session open"] = serious_violations(page)
    page.goto(f"{a.url}/dashboard/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    problems["dashboard"] = serious_violations(page)
    page.goto(f"{a.url}/dashboard/sessions/{name}/")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    problems["session page"] = serious_violations(page)
    page.context.close()
    login = browser.new_page(bypass_csp=True)
    login.goto(f"{a.url}/accounts/login/?why=expired&next=/workbench/")
    problems["sign-in"] = serious_violations(login)
    login.close()
    assert {where: found for where, found in problems.items() if found} == {}
