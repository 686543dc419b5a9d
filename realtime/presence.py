"""Who is online: an agent is online while a workbench stream of theirs is open, anywhere.

A workbench page's stream carries the agent's own channel (`sse:agent:{me}`); each process
counts such streams per agent and, on Redis, keeps a sorted set `sse:presence` (agent ->
expiry time) fresh, so every process sees agents connected to any other. An agent stays
"online" for a grace period after their last stream closes, so a page reload does not
flicker them offline.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

PRESENCE_KEY = "sse:presence"  # sorted set: agent -> Unix time until which they count as online
SINCE_KEY = "sse:presence:since"  # hash: agent -> Unix time they came online


def grace_seconds() -> float:
    """SSE_PRESENCE_GRACE_SECONDS (default 20: a reload or reconnect takes a few seconds)."""
    return float(settings.SSE_PRESENCE_GRACE_SECONDS)


def refresh_seconds() -> float:
    # Refresh well inside the grace period, so one late round never drops a connected agent.
    return grace_seconds() / 4


class Presence:
    """This process's part: counts streams per agent and publishes them to the shared store."""

    def __init__(self, redis: Callable[[], Any] | None = None) -> None:
        self.redis = redis  # gives this loop's async redis client; None on the in-memory layer
        self.local: Counter[str] = Counter()
        self.expiry: dict[str, float] = {}  # in-memory store (also a cache of what we wrote)
        self.since: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def connected(self, agent: str) -> None:
        self.local[agent] += 1
        await self.publish([agent])
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())

    def disconnected(self, agent: str) -> None:
        self.local[agent] -= 1
        if self.local[agent] <= 0:
            del self.local[agent]

    async def publish(self, agents: list[str], now: float | None = None) -> None:
        """Mark `agents` online until now + grace (one step of the refresh loop)."""
        stamp = time.time() if now is None else now
        until = stamp + grace_seconds()
        for agent in agents:
            if self.expiry.get(agent, 0) < stamp:
                self.since[agent] = stamp
            self.expiry[agent] = until
        if self.redis is None or not agents:
            return
        try:
            pipe = self.redis().pipeline(transaction=False)
            pipe.zadd(PRESENCE_KEY, dict.fromkeys(agents, until))
            for agent in agents:
                pipe.hsetnx(SINCE_KEY, agent, stamp)
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - presence must never break a stream
            logger.warning("could not refresh presence in Redis: %s", exc)

    async def _refresh_loop(self) -> None:
        while self.local:
            await asyncio.sleep(refresh_seconds())
            await self.publish(list(self.local))


def online_from_memory(presence: Presence, now: float | None = None) -> list[dict[str, Any]]:
    stamp = time.time() if now is None else now
    return sorted(
        (
            {"agent": agent, "since": presence.since.get(agent, stamp)}
            for agent, until in presence.expiry.items()
            if until >= stamp
        ),
        key=lambda row: row["agent"],
    )


def online_from_redis(client: Any, now: float | None = None) -> list[dict[str, Any]]:
    """Read the shared set with a sync client; forget agents whose grace has run out."""
    stamp = time.time() if now is None else now
    expired = client.zrangebyscore(PRESENCE_KEY, "-inf", f"({stamp}")
    if expired:
        pipe = client.pipeline(transaction=False)
        pipe.zremrangebyscore(PRESENCE_KEY, "-inf", f"({stamp}")
        pipe.hdel(SINCE_KEY, *expired)
        pipe.execute()
    agents = [a.decode() if isinstance(a, bytes) else a for a in client.zrangebyscore(PRESENCE_KEY, stamp, "+inf")]
    since = client.hmget(SINCE_KEY, agents) if agents else []
    return [
        {"agent": agent, "since": float(value) if value is not None else stamp}
        for agent, value in zip(agents, since, strict=True)
    ]
