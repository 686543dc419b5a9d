"""Races decided by the database, with real concurrency against two daphne processes.

Agents logged in over HTTP accept the same sessions at the same moment, some on process A,
some on B (one SQLite file, one Redis): per session exactly one wins, the others get 409, and
the bus carries exactly one agent_joined. Escalating one new session from both processes at
once creates it once and announces it once.
"""

import threading
from collections import Counter

from realtime.channels import BROADCAST
from tests.support.procs import request
from tests.support.sessions import assert_redis_matches_db, create_agents, db_row, history, login, unique

SESSIONS = 20


def race(calls):
    """Run the calls in threads released together by a barrier; returns their results in order."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait()
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def test_of_agents_accepting_a_session_at_once_exactly_one_wins_every_time(daphne_pair, redis_env, redis_server):
    a, b = daphne_pair
    redis = redis_server.client()
    usernames = [unique("racer") for _ in range(4)]
    create_agents(redis_env, *usernames)
    agents = [login(a.url if i % 2 else b.url, u) for i, u in enumerate(usernames)]
    names = [unique("race") for _ in range(SESSIONS)]
    for name in names:
        status, body = request("POST", b.url + "/api/manual/escalate", {"session_name": name})
        assert status == 201, body

    # Session i is raced by 2, 3 or 4 agents, alternately on A and B; all sessions at once.
    calls, who = [], []
    for i, name in enumerate(names):
        for j, agent in enumerate(agents[: 2 + i % 3]):
            server = (a, b)[(i + j) % 2]
            calls.append(lambda agent=agent, url=f"{server.url}/api/sessions/{name}/accept": agent.post(url))
            who.append((name, agent.username))
    results = race(calls)

    by_session = {name: [] for name in names}
    for (name, username), (status, body) in zip(who, results, strict=True):
        by_session[name].append((status, username, body))
    for name, answers in by_session.items():
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [200] + [409] * (len(answers) - 1), (name, answers)
        assert all(body["error"] == "conflict" for status, _, body in answers if status == 409)
        [winner] = [username for status, username, _ in answers if status == 200]
        assert db_row(redis_env["DATABASE_URL"], name)["agent"] == winner
        assert assert_redis_matches_db(redis, redis_env["DATABASE_URL"], name)["agent"] == winner
        assert [e["type"] for e in history(redis, f"sse:session:{name}")].count("agent_joined") == 1
        joined_anywhere = Counter(
            e["channel"]
            for channel in [BROADCAST] + [f"sse:agent:{u}" for u in usernames]
            for e in history(redis, channel)
            if e["type"] == "agent_joined" and e["payload"]["session_name"] == name
        )
        assert joined_anywhere == {BROADCAST: 1, f"sse:agent:{winner}": 1}, (name, joined_anywhere)
    redis.close()


def test_escalating_a_new_session_from_both_processes_at_once_creates_and_announces_it_once(
    daphne_pair, redis_env, redis_server
):
    a, b = daphne_pair
    redis = redis_server.client()
    names = [unique("twice") for _ in range(10)]
    calls = [
        lambda url=server.url, name=name: request("POST", url + "/api/manual/escalate", {"session_name": name})
        for name in names
        for server in (a, b, a)
    ]

    results = race(calls)

    for i, name in enumerate(names):
        answers = results[3 * i : 3 * i + 3]
        assert sorted(status for status, _ in answers) == [200, 200, 201], (name, answers)
        assert all(body["event_ids"] == [] for status, body in answers if status == 200)
        kinds = [e["type"] for e in history(redis, f"sse:session:{name}")]
        assert kinds == ["transfer_request", "status_change"], (name, kinds)
        assert assert_redis_matches_db(redis, redis_env["DATABASE_URL"], name)["status"] == "waiting_agent"
    redis.close()
