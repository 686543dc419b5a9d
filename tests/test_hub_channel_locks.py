"""The hub keeps a channel's subscribe/unsubscribe lock only while it is in use."""

from __future__ import annotations

import asyncio
from typing import Any

from realtime.hub import Hub


class Backend:
    def __init__(self) -> None:
        self.subscribed: set[str] = set()

    async def subscribe_channel(self, channel: str) -> None:
        await asyncio.sleep(0)  # a round trip to Redis, in miniature
        self.subscribed.add(channel)

    async def unsubscribe_channel(self, channel: str) -> None:
        await asyncio.sleep(0)
        self.subscribed.discard(channel)


class Subscriber:
    def __init__(self, *channels: str) -> None:
        self.channels = channels

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        """Not used here."""

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        """Not used here."""


def test_no_lock_stays_behind_for_a_subscribed_channel() -> None:
    async def scenario() -> None:
        backend = Backend()
        hub = Hub(backend, asyncio.get_running_loop())
        subscriber = Subscriber("sse:session:lock_1")
        await hub.add(subscriber)
        assert backend.subscribed == {"sse:session:lock_1"}
        assert hub._channel_locks == {}
        await hub.remove(subscriber)
        assert backend.subscribed == set()
        assert hub._channel_locks == {}

    asyncio.run(scenario())


def test_streams_arriving_and_leaving_together_leave_no_lock_and_no_subscription() -> None:
    async def scenario() -> None:
        backend = Backend()
        hub = Hub(backend, asyncio.get_running_loop())
        subscribers = [Subscriber("sse:session:lock_2") for _ in range(5)]
        await asyncio.gather(*(hub.add(s) for s in subscribers))
        assert len(hub.subscribers["sse:session:lock_2"]) == 5
        assert backend.subscribed == {"sse:session:lock_2"}
        assert hub._channel_locks == {}
        await asyncio.gather(*(hub.remove(s) for s in subscribers))
        assert backend.subscribed == set()
        assert hub._channel_locks == {}

    asyncio.run(scenario())
