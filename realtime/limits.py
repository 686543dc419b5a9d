"""Limits per identity, across processes (docs/bus.md "Limits"): open streams per person and
the publish rate of each service identity. On Redis when the bus has one, so every process
counts the same; in this process's memory otherwise (the in-memory layer is one process).

- **Streams**: a person (agent or supervisor) holds at most SSE_MAX_STREAMS_PER_USER open
  streams across every process. Each open stream is a member of the sorted set
  `sse:streams:<identity>`, scored with the time its lease runs out; every process renews the
  leases of its own streams (realtime.access's round), so the slots of a process that died
  free themselves within LEASE_SECONDS. And no identity (a service included) holds more than
  half of one process's SSE_MAX_CONNECTIONS, so no one can take every slot of a process.
- **Publish rate**: a token bucket per service identity, SSE_PUBLISH_RATE tokens a second,
  holding twice that for bursts, kept in Redis (`sse:rate:<identity>`). A process takes tokens
  from it a few at a time (a twentieth of a second's worth) and spends them locally, so a
  publish costs a Redis round trip only once in a while.

While Redis cannot be reached, both fall back to this process's own counts: a stream still
opens and a publish still goes out (it is then local anyway), within the local limits.
"""

from __future__ import annotations

import logging
import math
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.conf import settings

from realtime.redis_conn import REDIS_ERRORS

logger = logging.getLogger(__name__)

STREAMS_PREFIX = "sse:streams:"
RATE_PREFIX = "sse:rate:"
# A stream's slot is leased for this long and renewed every access round (at most half the
# heartbeat interval apart), so only a process that died leaves slots behind, and not for long.
LEASE_SECONDS = 60.0
# How long a client told 429 should wait: a slot frees when a stream closes or a lease lapses.
STREAMS_RETRY_AFTER = 10

# This process's name in the members of the stream sets.
PROCESS = uuid.uuid4().hex[:12]

# While Redis is down every stream opened and every refill would say so: once a minute is enough.
_WARN_EVERY = 60.0
_warned: dict[str, float] = {}


def _warn(what: str, exc: BaseException) -> None:
    now = time.monotonic()
    if now - _warned.get(what, -_WARN_EVERY) >= _WARN_EVERY:
        _warned[what] = now
        logger.warning("%s: Redis unreachable (%s); counting in this process only for now", what, exc)


_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# Take up to ARGV[3] tokens from a bucket refilled at ARGV[1] a second up to ARGV[2]; returns
# {taken, milliseconds until one more token}.
_TAKE_TOKENS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local rate, burst, want = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ms')
local tokens, ms = tonumber(state[1]), tonumber(state[2])
if tokens == nil or ms == nil then tokens, ms = burst, now end
tokens = math.min(burst, tokens + math.max(0, now - ms) * rate / 1000)
local taken = math.min(want, math.floor(tokens))
tokens = tokens - taken
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ms', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
local wait = 0
if taken < want then wait = math.ceil((want - taken - tokens) * 1000 / rate) end
return {taken, wait}
"""


class TooManyStreams(Exception):
    """This identity holds all the streams it may (429 with Retry-After)."""

    def __init__(self, detail: str, retry_after: int = STREAMS_RETRY_AFTER) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class RateLimited(Exception):
    """This service identity has published all it may for now (429 with Retry-After)."""

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


# Every stream open in this process, on every event loop: SSE_MAX_CONNECTIONS applies to it.
_open_streams = 0


def open_streams() -> int:
    """How many SSE streams this process holds open."""
    return _open_streams


def per_process_share() -> int:
    """The most streams one identity may hold in one process: half of SSE_MAX_CONNECTIONS."""
    return max(1, int(settings.SSE_MAX_CONNECTIONS) // 2)


class StreamSlots:
    """The open-stream slots of the identities with streams in this process (one per hub)."""

    def __init__(self, redis: Callable[[], Any] | None = None) -> None:
        self.redis = redis  # gives this loop's async Redis client; None on the in-memory layer
        self.local: Counter[str] = Counter()
        self.members: dict[str, set[str]] = {}  # identity -> this process's members in Redis
        self._serial = 0

    async def take(self, identity: str, *, person: bool) -> str:
        """A slot for one more stream of `identity`, or TooManyStreams; returns the slot's name."""
        global _open_streams
        if _open_streams >= settings.SSE_MAX_CONNECTIONS:
            raise TooManyStreams(f"this server holds its limit of {settings.SSE_MAX_CONNECTIONS} streams")
        if self.local[identity] >= per_process_share():
            raise TooManyStreams(f"{identity} holds half of this server's streams, the most one identity may")
        limit = int(settings.SSE_MAX_STREAMS_PER_USER)
        self._serial += 1
        member = f"{PROCESS}:{self._serial}"
        if person:
            if self.redis is None:
                if self.local[identity] >= limit:
                    raise TooManyStreams(f"{identity} already has {limit} open streams, the most one person may")
            else:
                now = time.time()
                try:
                    took = await self.redis().eval(
                        _TAKE_SLOT, 1, STREAMS_PREFIX + identity, now, now + LEASE_SECONDS, limit, member,
                        int(LEASE_SECONDS * 1000),
                    )  # fmt: skip
                except REDIS_ERRORS as exc:
                    # Redis is down: this process's own count is all there is to go by.
                    _warn("stream slots", exc)
                    took = self.local[identity] < limit
                if not took:
                    raise TooManyStreams(f"{identity} already has {limit} open streams, the most one person may")
                self.members.setdefault(identity, set()).add(member)
        self.local[identity] += 1
        _open_streams += 1
        return member

    async def give_back(self, identity: str, member: str) -> None:
        global _open_streams
        _open_streams -= 1
        self.local[identity] -= 1
        if self.local[identity] <= 0:
            del self.local[identity]
        mine = self.members.get(identity)
        if mine is None or member not in mine:
            return
        mine.discard(member)
        if not mine:
            del self.members[identity]
        try:
            await self.redis().zrem(STREAMS_PREFIX + identity, member)  # type: ignore[misc]
        except REDIS_ERRORS:
            pass  # its lease runs out instead (the round's renewal no longer includes it)

    async def renew(self) -> None:
        """Extend the leases of every slot this process holds (one pipeline)."""
        if self.redis is None or not self.members:
            return
        until = time.time() + LEASE_SECONDS
        try:
            pipe = self.redis().pipeline(transaction=False)
            for identity, members in self.members.items():
                pipe.zadd(STREAMS_PREFIX + identity, dict.fromkeys(members, until))
                pipe.pexpire(STREAMS_PREFIX + identity, int(LEASE_SECONDS * 1000))
            await pipe.execute()
        except REDIS_ERRORS as exc:
            _warn("stream slot leases", exc)


class PublishRate:
    """Token buckets per service identity (sync: the HTTP commands run in threads)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._local: dict[str, float] = {}  # identity -> tokens this process holds
        self._memory: dict[str, tuple[float, float]] = {}  # identity -> (tokens, monotonic time): no Redis

    def take(self, identity: str, cost: int = 1, redis: Any = None) -> None:
        """Spend `cost` tokens of `identity`, or raise RateLimited. `redis`: the layer's sync
        client (None: this process's memory only)."""
        rate = float(settings.SSE_PUBLISH_RATE)
        burst = 2 * rate
        with self._lock:
            if self._local.get(identity, 0.0) >= cost:
                self._local[identity] -= cost
                return
            wait = self._refill(identity, cost, rate, burst, redis)
            if self._local.get(identity, 0.0) >= cost:
                self._local[identity] -= cost
                return
        raise RateLimited(
            f"{identity} publishes more than SSE_PUBLISH_RATE={int(rate)} events a second", max(1, math.ceil(wait))
        )

    def _refill(self, identity: str, cost: int, rate: float, burst: float, redis: Any) -> float:
        """Move tokens into this process's hand; returns seconds until enough could be there."""
        held = self._local.get(identity, 0.0)
        want = max(cost - held, min(burst, max(1.0, rate / 20)))
        if redis is not None:
            try:
                taken, wait_ms = redis.eval(_TAKE_TOKENS, 1, RATE_PREFIX + identity, rate, burst, math.ceil(want))
                self._local[identity] = held + float(taken)
                return float(wait_ms) / 1000
            except REDIS_ERRORS as exc:
                _warn("publish rate", exc)
        now = time.monotonic()
        tokens, then = self._memory.get(identity, (burst, now))
        tokens = min(burst, tokens + (now - then) * rate)
        taken = min(math.ceil(want), math.floor(tokens))
        self._memory[identity] = (tokens - taken, now)
        self._local[identity] = held + taken
        return max(0.0, (cost - held - taken) / rate)

    def reset(self) -> None:
        """Forget every bucket of this process (tests)."""
        with self._lock:
            self._local.clear()
            self._memory.clear()


publish_rate = PublishRate()


def charge_publish(identity: str, cost: int = 1) -> None:
    """Spend `cost` of a service identity's publish rate (RateLimited when it is used up)."""
    from realtime.bus import get_layer  # the bus imports this module's neighbours
    from realtime.health import health

    layer = get_layer()
    sync_client = getattr(layer, "sync_client", None)
    redis = sync_client() if sync_client is not None and not health.degraded else None
    publish_rate.take(identity, cost, redis)
