"""A restart is invisible to an agent: the open page keeps its transcript, its place and the
reply being written; when the sign-in itself ends, the sign-in page says why and brings the
agent back to the same session with the draft still there."""

from __future__ import annotations

import signal

from playwright.sync_api import Browser, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.page_parts import accept
from tests.browser.support import bot_says, escalate, unique
from tests.support.procs import Daphne, request


def test_a_page_keeps_transcript_place_and_draft_through_a_restart_and_a_new_sign_in(
    browser: Browser, own_daphne: Daphne, browser_accounts: dict[str, str]
) -> None:
    page = sign_in(browser, own_daphne.url, "cleo")
    name = unique()
    escalate(own_daphne.url, name)
    accept(page, name)
    bot_says(own_daphne.url, name, "my parcel never came", agent="cleo")
    expect(page.locator("#transcript .msg-customer .msg-body")).to_have_text(["my parcel never came"])
    page.locator("#composer-text").fill("I am looking into it, one moment")

    # The server restarts under the page.
    own_daphne.stop(signal.SIGKILL)
    expect(page.locator("#conn")).to_have_attribute("data-state", "reconnecting", timeout=3000)
    own_daphne.start()
    expect(page.locator("#conn")).to_have_attribute("data-state", "live", timeout=8000)
    assert page.url.endswith("#" + name)
    expect(page.locator("#transcript .msg-customer .msg-body")).to_have_text(["my parcel never came"])
    expect(page.locator("#composer-text")).to_have_value("I am looking into it, one moment")

    # Her sign-in ends (signed out in another tab of this browser): the page goes to the
    # sign-in page, which says why, and comes back to the same session with the draft.
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    status, _ = request(
        "POST",
        own_daphne.url + "/accounts/logout/",
        b"",
        token=None,
        headers={
            "Cookie": f"sessionid={cookies['sessionid']}; csrftoken={cookies['csrftoken']}",
            "X-CSRFToken": cookies["csrftoken"],
        },
    )
    assert status in (200, 302)
    page.wait_for_url("**/accounts/login/?why=expired*", timeout=15_000)
    expect(page.locator(".form-note")).to_contain_text("Your sign-in ended")
    page.fill("#id_username", "cleo")
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/workbench/#{name}")
    expect(page.locator("#conn")).to_have_attribute("data-state", "live")
    expect(page.locator("#transcript .msg-customer .msg-body")).to_have_text(["my parcel never came"])
    expect(page.locator("#composer-text")).to_have_value("I am looking into it, one moment")
    page.context.close()
