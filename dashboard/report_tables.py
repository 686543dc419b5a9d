"""The Reports page's tables, chart data and CSV, from a computed `dashboard.reports.Report`.

`dashboard/reports.py` owns the figures (the SQL); this module only lays them out, so the
page and the CSV show the same numbers from one source.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from typing import Any

from dashboard.reports import Report, Spread

# --- the tables: one source for the page and the CSV ---------------------------------------


@dataclass(frozen=True)
class Table:
    """One table of the page, and the same block of the CSV: cells are text, None when empty."""

    id: str  # the page's table is #table-{id}
    caption: str
    head: list[str]
    rows: list[list[str | None]]


def clock_text(value: float | None) -> str:
    """A duration for a person: 42 -> "0:42", 754.6 -> "12:34", 3720 -> "1:02:00" ("–" for none)."""
    if value is None:
        return "–"
    whole = int(value)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def seconds(value: float | None) -> str | None:
    """A duration as the tables and the CSV show it: seconds, one decimal."""
    return None if value is None else f"{value:.1f}"


def tables(report: Report) -> list[Table]:
    """The page's tables, in its order; the CSV has the same blocks with the same cells."""
    t = report.totals
    return [
        Table(
            "totals",
            "Totals",
            ["Escalated", "Accepted", "Closed", *_spread_heads("wait"), *_spread_heads("first response")],
            [[str(t.escalated), str(t.accepted), str(t.closed), *_spread(report.wait), *_spread(report.response)]],
        ),
        Table(
            "counts",
            "Sessions per day",
            ["Day", "Escalated", "Accepted", "Closed"],
            [
                [row.day.isoformat(), str(row.counts.escalated), str(row.counts.accepted), str(row.counts.closed)]
                for row in report.days
            ],
        ),
        Table(
            "times",
            "Wait and first response per day",
            ["Day", *_spread_heads("wait"), *_spread_heads("first response")],
            [[row.day.isoformat(), *_spread(row.wait), *_spread(row.response)] for row in report.days],
        ),
        Table(
            "hours",
            "Escalations by hour of the day",
            ["Hour", "Escalated"],
            [[f"{hour:02d}:00", str(count)] for hour, count in enumerate(report.hours)],
        ),
        Table(
            "agents",
            "Agents",
            ["Agent", "Handled", "Median first response (s)", "90th percentile first response (s)", "Closed"],
            [
                [row.agent, str(row.handled), seconds(row.response.p50), seconds(row.response.p90), str(row.closed)]
                for row in report.agents
            ],
        ),
    ]


def _spread_heads(what: str) -> list[str]:
    return [f"Median {what} (s)", f"90th percentile {what} (s)"]


def _spread(spread: Spread) -> list[str | None]:
    return [seconds(spread.p50), seconds(spread.p90)]


def chart_data(report: Report) -> dict[str, Any]:
    """What static/js/reports.js draws: the same numbers as the tables, as series."""
    return {
        "days": [row.day.isoformat() for row in report.days],
        "escalated": [row.counts.escalated for row in report.days],
        "accepted": [row.counts.accepted for row in report.days],
        "closed": [row.counts.closed for row in report.days],
        "wait_p50": [row.wait.p50 for row in report.days],
        "wait_p90": [row.wait.p90 for row in report.days],
        "response_p50": [row.response.p50 for row in report.days],
        "response_p90": [row.response.p90 for row in report.days],
        "hours": report.hours,
        "tz": report.period.zone,
    }


# A cell a spreadsheet would run as a formula (=, +, -, @, or a tab or CR before one of them).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def to_csv(report: Report) -> str:
    """The report as CSV: a line naming the period, then each table as a block (its caption, its
    head, its rows) with an empty line between blocks. Durations in seconds; empty = no value."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    period = report.period
    writer.writerow(["Report", period.first.isoformat(), period.last.isoformat(), period.zone])
    for table in tables(report):
        writer.writerow([])
        writer.writerow([table.caption])
        writer.writerow(table.head)
        for row in table.rows:
            writer.writerow([_safe_cell(cell) for cell in row])
    return out.getvalue()


def _safe_cell(cell: str | None) -> str:
    if cell is None:
        return ""
    # An agent's name comes from the record, where a service may have written anything.
    return "'" + cell if cell.startswith(_FORMULA) else cell
