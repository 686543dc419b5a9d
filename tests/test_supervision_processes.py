"""Supervision races over two real daphne processes on one SQLite file and one Redis: exactly
one owner, always.

- A supervisor's transfer (on one process) and the agent's own leave (on the other) at once:
  exactly one wins, and the bus tells what the database says.
- Round-robin assignment running in both processes while an agent accepts by hand on both:
  every session ends with exactly one owner and exactly one `agent_joined`; nobody is given
  more than the cap by the round robin.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.databases import scratch_database_url
from tests.support.procs import Daphne, SSEClient, base_env, cookie_header, login, manage, migrate, request, wait_until
from tests.support.sessions import create_agents, db_row, history, unique
from tests.support.sessions import login as agent_login
from tests.test_accept_race import race

PASSWORD = "pw-for-supervision"
SESSIONS = 12


def test_a_transfer_and_a_leave_at_once_have_exactly_one_winner(daphne_pair, redis_env, redis_server):
    a, b = daphne_pair
    redis = redis_server.client()
    ana, ben, sam = unique("ana"), unique("ben"), unique("sam")
    create_agents(redis_env, ana, ben)
    manage(redis_env, "create_agent", sam, "--password", "pw-for-tests", "--supervisor")
    agent, supervisor = agent_login(a.url, ana), agent_login(b.url, sam)
    names = [unique("tl") for _ in range(SESSIONS)]
    for name in names:
        assert request("POST", a.url + "/api/manual/escalate", {"session_name": name})[0] == 201
        assert agent.post(f"{a.url}/api/sessions/{name}/accept")[0] == 200

    calls = []
    for i, name in enumerate(names):
        leave_on, transfer_on = (a, b) if i % 2 else (b, a)
        calls.append(lambda url=f"{leave_on.url}/api/sessions/{name}/leave": agent.post(url))
        calls.append(lambda url=f"{transfer_on.url}/api/sessions/{name}/transfer": supervisor.post(url, {"to": ben}))
    results = race(calls)

    for i, name in enumerate(names):
        (left, left_body), (moved, moved_body) = results[2 * i], results[2 * i + 1]
        assert sorted([left, moved]) in ([200, 403], [200, 409]), (name, left_body, moved_body)
        row = db_row(redis_env["DATABASE_URL"], name)
        types = [e["type"] for e in history(redis, f"sse:session:{name}")]
        if left == 200:  # the leave first: back in the queue, the transfer found nobody to move
            assert (row["status"], row["agent"]) == ("waiting_agent", None)
            assert types.count("agent_joined") == 1 and types.count("agent_left") == 1
        else:  # the transfer first: ben has it, and ana's leave was not hers any more
            assert (row["status"], row["agent"]) == ("agent_handling", ben)
            assert types.count("agent_joined") == 2 and types.count("agent_left") == 1
    redis.close()


@pytest.fixture
def round_robin_pair(redis_server: Any, tmp_path: Path) -> Iterator[tuple[Daphne, Daphne, dict[str, str]]]:
    env = base_env(
        REDIS_URL=redis_server.url,
        DATABASE_URL=scratch_database_url(tmp_path, "round_robin"),
        ASSIGNMENT="round_robin",
        ASSIGNMENT_MAX_PER_AGENT="2",
        ASSIGNMENT_INTERVAL_SECONDS="1",
    )
    migrate(env)
    for name in ("rr_one", "rr_two", "rr_hand"):
        manage(env, "create_agent", name, "--password", PASSWORD)
    a = Daphne(env, log_path=tmp_path / "a.log").start()
    b = Daphne(env, log_path=tmp_path / "b.log").start()
    yield a, b, env
    a.stop()
    b.stop()


def workbench_stream(daphne: Daphne, username: str) -> SSEClient:
    """What a workbench page opens: the agent is online while it is."""
    cookies = login(daphne.url, username, PASSWORD)
    path = f"/api/events?channel=sse:broadcast&channel=sse:agent:{username}"
    return SSEClient(daphne.url, path, token=None, headers={"Cookie": cookie_header(cookies)}).wait_open()


def test_round_robin_in_both_processes_and_manual_accepts_give_each_session_one_owner(round_robin_pair, redis_server):
    a, b, env = round_robin_pair
    redis = redis_server.client()
    streams = [workbench_stream(a, "rr_one"), workbench_stream(b, "rr_two")]
    # The hand-accepting agent says Away: the round robin leaves them alone; they race it by hand.
    hand = agent_login(a.url, "rr_hand", PASSWORD)
    assert hand.post(f"{a.url}/api/agents/rr_hand/availability", {"state": "away"})[0] == 200
    names = [unique("rr") for _ in range(SESSIONS)]
    for i, name in enumerate(names):
        assert request("POST", (a, b)[i % 2].url + "/api/manual/escalate", {"session_name": name})[0] == 201
    # By hand, every other session, on both processes at once, while the round robin runs.
    by_hand = names[::2]
    accepted = dict(
        zip(
            by_hand,
            race(
                [
                    lambda name=name, server=(a, b)[i % 2]: hand.post(f"{server.url}/api/sessions/{name}/accept")
                    for i, name in enumerate(by_hand)
                ]
            ),
            strict=True,
        )
    )

    # The round robin fills both agents to the cap (2 each) from what the hand left waiting.
    def settled() -> bool:
        rows = [db_row(env["DATABASE_URL"], name) for name in names]
        load = Counter(row["agent"] for row in rows if row["agent"] in ("rr_one", "rr_two"))
        waiting = sum(row["status"] == "waiting_agent" for row in rows)
        return waiting == 0 or load == {"rr_one": 2, "rr_two": 2}

    wait_until(settled, timeout=20, what="the round robin to give out what it can")
    owners: Counter[str] = Counter()
    for name in names:
        status = accepted[name][0] if name in accepted else None
        row = db_row(env["DATABASE_URL"], name)
        joined = [e for e in history(redis, f"sse:session:{name}") if e["type"] == "agent_joined"]
        if row["status"] == "agent_handling":
            assert len(joined) == 1, (name, joined)
            assert joined[0]["payload"]["data"]["agent"] == row["agent"]
            owners[row["agent"]] += 1
            assert (status == 200) == (row["agent"] == "rr_hand"), (name, status, row)
        else:
            assert row["status"] == "waiting_agent" and joined == [] and status != 200
    # Six sessions were left to the round robin alone: both agents got exactly their cap.
    assert owners["rr_one"] == 2 and owners["rr_two"] == 2, owners
    for stream in streams:
        stream.close()
    redis.close()
