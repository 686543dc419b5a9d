"""Messages that arrive together reach each subscriber as one write, in arrival order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from realtime.hub import Hub
from realtime.stream import _joined

BROADCAST = "sse:broadcast"
SESSION = "sse:session:burst_1"


class Backend:
    async def subscribe_channel(self, channel: str) -> None:
        """Nothing to subscribe to in these tests."""

    async def unsubscribe_channel(self, channel: str) -> None:
        """As above."""


class Recorder:
    """A subscriber that keeps what it was handed, write by write."""

    def __init__(self, *channels: str) -> None:
        self.channels = channels
        self.writes: list[list[bytes]] = []
        self.ids: list[str] = []

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        self.writes.append([frame])
        self.ids.append(event["id"])

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        self.writes.append(list(frames))
        self.ids.extend(e["id"] for e in events)


def message(channel: str, n: int) -> tuple[str, str]:
    envelope = {
        "id": f"1732410000000-{n}",
        "channel": channel,
        "type": "new_message",
        "payload": {"n": n},
        "timestamp": 1732410000.0,
        "source": "ai_chatbot",
    }
    return channel, json.dumps(envelope)


def hub_with(*subscribers: Recorder) -> Hub:
    loop = asyncio.new_event_loop()
    hub = Hub(Backend(), loop)
    for subscriber in subscribers:
        for channel in subscriber.channels:
            hub.subscribers.setdefault(channel, set()).add(subscriber)
    loop.close()
    return hub


def test_a_burst_on_one_channel_reaches_every_subscriber_as_one_write_in_order() -> None:
    subscribers = [Recorder(BROADCAST) for _ in range(3)]
    hub = hub_with(*subscribers)
    hub.deliver_batch([message(BROADCAST, n) for n in range(4)])
    for subscriber in subscribers:
        assert len(subscriber.writes) == 1
        assert subscriber.ids == [f"1732410000000-{n}" for n in range(4)]
    assert subscribers[0].writes == subscribers[1].writes == subscribers[2].writes


def test_a_subscriber_of_two_channels_gets_a_mixed_burst_in_arrival_order() -> None:
    both = Recorder(BROADCAST, SESSION)
    only_session = Recorder(SESSION)
    hub = hub_with(both, only_session)
    burst = [message(BROADCAST, 0), message(SESSION, 1), message(BROADCAST, 2), message(SESSION, 3)]
    hub.deliver_batch(burst)
    assert both.ids == [f"1732410000000-{n}" for n in range(4)]
    assert len(both.writes) == 1
    assert only_session.ids == ["1732410000000-1", "1732410000000-3"]


def test_frames_joined_for_one_burst_are_never_reused_for_another() -> None:
    first = [b"data: 1\n\n", b"data: 2\n\n"]
    second = [b"data: 3\n\n", b"data: 4\n\n"]
    assert _joined(first) == b"".join(first)
    assert _joined(second) == b"".join(second)
    first.append(b"data: 5\n\n")
    assert _joined(first) == b"".join(first)
