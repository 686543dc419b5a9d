"""The history search at 100,000 stored messages: the `search` part of `make bench`.

    python -m bench.run --modes search          # this part alone (about a minute), with the report
    python -m bench.search                      # the same, printing the raw JSON

For each database (SQLite in the run's work directory; PostgreSQL when one answers at
--search-postgres, in a scratch database of its own that is dropped afterwards), a child
process migrates an empty database, fills it with ~10,000 closed sessions holding 100,000
chat messages (plus each session's two handoff events), then times
`GET /api/sessions?status=closed&q=...&limit=50` through Django's test client, the whole view:
five kinds of search, ten different searches each, after one warm-up pass.

The same searches, in the same process, against two baselines:
  naive      the same endpoint answered by the query one would write first: sessions joined to
             their messages, LIKE on each, DISTINCT, then sorted (bench.search.naive_matching)
  no index   PostgreSQL only: the product's own query after DROP INDEX sessionevent_text_fts
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.procs import ROOT, base_env

SESSIONS = 10_000
MESSAGES_PER_SESSION = 10
SEARCHES_PER_KIND = 10
LIMIT = 50  # what the History page asks for
SEED = 20261204
POSTGRES_URL = "postgres://postgres@127.0.0.1:5432/postgres"

FIRST = (
    "Ada Ben Chloe Dmitri Elif Farah Goran Hana Ines Jonas Kai Lena Mateo Nadia Omar Priya Quentin Rosa Sven Tomas "
    "Uma Vera Wei Xavier Yusuf Zoe Amara Bruno Carmen Dario Emeka Freya Gaia Hugo Ivana Jamal Kira Luca Maren Nils"
).split()
LAST = (
    "Abara Berg Costa Duarte Eriksen Fischer Garcia Horvat Ivanova Jensen Kowalski Lindqvist Moreau Nakamura Okafor "
    "Petrov Quist Rossi Schmidt Tanaka Ueda Varga Weber Xu Yilmaz Zeller Almeida Brandt Castillo Dubois Esposito "
    "Fontaine Gruber Haddad Iqbal Janssen Keller Laine Marsh Novak"
).split()
# The words of the conversations: a few common ones, many ordinary ones.
OPENERS = ["Hello", "Hi", "Good morning", "Thanks for waiting", "Sorry to hear that", "I understand", "Of course"]
TOPICS = [
    "refund",
    "delivery",
    "invoice",
    "password",
    "subscription",
    "warranty",
    "parcel",
    "voucher",
    "discount",
    "account",
    "payment",
    "receipt",
    "exchange",
    "cancellation",
    "upgrade",
    "shipping",
    "address",
    "battery",
    "charger",
    "screen",
    "keyboard",
    "headphones",
    "printer",
    "router",
    "tablet",
    "camera",
    "speaker",
    "monitor",
]
VERBS = ["check", "send", "update", "confirm", "cancel", "replace", "track", "resend", "review", "escalate"]
TAILS = [
    "for you right away",
    "as soon as possible",
    "by the end of the day",
    "within two working days",
    "once the courier confirms it",
    "after the payment clears",
    "and let you know",
    "in the next email",
]
# Rare words: each in about fifty messages (0.05 %), like a product code or an unusual name.
RARE = [f"zq{chr(97 + i // 26)}{chr(97 + i % 26)}x" for i in range(200)]
RARE_SHARE = 0.1  # the share of messages carrying one rare word


def message_text(rng: random.Random) -> str:
    """One line of a support chat, 60-160 characters."""
    topic, other = rng.sample(TOPICS, 2)
    text = (
        f"{rng.choice(OPENERS)}, I will {rng.choice(VERBS)} the {topic} {rng.choice(TAILS)}; "
        f"the {other} is {rng.choice(['fine', 'on its way', 'not covered', 'in stock', 'back-ordered'])}."
    )
    if rng.random() < RARE_SHARE:
        text += f" Reference {rng.choice(RARE)}."
    return text


def searches(rng: random.Random) -> dict[str, list[str]]:
    """Ten searches of each kind: what people type into the History page's box."""
    pick = lambda pool: rng.sample(pool, SEARCHES_PER_KIND)  # noqa: E731
    return {
        "word": pick(TOPICS),  # each in ~7 % of messages: the newest 50 sessions come quickly
        "prefix": [word[: max(4, len(word) - 3)] for word in pick(TOPICS)],  # "refun" for "refund"
        "rare word": pick(RARE),  # ~50 messages each: most sessions are read before 50 are found
        "customer name": [f"{rng.choice(FIRST)} {rng.choice(LAST)}" for _ in range(SEARCHES_PER_KIND)],
        "no match": [f"nowhere{i}word" for i in range(SEARCHES_PER_KIND)],  # the worst case: everything read
    }


# --- the child: one database -----------------------------------------------------------------


def fill(rng: random.Random) -> dict[str, int]:
    """~10,000 closed sessions with 10 chat messages each, in a fresh database."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from dashboard.models import ChatSession, SessionEvent, Status

    agents = [get_user_model().objects.create_user(f"agent{i:02d}") for i in range(12)]
    now = datetime.now(UTC)
    sessions = []
    for i in range(SESSIONS):
        closed = now - timedelta(minutes=53 * (SESSIONS - i) + rng.randrange(50))
        first, last = rng.choice(FIRST), rng.choice(LAST)
        sessions.append(
            ChatSession(
                name=f"user_{i:05d}_{rng.randrange(16**6):06x}",
                status=Status.CLOSED,
                agent=agents[i % len(agents)],
                reason=rng.choice(["refund above the bot's limit", "wants a human", "angry customer", "billing"]),
                created_at=closed - timedelta(minutes=30),
                escalated_at=closed - timedelta(minutes=25),
                accepted_at=closed - timedelta(minutes=20),
                closed_at=closed,
                resolution_note=rng.choice(["", "", "Refund sent.", "Replacement shipped.", "Explained the bill."]),
                customer={"id": f"c{i % 6000}", "name": f"{first} {last}"},
                customer_ref=f"c{i % 6000}",
                customer_name=f"{first} {last}",
            )
        )
    with transaction.atomic():
        ChatSession.objects.bulk_create(sessions, batch_size=2000)
    ids = dict(ChatSession.objects.values_list("name", "pk"))
    events = []
    count = 0
    for session in sessions:
        pk = ids[session.name]
        assert session.accepted_at is not None
        t0 = session.accepted_at.timestamp()
        for kind in ("transfer_request", "status_change"):
            events.append(
                SessionEvent(
                    session_id=pk,
                    type=kind,
                    source="ai_chatbot",
                    payload={"session_name": session.name},
                    timestamp=t0 - 300,
                )
            )
        for k in range(MESSAGES_PER_SESSION):
            count += 1
            sender = "agent" if k % 2 else rng.choice(["customer", "customer", "bot"])
            text = message_text(rng)
            events.append(
                SessionEvent(
                    session_id=pk,
                    type="new_message",
                    source="agent_workbench" if sender == "agent" else "ai_chatbot",
                    payload={"session_name": session.name, "message_id": f"m{count}", "data": {"text": text}},
                    timestamp=t0 + 30 * k,
                    message_id=f"m{count}",
                    sender=sender,
                    text=text,
                )
            )
    with transaction.atomic():
        SessionEvent.objects.bulk_create(events, batch_size=5000)
    return {"sessions": len(sessions), "messages": count, "events": len(events)}


def naive_matching(sessions: Any, search: Any, limit: int) -> list[Any]:
    """The baseline: one join of sessions and messages, LIKE on each row, DISTINCT, sorted."""
    from django.db.models import Q

    from dashboard.history import Hit
    from dashboard.models import Status

    found = Q(customer_name__icontains=search.text) | Q(name__icontains=search.text)
    if search.words:
        found |= Q(*(Q(events__text__icontains=word) for word in search.words), events__type="new_message")
    rows = sessions.filter(status=Status.CLOSED).filter(found).distinct().order_by("-closed_at", "-pk")[:limit]
    return [Hit(session, None) for session in rows]


def time_searches(client: Any, kinds: dict[str, list[str]], warm_up: bool = False) -> dict[str, Any]:
    """Each search timed once (after a pass of them all, with `warm_up`): {kind: {"ms", "found"}}.

    The first system measured warms the database's caches for the others (same rows, same
    searches); the baselines skip the extra pass, which would only double their minutes."""
    from urllib.parse import urlencode

    def get(q: str) -> tuple[float, int]:
        started = time.perf_counter()
        response = client.get("/api/sessions?" + urlencode({"status": "closed", "limit": LIMIT, "q": q}))
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise RuntimeError(f"search {q!r} answered {response.status_code}: {response.content[:300]!r}")
        return elapsed, len(response.json()["sessions"])

    for queries in kinds.values() if warm_up else ():
        for q in queries:
            get(q)
    timed: dict[str, Any] = {}
    for kind, queries in kinds.items():
        results = [get(q) for q in queries]
        timed[kind] = {"ms": [ms for ms, _ in results], "found": [n for _, n in results]}
    return timed


def child() -> dict[str, Any]:
    """Run in a process of its own, on the database DATABASE_URL names."""
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from dashboard import history

    call_command("migrate", "--noinput", verbosity=0)
    rng = random.Random(SEED)
    started = time.perf_counter()
    filled = fill(rng)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    fill_seconds = time.perf_counter() - started
    kinds = searches(rng)
    from django.contrib.auth import get_user_model

    client = Client(SERVER_NAME="127.0.0.1")
    client.force_login(get_user_model().objects.get(username="agent00"))
    result: dict[str, Any] = {"database": connection.vendor, **filled, "fill_seconds": fill_seconds, "limit": LIMIT}
    result["queries"] = kinds
    result["product"] = time_searches(client, kinds, warm_up=True)
    product = history.closed_matching
    history.closed_matching = naive_matching  # type: ignore[assignment]
    try:
        result["naive"] = time_searches(client, kinds)
    finally:
        history.closed_matching = product  # type: ignore[assignment]
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP INDEX sessionevent_text_fts")
        result["no index"] = time_searches(client, kinds)
    return result


# --- the parent: both databases --------------------------------------------------------------


def _run_child(database_url: str, log: Path) -> dict[str, Any]:
    env = base_env(DATABASE_URL=database_url, DJANGO_SETTINGS_MODULE="sse_project.settings")
    with open(log, "ab") as err:
        done = subprocess.run(
            [sys.executable, "-m", "bench.search", "--child"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=600,
            check=False,
        )
    if done.returncode != 0:
        raise RuntimeError(f"the search bench on {database_url.split('@')[-1]} failed; see {log}")
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def _postgres(admin_url: str) -> Any:
    """A connection to PostgreSQL's admin database, or None when none answers."""
    try:
        import psycopg

        return psycopg.connect(admin_url, connect_timeout=3, autocommit=True)
    except Exception as exc:  # the driver's errors, a refused connection, a bad URL
        print(f"   PostgreSQL at {admin_url.split('@')[-1]} is not reachable ({exc}): SQLite only", flush=True)
        return None


def measure(workdir: Path, postgres_url: str | None = POSTGRES_URL) -> dict[str, Any]:
    """The search part of a bench run: {"databases": [one result per database measured]}."""
    out: dict[str, Any] = {"databases": [], "skipped": []}
    print("\n== history search, SQLite", flush=True)
    out["databases"].append(_run_child(f"sqlite:///{workdir / 'search.sqlite3'}", workdir / "search-sqlite.log"))
    _say(out["databases"][-1])
    admin = _postgres(postgres_url) if postgres_url else None
    if admin is None:
        out["skipped"].append("postgresql")
        return out
    scratch = f"bench_history_{os.getpid()}"  # a database of this run's own, dropped below
    print(f"\n== history search, PostgreSQL (scratch database {scratch})", flush=True)
    try:
        admin.execute(f'CREATE DATABASE "{scratch}"')
        base, _, _ = postgres_url.rpartition("/") if postgres_url else ("", "", "")
        out["databases"].append(_run_child(f"{base}/{scratch}", workdir / "search-postgresql.log"))
        _say(out["databases"][-1])
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        admin.close()
    return out


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank, of a non-empty list."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def _say(result: dict[str, Any]) -> None:
    print(
        f"   {result['sessions']} closed sessions, {result['messages']} messages, filled in "
        f"{result['fill_seconds']:.1f}s",
        flush=True,
    )
    for kind in result["product"]:
        line = []
        for system in ("product", "naive", "no index"):
            if system in result:
                ms = result[system][kind]["ms"]
                line.append(f"{system} p50 {percentile(ms, 50):.1f} p99 {percentile(ms, 99):.1f} ms")
        print(f"   {kind:14s} " + "; ".join(line), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--search-postgres", default=POSTGRES_URL, help="PostgreSQL admin URL ('' for SQLite only)")
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child()), flush=True)
        return
    import tempfile

    workdir = Path(tempfile.mkdtemp(prefix="sse-bench-search-"))
    print(json.dumps(measure(workdir, args.search_postgres or None), indent=1))


if __name__ == "__main__":
    main()
