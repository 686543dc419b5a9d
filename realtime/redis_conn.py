"""How the product reaches Redis: one server (`REDIS_URL`) or the master Sentinel names.

Every Redis client of the product is made here, so a Sentinel deployment (`REDIS_SENTINELS`
+ `REDIS_SENTINEL_MASTER`) covers the bus, history, presence and the session keys alike: the
clients ask the sentinels for the master whenever they connect, so after a failover the
next connection goes to the new master with no restart.

Timeouts are short on purpose. A Redis that does not answer within them is treated as
unreachable: the bus degrades (local delivery, `bus_status` degraded) instead of letting
requests and streams hang behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from django.core.exceptions import ImproperlyConfigured
from redis import asyncio as aioredis
from redis.asyncio.retry import Retry as AsyncRetry
from redis.asyncio.sentinel import Sentinel as AsyncSentinel
from redis.backoff import NoBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel

# Every way a call to Redis can fail for reasons of Redis (down, stalled, restarting, read-only
# after a failover, out of memory): the callers degrade on any of them, never fail the request.
REDIS_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, ConnectionError, OSError)

# A command that takes longer than this on loopback or a LAN means Redis is in trouble.
COMMAND_TIMEOUT = 2.0
# Connecting is quicker still: a refused or unreachable Redis must not stall a publish.
CONNECT_TIMEOUT = 1.0
# Sentinels answer "who is the master" from memory.
SENTINEL_TIMEOUT = 0.5


_OPTIONS: dict[str, Any] = {
    # Also on the pub/sub connection: the link reads messages with timeouts of its own, but
    # redis-py reconnects inside a failed read (even with retries off) and that handshake
    # reads with this timeout. Without one, a connection left half-open by a Redis crash
    # (accepted, then never answered) would hang the link for good.
    "socket_timeout": COMMAND_TIMEOUT,
    "socket_connect_timeout": CONNECT_TIMEOUT,
    "health_check_interval": 0,
}


@dataclass(frozen=True)
class RedisTarget:
    """One Redis server by URL, or the master that a set of sentinels name."""

    url: str | None = None
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None

    @classmethod
    def from_host(cls, host: Any) -> RedisTarget:
        """From a CHANNEL_LAYERS `hosts` entry: a URL, `{"address": url}` or
        `{"sentinels": [(host, port)], "master_name": name}` (channels-redis's forms)."""
        if isinstance(host, str):
            return cls(url=host)
        if isinstance(host, dict) and isinstance(host.get("address"), str):
            return cls(url=host["address"])
        if isinstance(host, dict) and host.get("sentinels") and host.get("master_name"):
            pairs = tuple((str(h), int(p)) for h, p in host["sentinels"])
            return cls(sentinels=pairs, master=str(host["master_name"]))
        raise ImproperlyConfigured("a Redis host is a URL or {'sentinels': [(host, port)], 'master_name': name}")

    def describe(self) -> str:
        """Where Redis is, for logs (never a password)."""
        if self.sentinels:
            hosts = ",".join(f"{host}:{port}" for host, port in self.sentinels)
            return f"sentinel master {self.master} via {hosts}"
        scheme, sep, rest = str(self.url).partition("://")
        return f"{scheme}{sep}{rest.rpartition('@')[2]}" if sep else str(self.url)

    def sync_client(self, *, pubsub: bool = False) -> redis.Redis:
        """A thread-safe sync client (views, management commands, relay threads).

        `pubsub=True`: no retries, for a pub/sub reader that must see every failure (a silent
        reconnect would hide the messages published meanwhile).
        """
        # One retry, no back-off: a pooled connection that a Redis restart broke is replaced
        # at once; a Redis that is really down fails fast and the caller degrades.
        retry = Retry(NoBackoff(), 0 if pubsub else 1)
        if self.sentinels:
            sentinel = Sentinel(list(self.sentinels), socket_timeout=SENTINEL_TIMEOUT)
            client: redis.Redis = sentinel.master_for(str(self.master), retry=retry, **_OPTIONS)
            return client
        return redis.Redis.from_url(str(self.url), retry=retry, **_OPTIONS)

    def async_client(self, *, pubsub: bool = False) -> aioredis.Redis:
        """A new asyncio client, for the running loop.

        `pubsub=True` gives a client without retries: the link must see every failure of
        its connection (a silent reconnect would hide the events published meanwhile).
        """
        retry = AsyncRetry(NoBackoff(), 0 if pubsub else 1)
        if self.sentinels:
            sentinel = AsyncSentinel(list(self.sentinels), socket_timeout=SENTINEL_TIMEOUT)
            client: aioredis.Redis = sentinel.master_for(str(self.master), retry=retry, **_OPTIONS)
            return client
        return aioredis.Redis.from_url(str(self.url), retry=retry, **_OPTIONS)


def as_text(value: Any) -> str:
    """A Redis reply (bytes, or already text) as text: the one decoder of replies."""
    return value.decode() if isinstance(value, bytes) else str(value)
