"""Stand-ins around a Hub for tests that drive it directly: a subscriber that keeps what it is
given, and a backend with no Redis behind it."""

from __future__ import annotations

from typing import Any


class NoBackend:
    """A hub's subscription backend that subscribes nothing (no Redis)."""

    async def subscribe_channel(self, channel: str) -> None:
        pass

    async def unsubscribe_channel(self, channel: str) -> None:
        pass


class Collect:
    """A hub subscriber that keeps every envelope it is handed, in order."""

    def __init__(self, *channels: str) -> None:
        self.channels = channels
        self.events: list[dict[str, Any]] = []

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        self.events.append(event)

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        self.events.extend(events)
