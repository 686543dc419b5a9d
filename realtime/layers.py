"""Channel layers that carry the SSE channels: on Redis and in memory, each taught the
contract's wire format.

On Redis, channel `sse:session:x` is the Redis pub/sub channel `sse:session:x` (not
channels-redis's `asgi__group__...`), and each message is the envelope as JSON, so
`redis-cli PSUBSCRIBE 'sse:*'` shows the envelope format and any service can PUBLISH to it.
Publishing runs the scripts of `realtime.redis_store` (id, history and PUBLISH in one round
trip). Each event loop's SSE streams are served by its `Hub`, whose subscriptions ride on
one `RedisLink` (`realtime.link`), a pub/sub connection this project owns.

channels-redis's pub/sub layer still carries everything else (ordinary consumers, groups).
Ordinary Channels consumers can `group_add` to an SSE channel's group (`sse.session.x`); they
receive `{"type": "sse.event", "event": {...}}`. The channels-redis internals this relies on
(`RedisPubSubChannelLayer._get_layer`, `._layers`, `RedisPubSubLoopLayer._get_group_channel_name`,
`channels_redis.utils._wrap_close`) are checked by tests/test_layer_internals.py.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import redis
from channels.layers import InMemoryChannelLayer
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from realtime import signals
from realtime.access import StreamGuard
from realtime.channels import BROADCAST, SESSION_PREFIX, group_to_channel
from realtime.envelope import Draft, InvalidEvent, draft, parse_incoming
from realtime.history import MemoryHistory, Resume, StoredEvent
from realtime.hub import Hub
from realtime.limits import StreamSlots
from realtime.link import RedisLink
from realtime.presence import Presence, online_from_memory, online_from_redis
from realtime.redis_conn import RedisTarget
from realtime.redis_store import (
    CURSOR_SCRIPT,
    ORIGIN_KEY,
    OUTBOX_DEDUPE_PREFIX,
    OUTBOX_DEDUPE_SECONDS,
    PUBLISH_BATCH_SCRIPT,
    PUBLISH_SCRIPT,
    RECORD_STREAM,
    SEQUENCE_KEY,
    history_key,
    stored_from_stream,
)

logger = logging.getLogger(__name__)

__all__ = ["MemorySSEChannelLayer", "RedisSSEChannelLayer", "history_key"]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _draft_from_group_message(channel: str, message: dict[str, Any]) -> Draft:
    """A stock `group_send` to an SSE group: `{"type": "sse.event", "event": {type, payload, source}}`."""
    event = message.get("event")
    if message.get("type") != "sse.event" or not isinstance(event, dict):
        raise InvalidEvent('group_send to an SSE group takes {"type": "sse.event", "event": {...}}')
    from realtime.envelope import with_message_id

    payload = with_message_id(event.get("type"), event.get("payload"))
    return draft(channel, event.get("type"), payload, event.get("source"))  # type: ignore[arg-type]


class SSEGroupSend:
    """`group_send` to an SSE channel's group (`sse.session.x`) goes through the bus's publish
    path (validated, given an id, kept in history); other groups behave as stock Channels."""

    async def publish_event(self, item: Draft) -> str:
        raise NotImplementedError

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        channel = group_to_channel(group)
        if channel is None:
            await super().group_send(group, message)  # type: ignore[misc]
        else:
            await self.publish_event(_draft_from_group_message(channel, message))


def _history_size(value: int | None) -> int:
    return settings.SSE_HISTORY_SIZE if value is None else value


def _history_ttl() -> int:
    return int(settings.SSE_HISTORY_TTL_SECONDS)


def _recorded(channel: str) -> str:
    """Session-channel events from the publish path go to the record stream (the recorder
    stores them in the database); the outbox's are stored with their command already."""
    return "1" if channel.startswith(SESSION_PREFIX) else "0"


# ---------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------


class RedisSSELoopLayer(RedisPubSubLoopLayer):
    """channels-redis's per-loop layer; an SSE group's Redis channel is the channel's own name."""

    def _get_group_channel_name(self, group: str) -> str:
        return group_to_channel(group) or super()._get_group_channel_name(group)


class RedisSSEChannelLayer(SSEGroupSend, RedisPubSubChannelLayer):
    """channels-redis's pub/sub layer, speaking the contract on SSE channels."""

    def __init__(self, *args: Any, history_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        hosts = list(kwargs.get("hosts", args[0] if args else None) or [])
        if len(hosts) != 1:
            raise ImproperlyConfigured(
                "the realtime bus takes one Redis: a URL (REDIS_URL) or a Sentinel master (REDIS_SENTINELS); "
                f"got {len(hosts)} hosts"
            )
        self.target = RedisTarget.from_host(hosts[0])
        self.history_size = _history_size(history_size)
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
        self._sync_lock = threading.Lock()
        self._sync: redis.Redis | None = None
        self._sync_scripts: dict[str, Any] = {}
        self._async_scripts: dict[tuple[int, str], Any] = {}

    def _get_layer(self) -> RedisSSELoopLayer:
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            layer = RedisSSELoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer

    def deserialize(self, message: bytes) -> dict[str, Any]:
        # Envelopes are JSON objects ('{'); channels-redis's msgpack maps never start so.
        if message[:1] == b"{":
            return {"type": "sse.event", "event": json.loads(message)}
        return super().deserialize(message)

    # --- this loop's hub and link ----------------------------------------------------

    @property
    def hub(self) -> Hub:
        loop = asyncio.get_running_loop()
        hub = self._hubs.get(loop)
        if hub is None:
            link = RedisLink(self.target, self.history_size, on_reconnect=signals.redis_came_back)
            hub = self._hubs[loop] = Hub(
                link, loop, Presence(lambda: link.commands), StreamGuard(StreamSlots(lambda: link.commands))
            )
            link.hub = hub
        return hub

    def _link(self) -> RedisLink:
        backend = self.hub.backend
        assert isinstance(backend, RedisLink)
        return backend

    def _async_script(self, source: str) -> Any:
        client = self._link().commands
        key = (id(client), source)
        script = self._async_scripts.get(key)
        if script is None:
            script = self._async_scripts[key] = client.register_script(source)
        return script

    async def publish_event(self, item: Draft) -> str:
        keys = [SEQUENCE_KEY, ORIGIN_KEY, history_key(item.channel), RECORD_STREAM]
        args = [item.channel, item.body, self.history_size, _history_ttl(), _recorded(item.channel)]
        return _text(await self._async_script(PUBLISH_SCRIPT)(keys=keys, args=args))

    async def cursor(self, channel: str = BROADCAST) -> str:
        return _text(await self._async_script(CURSOR_SCRIPT)(keys=[SEQUENCE_KEY, ORIGIN_KEY]))

    async def resume(self, channels: list[str], after_id: str) -> Resume:
        """Missed events of `channels` after `after_id`, or a reset (one round trip)."""
        return await self._link().read_resume(channels, after_id)

    async def ping(self) -> bool:
        return bool(await self._link().commands.ping())

    # --- sync side: one thread-safe client per process, never async_to_sync per event

    def sync_client(self, key: str = "") -> redis.Redis:
        """The thread-safe sync client of this layer's Redis."""
        with self._sync_lock:
            if self._sync is None:
                self._sync = self.target.sync_client()
            return self._sync

    def _script(self, source: str) -> Any:
        script = self._sync_scripts.get(source)
        if script is None:
            script = self._sync_scripts[source] = self.sync_client().register_script(source)
        return script

    def publish_event_sync(self, item: Draft) -> str:
        keys = [SEQUENCE_KEY, ORIGIN_KEY, history_key(item.channel), RECORD_STREAM]
        args = [item.channel, item.body, self.history_size, _history_ttl(), _recorded(item.channel)]
        return _text(self._script(PUBLISH_SCRIPT)(keys=keys, args=args))

    def publish_batch_sync(self, items: list[Draft], batch_key: str) -> list[str]:
        """Publish a batch once (the outbox's rows of one transaction); the same ids again
        if this batch was published before."""
        keys = [SEQUENCE_KEY, ORIGIN_KEY, OUTBOX_DEDUPE_PREFIX + batch_key, *(history_key(i.channel) for i in items)]
        args: list[Any] = [self.history_size, _history_ttl(), OUTBOX_DEDUPE_SECONDS]
        for item in items:
            args += [item.channel, item.body]
        return [_text(i) for i in self._script(PUBLISH_BATCH_SCRIPT)(keys=keys, args=args)]

    def cursor_sync(self, channel: str = BROADCAST) -> str:
        return _text(self._script(CURSOR_SCRIPT)(keys=[SEQUENCE_KEY, ORIGIN_KEY]))

    def history_sync(self, channel: str, limit: int = 200) -> list[StoredEvent]:
        entries: Any = self.sync_client().xrevrange(history_key(channel), count=limit)
        return [stored_from_stream(channel, i, f) for i, f in reversed(entries)]

    def ping_sync(self) -> bool:
        return bool(self.sync_client().ping())

    def describe_target(self) -> str | None:
        """Where this layer's Redis is, for /healthz and logs (never a password)."""
        return self.target.describe()

    @property
    def redis_target(self) -> RedisTarget:
        return self.target

    def online_agents(self) -> list[dict[str, Any]]:
        return online_from_redis(self.sync_client())

    def local_online_agents(self) -> list[dict[str, Any]]:
        """Agents with a workbench stream on this process (while Redis cannot be asked)."""
        return merged_presence(list(self._hubs.values()))


# ---------------------------------------------------------------------------------------
# In memory (one process)
# ---------------------------------------------------------------------------------------


class MemorySSEChannelLayer(SSEGroupSend, InMemoryChannelLayer):
    """The embedded default: the in-memory layer with a ring-buffer history. One process only."""

    def __init__(self, history_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history = MemoryHistory(_history_size(history_size))
        self.history_size = self.history.size
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
        self._hubs_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._batches: dict[str, list[str]] = {}  # batch key -> ids, the newest 10k

    @property
    def hub(self) -> Hub:
        loop = asyncio.get_running_loop()
        with self._hubs_lock:
            hub = self._hubs.get(loop)
            if hub is None:
                hub = self._hubs[loop] = Hub(self, loop)
            return hub

    async def subscribe_channel(self, channel: str) -> None:
        """Nothing to do: every publish in this process reaches the hubs directly."""

    async def unsubscribe_channel(self, channel: str) -> None:
        """Nothing to do, as above."""

    async def publish_event(self, item: Draft) -> str:
        return self.publish_event_sync(item)

    def publish_event_sync(self, item: Draft) -> str:
        # Id allocation and hand-off to the loops happen under one lock, so two threads
        # publishing at once can never deliver in an order other than their ids'.
        with self._publish_lock:
            stored = self.history.append(item.channel, item.body)
            self._fan_out(stored)
        if item.channel.startswith(SESSION_PREFIX):
            signals.record_published(stored)
        return stored.id

    def publish_batch_sync(self, items: list[Draft], batch_key: str) -> list[str]:
        """As on Redis: a batch goes out once, however often it is handed in."""
        with self._publish_lock:
            done = self._batches.get(batch_key)
            if done is not None:
                return done
            ids = []
            for item in items:
                stored = self.history.append(item.channel, item.body)
                self._fan_out(stored)
                ids.append(stored.id)
            self._batches[batch_key] = ids
            while len(self._batches) > 10_000:
                self._batches.pop(next(iter(self._batches)))
            return ids

    def _fan_out(self, stored: StoredEvent) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._hubs_lock:
            hubs = [hub for loop, hub in self._hubs.items() if not loop.is_closed()]
        for hub in hubs:
            if hub.loop is running:
                hub.deliver(stored.channel, stored.envelope)
            else:
                hub.loop.call_soon_threadsafe(hub.deliver, stored.channel, stored.envelope)
        if self.groups.get(stored.channel.replace(":", ".")):
            # asyncio queues are not thread-safe: stock consumers are fed on a loop.
            if running is not None:
                self._feed_stock_consumers(stored)
            elif hubs:
                hubs[0].loop.call_soon_threadsafe(self._feed_stock_consumers, stored)

    def _feed_stock_consumers(self, stored: StoredEvent) -> None:
        message = {"type": "sse.event", "event": parse_incoming(stored.envelope, stored.channel)}
        for channel_name in list(self.groups.get(stored.channel.replace(":", "."), ())):
            # As the stock layer's send(): the queue may not exist before the first receive,
            # and it holds (expiry, message) pairs. A full queue drops, as group_send does.
            queue = self.channels.setdefault(channel_name, asyncio.Queue(maxsize=self.get_capacity(channel_name)))
            if not queue.full():
                queue.put_nowait((time.time() + self.expiry, message))

    async def cursor(self, channel: str = BROADCAST) -> str:
        return self.history.cursor()

    def cursor_sync(self, channel: str = BROADCAST) -> str:
        return self.history.cursor()

    async def resume(self, channels: list[str], after_id: str) -> Resume:
        return self.history.resume(channels, after_id)

    def history_sync(self, channel: str, limit: int = 200) -> list[StoredEvent]:
        return self.history.events(channel)[-limit:]

    async def ping(self) -> bool:
        return True

    def ping_sync(self) -> bool:
        return True

    def sync_client(self, key: str = "") -> None:
        """No Redis on the embedded default."""
        return None

    def describe_target(self) -> str | None:
        return None

    @property
    def redis_target(self) -> None:
        return None

    def online_agents(self) -> list[dict[str, Any]]:
        with self._hubs_lock:
            hubs = list(self._hubs.values())
        return merged_presence(hubs)

    def local_online_agents(self) -> list[dict[str, Any]]:
        return self.online_agents()


def merged_presence(hubs: list[Hub]) -> list[dict[str, Any]]:
    """Who is online according to this process's own hubs, one row per agent."""
    merged: dict[str, dict[str, Any]] = {}
    for hub in hubs:
        for row in online_from_memory(hub.presence):
            merged.setdefault(row["agent"], row)
    return sorted(merged.values(), key=lambda row: row["agent"])
