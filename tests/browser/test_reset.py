"""A page that cannot be resumed gets `reset` and reloads its snapshot: nothing is lost even
when the events themselves are gone (here: the in-memory layer's history died with its process)."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.support import escalate, unique
from tests.support.procs import Daphne, base_env, manage, migrate, run_python


@pytest.fixture
def memory_env(tmp_path: Path) -> dict[str, str]:
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'reset.sqlite3'}", SSE_RETRY_MS="500", LOG_LEVEL="INFO")
    migrate(env)
    manage(env, "create_agent", "ana", "--password", PASSWORD)
    return env


@pytest.fixture
def memory_daphne(memory_env: dict[str, str], tmp_path: Path) -> Iterator[Daphne]:
    server = Daphne(memory_env, log_path=tmp_path / "memory.log").start()
    yield server
    server.stop()


def test_after_a_reset_the_workbench_reloads_its_snapshot_and_shows_what_it_never_heard_of(
    browser: Browser, memory_daphne: Daphne, memory_env: dict[str, str]
) -> None:
    page = sign_in(browser, memory_daphne.url, "ana")
    before = unique()
    escalate(memory_daphne.url, before)
    expect(page.locator(f'#queue li[data-name="{before}"]')).to_be_visible()

    memory_daphne.stop(signal.SIGKILL)
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting")
    # Escalated in another process while the server is down: in the database, but its events
    # went to that process's own in-memory layer and reached no one.
    unheard = unique()
    run_python(
        "from dashboard import services\n"
        "from realtime.auth import Principal\n"
        f"services.escalate({unheard!r}, by=Principal('service', 'ai_chatbot'), reason='escalated while down')\n",
        memory_env,
    )
    memory_daphne.start()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=8000)
    expect(page.locator(f'#queue li[data-name="{unheard}"]')).to_contain_text("escalated while down")
    expect(page.locator(f'#queue li[data-name="{before}"]')).to_be_visible()
    assert "reset for a resume" in memory_daphne.log_text()
    page.context.close()
