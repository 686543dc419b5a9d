"""The Reports page at 100,000 sessions: the `reports` part of `make bench`.

    python -m bench.run --modes reports --tag reports   # this part alone, with the report
    python -m bench.reports                             # the same, printing the raw JSON

For each database (SQLite in the run's work directory; PostgreSQL when one answers at
--search-postgres, in a scratch database of its own that is dropped afterwards), a child process
migrates an empty database and fills it with 100,000 sessions over the last 120 days, each with
the events a handoff leaves in the record (the escalation's transfer_request and status_change,
the accept's agent_joined and status_change, a customer's message, the agent's answers, the
close), some escalated twice, some handed back to the queue, some never accepted. Then it times
the report of a 30-day period (ten different periods, each twice, after a warm-up pass):

  product    dashboard.reports.compute: the one SQL statement (and the whole page, through
             Django's test client, for the record)
  python     the baseline: the same numbers computed in Python from every row the report
             reads (the events fetched in order, episodes, days and percentiles in a loop)

Both must give the same numbers, or the run fails.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.procs import ROOT, base_env
from bench.search import POSTGRES_URL, _postgres, percentile

SESSIONS = 100_000
DAYS = 120  # the sessions are spread over this many days up to the run
PERIOD_DAYS = 30
PERIODS = 10  # different 30-day periods timed, ending 0, 3, 6, ... days ago
REPEATS = 2
AGENTS = 25
SEED = 20261204
CHUNK = 2000  # sessions written per transaction

# When customers ask for a person: a working day's shape (share of a day's escalations per hour).
HOUR_WEIGHTS = [1, 1, 1, 1, 1, 2, 3, 6, 9, 11, 11, 10, 8, 9, 10, 10, 9, 8, 6, 5, 4, 3, 2, 1]


# --- the child: one database -----------------------------------------------------------------


def fill(rng: random.Random) -> dict[str, int]:
    """100,000 sessions with their key events, in a fresh database."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from dashboard.models import ChatSession, SessionEvent, Status

    names = [f"agent{i:02d}" for i in range(AGENTS)]
    for name in names:
        get_user_model().objects.create_user(name)
    now = time.time()
    first_day = now - DAYS * 86400
    counts = {"sessions": 0, "events": 0, "episodes": 0}

    def change(previous: str, status: str, agent: str | None) -> tuple[str, dict[str, Any]]:
        return "status_change", {"status": status, "data": {"previous": previous, "agent": agent}}

    for chunk in range(0, SESSIONS, CHUNK):
        sessions = []
        plans = []
        for i in range(chunk, min(chunk + CHUNK, SESSIONS)):
            day = rng.randrange(DAYS)
            hour = rng.choices(range(24), HOUR_WEIGHTS)[0]
            start = min(first_day + day * 86400 + hour * 3600 + rng.uniform(0, 3600), now - 7200)
            plan: list[tuple[float, str, dict[str, Any]]] = []
            at = start
            previous = "ai_handling"
            status = Status.WAITING_AGENT
            agent = None
            for ep in range(2 if rng.random() < 0.05 else 1):  # 5 % come back later
                if ep:
                    at += rng.uniform(3600, 5 * 86400)
                    if status != Status.CLOSED or at > now - 3600:
                        break  # only a closed session is escalated again
                counts["episodes"] += 1
                plan.append((at, "transfer_request", {"status": "waiting_agent", "data": {"reason": "human"}}))
                plan.append((at, *change(previous, "waiting_agent", None)))
                plan.append((at + 1, "new_message", {"data": {"text": "Hello?", "sender": "customer"}}))
                status = Status.WAITING_AGENT
                if rng.random() < 0.06:  # gave up in the queue
                    at += rng.uniform(60, 1800)
                    plan.append((at, *change("waiting_agent", "closed", None)))
                    previous, status = "closed", Status.CLOSED
                    continue
                at += rng.lognormvariate(4.0, 1.0)  # the wait: median ~55 s
                agent = rng.choice(names)
                plan.append((at, "agent_joined", {"status": "agent_handling", "data": {"agent": agent}}))
                plan.append((at, *change("waiting_agent", "agent_handling", agent)))
                status = Status.AGENT_HANDLING
                if rng.random() < 0.03:  # handed back to the queue, taken by another
                    at += rng.uniform(20, 300)
                    plan.append((at, *change("agent_handling", "waiting_agent", None)))
                    at += rng.lognormvariate(4.0, 1.0)
                    agent = rng.choice(names)
                    plan.append((at, *change("waiting_agent", "agent_handling", agent)))
                if rng.random() < 0.95:
                    for _ in range(2):
                        at += rng.lognormvariate(3.0, 0.8)  # the first answer: median ~20 s
                        plan.append((at, "new_message", {"data": {"text": "Let me check.", "sender": "agent"}}))
                if at + 600 < now and rng.random() < 0.93:
                    at += rng.uniform(60, 1800)
                    plan.append((at, *change("agent_handling", "closed", agent)))
                    previous, status = "closed", Status.CLOSED
            name = f"bench_{i:06d}"
            escalated = max(t for t, kind, p in plan if kind == "transfer_request")
            sessions.append(
                ChatSession(
                    name=name,
                    status=status,
                    created_at=datetime.fromtimestamp(start - 120, UTC),
                    escalated_at=datetime.fromtimestamp(escalated, UTC),
                )
            )
            plans.append(plan)
        with transaction.atomic():
            ChatSession.objects.bulk_create(sessions)
            ids = dict(ChatSession.objects.filter(name__in=[s.name for s in sessions]).values_list("name", "pk"))
            events = []
            for session, plan in zip(sessions, plans, strict=True):
                for at, kind, payload in plan:
                    sender = payload["data"].get("sender", "") if kind == "new_message" else ""
                    events.append(
                        SessionEvent(
                            session_id=ids[session.name],
                            type=kind,
                            source="agent_workbench" if sender != "customer" else "ai_chatbot",
                            payload={"session_name": session.name, **payload},
                            timestamp=at,
                            sender=sender,
                            text=payload["data"].get("text", "") if sender else "",
                        )
                    )
            SessionEvent.objects.bulk_create(events, batch_size=5000)
        counts["sessions"] += len(sessions)
        counts["events"] += len(events)
    return counts


def python_report(period: Any) -> dict[str, Any]:
    """The baseline: the report's numbers from every row it reads, worked out in Python."""
    from django.db.models import Q

    from dashboard.models import SessionEvent
    from dashboard.reports import ROW_SLACK

    start, end = period.bounds()
    rows = (
        SessionEvent.objects.filter(
            session__escalated_at__gte=datetime.fromtimestamp(start, UTC) - ROW_SLACK,
            session__created_at__lt=datetime.fromtimestamp(end, UTC) + ROW_SLACK,
            timestamp__gte=start,
        )
        .filter(Q(type="status_change") | Q(type="new_message", sender="agent"))
        .order_by("session_id", "timestamp", "id")
        .values_list("session_id", "timestamp", "type", "payload")
    )
    episodes: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    last_session = None
    for session_id, ts, kind, payload in rows.iterator(chunk_size=10_000):
        if session_id != last_session:
            current, last_session = None, session_id
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        status, previous = payload.get("status"), data.get("previous")
        if kind == "status_change" and status == "waiting_agent" and previous in ("ai_handling", "closed"):
            current = {"escalated": ts, "accepted": None, "answered": None, "closed": None, "agent": None}
            episodes.append(current)
        elif current is None:
            continue
        elif kind == "new_message":
            current["answered"] = current["answered"] or ts
        elif status == "agent_handling" and previous == "waiting_agent" and current["accepted"] is None:
            current["accepted"], current["agent"] = ts, data.get("agent")
        elif status == "closed" and current["closed"] is None:
            current["closed"] = ts
    days = period.days
    per_day: list[dict[str, list[float]]] = [{"wait": [], "response": [], "n": []} for _ in days]
    counts = [[0, 0, 0] for _ in days]
    agents: dict[str, list[Any]] = {}
    totals = [0, 0, 0]
    waits, responses = [], []
    for ep in episodes:
        if not start <= ep["escalated"] < end:
            continue
        local = datetime.fromtimestamp(ep["escalated"], period.tz).date()
        i = min(max((local - period.first).days, 0), len(days) - 1)
        accepted, closed = ep["accepted"] is not None, ep["closed"] is not None
        for row in (counts[i], totals):
            row[0] += 1
            row[1] += accepted
            row[2] += closed
        if accepted:
            wait = ep["accepted"] - ep["escalated"]
            per_day[i]["wait"].append(wait)
            waits.append(wait)
            agent = agents.setdefault(ep["agent"], [0, 0, []])
            agent[0] += 1
            agent[1] += closed
            if ep["answered"] is not None and ep["answered"] >= ep["accepted"]:
                response = ep["answered"] - ep["accepted"]
                per_day[i]["response"].append(response)
                responses.append(response)
                agent[2].append(response)
    return {
        "totals": totals,
        "wait": _spread(waits),
        "response": _spread(responses),
        "days": [[c, _spread(d["wait"]), _spread(d["response"])] for c, d in zip(counts, per_day, strict=True)],
        "agents": sorted(
            ([name, a[0], a[1], _spread(a[2])] for name, a in agents.items()), key=lambda r: (-r[1], r[0])
        ),
    }


def _spread(values: list[float]) -> list[Any]:
    if not values:
        return [0, None, None]
    if len(values) == 1:
        return [1, round(values[0], 3), round(values[0], 3)]
    cuts = statistics.quantiles(values, n=10, method="inclusive")
    return [len(values), round(cuts[4], 3), round(cuts[8], 3)]


def sql_summary(report: Any) -> dict[str, Any]:
    """The product's report in python_report's shape, to compare the two."""

    def spread(s: Any) -> list[Any]:
        return [s.n, None if s.p50 is None else round(s.p50, 3), None if s.p90 is None else round(s.p90, 3)]

    return {
        "totals": [report.totals.escalated, report.totals.accepted, report.totals.closed],
        "wait": spread(report.wait),
        "response": spread(report.response),
        "days": [
            [[d.counts.escalated, d.counts.accepted, d.counts.closed], spread(d.wait), spread(d.response)]
            for d in report.days
        ],
        "agents": [[a.agent, a.handled, a.closed, spread(a.response)] for a in report.agents],
    }


def _same(ours: dict[str, Any], theirs: dict[str, Any]) -> bool:
    """Equal, durations within a millisecond (rounded sums of doubles may differ in the last digit)."""

    def flat(value: Any) -> list[Any]:
        if isinstance(value, dict):
            return [x for key in sorted(value) for x in flat(value[key])]
        if isinstance(value, list):
            return [x for item in value for x in flat(item)]
        return [value]

    a, b = flat(ours), flat(theirs)
    return len(a) == len(b) and all(
        abs(x - y) <= 0.002 if isinstance(x, float) and isinstance(y, float) else x == y
        for x, y in zip(a, b, strict=True)
    )


def child() -> dict[str, Any]:
    """Run in a process of its own, on the database DATABASE_URL names."""
    import django

    django.setup()
    from zoneinfo import ZoneInfo

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from dashboard import reports

    call_command("migrate", "--noinput", verbosity=0)
    rng = random.Random(SEED)
    started = time.perf_counter()
    filled = fill(rng)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    fill_seconds = time.perf_counter() - started
    today = datetime.now(UTC).date()
    utc = ZoneInfo("UTC")
    periods = [
        reports.Period(today - timedelta(days=k * 3 + PERIOD_DAYS - 1), today - timedelta(days=k * 3), utc)
        for k in range(PERIODS)
    ]
    staff = get_user_model().objects.create_user("bench_supervisor", is_staff=True)
    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(staff)

    def page(period: reports.Period) -> float:
        query = f"from={period.first.isoformat()}&to={period.last.isoformat()}&tz=UTC"
        t0 = time.perf_counter()
        response = client.get("/dashboard/reports/?" + query)
        elapsed = (time.perf_counter() - t0) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"the page answered {response.status_code}: {response.content[:300]!r}")
        return elapsed

    def timed(fn: Any, period: reports.Period) -> tuple[float, Any]:
        t0 = time.perf_counter()
        out = fn(period)
        return (time.perf_counter() - t0) * 1000, out

    for period in periods:  # warm-up: the database's caches, Django's templates
        reports.compute(period)
        page(period)
    result: dict[str, Any] = {"database": connection.vendor, **filled, "fill_seconds": fill_seconds}
    result["period_days"] = PERIOD_DAYS
    result["periods"] = [[p.first.isoformat(), p.last.isoformat()] for p in periods]
    product, pages, baseline, escalated = [], [], [], []
    for _ in range(REPEATS):
        for period in periods:
            ms, report = timed(reports.compute, period)
            product.append(ms)
            escalated.append(report.totals.escalated)
            pages.append(page(period))
    mismatches = []
    for period in periods:  # the baseline once per period: it is the slow one
        ms, theirs = timed(python_report, period)
        baseline.append(ms)
        ours = sql_summary(reports.compute(period))
        if not _same(ours, theirs):
            mismatches.append(period.first.isoformat())
    if mismatches:
        raise RuntimeError(f"the report and the Python baseline disagree for the periods from {mismatches}")
    # The longest period a report covers, for scale: a year.
    year = reports.Period(today - timedelta(days=reports.MAX_DAYS - 1), today, utc)
    result["year_ms"] = [timed(reports.compute, year)[0] for _ in range(3)]
    result["year_days"] = len(year.days)
    result["escalated_per_period"] = escalated[: len(periods)]
    result["product"] = product
    result["page"] = pages
    result["python"] = baseline
    result["agree"] = True
    # What the database does with the statement (for the README), on the first period.
    result["plan"] = _plan(periods[0])
    return result


def _plan(period: Any) -> str:
    """What the database does with the report's statement: EXPLAIN ANALYZE on PostgreSQL,
    EXPLAIN QUERY PLAN on SQLite."""
    from django.db import connection

    from dashboard import reports

    sql, params = reports.statement(period)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + sql, params)
            return "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("EXPLAIN QUERY PLAN " + sql, params)
        return "\n".join(str(row[-1]) for row in cursor.fetchall())


# --- the parent: both databases --------------------------------------------------------------


def _run_child(database_url: str, log: Path) -> dict[str, Any]:
    env = base_env(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="sse_project.settings")
    with open(log, "ab") as err:
        done = subprocess.run(
            [sys.executable, "-m", "bench.reports", "--child"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=1800,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the reports bench on {database_url.split('@')[-1]} failed; see {log}")
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def measure(workdir: Path, postgres_url: str | None = POSTGRES_URL) -> dict[str, Any]:
    """The reports part of a bench run: {"databases": [one result per database measured]}."""
    out: dict[str, Any] = {"databases": [], "skipped": []}
    print("\n== reports, SQLite", flush=True)
    out["databases"].append(_run_child(f"sqlite:///{workdir / 'reports.sqlite3'}", workdir / "reports-sqlite.log"))
    _say(out["databases"][-1])
    admin = _postgres(postgres_url) if postgres_url else None
    if admin is None:
        out["skipped"].append("postgresql")
        return out
    scratch = f"bench_reports_{os.getpid()}"  # a database of this run's own, dropped below
    print(f"\n== reports, PostgreSQL (scratch database {scratch})", flush=True)
    try:
        admin.execute(f'CREATE DATABASE "{scratch}"')
        base, _, _ = postgres_url.rpartition("/") if postgres_url else ("", "", "")
        out["databases"].append(_run_child(f"{base}/{scratch}", workdir / "reports-postgresql.log"))
        _say(out["databases"][-1])
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin.close()
    return out


def _say(result: dict[str, Any]) -> None:
    print(
        f"   {result['sessions']:,} sessions ({result['episodes']:,} escalations), {result['events']:,} events, "
        f"filled in {result['fill_seconds']:.1f}s; {statistics.median(result['escalated_per_period']):,.0f} "
        f"escalations per {result['period_days']}-day period",
        flush=True,
    )
    for system in ("product", "page", "python"):
        ms = result[system]
        print(f"   {system:8s} p50 {percentile(ms, 50):8.1f} ms  p99 {percentile(ms, 99):8.1f} ms", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--postgres", default=POSTGRES_URL, help="PostgreSQL admin URL ('' for SQLite only)")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child()), flush=True)
        return
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="sse-bench-reports-"))
    print(json.dumps(measure(workdir, args.postgres or None), indent=1))


if __name__ == "__main__":
    main()
