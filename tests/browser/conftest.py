"""Browser tests: Playwright driving Debian's Chromium against real daphne processes.

`browser` is one Chromium for the whole run; each person gets their own context (cookies),
as two agents and a supervisor on three machines would.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.browser.support import ChatbotProcess
from tests.support.procs import Daphne, manage

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-for-browser-tests"

# What Chromium reported as refused by the pages' Content-Security-Policy, in any page a test
# opened with `sign_in`: the pages must need nothing the policy forbids.
CSP_VIOLATIONS: list[str] = []


@pytest.fixture(autouse=True)
def no_content_security_policy_violations() -> Iterator[None]:
    CSP_VIOLATIONS.clear()
    yield
    assert CSP_VIOLATIONS == [], "the Content-Security-Policy refused something a page needs"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if shutil.which(CHROMIUM) is None and not Path(CHROMIUM).exists():
        raise RuntimeError("Debian's chromium is needed for the browser tests: apt-get install -y chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def sign_in(
    browser: Browser,
    base_url: str,
    username: str,
    path: str = "/workbench/",
    *,
    width: int = 1280,
    init_script: str | None = None,
    live: bool = True,
    **context: object,
) -> Page:
    """A new browser context for `username`, signed in through the login form, on `path`;
    with `live`, once its stream is open. `init_script` runs in every page before its own."""
    ctx = browser.new_context(viewport={"width": width, "height": 800}, **context)  # type: ignore[arg-type]
    ctx.set_default_timeout(10_000)
    if init_script is not None:
        ctx.add_init_script(init_script)
    page = ctx.new_page()
    page.on(
        "console",
        lambda message: CSP_VIOLATIONS.append(message.text) if "Content Security Policy" in message.text else None,
    )
    page.goto(f"{base_url}/accounts/login/?next={path}")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}{path}*")
    if live:
        page.wait_for_selector('#conn[data-state="live"]')
    return page


@pytest.fixture(scope="session")
def browser_accounts(redis_env: dict[str, str]) -> dict[str, str]:
    """The people of the browser tests, in the shared test database."""
    people = {"ana": "agent", "ben": "agent", "cleo": "agent", "sam": "supervisor"}
    for username, role in people.items():
        manage(
            redis_env, "create_agent", username, "--password", PASSWORD, *(["--supervisor"] if role != "agent" else [])
        )
    return people


@pytest.fixture(scope="module")
def chatbot(redis_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ChatbotProcess]:
    """`manage.py simulate_chatbot` as its own process on the shared Redis, opening no sessions
    of its own: it plays the customer of the sessions the tests escalate."""
    log = tmp_path_factory.mktemp("chatbot") / "chatbot.log"
    process = ChatbotProcess(redis_env, log, "--sessions", "0", "--speed", "0.3").start()
    yield process
    process.stop()


@pytest.fixture
def own_daphne(redis_env: dict[str, str], tmp_path: Path) -> Iterator[Daphne]:
    """A daphne process of this test's own (it may be killed and restarted)."""
    server = Daphne({**redis_env, "SSE_RETRY_MS": "500"}, log_path=tmp_path / "own.log").start()
    yield server
    server.stop()
