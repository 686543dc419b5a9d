"""Channel layers that carry the SSE channels: channels-redis's pub/sub layer and the
in-memory layer, each taught the contract's wire format.

On Redis, channel `sse:session:x` is the Redis pub/sub channel `sse:session:x` (not
channels-redis's `asgi__group__...`), and each message is the envelope as JSON, so
`redis-cli PSUBSCRIBE 'sse:*'` shows the seed's format and any service can PUBLISH to it.
A Lua script allocates the event id, appends to the channel's capped stream (history) and
PUBLISHes, all in one round trip, so history and the live stream can never disagree.

Messages for SSE channels go to the process's `Hub` (one per event loop), which decodes
and frames each event once. Ordinary Channels consumers can still `group_add` to an SSE
channel's group (`sse.session.x`); they receive `{"type": "sse.event", "event": {...}}`.
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
from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _consistent_hash, decode_hosts
from django.conf import settings
from redis import asyncio as aioredis

from realtime.channels import BROADCAST, group_to_channel
from realtime.envelope import Draft, InvalidEvent, draft, parse_event_id, parse_incoming, with_id
from realtime.history import ChannelHistoryState, MemoryHistory, Resume, StoredEvent, decide_resume
from realtime.hub import Hub
from realtime.presence import Presence, online_from_memory, online_from_redis

logger = logging.getLogger(__name__)

SEQUENCE_KEY = "sse:seq"  # the latest id this Redis handed out
ORIGIN_KEY = "sse:origin"  # the first id of this Redis's life: older ids cannot be resumed
HISTORY_PREFIX = "sse:history:"
# How long a new subscription may wait for Redis to confirm it before the stream is refused.
SUBSCRIBE_TIMEOUT = 5.0
# Pause between reconnection attempts: short, since the contract wants delivery back within
# 5 s of Redis returning, but not a busy loop while it is down.
RECONNECT_PAUSE = 0.5
# Messages read from the pub/sub socket in one go before they are fanned out together.
MAX_BATCH = 256


def history_key(channel: str) -> str:
    return HISTORY_PREFIX + channel


_LUA_NEXT_ID = """
local function next_id(seq_key, origin_key)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seq = 0
  local last = redis.call('GET', seq_key)
  if last then
    local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
    lms = tonumber(lms)
    lseq = tonumber(lseq)
    if ms <= lms then
      ms = lms
      seq = lseq + 1
    end
  end
  local id = string.format('%d-%d', ms, seq)
  redis.call('SET', seq_key, id)
  redis.call('SET', origin_key, id, 'NX')
  return id
end
"""

# KEYS: history stream, sequence, origin. ARGV: channel, envelope JSON without id, history size.
PUBLISH_SCRIPT = (
    _LUA_NEXT_ID
    + """
local id = next_id(KEYS[2], KEYS[3])
local size = tonumber(ARGV[3])
if size > 0 then
  redis.call('XADD', KEYS[1], 'MAXLEN', size, id, 'e', ARGV[2])
end
redis.call('PUBLISH', ARGV[1], '{"id":"' .. id .. '",' .. string.sub(ARGV[2], 2))
return id
"""
)

# KEYS: sequence, origin. The latest id, starting the sequence if this Redis is new.
CURSOR_SCRIPT = (
    _LUA_NEXT_ID
    + """
local last = redis.call('GET', KEYS[1])
if last then return last end
return next_id(KEYS[1], KEYS[2])
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stored_from_stream(channel: str, entry_id: Any, fields: dict[Any, Any]) -> StoredEvent:
    event_id = _text(entry_id)
    return StoredEvent(event_id, channel, with_id(event_id, _text(fields.get(b"e", fields.get("e", "")))))


def _draft_from_group_message(channel: str, message: dict[str, Any]) -> Draft:
    """A stock `group_send` to an SSE group: `{"type": "sse.event", "event": {type, payload, source}}`."""
    event = message.get("event")
    if message.get("type") != "sse.event" or not isinstance(event, dict):
        raise InvalidEvent('group_send to an SSE group takes {"type": "sse.event", "event": {...}}')
    return draft(channel, event.get("type"), event.get("payload"), event.get("source"))  # type: ignore[arg-type]


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


# ---------------------------------------------------------------------------------------
# Redis
# ---------------------------------------------------------------------------------------


class SSEShardConnection(RedisSingleShardConnection):
    """One Redis server's pub/sub connection, with confirmed subscriptions and batching."""

    def __init__(self, host: dict[str, Any], channel_layer: RedisSSELoopLayer) -> None:
        super().__init__(host, channel_layer)
        self._confirmations: dict[str, asyncio.Future[None]] = {}
        self._lost = False  # the pub/sub connection failed; set until it delivers again
        self._heal_task: asyncio.Future[None] | None = None
        self._publish: Any = None
        self._cursor: Any = None

    async def subscribe(self, channel: str) -> None:
        """Subscribe and return only once Redis has confirmed: from then on nothing is missed."""
        async with self._lock:
            waiter = self._confirmations.get(channel)
            if waiter is None and channel not in self._subscribed_to:
                self._ensure_redis()
                self._ensure_receiver()
                waiter = self._confirmations[channel] = asyncio.get_running_loop().create_future()
                await self._pubsub.subscribe(channel)
                self._subscribed_to.add(channel)
        if waiter is not None:
            try:
                await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
            except TimeoutError:
                async with self._lock:
                    if self._confirmations.get(channel) is waiter:
                        del self._confirmations[channel]
                    self._subscribed_to.discard(channel)
                raise ConnectionError(f"Redis did not confirm the subscription to {channel}") from None

    async def unsubscribe(self, channel: str) -> None:
        layer = self.channel_layer
        if channel in layer.hub.subscribers or channel in layer.groups:
            return  # still wanted by an SSE stream or a stock consumer of the group
        async with self._lock:
            if channel in self._subscribed_to:
                # Forget the channel before telling Redis: if Redis cannot be told (it is
                # down), the next stream must still subscribe again and wait for Redis to
                # confirm, instead of opening before its subscription is in place.
                self._subscribed_to.discard(channel)
                self._ensure_redis()
                self._ensure_receiver()
                await self._pubsub.unsubscribe(channel)

    async def publish_event(self, item: Draft, history_size: int) -> str:
        self._ensure_redis()
        if self._publish is None:
            self._publish = self._redis.register_script(PUBLISH_SCRIPT)
        keys = [history_key(item.channel), SEQUENCE_KEY, ORIGIN_KEY]
        return _text(await self._publish(keys=keys, args=[item.channel, item.body, history_size]))

    async def cursor(self) -> str:
        self._ensure_redis()
        if self._cursor is None:
            self._cursor = self._redis.register_script(CURSOR_SCRIPT)
        return _text(await self._cursor(keys=[SEQUENCE_KEY, ORIGIN_KEY]))

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=0.1)
                    batch: list[dict[str, Any]] = []
                    # Drain what has already arrived, so a burst is fanned out in one write
                    # per connection instead of one per event.
                    while message is not None and len(batch) < MAX_BATCH:
                        batch.append(message)
                        message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=0)
                    if message is not None:
                        batch.append(message)
                    if self._lost:
                        # get_message reconnected and redis-py re-subscribed every channel:
                        # replay what was published meanwhile (or reset the subscribers).
                        self._lost = False
                        logger.warning("the Redis pub/sub connection to %s is back", self._where())
                        self._heal_task = asyncio.ensure_future(self._heal())
                    if batch:
                        self._handle_batch(batch)
                else:
                    await asyncio.sleep(0.1)
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must outlive any Redis failure
                if not self._lost:
                    logger.warning("lost the Redis pub/sub connection to %s: %s", self._where(), exc)
                    self.channel_layer.hub.mark_lost()
                self._lost = True
                await asyncio.sleep(RECONNECT_PAUSE)

    def _where(self) -> str:
        return str(self.host.get("address", self.host.get("host", "redis")))

    async def _heal(self) -> None:
        layer = self.channel_layer
        try:
            await layer.hub.heal(sorted(self._subscribed_to), layer.resume)
        except Exception:
            logger.exception("replaying missed events after a reconnect failed")

    def _handle_batch(self, batch: list[dict[str, Any]]) -> None:
        layer = self.channel_layer
        sse_messages: list[tuple[str, bytes | str]] = []
        for message in batch:
            kind = _text(message.get("type"))
            name = _text(message.get("channel"))
            if kind == "subscribe":
                waiter = self._confirmations.pop(name, None)
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
            elif kind == "message":
                if name in layer.hub.subscribers:
                    sse_messages.append((name, message["data"]))
                if name in layer.channels or name in layer.groups:
                    self._receive_message(message)
        if sse_messages:
            layer.hub.deliver_batch(sse_messages)


class RedisSSELoopLayer(SSEGroupSend, RedisPubSubLoopLayer):
    def __init__(self, hosts: Any = None, history_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(hosts=hosts, **kwargs)
        self.history_size = _history_size(history_size)
        self._shards = [SSEShardConnection(host, self) for host in decode_hosts(hosts)]
        self.hub = Hub(self, asyncio.get_running_loop(), Presence(self._presence_client))

    def _presence_client(self) -> aioredis.Redis:
        shard = self._shards[0]
        shard._ensure_redis()
        return shard._redis

    def _get_group_channel_name(self, group: str) -> str:
        return group_to_channel(group) or super()._get_group_channel_name(group)

    async def publish_event(self, item: Draft) -> str:
        return await self._get_shard(item.channel).publish_event(item, self.history_size)

    async def subscribe_channel(self, channel: str) -> None:
        shard = self._get_shard(channel)
        await shard.subscribe(channel)
        if self.hub.last_seen is None:
            # Where a replay after a lost connection would start if no event has arrived yet.
            cursor = await shard.cursor()
            if self.hub.last_seen is None or parse_event_id(cursor) > parse_event_id(self.hub.last_seen):
                self.hub.last_seen = cursor

    async def unsubscribe_channel(self, channel: str) -> None:
        await self._get_shard(channel).unsubscribe(channel)

    async def cursor(self, channel: str = BROADCAST) -> str:
        return await self._get_shard(channel).cursor()

    async def resume(self, channels: list[str], after_id: str) -> Resume:
        """Missed events of `channels` after `after_id`, or a reset (one round trip per shard)."""
        by_shard: dict[int, list[str]] = {}
        for channel in channels:
            by_shard.setdefault(_consistent_hash(channel, len(self._shards)), []).append(channel)
        merged = Resume()
        for index, shard_channels in by_shard.items():
            shard = self._shards[index]
            shard._ensure_redis()
            # Each shard has its own sequence: only a single one knows the bus's latest id.
            single = len(self._shards) == 1
            result = await read_resume(shard._redis, shard_channels, after_id, self.history_size, single)
            if result.reset:
                return result
            merged.events.extend(result.events)
        return merged

    async def ping(self) -> bool:
        shard = self._shards[0]
        shard._ensure_redis()
        return bool(await shard._redis.ping())


async def read_resume(
    client: aioredis.Redis, channels: list[str], after_id: str, size: int, check_latest: bool = True
) -> Resume:
    if size <= 0:
        return decide_resume(after_id, None, size, {}, [])
    pipe = client.pipeline(transaction=False)
    pipe.get(ORIGIN_KEY)
    pipe.get(SEQUENCE_KEY)
    for channel in channels:
        key = history_key(channel)
        pipe.xrevrange(key, max=after_id, min="-", count=1)
        pipe.xinfo_stream(key)
        pipe.xrange(key, min="(" + after_id, max="+", count=size)
    results = await pipe.execute(raise_on_error=False)
    origin, latest = (_text(r) if isinstance(r, (bytes, str)) else None for r in results[:2])
    states: dict[str, ChannelHistoryState] = {}
    events: list[StoredEvent] = []
    for index, channel in enumerate(channels):
        before, info, after = results[2 + 3 * index : 5 + 3 * index]
        trimmed = isinstance(info, dict) and int(info.get("entries-added", 0)) > int(info.get("length", 0))
        kept_before = isinstance(before, list) and bool(before)
        states[channel] = ChannelHistoryState(has_entry_at_or_before=kept_before, trimmed=trimmed)
        if isinstance(after, list):
            events.extend(stored_from_stream(channel, entry_id, fields) for entry_id, fields in after)
    return decide_resume(after_id, origin, size, states, events, latest if check_latest else None)


class RedisSSEChannelLayer(RedisPubSubChannelLayer):
    """channels-redis's pub/sub layer, speaking the contract on SSE channels."""

    def __init__(self, *args: Any, history_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hosts = decode_hosts(kwargs.get("hosts", args[0] if args else None))
        self.history_size = _history_size(history_size)
        self._sync_lock = threading.Lock()
        self._sync_clients: list[redis.Redis] | None = None
        self._sync_scripts: dict[tuple[int, str], Any] = {}

    def _get_layer(self) -> RedisSSELoopLayer:
        loop = asyncio.get_running_loop()
        try:
            return self._layers[loop]
        except KeyError:
            from channels_redis.utils import _wrap_close

            kwargs = {**self._kwargs, "history_size": self.history_size, "channel_layer": self}
            layer = RedisSSELoopLayer(*self._args, **kwargs)
            self._layers[loop] = layer
            _wrap_close(self, loop)
            return layer

    def deserialize(self, message: bytes) -> dict[str, Any]:
        # Envelopes are JSON objects ('{'); channels-redis's msgpack maps never start so.
        if message[:1] == b"{":
            return {"type": "sse.event", "event": json.loads(message)}
        return super().deserialize(message)

    # --- sync side: one thread-safe client pool per process, never async_to_sync per event

    def _sync_client(self, channel: str) -> tuple[int, redis.Redis]:
        with self._sync_lock:
            if self._sync_clients is None:
                self._sync_clients = [_sync_redis(host) for host in self.hosts]
        index = _consistent_hash(channel, len(self._sync_clients))
        return index, self._sync_clients[index]

    def _script(self, index: int, client: redis.Redis, source: str) -> Any:
        key = (index, source)
        script = self._sync_scripts.get(key)
        if script is None:
            script = self._sync_scripts[key] = client.register_script(source)
        return script

    def sync_client(self, key: str = "") -> redis.Redis:
        """The thread-safe sync client of `key`'s Redis server."""
        return self._sync_client(key)[1]

    def publish_event_sync(self, item: Draft) -> str:
        index, client = self._sync_client(item.channel)
        script = self._script(index, client, PUBLISH_SCRIPT)
        keys = [history_key(item.channel), SEQUENCE_KEY, ORIGIN_KEY]
        return _text(script(keys=keys, args=[item.channel, item.body, self.history_size]))

    def cursor_sync(self, channel: str = BROADCAST) -> str:
        index, client = self._sync_client(channel)
        return _text(self._script(index, client, CURSOR_SCRIPT)(keys=[SEQUENCE_KEY, ORIGIN_KEY]))

    def history_sync(self, channel: str, limit: int = 200) -> list[StoredEvent]:
        _, client = self._sync_client(channel)
        entries: Any = client.xrevrange(history_key(channel), count=limit)
        return [stored_from_stream(channel, i, f) for i, f in reversed(entries)]

    def ping_sync(self) -> bool:
        _, client = self._sync_client(BROADCAST)
        return bool(client.ping())

    def online_agents(self) -> list[dict[str, Any]]:
        return online_from_redis(self._sync_client(BROADCAST)[1])


def _sync_redis(host: dict[str, Any]) -> redis.Redis:
    host = dict(host)
    if "address" in host:
        return redis.Redis.from_url(host.pop("address"), **host)
    if "master_name" in host:
        raise NotImplementedError("Sentinel hosts are not supported by the realtime bus yet")
    return redis.Redis(**host)


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
        return stored.id

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

    def online_agents(self) -> list[dict[str, Any]]:
        with self._hubs_lock:
            hubs = list(self._hubs.values())
        merged: dict[str, dict[str, Any]] = {}
        for hub in hubs:
            for row in online_from_memory(hub.presence):
                merged.setdefault(row["agent"], row)
        return sorted(merged.values(), key=lambda row: row["agent"])
