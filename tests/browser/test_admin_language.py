"""The admin shows local times and readable events: a supervisor in New York and one in Tokyo
read the same session's timeline, each at their own wall-clock time (a known event's time from
the API, shown in the viewer's zone by static/js/admin-local-times.js), one line in words per
event (a transfer by a supervisor, the resolution note), and "Back to the list" instead of a
"Close" that reads as ending the session."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import PASSWORD, sign_in
from tests.browser.page_parts import accept
from tests.browser.support import bot_says, escalate, unique
from tests.support.procs import Daphne, cookie_header, login, request

SHOTS = Path("/tmp/shots/admin-language")
# German dates are all digits and 24-hour: the expected text is written with strftime alone.
LOCALE = "de-DE"


def post_as(cookies: dict[str, str], url: str, body: Any) -> None:
    """An API call as a signed-in person (a session cookie and the CSRF header, as the pages send)."""
    headers = {"Cookie": cookie_header(cookies), "X-CSRFToken": cookies["csrftoken"]}
    status, answer = request("POST", url, body, token=None, headers=headers)
    assert status == 200, answer


def open_in_admin(browser: Browser, base_url: str, name: str, zone: str, width: int = 1280) -> Page:
    page = sign_in(
        browser,
        base_url,
        "sam",
        path=f"/admin/dashboard/chatsession/?q={name}",
        live=False,
        width=width,
        locale=LOCALE,
        timezone_id=zone,
    )
    page.locator(f'#result_list a:text("{name}")').click()
    expect(page.locator("#session-timeline")).to_be_visible()
    return page


def test_the_admin_shows_local_times_and_readable_events(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, b = daphne_pair
    name = unique("admtz")
    escalate(a.url, name, reason="parcel lost in transit")
    bot_says(a.url, name, "Where is my parcel?")
    ana = sign_in(browser, a.url, "ana")
    accept(ana, name)
    ana.context.close()
    # The supervisor hands it to ben (made available first: other tests may have set him away),
    # then ends it with a note, over the API as the pages do.
    sam = login(a.url, "sam", PASSWORD)
    post_as(sam, f"{a.url}/api/agents/ben/availability", {"state": "available"})
    post_as(sam, f"{a.url}/api/sessions/{name}/transfer", {"to": "ben"})
    post_as(sam, f"{a.url}/api/sessions/{name}/close", {"note": "Courier refunded the parcel."})

    # A known event, from the API: the bot's request for an agent, its id and its time.
    status, detail = request("GET", f"{a.url}/api/sessions/{name}")
    assert status == 200, detail
    asked = next(e for e in detail["events"] if e["type"] == "transfer_request")
    instant = datetime.fromtimestamp(asked["timestamp"], tz=UTC)
    closed_at = datetime.fromisoformat(detail["session"]["closed_at"])

    SHOTS.mkdir(parents=True, exist_ok=True)
    for zone in ("America/New_York", "Asia/Tokyo"):
        page = open_in_admin(browser, b.url, name, zone)  # the other process: one record
        row = page.locator(f'#session-timeline tr[data-event-id="{asked["id"]}"]')
        when = row.locator("time")
        expect(when).to_have_text(instant.astimezone(ZoneInfo(zone)).strftime("%d.%m.%Y, %H:%M:%S"))
        expect(when).to_have_attribute("title", instant.strftime("%Y-%m-%d %H:%M:%S UTC"))
        expect(page.locator("#session-timeline [data-local-zone]")).to_have_text(zone)
        # The session's own times too (to the minute), here the moment it closed.
        expect(page.locator(".field-closed time")).to_have_text(
            closed_at.astimezone(ZoneInfo(zone)).strftime("%d.%m.%Y, %H:%M")
        )
        if zone == "America/New_York":
            page.screenshot(path=str(SHOTS / "session-1280.png"), full_page=True)
        page.context.close()

    page = open_in_admin(browser, b.url, name, "America/New_York")
    expect(row_summary(page, asked["id"])).to_have_text("The bot asked for an agent: parcel lost in transit")
    expect(page.locator("#session-timeline .timeline-summary")).to_have_text(
        [
            "The bot asked for an agent: parcel lost in transit",
            "Status: With the bot → Waiting",
            "Customer: Where is my parcel?",
            "ana joined",
            "Status: Waiting → With an agent (ana)",
            "ana left: transferred to ben by sam",
            "Transferred from ana to ben by sam",
            "Status: With an agent (now ben)",
            "Status: With an agent → Closed",
        ]
    )
    expect(page.locator("#session-timeline .timeline-note")).to_have_text(
        "Resolution note: Courier refunded the parcel."
    )
    # The fields in the pages' words; the raw event is folded away until asked for.
    expect(page.locator(".field-status .readonly")).to_have_text("Closed")
    expect(page.get_by_text("status_change", exact=True).first).to_be_hidden()
    details = page.locator("#session-timeline details").first
    details.locator("summary").click()
    expect(details.get_by_text("transfer_request", exact=True)).to_be_visible()

    # "Back to the list", never a "Close" that reads as ending the session; the list says "End".
    expect(page.get_by_role("link", name="Close", exact=True)).to_have_count(0)
    page.get_by_role("link", name="Back to the list").click()
    expect(page.locator("#result_list")).to_be_visible()
    expect(page.locator("select[name=action] option")).to_contain_text(["End the selected sessions"])
    listed = page.locator("#result_list tr").filter(has=page.locator(f'a:text("{name}")'))
    expect(listed.locator(".field-status")).to_have_text("Closed")
    expect(listed.locator(".field-closed time")).to_have_text(
        closed_at.astimezone(ZoneInfo("America/New_York")).strftime("%d.%m.%Y, %H:%M")
    )
    page.screenshot(path=str(SHOTS / "list-1280.png"), full_page=True)
    page.context.close()

    narrow = open_in_admin(browser, b.url, name, "Asia/Tokyo", width=420)
    narrow.screenshot(path=str(SHOTS / "session-420.png"), full_page=True)
    narrow.context.close()


def row_summary(page: Page, event_id: str) -> Any:
    return page.locator(f'#session-timeline tr[data-event-id="{event_id}"] .timeline-summary')
