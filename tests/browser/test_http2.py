"""Chromium through the shipped nginx config, over HTTPS and HTTP/2 (docs/deploy/nginx/nginx.conf).

Over HTTP/1.1 a browser opens at most six connections to a host, so a seventh stream of its
tabs waits for a free one. Over HTTP/2 every stream of every tab rides one connection. Here:
10 workbench tabs of one agent, each holding a stream of its own (Web Locks taken away, as in
a browser without them), all live at once over one HTTP/2 connection; and 10 tabs of another
agent on https, where the tabs share one stream (static/js/live.js: Web Locks need a secure
context), all live too. An escalation reaches all 20.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.browser.conftest import CSP_VIOLATIONS, PASSWORD, sign_in
from tests.browser.support import unique
from tests.support.deploy import Deployment, deployment, https
from tests.support.procs import SERVICE_TOKEN, manage, wait_until

TABS = 10
# What a browser without Web Locks looks like to live.js: every tab keeps a stream of its own.
NO_WEB_LOCKS = "Object.defineProperty(navigator, 'locks', { value: undefined, configurable: true });"
PROTOCOL = "() => performance.getEntriesByType('navigation')[0].nextHopProtocol"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    # Ten streams of one agent: the per-person cap (ten) plus room for a reconnect.
    with deployment(tmp_path_factory.mktemp("http2"), SSE_MAX_STREAMS_PER_USER="20") as running:
        for username in ("hana", "hugo"):
            manage(running.env, "create_agent", username, "--password", PASSWORD)
        yield running


def escalate(site: Deployment, name: str) -> None:
    """The ai_chatbot hands a session over, through nginx like every service."""
    body = json.dumps({"session_name": name, "reason": "asked for a human"}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {SERVICE_TOKEN}"}
    answer = https(site.port, "POST", "/api/manual/escalate", body, headers)
    assert answer.status == 201, answer.text[:300]


def open_tabs(browser: Browser, site: Deployment, username: str, init_script: str | None = None) -> list[Page]:
    first = sign_in(browser, site.url, username, ignore_https_errors=True, init_script=init_script)
    context: BrowserContext = first.context
    pages = [first]
    for _ in range(TABS - 1):
        page = context.new_page()
        page.on(
            "console",
            lambda message: CSP_VIOLATIONS.append(message.text) if "Content Security Policy" in message.text else None,
        )
        page.goto(site.url + "/workbench/")
        pages.append(page)
    for page in pages:
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
        assert page.evaluate(PROTOCOL) == "h2"
    return pages


def stream_lines(site: Deployment) -> list[str]:
    return [line for line in site.nginx.access_log() if '"GET /api/events?' in line]


def test_ten_tabs_each_with_its_own_stream_are_live_at_once_over_one_http2_connection(
    browser: Browser, site: Deployment
) -> None:
    before = len(stream_lines(site))
    pages = open_tabs(browser, site, "hana", init_script=NO_WEB_LOCKS)
    for page in pages:
        expect(page.locator("html")).to_have_attribute("data-stream", "alone")
        assert page.evaluate("() => window.isSecureContext")
    name = unique("h2")
    escalate(site, name)
    for page in pages:
        expect(page.locator(f'#queue li[data-name="{name}"]')).to_be_visible()
        expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    pages[0].context.close()

    # nginx logs each stream when it ends: ten, all HTTP/2, all on one client connection.
    lines = wait_until(
        lambda: (found := stream_lines(site)[before:]) and len(found) >= TABS and found,
        timeout=10,
        what="the ten streams in nginx's access log",
    )
    assert all(" HTTP/2.0" in line for line in lines), lines
    connections = {line.split(" conn=")[1].split()[0] for line in lines}
    assert len(connections) == 1, lines


def test_ten_tabs_over_https_share_one_stream_and_are_all_live(browser: Browser, site: Deployment) -> None:
    before = len(stream_lines(site))
    pages = open_tabs(browser, site, "hugo")
    roles = [page.evaluate("() => document.documentElement.dataset.stream") for page in pages]
    assert sorted(roles) == ["follower"] * (TABS - 1) + ["leader"], roles
    name = unique("shared")
    escalate(site, name)
    for page in pages:
        expect(page.locator(f'#queue li[data-name="{name}"]')).to_be_visible()
    pages[0].context.close()
    lines = wait_until(
        lambda: (found := stream_lines(site)[before:]) and found, timeout=10, what="the shared stream's log line"
    )
    assert len(lines) == 1, lines
