"""The Reports page (dashboard/reports.py, GET /dashboard/reports/): the numbers from known
sessions (counts, medians and 90th percentiles, days and hours in a time zone, per agent), the
product's own events read the way the report reads them, bad input answered 400, who may see
it, and the CSV. The last tests run the same report on PostgreSQL, in a scratch database."""

from __future__ import annotations

import csv
import io
import json
import random
import re
import statistics
from datetime import UTC, date, datetime, timedelta
from itertools import count
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client

from dashboard import reports, services
from dashboard.models import ChatSession, SessionEvent, Status
from dashboard.reports import Period
from realtime.auth import Principal
from tests.support.databases import run_on_scratch_postgres
from tests.support.procs import ROOT
from tests.support.sessions import make_user

pytestmark = pytest.mark.django_db

UTC_ZONE = ZoneInfo("UTC")
_ids = count()


# --- sessions written to the record as the commands write them ---------------------------------


def _at(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def _event(session: ChatSession, kind: str, ts: float, status: str, **data: Any) -> None:
    payload = {"session_name": session.name, "status": status, "data": data}
    SessionEvent.objects.create(session=session, type=kind, source="agent_workbench", payload=payload, timestamp=ts)


def _change(session: ChatSession, ts: float, previous: str, status: str, agent: str | None) -> None:
    _event(session, "status_change", ts, status, previous=previous, agent=agent)


def close(session: ChatSession, ts: float, previous: str, agent: str | None) -> None:
    """The session is closed: its status_change, and its row says so."""
    _change(session, ts, previous, "closed", agent)
    ChatSession.objects.filter(pk=session.pk).update(status=Status.CLOSED, closed_at=_at(ts))


def message(session: ChatSession, ts: float, sender: str, text: str = "hello") -> None:
    message_id = f"rep-{next(_ids)}"
    SessionEvent.objects.create(
        session=session,
        type="new_message",
        source="agent_workbench" if sender == "agent" else "ai_chatbot",
        payload={"session_name": session.name, "message_id": message_id, "data": {"text": text, "sender": sender}},
        timestamp=ts,
        message_id=message_id,
        sender=sender,
        text=text,
    )


def episode(
    name: str,
    escalated: float,
    *,
    accepted: float | None = None,
    agent: str | None = None,
    answered: float | None = None,
    closed: float | None = None,
) -> ChatSession:
    """One escalation of session `name` (created on first use) and what followed, with the
    events the commands store: transfer_request and agent_joined beside the status changes."""
    session = ChatSession.objects.filter(name=name).first()
    previous = "closed" if session is not None else "ai_handling"
    if session is None:
        session = ChatSession.objects.create(name=name, created_at=_at(escalated - 120))
    _event(session, "transfer_request", escalated, "waiting_agent", reason="wants a human")
    _change(session, escalated, previous, "waiting_agent", None)
    message(session, escalated + 1, "customer", "are you there?")
    status = Status.WAITING_AGENT
    if accepted is not None:
        _event(session, "agent_joined", accepted, "agent_handling", agent=agent)
        _change(session, accepted, "waiting_agent", "agent_handling", agent)
        status = Status.AGENT_HANDLING
    if answered is not None:
        message(session, answered, "agent", "Hello, how can I help?")
    ChatSession.objects.filter(pk=session.pk).update(status=status, escalated_at=_at(escalated))
    if closed is not None:
        close(session, closed, status, agent if accepted is not None else None)
    return session


# --- the known sessions ---------------------------------------------------------------------------

T0 = datetime(2026, 3, 2, tzinfo=UTC).timestamp()  # Monday 2 March 2026, 00:00 UTC
H = 3600
D = 86400
KNOWN_PERIOD = Period(date(2026, 3, 2), date(2026, 3, 4), UTC_ZONE)


def known_sessions(prefix: str = "") -> None:
    """Nine escalations over the period's first two days, and some just outside it. The agents
    are names in the events: the report needs no accounts. `prefix` starts the sessions' names."""
    # 2 March: waits 10, 20, 30, 40, 100; first responses 5, 15, 25, (none), 35.
    episode(prefix + "k1", T0, accepted=T0 + 10, agent="ana", answered=T0 + 15, closed=T0 + 600)  # at the very start
    episode(
        prefix + "k2", T0 + 9 * H, accepted=T0 + 9 * H + 20, agent="ana", answered=T0 + 9 * H + 35, closed=T0 + 10 * H
    )
    k3 = episode(prefix + "k3", T0 + 10 * H, accepted=T0 + 10 * H + 30, agent="ben", answered=T0 + 10 * H + 55)
    _event(k3, "agent_joined", T0 + 10 * H + 60, "agent_handling", agent="sam", role="supervisor")  # no accept
    close(k3, T0 + 11 * H, "agent_handling", "ben")
    episode(prefix + "k4", T0 + 14 * H, accepted=T0 + 14 * H + 40, agent="ben", closed=T0 + 15 * H)  # closed unanswered
    late = T0 + D - 30  # 23:59:30: accepted the next day, still open
    episode(prefix + "k5", late, accepted=late + 100, agent="ana", answered=late + 135)
    # 3 March: one never accepted (closed from the queue), waits 60, 8, 12; responses 4, 92, 6.
    episode(prefix + "k6", T0 + D + 8 * H, closed=T0 + D + 8 * H + 300)
    k7 = episode(
        prefix + "k7", T0 + D + 8 * H + 600, accepted=T0 + D + 8 * H + 660, agent="cleo", answered=T0 + D + 8 * H + 664
    )
    # A transfer to ana: agent_left, agent_joined, status_change, as the command writes them. Still cleo's.
    _event(k7, "agent_left", T0 + D + 9 * H, "agent_handling", agent="cleo", by="sam", to="ana")
    _event(k7, "agent_joined", T0 + D + 9 * H, "agent_handling", agent="ana", by="sam", **{"from": "cleo"}, to="ana")
    _change(k7, T0 + D + 9 * H, "agent_handling", "agent_handling", "ana")
    close(k7, T0 + D + 10 * H, "agent_handling", "ana")
    t8 = T0 + D + 12 * H  # ana accepts, hands it back to the queue, ben takes it and answers
    k8 = episode(prefix + "k8", t8, accepted=t8 + 8, agent="ana")
    _event(k8, "agent_left", t8 + 50, "waiting_agent", agent="ana")
    _change(k8, t8 + 50, "agent_handling", "waiting_agent", None)
    _event(k8, "agent_joined", t8 + 90, "agent_handling", agent="ben")
    _change(k8, t8 + 90, "waiting_agent", "agent_handling", "ben")
    message(k8, t8 + 100, "agent")
    close(k8, t8 + 200, "agent_handling", "ben")
    # A session of February, closed, escalated again on 3 March at 18:00: only the second counts.
    episode(
        prefix + "again",
        T0 - 10 * D,
        accepted=T0 - 10 * D + 5,
        agent="ben",
        answered=T0 - 10 * D + 6,
        closed=T0 - 9 * D,
    )
    t9 = T0 + D + 18 * H
    episode(prefix + "again", t9, accepted=t9 + 12, agent="cleo", answered=t9 + 18, closed=t9 + 60)
    # Just outside: escalated a second before the period (accepted inside it), and at its very end.
    episode(prefix + "before", T0 - 1, accepted=T0 + 30, agent="ana", answered=T0 + 40, closed=T0 + 50)
    episode(prefix + "after", T0 + 3 * D, accepted=T0 + 3 * D + 5, agent="ana", answered=T0 + 3 * D + 9)
    # Closed by the bot without ever being escalated: no escalation, nothing to count.
    bot_only = ChatSession.objects.create(name=prefix + "bot_only", created_at=_at(T0 + 5 * H))
    _change(bot_only, T0 + 6 * H, "ai_handling", "closed", None)


KNOWN: dict[str, Any] = {
    "totals": [9, 8, 8],
    "wait": [8, 25.0, 72.0],  # 8 10 12 20 30 40 60 100
    "response": [7, 15.0, 57.8],  # 4 5 6 15 25 35 92
    "days": [
        # escalated, accepted, closed; wait n, p50, p90; response n, p50, p90
        ["2026-03-02", [5, 5, 4], [5, 30.0, 76.0], [4, 20.0, 32.0]],
        ["2026-03-03", [4, 3, 4], [3, 12.0, 50.4], [3, 6.0, 74.8]],
        ["2026-03-04", [0, 0, 0], [0, None, None], [0, None, None]],
    ],
    "hours": {0: 1, 8: 2, 9: 1, 10: 1, 12: 1, 14: 1, 18: 1, 23: 1},
    "agents": [
        # agent, handled, closed, response n, p50, p90
        ["ana", 4, 3, [4, 25.0, 74.9]],  # k1 k2 k5 k8: 5 15 35 92
        ["ben", 2, 2, [1, 25.0, 25.0]],  # k3 k4 (unanswered)
        ["cleo", 2, 2, [2, 5.0, 5.8]],  # k7 again: 4 6
    ],
}


def summary(report: reports.Report) -> dict[str, Any]:
    """The report as plain lists, in KNOWN's shape (also printed by the PostgreSQL run)."""

    def spread(s: reports.Spread) -> list[Any]:
        return [s.n, None if s.p50 is None else round(s.p50, 6), None if s.p90 is None else round(s.p90, 6)]

    t = report.totals
    return {
        "totals": [t.escalated, t.accepted, t.closed],
        "wait": spread(report.wait),
        "response": spread(report.response),
        "days": [
            [
                row.day.isoformat(),
                [row.counts.escalated, row.counts.accepted, row.counts.closed],
                spread(row.wait),
                spread(row.response),
            ]
            for row in report.days
        ],
        "hours": {hour: n for hour, n in enumerate(report.hours) if n},
        "agents": [[row.agent, row.handled, row.closed, spread(row.response)] for row in report.agents],
    }


def test_known_sessions_give_exact_counts_medians_and_90th_percentiles() -> None:
    known_sessions()

    assert summary(reports.compute(KNOWN_PERIOD)) == KNOWN


def test_the_agents_handled_add_up_to_the_accepted_and_their_closed_to_the_closed_after_an_accept() -> None:
    known_sessions()
    report = reports.compute(KNOWN_PERIOD)

    assert sum(row.handled for row in report.agents) == report.totals.accepted
    # k6 was closed from the queue, never accepted: in the total, nobody's.
    assert sum(row.closed for row in report.agents) == report.totals.closed - 1
    assert sum(report.hours) == report.totals.escalated == sum(row.counts.escalated for row in report.days)


def test_an_episode_belongs_to_the_day_of_its_escalation_in_the_report_time_zone() -> None:
    """Europe/Paris moves its clocks on 29 March 2026 at 01:00 UTC (02:00 CET becomes 03:00 CEST)."""
    make_user("ana")
    utc = lambda *a: datetime(2026, *a, tzinfo=UTC).timestamp()  # noqa: E731
    episode("z1", utc(3, 27, 22, 59), accepted=utc(3, 27, 23, 5), agent="ana")  # 23:59 CET, 27 March: before
    episode("z2", utc(3, 27, 23, 30), accepted=utc(3, 27, 23, 31), agent="ana")  # 00:30 CET, 28 March
    episode("z3", utc(3, 28, 23, 30), accepted=utc(3, 28, 23, 32), agent="ana")  # 00:30 CET, 29 March
    episode("z4", utc(3, 29, 1, 30), accepted=utc(3, 29, 1, 33), agent="ana")  # 03:30 CEST, 29 March
    episode("z5", utc(3, 29, 21, 59), accepted=utc(3, 29, 22, 3), agent="ana")  # 23:59 CEST, 29 March
    episode("z6", utc(3, 29, 22, 30), accepted=utc(3, 29, 22, 34), agent="ana")  # 00:30 CEST, 30 March: after

    paris = reports.compute(Period(date(2026, 3, 28), date(2026, 3, 29), ZoneInfo("Europe/Paris")))
    in_utc = reports.compute(Period(date(2026, 3, 28), date(2026, 3, 29), UTC_ZONE))

    assert [(row.day.isoformat(), row.counts.escalated) for row in paris.days] == [("2026-03-28", 1), ("2026-03-29", 3)]
    assert {h: n for h, n in enumerate(paris.hours) if n} == {0: 2, 3: 1, 23: 1}
    assert [row.wait.p50 for row in paris.days] == [60.0, 180.0]  # 60; 120 180 240
    # The same sessions in UTC: z1 and z2 fall on 27 March, z6 on the 29th.
    assert [row.counts.escalated for row in in_utc.days] == [1, 3]
    assert {h: n for h, n in enumerate(in_utc.hours) if n} == {23: 1, 1: 1, 21: 1, 22: 1}


def test_the_period_default_is_the_last_seven_days_in_the_server_zone_unless_tz_says() -> None:
    now = datetime(2026, 12, 4, 23, 30, tzinfo=UTC)

    period, fmt = reports.parse_request({}, now=now)
    assert (period.first, period.last, period.zone, fmt) == (date(2026, 11, 28), date(2026, 12, 4), "UTC", "html")
    period, _ = reports.parse_request({"tz": "Asia/Tokyo"}, now=now)  # already 5 December there
    assert (period.first, period.last) == (date(2026, 11, 29), date(2026, 12, 5))
    period, _ = reports.parse_request({"to": "2026-01-10", "from": "", "format": "csv"}, now=now)
    assert (period.first, period.last) == (date(2026, 1, 4), date(2026, 1, 10))
    period, _ = reports.parse_request({"from": "2025-12-05", "to": "2026-12-05"}, now=now)
    assert len(period.days) == reports.MAX_DAYS


def test_percentiles_match_linear_interpolation_on_random_waits() -> None:
    """Random waits and answers, one day, three agents: the SQL's percentiles against Python's
    `statistics.quantiles(method="inclusive")`, which is the same definition as percentile_cont."""
    for name in ("ana", "ben", "cleo"):
        make_user(name)
    rng = random.Random(7)
    waits: list[float] = []
    answers: dict[str, list[float]] = {"ana": [], "ben": [], "cleo": []}
    for i in range(57):
        start = T0 + rng.uniform(0, D - 4000)
        wait = round(rng.lognormvariate(3.5, 1.2), 3)
        agent = rng.choice(list(answers))
        answer = round(rng.uniform(0.5, 200), 3) if i % 5 else None
        episode(
            f"r{i}",
            start,
            accepted=start + wait,
            agent=agent,
            answered=None if answer is None else start + wait + answer,
        )
        waits.append(wait)
        if answer is not None:
            answers[agent].append(answer)

    report = reports.compute(Period(date(2026, 3, 2), date(2026, 3, 2), UTC_ZONE))

    def expected(values: list[float]) -> tuple[float, float]:
        cuts = statistics.quantiles(values, n=10, method="inclusive")
        return cuts[4], cuts[8]

    assert (report.wait.p50, report.wait.p90) == pytest.approx(expected(waits), abs=1e-6)
    for row in report.agents:
        assert row.response.n == len(answers[row.agent])
        assert (row.response.p50, row.response.p90) == pytest.approx(expected(answers[row.agent]), abs=1e-6)


def test_an_empty_period_has_zeros_and_no_durations() -> None:
    report = reports.compute(Period(date(2026, 3, 2), date(2026, 3, 3), UTC_ZONE))

    assert report.totals == reports.Counts(0, 0, 0)
    assert report.wait == report.response == reports.Spread(0, None, None)
    assert [row.counts.escalated for row in report.days] == [0, 0]
    assert report.hours == [0] * 24
    assert report.agents == []


# --- the product's own events ---------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_commands_events_are_read_as_episodes_accepts_and_answers(bus: Any) -> None:
    """Through dashboard.services: escalate, accept, hand back, accept, transfer, answer, close,
    then escalate again: two episodes, each counted for the agent who first accepted it."""
    for name in ("ana", "ben", "cleo"):
        make_user(name)
    bot = Principal("service", "ai_chatbot")
    ana, ben, cleo = (Principal("agent", name) for name in ("ana", "ben", "cleo"))
    services.escalate("cust_rep", by=bot, reason="refund")
    services.accept("cust_rep", by=ana)
    services.leave("cust_rep", by=ana)
    services.accept("cust_rep", by=ben)
    services.transfer("cust_rep", "cleo", by=ben)
    services.send_message("cust_rep", "Cleo here, sorry for the wait.", by=cleo)
    services.close("cust_rep", by=cleo)
    services.escalate("cust_rep", by=bot, reason="again")
    services.accept("cust_rep", by=ben)

    events = list(SessionEvent.objects.order_by("timestamp", "pk"))
    escalations = [e.timestamp for e in events if e.type == "transfer_request"]
    joins = [e for e in events if e.type == "agent_joined"]
    # Accepts, transfers and supervisors joining all write agent_joined; only an accept's data is just the agent.
    accepts = [e.timestamp for e in joins if set(e.payload["data"]) == {"agent"}]
    assert len(joins) == 4  # ana's accept, ben's accept, the transfer to cleo, ben's second accept
    answered = SessionEvent.objects.get(type="new_message", sender="agent").timestamp
    today = datetime.now(UTC).date()
    report = reports.compute(Period(today - timedelta(days=1), today + timedelta(days=1), UTC_ZONE))

    assert len(escalations) == 2 and len(accepts) == 3
    assert (report.totals.escalated, report.totals.accepted, report.totals.closed) == (2, 2, 1)
    assert [(row.agent, row.handled, row.closed) for row in report.agents] == [("ana", 1, 1), ("ben", 1, 0)]
    assert report.wait.n == 2  # the median of two waits is their mean
    assert report.wait.p50 == pytest.approx(((accepts[0] - escalations[0]) + (accepts[2] - escalations[1])) / 2)
    assert report.response.n == 1
    assert report.response.p50 == pytest.approx(answered - accepts[0])


# --- bad input, access, the page and the CSV -----------------------------------------------------


@pytest.fixture
def supervisor(client: Client) -> Client:
    client.force_login(make_user("sam", staff=True))
    return client


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("from=2026-02-30&to=2026-03-02", "from is not a date of the calendar: 2026-02-30"),
        ("from=yesterday", "from must be a date written YYYY-MM-DD, not 'yesterday'"),
        ("to=2026-3-1", "to must be a date written YYYY-MM-DD, not '2026-3-1'"),
        ("from=%EF%BC%92026-01-01", "from must be a date written YYYY-MM-DD"),  # a full-width digit
        ("from=2026-03-05&to=2026-03-01", "from (2026-03-05) is after to (2026-03-01): swap them"),
        ("from=2025-01-01&to=2026-01-02", "the period has 367 days; a report covers at most 366"),
        ("from=2024-01-01&to=2026-12-31", "the period has 1096 days; a report covers at most 366"),
        ("from=1999-12-31&to=2000-01-02", "from must be between 2000-01-01 and 2999-12-31"),
        ("to=9999-12-31&from=9999-12-01", "to must be between 2000-01-01 and 2999-12-31"),
        ("format=xlsx", "format must be html or csv, not 'xlsx'"),
        ("format=csv&from=2026-13-01", "from is not a date of the calendar"),
        ("tz=Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("tz=../../etc/passwd", "tz must be a time zone name such as Europe/Paris, not '../../etc/passwd'"),
        ("tz=Europe/Paris%00", "tz must be a time zone name such as Europe/Paris"),
        ("from=2026-01-01%00", "from must be a date written YYYY-MM-DD"),
    ],
)
def test_bad_input_is_the_page_again_with_what_is_wrong_answered_400(supervisor: Client, query: str, says: str) -> None:
    response = supervisor.get("/dashboard/reports/?" + query)

    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    content = response.content.decode()
    error = re.search(r'<div class="form-error" id="report-error" role="alert">(.*?)</div>', content, re.S)
    assert error is not None, content[:2000]
    assert says.replace("'", "&#x27;") in error.group(1)
    assert 'id="report-form"' in content  # the form, to put it right


def test_the_longest_period_is_answered(supervisor: Client) -> None:
    response = supervisor.get("/dashboard/reports/?from=2025-01-02&to=2026-01-02")
    assert response.status_code == 200
    assert response.content.decode().count("<tr>") > 366


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in(client: Client) -> None:
    for query in ("", "?format=csv", "?from=bad"):
        response = client.get("/dashboard/reports/" + query)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/?next=/dashboard/reports/")


def test_an_agent_gets_the_page_that_says_it_is_for_supervisors(client: Client) -> None:
    client.force_login(make_user("ana"))
    for query in ("", "?format=csv"):
        response = client.get("/dashboard/reports/" + query)
        assert response.status_code == 403
        assert b"This page is for supervisors" in response.content
    assert b'href="/dashboard/reports/"' not in client.get("/workbench/").content


def test_supervisors_find_reports_in_the_top_bar_and_on_the_dashboard(supervisor: Client) -> None:
    assert b'href="/dashboard/reports/">Reports</a>' in supervisor.get("/workbench/").content
    assert b'href="/dashboard/reports/">Reports</a>' in supervisor.get("/dashboard/").content
    page = supervisor.get("/dashboard/reports/").content.decode()
    assert '<a href="/dashboard/reports/" aria-current="page">Reports</a>' in page


def page_config(content: bytes) -> dict[str, Any]:
    match = re.search(rb'<script id="page-config" type="application/json">(.*?)</script>', content, re.S)
    assert match, "no page-config on the page"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def html_tables(content: str) -> dict[str, list[list[str]]]:
    """Each report table of the page as rows of cell texts (head first); "" for an empty cell."""
    found = {}
    for table_id, body in re.findall(r'<table class="report" id="table-(\w+)">(.*?)</table>', content, re.S):
        rows = []
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S):
            cells = re.findall(r"<t[hd]([^>]*)>(.*?)</t[hd]>", row, re.S)
            rows.append(["" if "data-empty" in attrs else re.sub(r"<[^>]+>", "", text) for attrs, text in cells])
        found[table_id] = rows
    return found


def csv_blocks(text: str) -> tuple[list[str], dict[str, list[list[str]]]]:
    """The CSV's first line, and each block as rows (its caption line left out), by caption."""
    lines = list(csv.reader(io.StringIO(text)))
    blocks: dict[str, list[list[str]]] = {}
    current: list[list[str]] | None = None
    for line in lines[1:]:
        if not line:
            current = None
        elif current is None:
            current = blocks.setdefault(line[0], [])
        else:
            current.append(line)
    return lines[0], blocks


def test_the_page_shows_the_known_numbers_and_its_csv_has_the_same_tables(supervisor: Client) -> None:
    known_sessions()
    query = "from=2026-03-02&to=2026-03-04&tz=UTC"

    page = supervisor.get("/dashboard/reports/?" + query)
    exported = supervisor.get("/dashboard/reports/?" + query + "&format=csv")

    assert page.status_code == 200
    content = page.content.decode()
    assert 'id="total-escalated">9<' in content
    assert re.search(r'id="total-wait">0:25 <span class="stat-unit">·</span> 1:12<', content)
    assert re.search(r'id="total-response">0:15 <span class="stat-unit">·</span> 0:57<', content)
    tables = html_tables(content)
    assert tables["counts"] == [
        ["Day", "Escalated", "Accepted", "Closed"],
        ["2026-03-02", "5", "5", "4"],
        ["2026-03-03", "4", "3", "4"],
        ["2026-03-04", "0", "0", "0"],
    ]
    assert tables["times"][1:] == [
        ["2026-03-02", "30.0", "76.0", "20.0", "32.0"],
        ["2026-03-03", "12.0", "50.4", "6.0", "74.8"],
        ["2026-03-04", "", "", "", ""],
    ]
    assert tables["hours"][1] == ["00:00", "1"] and tables["hours"][9] == ["08:00", "2"] and len(tables["hours"]) == 25
    assert tables["agents"][1:] == [
        ["ana", "4", "25.0", "74.9", "3"],
        ["ben", "2", "25.0", "25.0", "2"],
        ["cleo", "2", "5.0", "5.8", "2"],
    ]
    # The charts' series are the tables' numbers.
    data = page_config(page.content)["report"]
    assert data["days"] == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert (data["escalated"], data["accepted"], data["closed"]) == ([5, 4, 0], [5, 3, 0], [4, 4, 0])
    assert data["wait_p90"] == [pytest.approx(76.0), pytest.approx(50.4), None]
    assert data["hours"][8] == 2 and data["tz"] == "UTC"

    assert exported.status_code == 200
    assert exported["Content-Type"] == "text/csv; charset=utf-8"
    assert exported["Content-Disposition"] == 'attachment; filename="report-2026-03-02-to-2026-03-04.csv"'
    first, blocks = csv_blocks(exported.content.decode())
    assert first == ["Report", "2026-03-02", "2026-03-04", "UTC"]
    assert blocks["Totals"] == [
        [
            "Escalated",
            "Accepted",
            "Closed",
            "Median wait (s)",
            "90th percentile wait (s)",
            "Median first response (s)",
            "90th percentile first response (s)",
        ],
        ["9", "8", "8", "25.0", "72.0", "15.0", "57.8"],
    ]
    captions = {
        "counts": "Sessions per day",
        "times": "Wait and first response per day",
        "hours": "Escalations by hour of the day",
        "agents": "Agents",
    }
    for table_id, caption in captions.items():
        assert blocks[caption] == tables[table_id], caption
    assert list(blocks) == ["Totals", *captions.values()]


def test_a_name_a_spreadsheet_would_run_as_a_formula_is_exported_as_text(supervisor: Client) -> None:
    # Only a service publishing its own status_change could put such a name in the record.
    episode("odd", T0 + H, accepted=T0 + H + 5, agent='=HYPERLINK("http://x")', answered=T0 + H + 9)

    exported = supervisor.get("/dashboard/reports/?from=2026-03-02&to=2026-03-02&format=csv").content.decode()

    _, blocks = csv_blocks(exported)
    assert blocks["Agents"][1][0] == '\'=HYPERLINK("http://x")'


def test_the_page_loads_the_vendored_chart_library_and_nothing_from_elsewhere(supervisor: Client) -> None:
    content = supervisor.get("/dashboard/reports/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', content)
    assert sources == [
        "/static/css/app.css",
        "/static/vendor/uplot/uPlot.min.css",
        "/static/js/live.js",
        "/static/vendor/uplot/uPlot.iife.min.js",
        "/static/js/reports.js",
        "/static/js/keys.js",
    ]
    vendored = (ROOT / "static/vendor/uplot/uPlot.iife.min.js").read_text()
    # The pages' policy has no 'unsafe-eval' and no inline styles: the library needs neither.
    assert "eval(" not in vendored and "new Function" not in vendored and 'setAttribute("style"' not in vendored
    assert (ROOT / "static/vendor/uplot/LICENSE").read_text().startswith("The MIT License")
    locked = json.loads((ROOT / "package-lock.json").read_text())["packages"]["node_modules/uplot"]["version"]
    assert f"(v{locked})" in vendored[:100]  # the vendored file is the locked version


# --- PostgreSQL ------------------------------------------------------------------------------------


ON_POSTGRES = r"""
import json, random
from datetime import date
from django.db import connection
from dashboard import reports
from dashboard.reports import Period
from tests import test_reports as t

t.known_sessions()
known = t.summary(reports.compute(t.KNOWN_PERIOD))
# Random waits on one day of its own: the portable percentiles against percentile_cont.
rng = random.Random(11)
waits = []
for i in range(101):
    start = t.T0 + 20 * t.D + rng.uniform(0, t.D - 4000)
    wait = round(rng.lognormvariate(3, 1.5), 3)
    t.episode(f"pg_r{i}", start, accepted=start + wait, agent="ana")
    waits.append(wait)
day = date(2026, 3, 22)
ours = reports.compute(Period(day, day, t.UTC_ZONE))
with connection.cursor() as cursor:
    cursor.execute(
        "SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY v), percentile_cont(0.9) WITHIN GROUP (ORDER BY v)"
        " FROM unnest(%s::float8[]) AS v", [waits])
    theirs = cursor.fetchone()
print(json.dumps({"vendor": connection.vendor, "known": known, "ours": [ours.wait.p50, ours.wait.p90],
                  "percentile_cont": list(theirs)}))
"""


def test_postgresql_gives_the_same_numbers_and_percentile_cont_agrees() -> None:
    result = run_on_scratch_postgres("reports", ON_POSTGRES, timeout=120)
    assert result["vendor"] == "postgresql"
    # JSON made the hours' keys strings.
    assert {**result["known"], "hours": {int(h): n for h, n in result["known"]["hours"].items()}} == KNOWN
    # The waits are differences of Unix timestamps (doubles): equal to a few 1e-7 s.
    assert result["ours"] == pytest.approx(result["percentile_cont"], abs=1e-6)
