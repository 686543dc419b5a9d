"""The Reports page over real daphne processes: from known sessions written to the record, its
charts are drawn with the numbers of its tables, the CSV it downloads has the same tables, and a
viewer in another time zone gets the days and hours of their own clock."""

from __future__ import annotations

import csv
import io
import re
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, Page, expect

from tests.browser.conftest import sign_in
from tests.browser.test_accessibility import serious_violations
from tests.support.procs import Daphne, run_python

SHOTS = Path("/tmp/shots/reports")
PERIOD = "/dashboard/reports/?from=2026-03-02&to=2026-03-04"


def known_data(env: dict[str, str]) -> None:
    """The unit tests' known sessions (tests/test_reports.py), in the servers' database."""
    prefix = f"br_{uuid.uuid4().hex[:6]}_"
    run_python(f"from tests.test_reports import known_sessions\nknown_sessions({prefix!r})\n", env)


def page_tables(page: Page) -> dict[str, list[list[str]]]:
    """Each report table as rows of cell texts, head first ("" for an empty cell)."""
    return page.evaluate(  # type: ignore[no-any-return]
        """() => Object.fromEntries([...document.querySelectorAll("table.report")].map((table) => [
            table.id.replace("table-", ""),
            [...table.rows].map((row) => [...row.cells].map((cell) =>
              cell.hasAttribute("data-empty") ? "" : cell.textContent.trim())),
          ]))"""
    )


def csv_blocks(text: str) -> dict[str, list[list[str]]]:
    """The CSV's blocks by title (the line after the title onwards), and its first line as "Report"."""
    lines = list(csv.reader(io.StringIO(text)))
    blocks: dict[str, list[list[str]]] = {"Report": [lines[0]]}
    current: list[list[str]] | None = None
    for line in lines[1:]:
        if not line:
            current = None
        elif current is None:
            current = blocks.setdefault(line[0], [])
        else:
            current.append(line)
    return blocks


def legend_at(page: Page, chart: str, index: int, count: int) -> dict[str, str]:
    """Point at category `index` of `count` in a chart; its legend's values, by series label."""
    over = page.locator(f"#{chart} .u-over")
    box = over.bounding_box()
    assert box is not None
    over.hover(position={"x": box["width"] * (index + 0.5) / count, "y": box["height"] / 2})
    return page.evaluate(  # type: ignore[no-any-return]
        """(chart) => Object.fromEntries([...document.querySelectorAll("#" + chart + " .u-legend .u-series")]
            .map((row) => [row.querySelector(".u-label").textContent, row.querySelector(".u-value").textContent]))""",
        chart,
    )


def drawn(page: Page, chart: str) -> int:
    """How many pixels of the chart's canvas are in colour: its lines, points and bars (the
    axes, their labels and the grid are grey, the background white)."""
    return page.evaluate(  # type: ignore[no-any-return]
        """(chart) => {
            const canvas = document.querySelector("#" + chart + " canvas");
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let inked = 0;
            for (let i = 0; i < data.length; i += 4) {
              const rgb = [data[i], data[i + 1], data[i + 2]];
              if (data[i + 3] > 200 && Math.max(...rgb) - Math.min(...rgb) > 60) inked++;
            }
            return inked;
        }""",
        chart,
    )


def test_the_reports_page_renders_its_charts_from_known_data_and_the_csv_matches_the_table(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str], redis_env: dict[str, Any]
) -> None:
    a, b = daphne_pair
    known_data(redis_env)
    SHOTS.mkdir(parents=True, exist_ok=True)

    # In UTC, the server's zone too: the page stays as it was asked for.
    sam = sign_in(browser, a.url, "sam", path="/dashboard/", timezone_id="UTC", accept_downloads=True)
    sam.get_by_role("link", name="Reports").first.click()
    expect(sam).to_have_url(re.compile(r"/dashboard/reports/$"))
    sam.goto(a.url + PERIOD)
    expect(sam.locator("#report-period")).to_contain_text("from 2 Mar 2026 to 4 Mar 2026")
    expect(sam).to_have_url(a.url + PERIOD)
    expect(sam.locator("#total-escalated")).to_have_text("9")
    expect(sam.locator("#total-accepted")).to_have_text("8")
    expect(sam.locator("#total-closed")).to_have_text("8")
    expect(sam.locator("#total-wait")).to_have_text("0:25 · 1:12")
    expect(sam.locator("#total-response")).to_have_text("0:15 · 0:57")

    # Each chart is drawn, and what it shows under the pointer is its table's row.
    for chart in ("chart-counts", "chart-times", "chart-hours"):
        expect(sam.locator(f"#{chart} canvas")).to_be_visible()
        assert drawn(sam, chart) > 300, chart
    tables = page_tables(sam)
    assert tables["counts"][1:] == [
        ["2026-03-02", "5", "5", "4"],
        ["2026-03-03", "4", "3", "4"],
        ["2026-03-04", "0", "0", "0"],
    ]
    for day, row in enumerate(tables["counts"][1:]):
        shown = legend_at(sam, "chart-counts", day, 3)
        assert [shown["Escalated"], shown["Accepted"], shown["Closed"]] == row[1:], (day, shown)
    shown = legend_at(sam, "chart-times", 1, 3)
    assert tables["times"][2] == ["2026-03-03", "12.0", "50.4", "6.0", "74.8"]
    assert [shown["Median wait"], shown["90th percentile wait"]] == ["0:12", "0:50"]
    assert [shown["Median first response"], shown["90th percentile first response"]] == ["0:06", "1:14"]
    assert legend_at(sam, "chart-times", 2, 3)["Median wait"] == "–"  # nobody waited on the 4th
    assert tables["hours"][9] == ["08:00", "2"]
    assert legend_at(sam, "chart-hours", 8, 24)["Escalated"] == "2"
    assert tables["agents"][1:] == [
        ["ana", "4", "25.0", "74.9", "3"],
        ["ben", "2", "25.0", "25.0", "2"],
        ["cleo", "2", "5.0", "5.8", "2"],
    ]
    # The tables open from the keyboard.
    summary = sam.locator("#chart-counts ~ details summary")
    summary.focus()
    sam.keyboard.press("Enter")
    expect(sam.locator("#table-counts")).to_be_visible()
    sam.screenshot(path=str(SHOTS / "reports-1280.png"), full_page=True)

    # The CSV the page links to holds the same tables, cell for cell.
    with sam.expect_download() as download:
        sam.locator("#report-csv").click()
    assert download.value.suggested_filename == "report-2026-03-02-to-2026-03-04.csv"
    blocks = csv_blocks(Path(download.value.path()).read_text())
    assert blocks["Report"] == [["Report", "2026-03-02", "2026-03-04", "UTC"]]
    assert blocks["Totals"][1] == ["9", "8", "8", "25.0", "72.0", "15.0", "57.8"]
    captions = {
        "counts": "Sessions per day",
        "times": "Wait and first response per day",
        "hours": "Escalations by hour of the day",
        "agents": "Agents",
    }
    for table_id, caption in captions.items():
        assert blocks[caption] == tables[table_id], caption
    sam.context.close()

    # In India (UTC+5:30) the page asks again in the viewer's zone: other days, other hours.
    priya = sign_in(browser, b.url, "sam", path="/dashboard/", width=420, timezone_id="Asia/Kolkata")
    priya.goto(b.url + PERIOD)
    # Chromium names the zone by its older name, Asia/Calcutta, which the server knows too.
    zone = re.compile(r"^Asia/(Kolkata|Calcutta)$")
    expect(priya).to_have_url(re.compile(re.escape(b.url + PERIOD) + r"&tz=Asia%2F(Kolkata|Calcutta)$"))
    expect(priya.locator("#report-zone")).to_have_text(zone)
    expect(priya.locator("#report-tz")).to_have_value(zone)  # the form keeps it
    # "before" (23:59:59 UTC on 1 March) is 05:29:59 on 2 March there; k5 moves to the 3rd.
    expect(priya.locator("#total-escalated")).to_have_text("10")
    tables = page_tables(priya)
    assert [row[:2] for row in tables["counts"][1:]] == [["2026-03-02", "5"], ["2026-03-03", "5"], ["2026-03-04", "0"]]
    assert tables["hours"][6] == ["05:00", "3"]
    assert drawn(priya, "chart-hours") > 300
    priya.screenshot(path=str(SHOTS / "reports-420.png"), full_page=True)
    priya.context.close()


def test_bad_dates_are_said_on_the_page_and_it_has_no_serious_accessibility_violation(
    browser: Browser, daphne_pair: tuple[Daphne, Daphne], browser_accounts: dict[str, str]
) -> None:
    a, _ = daphne_pair
    sam = sign_in(browser, a.url, "sam", path="/dashboard/", timezone_id="UTC")
    sam.goto(a.url + "/dashboard/reports/?from=2026-03-05&to=2026-03-01")
    expect(sam.locator("#report-error")).to_have_text(
        "This report cannot be made: from (2026-03-05) is after to (2026-03-01): swap them."
    )
    # Put right in the form: the report comes.
    sam.locator("#report-from").fill("2026-02-25")
    sam.get_by_role("button", name="Show").click()
    expect(sam).to_have_url(re.compile(r"from=2026-02-25&to=2026-03-01&tz=UTC$"))
    expect(sam.locator("#report-error")).to_have_count(0)
    expect(sam.locator("#chart-counts canvas")).to_be_visible()
    sam.context.close()

    # The checker is injected as a script of the test's own: the page's policy would refuse it.
    for width in (1280, 420):
        page = sign_in(browser, a.url, "sam", path="/dashboard/", width=width, timezone_id="UTC", bypass_csp=True)
        page.goto(a.url + PERIOD)
        expect(page.locator("#chart-hours canvas")).to_be_visible()
        page.locator("details").evaluate_all("(all) => all.forEach((d) => { d.open = true; })")
        assert serious_violations(page) == [], width
        page.context.close()
