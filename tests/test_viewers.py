"""Who is viewing a session (realtime/viewers.py, GET /api/sessions/{name}/viewers).

The store in one process and on Redis (writes at once, leases renewed and running out, a
process that dies, the same person on two processes), the streams that count and those that
do not, the API's answers and refusals, and two real daphne processes on one Redis, one of
them killed.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from asgiref.sync import sync_to_async
from django.test import Client

from realtime import viewers as viewers_module
from realtime.hub import Hub
from realtime.redis_conn import RedisTarget
from realtime.viewers import Viewers, from_memory, from_redis, parse_member, viewers_key, viewers_of
from tests.support.hubs import NoBackend
from tests.support.procs import (
    Daphne,
    RedisServer,
    SSEClient,
    base_env,
    cookie_header,
    free_port,
    login,
    manage,
    migrate,
    request,
    wait_until,
)
from tests.support.sessions import TEST_TOKEN, browser, make_user, post_service, unique
from tests.support.streams import Stream, in_loop, login_cookie

LEASE = 10.0  # the default SSE_VIEWERS_LEASE_SECONDS


@pytest.fixture(autouse=True)
def short_linger(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leaving takes effect after 0.05 s here (2 s in the product: a page changing its channels)."""
    monkeypatch.setattr(viewers_module, "LINGER_SECONDS", 0.05)


async def until(check: Callable[[], Any], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


async def until_async(check: Callable[[], Any], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def async_client(server: RedisServer) -> Callable[[], aioredis.Redis]:
    """A client as a server process's link has (one retry, no back-off), for the running loop."""
    client = RedisTarget(url=server.url).async_client()
    return lambda: client


def nowhere() -> RedisTarget:
    """A Redis that is not there (connections refused)."""
    return RedisTarget(url=f"redis://127.0.0.1:{free_port()}")


# --- the store, in one process -----------------------------------------------------------


def test_a_person_views_a_session_while_a_stream_carries_it_and_leaves_after_the_linger() -> None:
    async def run() -> None:
        viewers = Viewers()
        await viewers.opened("ana", ["s1", "s2"])
        assert set(from_memory(viewers, "s1")) == {"ana"} and set(from_memory(viewers, "s2")) == {"ana"}
        assert from_memory(viewers, "s3") == {}
        viewers.closed("ana", ["s1", "s2"])
        assert set(from_memory(viewers, "s1")) == {"ana"}  # the linger: a page changing channels
        await until(lambda: from_memory(viewers, "s1") == {} and from_memory(viewers, "s2") == {})
        assert viewers.entries == {}

    asyncio.run(run())


def test_a_second_stream_keeps_a_viewer_and_a_stream_back_within_the_linger_keeps_their_since() -> None:
    async def run() -> None:
        viewers = Viewers()
        await viewers.opened("ana", ["s1"])
        since = from_memory(viewers, "s1")["ana"]
        await viewers.opened("ana", ["s1"])  # a second browser of hers
        viewers.closed("ana", ["s1"])
        await asyncio.sleep(0.1)  # past the linger: one stream still carries s1
        assert from_memory(viewers, "s1") == {"ana": since}
        viewers.closed("ana", ["s1"])
        await viewers.opened("ana", ["s1"])  # her page reconnected with new channels at once
        await asyncio.sleep(0.1)
        assert from_memory(viewers, "s1") == {"ana": since}
        viewers.closed("ana", ["s1"])
        await until(lambda: from_memory(viewers, "s1") == {})

    asyncio.run(run())


def test_members_name_the_person_their_since_and_the_process() -> None:
    assert parse_member(b"ben 1700000000.500 a1b2c3") == ("ben", 1700000000.5)
    assert parse_member("ben") is None
    assert parse_member("ben soon a1b2c3") is None


# --- the store on Redis --------------------------------------------------------------------


def test_on_redis_a_viewer_is_written_at_once_and_removed_when_their_last_stream_closes(
    redis_server: RedisServer,
) -> None:
    sync = redis_server.client()
    session = unique("watched")

    async def run() -> None:
        viewers = Viewers(async_client(redis_server))
        await viewers.opened("ana", [session])
        assert set(from_redis(sync, session)) == {"ana"}  # at once, not at the next round
        ttl = sync.ttl(viewers_key(session))
        assert 0 < ttl <= LEASE + 1, ttl  # a session nobody views leaves nothing behind
        viewers.closed("ana", [session])
        # Removed as soon as the linger is over, not when the lease runs out.
        await until(lambda: sync.zcard(viewers_key(session)) == 0)

    asyncio.run(run())


def test_on_redis_leases_are_renewed_by_each_round_and_run_out_without_one(redis_server: RedisServer) -> None:
    sync = redis_server.client()
    session = unique("leased")

    async def run() -> None:
        viewers = Viewers(async_client(redis_server))
        await viewers.opened("ana", [session])
        start = time.time()
        assert set(from_redis(sync, session, now=start + LEASE - 1)) == {"ana"}
        assert from_redis(sync, session, now=start + LEASE + 1) == {}  # not renewed: lapsed
        await viewers.refresh(now=start + 5)  # one round renews it from then on
        assert set(from_redis(sync, session, now=start + LEASE + 1)) == {"ana"}
        assert from_redis(sync, session, now=start + 5 + LEASE + 1) == {}

    asyncio.run(run())


def test_on_redis_the_viewers_of_a_process_that_died_lapse_and_the_others_clear_them_away(
    redis_server: RedisServer,
) -> None:
    sync = redis_server.client()
    session = unique("orphan")

    async def run() -> None:
        dead, alive = Viewers(async_client(redis_server)), Viewers(async_client(redis_server))
        await dead.opened("ana", [session])
        await alive.opened("ben", [session])
        start = time.time()
        assert set(from_redis(sync, session)) == {"ana", "ben"}
        # `dead`'s process is gone: it never closes its streams nor renews. Once its lease has
        # run out, ana is no longer read; the next round of a live process removes her member.
        later = start + LEASE + 1
        await alive.refresh(now=later)
        assert set(from_redis(sync, session, now=later)) == {"ben"}
        members = [parse_member(m) for m in sync.zrange(viewers_key(session), 0, -1)]
        assert [m[0] for m in members if m] == ["ben"]

    asyncio.run(run())


def test_on_redis_one_process_letting_go_of_a_person_leaves_them_viewing_on_another(
    redis_server: RedisServer,
) -> None:
    """The same person in two browsers whose streams are on two processes."""
    sync = redis_server.client()
    session = unique("twice")

    async def run() -> None:
        first, second = Viewers(async_client(redis_server)), Viewers(async_client(redis_server))
        await first.opened("ben", [session])
        earliest = from_redis(sync, session)["ben"]
        await asyncio.sleep(0.01)
        await second.opened("ben", [session])
        assert from_redis(sync, session) == {"ben": earliest}  # one row, since the earliest
        first.closed("ben", [session])
        await until(lambda: sync.zcard(viewers_key(session)) == 1)
        assert set(from_redis(sync, session)) == {"ben"}
        second.closed("ben", [session])
        await until(lambda: sync.zcard(viewers_key(session)) == 0)

    asyncio.run(run())


def test_a_redis_that_cannot_be_reached_never_breaks_a_stream_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    dead = nowhere().async_client()

    async def run() -> None:
        viewers = Viewers(lambda: dead)
        with caplog.at_level(logging.WARNING, logger="realtime.viewers"):
            await viewers.opened("ana", ["s1"])
            await viewers.refresh()
            await viewers.refresh()
        assert set(from_memory(viewers, "s1")) == {"ana"}  # this process still knows
        viewers.closed("ana", ["s1"])
        await until(lambda: not viewers.entries)
        await until_async(lambda: _no_removals(viewers))

    asyncio.run(run())
    warnings = [r for r in caplog.records if r.name == "realtime.viewers" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


async def _no_removals(viewers: Viewers) -> bool:
    return not viewers._removals


# --- reading: this process's hubs and the shared set ------------------------------------------


@pytest.fixture
def a_hub_viewing() -> Iterator[Callable[[], Any]]:
    """Makes a hub on the running loop (as a server's), for the test to put viewers in."""
    hubs: list[Hub] = []

    def make() -> Hub:
        hub = Hub(NoBackend(), asyncio.get_running_loop())
        hubs.append(hub)
        return hub

    yield make
    hubs.clear()


@pytest.mark.django_db
def test_without_redis_the_viewers_are_this_processes_hubs(settings: Any, fresh_layer: Any, a_hub_viewing: Any) -> None:
    session = unique("local")

    @in_loop
    async def run() -> None:
        hub = a_hub_viewing()
        await hub.viewers.opened("ana", [session])
        rows, complete = await sync_to_async(viewers_of)(session)
        assert [row["agent"] for row in rows] == ["ana"] and complete
        assert rows[0]["since"].endswith("+00:00")
        hub.viewers.closed("ana", [session])
        await until(lambda: not hub.viewers.entries)
        assert await sync_to_async(viewers_of)(session) == ([], True)

    run()


@pytest.mark.django_db
def test_on_redis_the_viewers_are_every_processes_and_while_it_is_down_this_ones_not_complete(
    redis_bus: Any, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch, a_hub_viewing: Any
) -> None:
    session = unique("shared")

    @in_loop
    async def run() -> None:
        elsewhere = Viewers(async_client(redis_server))  # another process's
        await elsewhere.opened("ben", [session])
        here = a_hub_viewing()
        await here.viewers.opened("ana", [session])  # in-process only (no Redis behind this hub)
        rows, complete = await sync_to_async(viewers_of)(session)
        assert sorted(row["agent"] for row in rows) == ["ana", "ben"] and complete
        from realtime.bus import get_layer

        unreachable = nowhere().sync_client()
        monkeypatch.setattr(get_layer(), "sync_client", lambda key="": unreachable)
        rows, complete = await sync_to_async(viewers_of)(session)
        assert [row["agent"] for row in rows] == ["ana"] and not complete

    run()


# --- which streams count, and the API ---------------------------------------------------------


def escalated(name: str) -> None:
    response = post_service(Client(), "/api/manual/escalate", {"session_name": name, "reason": "a human please"})
    assert response.status_code in (200, 201), response.content


@pytest.mark.django_db
@pytest.mark.usefixtures("bus", "keep_the_test_database_connection")
def test_the_api_lists_the_people_whose_streams_carry_the_session_never_a_service() -> None:
    name = unique("viewed")

    @in_loop
    async def run() -> None:
        await sync_to_async(escalated)(name)
        ana = await sync_to_async(login_cookie)("ana")
        sam = await sync_to_async(login_cookie)("sam", supervisor=True)
        cleo = await sync_to_async(login_cookie)("cleo")
        streams = [
            # ana's workbench with the session in its pane, sam's session page
            Stream(
                "/api/events",
                f"channel=sse:broadcast&channel=sse:agent:ana&channel=sse:session:{name}",
                {"Cookie": ana},
            ),
            Stream(f"/api/sessions/{name}/events", headers={"Cookie": sam}),
            # cleo's workbench without it, and a service on the session's channel
            Stream("/api/events", "channel=sse:broadcast&channel=sse:agent:cleo", {"Cookie": cleo}),
            Stream(f"/api/sessions/{name}/events", headers={"Authorization": f"Bearer {TEST_TOKEN}"}),
        ]
        for stream in streams:
            assert await stream.open() == 200
        client = Client()
        await sync_to_async(client.force_login)(await sync_to_async(make_user)("dan"))
        response = await sync_to_async(client.get)(f"/api/sessions/{name}/viewers")
        assert response.status_code == 200, response.content
        body = response.json()
        assert sorted(row["agent"] for row in body["viewers"]) == ["ana", "sam"] and body["complete"] is True
        await streams[0].disconnect()  # ana closes the pane (or the tab)
        await until_async(lambda: _viewers_now(client, name, {"sam"}))
        for stream in streams[1:]:
            await stream.disconnect()

    run()


async def _viewers_now(client: Client, name: str, expected: set[str]) -> bool:
    response = await sync_to_async(client.get)(f"/api/sessions/{name}/viewers")
    return {row["agent"] for row in response.json()["viewers"]} == expected


@pytest.mark.django_db
@pytest.mark.usefixtures("bus")
def test_the_api_refuses_what_it_should() -> None:
    name = unique("asked")
    escalated(name)
    agent = browser(make_user("eve"))
    assert agent.get(f"/api/sessions/{name}/viewers").json() == {"viewers": [], "complete": True}
    unknown = agent.get(f"/api/sessions/{unique('nobody')}/viewers")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"
    for bad in ("a*b", "x" * 65, "%C3%A9t%C3%A9"):
        refused = agent.get(f"/api/sessions/{bad}/viewers")
        assert refused.status_code == 400 and refused.json()["error"] == "invalid_input", (bad, refused.content)
    service = Client().get(f"/api/sessions/{name}/viewers", HTTP_AUTHORIZATION=f"Bearer {TEST_TOKEN}")
    assert service.status_code == 403
    assert Client().get(f"/api/sessions/{name}/viewers").status_code == 401
    posted = agent.post(f"/api/sessions/{name}/viewers", "{}", content_type="application/json")
    assert posted.status_code == 405


# --- two real processes on one Redis, one of them killed --------------------------------------


@pytest.fixture
def viewers_env(redis_server: RedisServer, tmp_path: Path) -> dict[str, str]:
    env = base_env(
        REDIS_URL=redis_server.url, DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", SSE_VIEWERS_LEASE_SECONDS="3"
    )
    migrate(env)
    for person in ("vana", "vben"):
        manage(env, "create_agent", person, "--password", "pw-for-viewers-tests")
    return env


def test_across_processes_viewers_come_and_go_and_those_of_a_killed_process_lapse(
    viewers_env: dict[str, str], tmp_path: Path
) -> None:
    a = Daphne(viewers_env, log_path=tmp_path / "a.log").start()
    b = Daphne(viewers_env, log_path=tmp_path / "b.log").start()
    streams: list[SSEClient] = []
    try:
        name = unique("across")
        status, body = request("POST", a.url + "/api/manual/escalate", {"session_name": name})
        assert status in (200, 201), body
        cookies = {p: cookie_header(login(a.url, p, "pw-for-viewers-tests")) for p in ("vana", "vben")}

        def viewers(server: Daphne) -> set[str]:
            status, body = request(
                "GET", f"{server.url}/api/sessions/{name}/viewers", token=None, headers={"Cookie": cookies["vben"]}
            )
            assert status == 200, body
            return {row["agent"] for row in body["viewers"]}

        path = f"/api/sessions/{name}/events"
        streams.append(SSEClient(a.url, path, token=None, headers={"Cookie": cookies["vana"]}).wait_open())
        streams.append(SSEClient(b.url, path, token=None, headers={"Cookie": cookies["vben"]}).wait_open())
        wait_until(lambda: viewers(a) == viewers(b) == {"vana", "vben"}, timeout=3, what="both viewers on both")
        streams.pop().close()  # vben closes the page on B: gone within the linger, seen on A
        wait_until(lambda: viewers(a) == {"vana"}, timeout=5, what="vben gone")
        a.stop(signal.SIGKILL)  # vana's process dies without a word: her lease (3 s) runs out
        wait_until(lambda: viewers(b) == set(), timeout=8, what="vana's entry lapsed")
    finally:
        for stream in streams:
            stream.close()
        a.stop()
        b.stop()
