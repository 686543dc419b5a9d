"""The parts of the pages that the browser tests look at and act on, in one place."""

from __future__ import annotations

import re

from playwright.sync_api import Locator, Page, expect

# What the bus banner says (static/js/live.js, BUS_TEXT).
PAUSED = "Live updates from other servers are paused."
PAUSED_REST = "This page still shows what happens on this server; the rest follows when the link is back."


def bus_banner(page: Page) -> Locator:
    """The banner shown while the page's server cannot reach the others."""
    return page.locator("#bus-status .bus-banner")


def bubbles(page: Page, text: str) -> Locator:
    """The chat bubbles of the page's transcript whose text is exactly `text`."""
    return page.locator("#transcript .msg-body").filter(has_text=re.compile("^" + re.escape(text) + "$"))


def write(page: Page, text: str) -> None:
    """Type a message into the workbench's composer and send it with Enter."""
    page.locator("#composer-text").fill(text)
    page.locator("#composer-text").press("Enter")


def transcript_lines(page: Page) -> list[str]:
    """The transcript as `kind: text` lines (system lines without their time), top to bottom."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => [...document.querySelectorAll("#transcript > *")].map((node) =>
            node.classList.contains("sys")
              ? "sys: " + node.firstChild.textContent
              : node.className.split(" ")[1] + ": " + node.querySelector(".msg-body").textContent)"""
    )


def accept(page: Page, name: str) -> None:
    """Take `name` from the queue as an agent does, and wait until the pane says so."""
    page.locator(f'#queue li[data-name="{name}"]').get_by_role("button", name=f"Accept {name}").click()
    expect(page.locator("#pane-status")).to_have_text("With an agent")
    expect(page.locator("#composer-text")).to_be_focused()
