"""The bus on Redis: channels-redis's pub/sub layer, taught the contract's wire format.

On Redis, channel `sse:session:x` is the Redis pub/sub channel `sse:session:x` (not
channels-redis's `asgi__group__...`), and each message is the envelope as JSON, so
`redis-cli PSUBSCRIBE 'sse:*'` shows the envelope format and any service can PUBLISH to it.
Publishing runs the scripts of `realtime.redis_store` (id, history and PUBLISH in one round
trip). Each event loop's SSE streams are served by its `Hub`, whose subscriptions ride on
one `RedisLink` (`realtime.link`), a pub/sub connection this project owns.

channels-redis's pub/sub layer still carries everything else (ordinary consumers, groups).
Ordinary Channels consumers can `group_add` to an SSE channel's group (`sse.session.x`); they
receive `{"type": "sse.event", "event": {...}}`. The channels-redis internals this relies on,
pinned in requirements.txt, are checked by tests/test_layer_internals.py:
- `RedisPubSubChannelLayer._get_layer`, `._layers`, `._args`, `._kwargs`: one loop layer per
  event loop, made here so that it is ours;
- `RedisPubSubLoopLayer._get_group_channel_name`: an SSE group's Redis channel is its name;
- `channels_redis.utils._wrap_close`: closes a loop layer with its loop, as the stock one does.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import redis
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close
from django.core.exceptions import ImproperlyConfigured

from realtime import signals
from realtime.access import StreamGuard
from realtime.channels import BROADCAST, group_to_channel
from realtime.envelope import Draft
from realtime.history import Resume, StoredEvent
from realtime.hub import Hub
from realtime.layer_base import SSEGroupSend, _history_size, _history_ttl, merged_presence
from realtime.limits import StreamSlots
from realtime.link import RedisLink
from realtime.presence import Presence, online_from_redis
from realtime.redis_conn import RedisTarget, as_text
from realtime.redis_store import (
    CURSOR_KEYS,
    CURSOR_SCRIPT,
    PUBLISH_BATCH_SCRIPT,
    PUBLISH_SCRIPT,
    history_key,
    publish_batch_call,
    publish_call,
    stored_from_stream,
)
from realtime.viewers import Viewers


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
                link,
                loop,
                Presence(lambda: link.commands),
                StreamGuard(StreamSlots(lambda: link.commands)),
                Viewers(lambda: link.commands),
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
        keys, args = publish_call(item.channel, item.body, self.history_size, _history_ttl())
        return as_text(await self._async_script(PUBLISH_SCRIPT)(keys=keys, args=args))

    async def cursor(self, channel: str = BROADCAST) -> str:
        return as_text(await self._async_script(CURSOR_SCRIPT)(keys=list(CURSOR_KEYS)))

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
        keys, args = publish_call(item.channel, item.body, self.history_size, _history_ttl())
        return as_text(self._script(PUBLISH_SCRIPT)(keys=keys, args=args))

    def publish_batch_sync(self, items: list[Draft], batch_key: str) -> list[str]:
        """Publish a batch once (the outbox's rows of one transaction); the same ids again
        if this batch was published before."""
        pairs = [(item.channel, item.body) for item in items]
        keys, args = publish_batch_call(pairs, batch_key, self.history_size, _history_ttl())
        return [as_text(i) for i in self._script(PUBLISH_BATCH_SCRIPT)(keys=keys, args=args)]

    def cursor_sync(self, channel: str = BROADCAST) -> str:
        return as_text(self._script(CURSOR_SCRIPT)(keys=list(CURSOR_KEYS)))

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
