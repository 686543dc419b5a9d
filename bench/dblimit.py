"""The database's own limit for agent messages: one process writing what a message writes.

    python -m bench.dblimit --db sqlite                       # a SQLite file in a temp dir
    python -m bench.dblimit --db sqlite:////tmp/x.sqlite3      # that file (migrated first)
    python -m bench.dblimit --db postgres://u@host:5432/scratch_db
    python -m bench.dblimit --postgres-admin postgres://postgres@127.0.0.1:5432/postgres
                                                               # a scratch database, dropped after

`measure(db_url, seconds)` runs a child process with the product's settings on that database
(migrated there first), which writes, as fast as it can, in one transaction each, the rows one
agent message command writes in the product (`dashboard.services.send_message`): the
ChatSession UPDATE (last_message_*, awaiting_reply_since, version, under the same WHERE), the
three OutboxEvent rows (its session channel, sse:broadcast, the agent's channel; one
bulk INSERT) and the SessionEvent row of the record linked to the session channel's outbox row.
The shapes are copied, the product's service is not called: no validation, no auth, no
reads, no Redis. Messages go round-robin over 500 sessions, each with its own agent.

Then, for scale, the same with what the product writes after the commit when the outbox has
published the events (`realtime.outbox._mark` and `dashboard.record.on_outbox_published`), in
a second transaction per message: the three outbox rows marked (event_id, published_at), the
record's event_id, the session's last_event_id. Reported as `with_publish_marks`. The product's
reads (the session re-read in the command, the relay's query for pending rows) are left out:
this is the ceiling of the writes.

Result (JSON): `{"database", "vendor", "seconds", "transactions", "tx_per_s", "p50_ms",
"p99_ms", "max_ms", "with_publish_marks": {"messages", "messages_per_s", "p50_ms", "p99_ms",
"max_ms"}}` (latencies per transaction; per message, both transactions, for the marks).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.procs import ROOT, base_env

SESSIONS = 500
TEXT = "Thanks, let me check that for you: one moment while I look at your order. #qa{seq}."
SOURCE = "agent_workbench"


def measure(db_url: str, seconds: float = 5.0) -> dict[str, Any]:
    """Transactions/s and latency per transaction of one agent message's writes on `db_url`
    (a SQLite URL or a scratch PostgreSQL database; "sqlite" alone: a file in a temp dir)."""
    if db_url == "sqlite":
        with tempfile.TemporaryDirectory(prefix="dblimit-") as tmp:
            return measure(f"sqlite:///{Path(tmp) / 'dblimit.sqlite3'}", seconds)
    env = base_env(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="sse_project.settings")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True, timeout=300
    )
    done = subprocess.run(
        [sys.executable, "-m", "bench.dblimit", "--child", "--seconds", str(seconds)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120 + 4 * seconds,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench.dblimit child failed: {done.stderr.decode(errors='replace')[-2000:]}")
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


# --- the child: Django set up with the product's settings, on the migrated database ---------


def _setup() -> list[tuple[str, int, str]]:
    """SESSIONS agents, each handling one session: (session name, agent pk, agent name)."""
    from django.contrib.auth import get_user_model
    from django.utils import timezone

    from dashboard.models import ChatSession, Status

    users = get_user_model()
    stamp = uuid.uuid4().hex[:6]
    names = [f"dbl_{stamp}_{i:03d}" for i in range(SESSIONS)]
    users.objects.bulk_create([users(username=name, password="!") for name in names])
    pks = dict(users.objects.filter(username__in=names).values_list("username", "pk"))
    now = timezone.now()
    ChatSession.objects.bulk_create(
        [
            ChatSession(
                name=name,
                status=Status.AGENT_HANDLING,
                agent_id=pks[name],
                escalated_at=now,
                accepted_at=now,
                awaiting_reply_since=now,
            )
            for name in names
        ]
    )
    return [(name, pks[name], name) for name in names]


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _message(name: str, agent_pk: int, agent: str, seq: int) -> tuple[Any, list[Any]]:
    """One agent message's transaction, as the product's send_message writes it; returns the
    session's row count updated and the outbox rows (for the marks)."""
    from django.db import transaction
    from django.db.models import F, Q
    from django.utils import timezone

    from dashboard.models import ChatSession, SessionEvent, Status
    from realtime.models import OutboxEvent

    text = TEXT.format(seq=seq)
    with transaction.atomic():
        touched = ChatSession.objects.filter(
            Q(agent_id=agent_pk) | Q(supervisor_id=agent_pk), name=name, status=Status.AGENT_HANDLING
        ).update(
            version=F("version") + 1,
            last_message_text=text[:200],
            last_message_sender="agent",
            last_message_at=timezone.now(),
            awaiting_reply_since=None,
        )
        message_id = uuid.uuid4().hex
        payload = {
            "session_name": name,
            "message_id": message_id,
            "data": {"text": text, "sender": "agent", "agent": agent},
        }
        stamp = time.time()
        batch = uuid.uuid4().hex
        channels = (f"sse:session:{name}", "sse:broadcast", f"sse:agent:{agent}")
        rows = OutboxEvent.objects.bulk_create(
            [
                OutboxEvent(
                    batch=batch,
                    channel=channel,
                    type="new_message",
                    body=_dumps(
                        {
                            "channel": channel,
                            "type": "new_message",
                            "payload": payload,
                            "timestamp": stamp,
                            "source": SOURCE,
                        }
                    ),
                )
                for channel in channels
            ]
        )
        SessionEvent.objects.create(
            session_id=_session_pk(name),
            type="new_message",
            source=SOURCE,
            payload=payload,
            timestamp=stamp,
            outbox=rows[0],
            message_id=message_id,
            sender="agent",
            text=text,
        )
    return touched, rows


_pks: dict[str, int] = {}


def _session_pk(name: str) -> int:
    """The session's pk (the product has it from the row it re-reads; not counted here)."""
    return _pks[name]


def _marks(name: str, rows: list[Any], seq: int) -> None:
    """What follows the publish: the outbox rows marked, the record's id, the session's last id."""
    from django.db import transaction
    from django.db.models import F, Q
    from django.utils import timezone

    from dashboard.models import ChatSession, SessionEvent
    from realtime.models import OutboxEvent

    now = timezone.now()
    ms = int(time.time() * 1000)
    for index, row in enumerate(rows):
        row.event_id = f"{ms}-{seq * 3 + index}"
        row.published_at = now
    with transaction.atomic():
        OutboxEvent.objects.bulk_update(rows, ["event_id", "published_at"])
        # The record's row is the session channel's (the product updates only those).
        SessionEvent.objects.filter(outbox=rows[0]).update(event_id=rows[0].event_id)
        key = f"{ms:020d}{seq * 3:020d}"
        ChatSession.objects.filter(Q(name=name) & Q(last_event_key__lt=key)).update(
            last_event_id=rows[0].event_id, last_event_key=key, version=F("version") + 1
        )


def _percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    n = len(ordered)
    return {
        "p50_ms": ordered[n // 2] * 1000,
        "p99_ms": ordered[min(n - 1, int(0.99 * n))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def _loop(
    sessions: list[tuple[str, int, str]], seconds: float, marks: bool, start: int
) -> tuple[list[float], float, int]:
    """Messages for `seconds`: the time of each, the wall time in all, the next sequence number."""
    samples: list[float] = []
    seq = start
    began_all = time.perf_counter()
    deadline = began_all + seconds
    while time.perf_counter() < deadline:
        name, agent_pk, agent = sessions[seq % len(sessions)]
        began = time.perf_counter()
        touched, rows = _message(name, agent_pk, agent, seq)
        if marks:
            _marks(name, rows, seq)
        samples.append(time.perf_counter() - began)
        if touched != 1:
            raise RuntimeError(f"the session UPDATE matched {touched} rows, not 1")
        seq += 1
    return samples, time.perf_counter() - began_all, seq


def child(seconds: float) -> dict[str, Any]:
    import django

    django.setup()
    from django.db import connection

    from dashboard.models import ChatSession

    sessions = _setup()
    _pks.update(ChatSession.objects.filter(name__in=[s[0] for s in sessions]).values_list("name", "pk"))
    _loop(sessions, min(1.0, seconds / 5), marks=True, start=0)  # warm-up: caches, the pool, the file
    samples, wall, seq = _loop(sessions, seconds, marks=False, start=1_000_000)
    marked, marked_wall, _ = _loop(sessions, seconds, marks=True, start=seq)
    settings = connection.settings_dict
    return {
        "database": connection.vendor if connection.vendor != "sqlite" else f"sqlite ({Path(settings['NAME']).name})",
        "vendor": connection.vendor,
        "seconds": seconds,
        "transactions": len(samples),
        "tx_per_s": len(samples) / wall,
        **_percentiles(samples),
        "with_publish_marks": {
            "messages": len(marked),
            "messages_per_s": len(marked) / marked_wall,
            **_percentiles(marked),
        },
    }


# --- the command line ------------------------------------------------------------------


def measure_on_postgres(admin_url: str, seconds: float = 5.0) -> dict[str, Any]:
    """A scratch database of this process's own on that server, dropped afterwards."""
    from bench import search

    admin = search._postgres(admin_url)
    if admin is None:
        raise SystemExit(f"no PostgreSQL answers at {admin_url.split('@')[-1]}")
    scratch = f"bench_dblimit_{os.getpid()}"
    try:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
        admin.execute(f'CREATE DATABASE "{scratch}"')
        return measure(f"{admin_url.rpartition('/')[0]}/{scratch}", seconds)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--db", help='a database URL (migrated first), or "sqlite" for a file in a temp dir')
    where.add_argument("--postgres-admin", help="a PostgreSQL admin URL: measure in a scratch database of its own")
    where.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.child:
        result = child(args.seconds)
    elif args.postgres_admin:
        result = measure_on_postgres(args.postgres_admin, args.seconds)
    else:
        result = measure(args.db, args.seconds)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
