"""Reports: what became of the sessions escalated in a period, computed in SQL.

`GET /dashboard/reports/?from=YYYY-MM-DD&to=YYYY-MM-DD[&tz=Area/City][&format=csv]` (the view is
`dashboard.pages.reports_page`); docs/pages.md ("Reports") gives the definitions in plain words.

- An **episode** is one escalation of a session and what followed it: a session closed and
  escalated again later has two. The record (`SessionEvent`) holds every episode; the session's
  row keeps only the latest, and even for that one its `accepted_at` is moved by a transfer and
  cleared by a return to the queue. So the figures come from the record: an episode starts with
  a `transfer_request` (only an escalation that queues the session writes one) and its accept is
  the first `agent_joined` after it (by hand or by round-robin; a transfer or a supervisor
  joining also writes one, but only after an accept). Neither payload is read to tell them
  apart, which keeps SQLite from parsing JSON on every row; the accepting agent's name is read
  from that one event. An episode is closed when the session was escalated again after it, or,
  for its latest episode, when the session's row says it is closed now.
- **Wait** = the episode's first accept - its escalation. **First response** = the first message
  from the workbench (`new_message`, sender `agent`) after the accept - that accept: the agent's
  own responsiveness, not counting the queue again.
- An episode belongs to the day and hour, in the report's time zone, of its escalation; its
  accept, answer and close count with it even when they came later (or after the period).
- Per agent: the episodes an agent accepted first (a session transferred or handed back counts
  for the agent who first took it), so the agents' "handled" add up to the period's "accepted".
- Percentiles are PostgreSQL's `percentile_cont` (linear between the two nearest values),
  computed with ROW_NUMBER and COUNT windows, which SQLite has too: one SQL text for both, save
  for reading the agent's name from JSON and rounding down.

Only the events of sessions whose row says they were escalated (`escalated_at`) in or after the
period, and that were created before its end, are read; the first answers are looked up
through the record's (session, timestamp) index. `make bench BENCH_ARGS="--modes reports"` times
it at 100,000 sessions (bench/reports.py).
"""

from __future__ import annotations

import logging
import re
import time as clock
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db import connection

logger = logging.getLogger(__name__)

# A year, a leap year's included: the longest period one report covers.
MAX_DAYS = 366
# The default period: the last 7 days, today included.
DEFAULT_DAYS = 7
# Dates a report accepts: the product is younger than the first, and nobody plans beyond the last.
FIRST_DATE = date(2000, 1, 1)
LAST_DATE = date(2999, 12, 31)
FORMATS = ("html", "csv")
# An IANA zone name as browsers give them ("Europe/Paris", "America/Argentina/Buenos_Aires", "UTC").
_ZONE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_+\-]*(?:/[A-Za-z0-9_+\-]+){0,2}\Z")
# The row's times and the events' timestamps come from different calls of the clock; a row is
# read when it is within this much of the period (the events themselves decide what counts).
ROW_SLACK = timedelta(hours=1)


class InvalidReport(ValueError):
    """A request the reports refuse: the page answers 400 with this text."""


@dataclass(frozen=True)
class Period:
    """The days `first` to `last` (both included), as days of the zone `tz`."""

    first: date
    last: date
    tz: ZoneInfo

    @property
    def days(self) -> list[date]:
        return [self.first + timedelta(days=i) for i in range((self.last - self.first).days + 1)]

    @property
    def zone(self) -> str:
        return str(self.tz.key)

    def bounds(self) -> tuple[float, float]:
        """Unix seconds of the first day's start and of the end of the last day, in the zone."""
        return _midnight(self.first, self.tz), _midnight(self.last + timedelta(days=1), self.tz)


def _midnight(day: date, tz: ZoneInfo) -> float:
    return datetime.combine(day, time(), tzinfo=tz).timestamp()


def parse_request(params: Mapping[str, str], *, now: datetime | None = None) -> tuple[Period, str]:
    """The period and format of a request's query (`from`, `to`, `tz`, `format`), or InvalidReport.

    Without `tz`, the days are the server's (TIME_ZONE); without `to`, the last day is today
    there; without `from`, the period is the DEFAULT_DAYS days up to `to`. An empty value
    counts as none (an emptied date field of the form)."""
    fmt = params.get("format") or "html"
    if fmt not in FORMATS:
        raise InvalidReport(f"format must be {' or '.join(FORMATS)}, not {fmt[:40]!r}")
    tz = _zone(params.get("tz") or settings.TIME_ZONE)
    last = _date(params.get("to"), "to") or today(tz, now)
    first = _date(params.get("from"), "from") or last - timedelta(days=DEFAULT_DAYS - 1)
    if first > last:
        raise InvalidReport(f"from ({first.isoformat()}) is after to ({last.isoformat()}): swap them")
    days = (last - first).days + 1
    if days > MAX_DAYS:
        raise InvalidReport(f"the period has {days} days; a report covers at most {MAX_DAYS}")
    return Period(first, last, tz), fmt


def today(tz: ZoneInfo, now: datetime | None = None) -> date:
    """Today's date in the zone `tz`."""
    return (now or datetime.now(UTC)).astimezone(tz).date()


def _date(value: str | None, what: str) -> date | None:
    if not value:
        return None
    if not re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
        raise InvalidReport(f"{what} must be a date written YYYY-MM-DD, not {value[:40]!r}")
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        raise InvalidReport(f"{what} is not a date of the calendar: {value}") from None
    if not FIRST_DATE <= parsed <= LAST_DATE:
        raise InvalidReport(f"{what} must be between {FIRST_DATE.isoformat()} and {LAST_DATE.isoformat()}")
    return parsed


def _zone(name: str) -> ZoneInfo:
    # The pattern first: ZoneInfo would look any string up as a file name.
    if not _ZONE_NAME.fullmatch(name):
        raise InvalidReport(f"tz must be a time zone name such as Europe/Paris, not {name[:40]!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidReport(f"unknown time zone {name!r}") from None


# --- the figures --------------------------------------------------------------------------


@dataclass(frozen=True)
class Spread:
    """How many values, their median and their 90th percentile (None when there are none)."""

    n: int = 0
    p50: float | None = None
    p90: float | None = None


@dataclass(frozen=True)
class Counts:
    escalated: int = 0
    accepted: int = 0
    closed: int = 0


@dataclass(frozen=True)
class DayRow:
    day: date
    counts: Counts
    wait: Spread
    response: Spread


@dataclass(frozen=True)
class AgentRow:
    agent: str
    handled: int  # episodes the agent accepted first
    closed: int  # of those, how many are closed
    response: Spread


@dataclass
class Report:
    period: Period
    totals: Counts = field(default_factory=Counts)
    wait: Spread = field(default_factory=Spread)
    response: Spread = field(default_factory=Spread)
    days: list[DayRow] = field(default_factory=list)
    hours: list[int] = field(default_factory=lambda: [0] * 24)  # escalations per hour of the day
    agents: list[AgentRow] = field(default_factory=list)
    seconds: float = 0.0  # how long the query took


# Reading the accepting agent's name from a payload, and rounding a positive number down to an
# integer, are the two things the databases spell differently.
_DIALECTS = {
    "postgresql": {
        "agent": "e.payload -> 'data' ->> 'agent'",
        "floor": "CAST(FLOOR({}) AS BIGINT)",
    },
    "sqlite": {
        "agent": "json_extract(e.payload, '$.data.agent')",
        "floor": "CAST({} AS INTEGER)",  # truncation: the values here are positive
    },
}

# The episodes come from two event types, told apart without reading a payload:
# `transfer_request` (only an escalation that queues the session writes one) and `agent_joined`,
# whose first one after an escalation is its accept (a transfer or a supervisor joining can only
# follow an accept). An episode is closed when the session was escalated again after it, or, for
# its latest episode, when the session is closed now. The first answer is looked up for each of
# the period's episodes through the (session, timestamp) index, up to the next escalation.
_EPISODES = """
WITH ev AS (
  SELECT e.session_id AS sid, e.id AS eid, e.timestamp AS ts, s.status AS now,
    CASE WHEN e.type = 'transfer_request' THEN 1 ELSE 0 END AS esc,
    CASE WHEN e.type = 'agent_joined' THEN {agent} END AS agent
  -- CROSS JOIN: SQLite then reads the sessions first, and each one's events through the
  -- (session, timestamp) index; PostgreSQL plans it as any other join.
  FROM dashboard_chatsession s
  CROSS JOIN dashboard_sessionevent e
  WHERE e.session_id = s.id AND s.escalated_at >= %(since)s AND s.created_at < %(until)s
    AND e.timestamp >= %(start)s AND e.type IN ('transfer_request', 'agent_joined')
),
seen AS (
  -- In one pass over each session's escalations and joins, in order: the row after an
  -- escalation is its accept when it is a join; the next escalation ends its episode.
  SELECT sid, ts, esc, now, LEAD(esc) OVER w AS then_esc, LEAD(ts) OVER w AS then_ts,
    LEAD(agent) OVER w AS then_agent,
    MIN(CASE WHEN esc = 1 THEN ts END) OVER (w ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING) AS next
  FROM ev
  WINDOW w AS (PARTITION BY sid ORDER BY ts, eid)
),
bounded AS (
  SELECT sid, ts AS escalated, now, next,
    CASE WHEN then_esc = 0 THEN then_ts END AS accepted,
    CASE WHEN then_esc = 0 THEN then_agent END AS agent
  FROM seen WHERE esc = 1
),
located AS MATERIALIZED (
  SELECT accepted, agent,
    CASE WHEN next IS NOT NULL OR now = 'closed' THEN 1 ELSE 0 END AS closed,
    accepted - escalated AS wait,
    (SELECT m.timestamp FROM dashboard_sessionevent m
      WHERE m.session_id = p.sid AND m.timestamp >= p.accepted AND m.timestamp < COALESCE(p.next, %(never)s)
        AND m.type = 'new_message' AND m.sender = 'agent'
      ORDER BY m.timestamp LIMIT 1) - accepted AS response,
    CASE WHEN day < 0 THEN 0 WHEN day >= %(ndays)s THEN %(ndays)s - 1 ELSE day END AS day,
    hour
  FROM (
    SELECT x.*, (ls - %(base)s) / 86400 AS day, (ls %% 86400) / 3600 AS hour
    FROM (SELECT bounded.*, {local} AS ls FROM bounded WHERE escalated >= %(start)s AND escalated < %(end)s) x
  ) p
),
{ranked}
{spreads}
UNION ALL SELECT 'day', day, '', 'count', COUNT(*), COUNT(accepted), SUM(closed) FROM located GROUP BY day
UNION ALL SELECT 'hour', hour, '', 'count', COUNT(*), COUNT(accepted), SUM(closed) FROM located GROUP BY hour
UNION ALL SELECT 'agent', 0, agent, 'count', COUNT(*), COUNT(accepted), SUM(closed) FROM located
  WHERE agent IS NOT NULL GROUP BY agent
UNION ALL SELECT 'total', 0, '', 'count', COUNT(*), COUNT(accepted), COALESCE(SUM(closed), 0) FROM located
"""

# The percentiles: (group, metric, what the values are grouped by, the group's key, the row's name).
_SPREADS = (
    ("day", "wait", "day", "day", "''"),
    ("day", "response", "day", "day", "''"),
    ("total", "wait", None, "0", "''"),
    ("total", "response", None, "0", "''"),
    ("agent", "response", "agent", "0", "agent"),
)


def _percentile(p: int) -> str:
    """percentile_cont(p / 100) of a group: the values at ranks floor(h) and ceil(h), where
    h = (n - 1) * p / 100 counts from 0, and the way between them. In integers until then."""
    low, high = f"1 + (n - 1) * {p} / 100", f"1 + ((n - 1) * {p} + 99) / 100"
    return (
        f"MAX(CASE WHEN r = {low} THEN v END) + ((n - 1) * {p} %% 100) / 100.0"
        f" * (MAX(CASE WHEN r = {high} THEN v END) - MAX(CASE WHEN r = {low} THEN v END))"
    )


def _spreads_sql() -> tuple[str, str]:
    """Each group's values ranked (ROW_NUMBER, COUNT: both databases have them), one window per
    metric and grouping over the period's episodes; then each group's two percentiles from the
    at most four rows they need."""
    ranked, selects = [], []
    ranks = ", ".join(f"1 + (n - 1) * {p} / 100, 1 + ((n - 1) * {p} + 99) / 100" for p in (50, 90))
    for group, metric, by, key, who in _SPREADS:
        name = f"{metric}_{group}"
        over = f"PARTITION BY {by}" if by else ""
        known = f"{metric} IS NOT NULL" + (f" AND {by} IS NOT NULL" if by == "agent" else "")
        ranked.append(
            f"{name} AS (SELECT {key} AS k, {who} AS who, {metric} AS v,"
            f" ROW_NUMBER() OVER ({over} ORDER BY {metric}) AS r, COUNT(*) OVER ({over}) AS n"
            f" FROM located WHERE {known})"
        )
        selects.append(
            f"SELECT '{group}' AS g, k, who, '{metric}' AS m, n, {_percentile(50)} AS p50, {_percentile(90)} AS p90"
            f" FROM {name} WHERE r IN ({ranks}) GROUP BY k, who, n"
        )
    return ",\n".join(ranked), "\nUNION ALL ".join(selects)


def offsets(tz: ZoneInfo, start: float, end: float) -> list[tuple[float, int]]:
    """The zone's UTC offsets over [start, end): [(from when, seconds east of UTC), ...].

    Looked at every six hours and narrowed to the second where it changes: zones change their
    offset at most a few times a year, never twice in six hours."""
    step = 6 * 3600

    def offset(at: float) -> int:
        delta = datetime.fromtimestamp(at, tz).utcoffset()
        return int(delta.total_seconds()) if delta is not None else 0

    found = [(start, offset(start))]
    at = start
    while at < end:
        following = min(at + step, end)
        if offset(following) != found[-1][1]:
            low, high = int(at), int(following)  # the old offset at `low`, the new one at `high`
            while high - low > 1:
                middle = (low + high) // 2
                if offset(middle) == found[-1][1]:
                    low = middle
                else:
                    high = middle
            found.append((float(high), offset(high)))
        at = following
    return found


def _local_seconds(floor: str, segments: list[tuple[float, int]], params: dict[str, Any]) -> str:
    """SQL for `escalated` as whole seconds of local wall-clock time since 1970-01-01 00:00."""
    if len(segments) == 1:
        params["off0"] = segments[0][1]
        return floor.format("escalated + %(off0)s")
    cases = []
    for i, (_since, off) in enumerate(segments):
        params[f"off{i}"] = off
        if i + 1 < len(segments):
            params[f"until{i}"] = segments[i + 1][0]
            cases.append(f"WHEN escalated < %(until{i})s THEN %(off{i})s")
    last = len(segments) - 1
    return floor.format(f"escalated + CASE {' '.join(cases)} ELSE %(off{last})s END")


def statement(period: Period) -> tuple[str, dict[str, Any]]:
    """The SQL of the period's report on this database, and its parameters."""
    dialect = _DIALECTS.get(connection.vendor)
    if dialect is None:
        raise NotImplementedError(f"reports run on PostgreSQL or SQLite, not {connection.vendor}")
    start, end = period.bounds()
    params: dict[str, Any] = {
        "start": start,
        "end": end,
        "since": connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(start, UTC) - ROW_SLACK),
        "until": connection.ops.adapt_datetimefield_value(datetime.fromtimestamp(end, UTC) + ROW_SLACK),
        "ndays": len(period.days),
        "base": (period.first - date(1970, 1, 1)).days * 86400,
        "never": end + 1000 * 365 * 86400.0,  # no next escalation: no bound
    }
    local = _local_seconds(dialect["floor"], offsets(period.tz, start, end), params)
    ranked, spreads = _spreads_sql()
    return _EPISODES.format(local=local, ranked=ranked, spreads=spreads, **dialect), params


def compute(period: Period) -> Report:
    """The period's report, in one SQL statement."""
    sql, params = statement(period)
    started = clock.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    report = _assemble(period, rows)
    report.seconds = clock.perf_counter() - started
    logger.debug(
        "report %s..%s (%s): %d rows in %.3fs", period.first, period.last, period.zone, len(rows), report.seconds
    )
    return report


def _assemble(period: Period, rows: list[tuple[Any, ...]]) -> Report:
    days = period.days
    counts: dict[tuple[str, Any], Counts] = {}
    spreads: dict[tuple[str, Any, str], Spread] = {}
    for g, k, who, m, a, b, c in rows:
        key = who if g == "agent" else int(k)
        if m == "count":
            counts[(g, key)] = Counts(int(a), int(b), int(c))
        else:
            spreads[(g, key, m)] = Spread(int(a), _float(b), _float(c))
    report = Report(period)
    report.totals = counts.get(("total", 0), Counts())
    report.wait = spreads.get(("total", 0, "wait"), Spread())
    report.response = spreads.get(("total", 0, "response"), Spread())
    report.days = [
        DayRow(
            day,
            counts.get(("day", i), Counts()),
            spreads.get(("day", i, "wait"), Spread()),
            spreads.get(("day", i, "response"), Spread()),
        )
        for i, day in enumerate(days)
    ]
    report.hours = [counts.get(("hour", h), Counts()).escalated for h in range(24)]
    agents = [
        AgentRow(str(name), n.accepted, n.closed, spreads.get(("agent", name, "response"), Spread()))
        for (g, name), n in counts.items()
        if g == "agent"
    ]
    report.agents = sorted(agents, key=lambda row: (-row.handled, row.agent))
    return report


def _float(value: Any) -> float | None:
    return None if value is None else float(value)
