"""Presence on the embedded default (in-memory layer): what `make run`'s dashboard shows."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from realtime import bus
from realtime.presence import Presence, online_from_memory
from tests.support.streams import Stream, in_loop, login_cookie

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_layer", "keep_the_test_database_connection")]


def online() -> set[str]:
    return {row["agent"] for row in bus.get_layer().online_agents()}


@in_loop
async def test_an_agent_is_online_while_their_workbench_stream_is_open_and_for_the_grace_after() -> None:
    cookie = await sync_to_async(login_cookie)("ana")
    stream = Stream("/api/events", "channel=sse:broadcast&channel=sse:agent:ana", headers={"Cookie": cookie})
    assert await stream.open() == 200
    assert online() == {"ana"}
    await stream.disconnect()
    assert online() == {"ana"}  # the grace period: a reload must not flicker


@in_loop
async def test_a_stream_without_the_agents_own_channel_does_not_make_them_online() -> None:
    cookie = await sync_to_async(login_cookie)("ben")
    stream = Stream("/api/broadcast/events", headers={"Cookie": cookie})
    assert await stream.open() == 200
    assert online() == set()
    await stream.disconnect()


def test_an_agent_goes_offline_once_the_grace_has_run_out(settings: Any) -> None:
    settings.SSE_PRESENCE_GRACE_SECONDS = 20
    presence = Presence()
    now = time.time()
    asyncio.run(presence.publish(["cy"], now=now))
    assert [row["agent"] for row in online_from_memory(presence, now=now + 19)] == ["cy"]
    assert online_from_memory(presence, now=now + 21) == []


@in_loop
async def test_a_stream_cancelled_while_presence_is_being_written_does_not_stay_online(monkeypatch: Any) -> None:
    """The count goes up before the (Redis) write; a stream cancelled during that write must
    still take it down again, or the agent would stay "online" for the life of the process."""
    stuck = asyncio.Event()

    async def publish_that_hangs(self: Presence, agents: list[str], now: float | None = None) -> None:
        await stuck.wait()  # a Redis that does not answer

    monkeypatch.setattr(Presence, "publish", publish_that_hangs)
    cookie = await sync_to_async(login_cookie)("dee")
    stream = Stream("/api/events", "channel=sse:broadcast&channel=sse:agent:dee", headers={"Cookie": cookie})
    assert await stream.open() == 200
    presence = bus.get_layer().hub.presence
    assert presence.local["dee"] == 1
    try:
        await stream.disconnect(timeout=0.5)  # the write still hangs: the stream is cancelled in it
    except TimeoutError:
        pass  # the communicator cancelled the application itself
    assert "dee" not in presence.local
