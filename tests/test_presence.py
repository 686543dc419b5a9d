"""Presence: an agent is online while a workbench stream of theirs is open on any process."""

from __future__ import annotations

import pytest

from tests.support.procs import Daphne, SSEClient, base_env, cookie_header, login, manage, migrate, request, wait_until


@pytest.fixture(scope="module")
def presence_pair(redis_server, tmp_path_factory):
    db = tmp_path_factory.mktemp("presence") / "db.sqlite3"
    env = base_env(REDIS_URL=redis_server.url, DATABASE_URL=f"sqlite:///{db}", SSE_PRESENCE_GRACE_SECONDS="2")
    migrate(env)
    manage(env, "create_agent", "presence_alice", "--password", "pw-alice-for-tests")
    manage(env, "create_agent", "presence_bob", "--password", "pw-bob-for-tests")
    a, b = Daphne(env).start(), Daphne(env).start()
    yield a, b
    a.stop()
    b.stop()


def online(base_url: str) -> set[str]:
    status, body = request("GET", base_url + "/api/presence")
    assert status == 200, body
    return {row["agent"] for row in body["agents"]}


def test_an_agent_with_a_workbench_stream_on_a_is_online_on_b_and_goes_offline_after_the_grace(presence_pair):
    a, b = presence_pair
    cookies = login(a.url, "presence_alice", "pw-alice-for-tests")
    stream = SSEClient(
        a.url,
        "/api/events?channel=sse:broadcast&channel=sse:agent:presence_alice",
        token=None,
        headers={"Cookie": cookie_header(cookies)},
    ).wait_open()
    wait_until(lambda: "presence_alice" in online(b.url), timeout=1, what="alice online on B")
    stream.close()
    # Still online during the grace period (a reload must not flicker), gone after it.
    assert "presence_alice" in online(b.url)
    wait_until(lambda: "presence_alice" not in online(b.url), timeout=6, what="alice offline after the grace")


def test_a_stream_without_the_agents_own_channel_does_not_count_as_online(presence_pair):
    a, b = presence_pair
    cookies = login(a.url, "presence_bob", "pw-bob-for-tests")
    stream = SSEClient(a.url, "/api/broadcast/events", token=None, headers={"Cookie": cookie_header(cookies)})
    stream.wait_open()
    assert "presence_bob" not in online(b.url)
    stream.close()


def test_presence_needs_authentication(presence_pair):
    a, _ = presence_pair
    status, body = request("GET", a.url + "/api/presence", token=None)
    assert status == 401 and body["error"] == "not_authenticated"
