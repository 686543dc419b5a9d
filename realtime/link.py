"""This event loop's pub/sub connection to Redis, owned outright, and how it heals.

One `RedisLink` per event loop holds one pub/sub connection with every channel the loop's
hub wants. It is owned here rather than borrowed from channels-redis because the contract
needs to know about every loss of the connection: redis-py reconnects a pub/sub connection
by itself inside a read (and re-subscribes), which would hide the events published in
between. Here retries are off, every failure ends the connection, and the link:

1. marks the loss: `bus_status` degraded to every local stream (within 2 s: an idle
   connection is pinged every `PING_AFTER_IDLE` s and must answer within `PONG_TIMEOUT` s),
   and remembers the last id delivered, where the replay will start;
2. reconnects every `RECONNECT_PAUSE` s, subscribing every wanted channel and waiting for
   Redis to confirm them all;
3. heals: reads what was published after the loss point from history and replays it to
   every local stream, or sends them a `reset` when the gap cannot be closed; live messages
   that arrived meanwhile are held and released after, without duplicates;
4. then says `bus_status` ok.

While the link is down, new streams still open (degraded): they are healed with the rest.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from redis import asyncio as aioredis

from realtime.envelope import InvalidEvent, parse_event_id
from realtime.health import DEGRADED, OK, health
from realtime.hub import all_hubs, stats
from realtime.redis_conn import RedisTarget, as_text
from realtime.redis_store import CURSOR_KEYS, CURSOR_SCRIPT, ORIGIN_KEY, read_resume

if TYPE_CHECKING:
    from realtime.history import Resume
    from realtime.hub import Hub

logger = logging.getLogger(__name__)
# Resumes (history reads of streams opening with Last-Event-ID) in flight at once, per process:
# well under the Redis client's connection pool, so that a crowd of reconnecting streams waits
# for a connection instead of failing to get one.
RESUME_READS_AT_ONCE = 32

# An idle connection is pinged after this long; traffic proves it alive in between.
PING_AFTER_IDLE = 0.5
# No answer to a ping within this: the connection is stalled (a network pause, a frozen
# Redis). 0.5 + 1.0 s after the last traffic keeps the contract's "degraded within 2 s".
PONG_TIMEOUT = 1.0
# Between reconnection attempts: short, since delivery must be back within 5 s of Redis
# returning, but not a busy loop while it is down.
RECONNECT_PAUSE = 0.5
# How long a reconnect may wait for Redis to confirm the subscriptions.
CONFIRM_TIMEOUT = 3.0
# How long a new stream waits for Redis to confirm its channel before the link is taken to be
# stalled (the stream then opens degraded and is healed with the rest).
SUBSCRIBE_TIMEOUT = 5.0
# Messages read in one go before they are fanned out together.
MAX_BATCH = 256
# Live messages held during one reconnect; more means a reset for everyone instead.
MAX_HELD = 50_000


class LinkLost(ConnectionError):
    """The pub/sub connection failed, stalled or could not be set up."""


def _event_id(raw: bytes | str) -> tuple[int, int] | None:
    """The id of a wire message, read cheaply (it is the first field the scripts write)."""
    head = raw[:48] if isinstance(raw, bytes) else raw[:48].encode()
    if not head.startswith(b'{"id":"'):
        return None
    end = head.find(b'"', 7)
    try:
        return parse_event_id(head[7:end].decode()) if end > 7 else None
    except (InvalidEvent, UnicodeDecodeError):
        return None


class RedisLink:
    """The hub's subscription backend on Redis (see the module docstring)."""

    def __init__(
        self,
        target: RedisTarget,
        history_size: int,
        on_reconnect: Callable[[bool], None] | None = None,
    ) -> None:
        self.target = target
        self.hub: Hub | None = None  # set by the layer right after the hub is made
        self.history_size = history_size
        self._on_reconnect = on_reconnect
        self.commands: aioredis.Redis = target.async_client()
        self._resume_gate: asyncio.Semaphore | None = None  # made in the link's own loop
        self._client: aioredis.Redis = target.async_client(pubsub=True)
        self._control = f"sse:link:{uuid.uuid4().hex}"  # keeps the connection in subscribed mode
        self.wanted: set[str] = set()
        self._confirmed: set[str] = set()
        self._confirm: dict[str, asyncio.Future[None]] = {}
        self._pubsub: Any = None
        self._up = False
        self._settled = asyncio.Event()  # set while no connection attempt is under way
        self._settled.set()
        self._task: asyncio.Task[None] | None = None
        self._since: str | None = None  # the last id delivered when the link was lost
        self._lost_at: float | None = None
        self._origin: str | None = None  # `sse:origin` of the Redis we last talked to
        self._cut: tuple[int, int] | None = None  # skip live ids up to this after a replay
        self._cursor_script: Any = None
        self._master: str | None = None  # host:port the pub/sub connection last reached

    @property
    def up(self) -> bool:
        return self._up

    def start(self) -> None:
        if self._task is None or self._task.done():
            # Not settled until the first attempt is over: a stream opening meanwhile waits
            # for it, so its channel is confirmed (or the link known down) before it opens.
            self._settled.clear()
            self._task = asyncio.get_running_loop().create_task(self._run(), name="sse-redis-link")

    # --- the hub's SubscriptionBackend ----------------------------------------------

    async def subscribe_channel(self, channel: str) -> None:
        """Return once Redis confirms `channel`; at once (degraded) while Redis is unreachable."""
        self.wanted.add(channel)
        self.start()
        if not self._settled.is_set():
            # A reconnect is under way: it subscribes every wanted channel, this one too.
            try:
                await asyncio.wait_for(self._settled.wait(), CONFIRM_TIMEOUT + 1)
            except TimeoutError:
                return
        if not self._up or channel in self._confirmed:
            return
        waiter = self._confirm.get(channel)
        if waiter is None:
            waiter = self._confirm[channel] = asyncio.get_running_loop().create_future()
            try:
                await self._pubsub.subscribe(channel)
            except Exception as exc:  # noqa: BLE001 - the receive loop meets the same failure
                self._drop_connection(f"could not subscribe to {channel}: {exc}")
                return
        try:
            await asyncio.wait_for(asyncio.shield(waiter), SUBSCRIBE_TIMEOUT)
        except TimeoutError:
            self._drop_connection(f"Redis did not confirm the subscription to {channel}")

    async def unsubscribe_channel(self, channel: str) -> None:
        self.wanted.discard(channel)
        # Forget the channel before telling Redis: the next stream on it must subscribe anew
        # and wait for the confirmation, even while this UNSUBSCRIBE is on its way.
        self._confirmed.discard(channel)
        if not self._up or self._pubsub is None:
            return
        try:
            await self._pubsub.unsubscribe(channel)
        except Exception as exc:  # noqa: BLE001
            self._drop_connection(f"could not unsubscribe from {channel}: {exc}")

    # --- the loop -------------------------------------------------------------------

    async def _run(self, pause: float = 0.0) -> None:
        await asyncio.sleep(pause)
        while True:
            try:
                await self.connect_once()
                await self._receive()
            except (asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:  # noqa: BLE001 - the link must outlive any Redis failure
                self._lose(str(exc) or type(exc).__name__)
            await asyncio.sleep(RECONNECT_PAUSE)

    async def connect_once(self) -> None:
        """One connection attempt: subscribe everything, heal if a loss came before, go up."""
        await self._close_pubsub()
        self._settled.clear()
        try:
            pubsub = self._pubsub = self._client.pubsub()
            held: list[tuple[str, bytes | str]] = []
            await pubsub.subscribe(self._control)
            await self._confirm_all(pubsub, {self._control}, held)
            # Channels wanted meanwhile (streams opening during the attempt) are taken too.
            while missing := self.wanted - self._confirmed:
                await pubsub.subscribe(*sorted(missing))
                await self._confirm_all(pubsub, missing, held)
            empty = await self._check_origin()
            if self._lost_at is not None:
                await self._heal(held, empty)
            elif held:
                self._deliver(held)
            self._up = True
        finally:
            self._settled.set()
        self._note_master(pubsub)
        if self._lost_at is not None:
            logger.info(
                "the Redis pub/sub connection to %s is back after %.1f s",
                self.target.describe(),
                time.monotonic() - self._lost_at,
            )
        if (self._lost_at is not None or empty) and self._on_reconnect is not None:
            self._on_reconnect(empty)
        if self.hub is not None and not self.hub.bus_ok:
            self._broadcast_status(OK, "")
        if all(hub.bus_ok for hub in all_hubs()):
            health.mark_up()
        self._lost_at = None

    def _note_master(self, pubsub: Any) -> None:
        """Log (and count) a Sentinel failover: the connection now reaches another master."""
        if not self.target.sentinels:
            return
        connection = getattr(pubsub, "connection", None)
        host, port = getattr(connection, "host", None), getattr(connection, "port", None)
        if host is None:
            return
        master = f"{host}:{port}"
        if self._master is not None and master != self._master:
            stats["failovers"] += 1
            logger.warning(
                "Redis failover: the sentinels of %s now name %s as the master (it was %s)",
                self.target.master,
                master,
                self._master,
            )
        self._master = master

    async def _confirm_all(self, pubsub: Any, channels: set[str], held: list[tuple[str, bytes | str]]) -> None:
        deadline = time.monotonic() + CONFIRM_TIMEOUT
        waiting = set(channels)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LinkLost(f"Redis did not confirm {len(waiting)} subscription(s)")
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=min(left, 0.5))
            if message is None:
                continue
            kind = as_text(message.get("type"))
            name = as_text(message.get("channel"))
            if kind == "subscribe":
                self._confirmed_one(name)
                waiting.discard(name)
            elif kind == "message" and name != self._control:
                if len(held) >= MAX_HELD:
                    raise LinkLost("too many messages arrived while reconnecting")
                held.append((name, message["data"]))

    def _confirmed_one(self, name: str) -> None:
        if name in self.wanted or name == self._control:
            self._confirmed.add(name)
        waiter = self._confirm.pop(name, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _check_origin(self) -> bool:
        """Is this a Redis without what the last one had (new, restarted empty, another)?

        Also gives a first connection its replay point: the bus's latest id.
        """
        if self._cursor_script is None:
            self._cursor_script = self.commands.register_script(CURSOR_SCRIPT)
        before = await self.commands.get(ORIGIN_KEY)
        cursor = as_text(await self._cursor_script(keys=list(CURSOR_KEYS)))
        origin = as_text(before) if before is not None else None
        empty = origin is None or (self._origin is not None and origin != self._origin)
        self._origin = origin or as_text(await self.commands.get(ORIGIN_KEY) or cursor)
        if self.hub is not None and self.hub.last_seen is None and self._lost_at is None:
            self.hub.note_seen(cursor)
        return empty

    async def _heal(self, held: list[tuple[str, bytes | str]], empty: bool) -> None:
        hub = self.hub
        assert hub is not None
        since = self._since
        reason = "Redis was restarted without its data" if empty else "the connection to Redis was lost"
        cut = await hub.heal(since, self.read_resume, reason)
        self._cut = parse_event_id(cut) if cut else None
        self._deliver(held)

    async def _receive(self) -> None:
        pubsub = self._pubsub
        pinged: float | None = None
        while True:
            wait = PING_AFTER_IDLE if pinged is None else max(0.0, pinged + PONG_TIMEOUT - time.monotonic())
            message = await pubsub.get_message(ignore_subscribe_messages=False, timeout=wait)
            if message is None:
                now = time.monotonic()
                if pinged is None:
                    await pubsub.ping()
                    pinged = now
                elif now >= pinged + PONG_TIMEOUT:
                    raise LinkLost(f"Redis did not answer a ping within {PONG_TIMEOUT} s")
                continue
            pinged = None
            batch = [message]
            while len(batch) < MAX_BATCH:
                more = await pubsub.get_message(ignore_subscribe_messages=False, timeout=0)
                if more is None:
                    break
                batch.append(more)
            live: list[tuple[str, bytes | str]] = []
            for item in batch:
                kind = as_text(item.get("type"))
                name = as_text(item.get("channel"))
                if kind == "message":
                    if name != self._control:
                        live.append((name, item["data"]))
                elif kind == "subscribe":
                    self._confirmed_one(name)
            if live:
                self._deliver(live)

    def _deliver(self, messages: list[tuple[str, bytes | str]]) -> None:
        hub = self.hub
        if hub is None or not messages:
            return
        if self._cut is not None:
            # The first messages after a replay may be copies of replayed ones (ids in order).
            cut = self._cut
            kept = []
            for channel, raw in messages:
                event_id = _event_id(raw)
                if self._cut is not None and event_id is not None:
                    if event_id <= cut:
                        continue
                    self._cut = None
                kept.append((channel, raw))
            messages = kept
        try:
            hub.deliver_batch(messages)
        except Exception:
            # Each message is validated on its own in the hub; this is a bug, not Redis.
            logger.exception("fan-out of %d message(s) failed", len(messages))

    # --- losing and telling ---------------------------------------------------------

    def _lose(self, reason: str) -> None:
        if self._lost_at is None:
            self._lost_at = time.monotonic()
            self._since = self.hub.last_seen if self.hub is not None else None
            logger.warning("lost the Redis pub/sub connection to %s: %s", self.target.describe(), reason)
        self._up = False
        self._confirmed.clear()
        for waiter in self._confirm.values():
            if not waiter.done():
                waiter.set_result(None)  # the stream opens degraded and is healed with the rest
        self._confirm.clear()
        health.mark_down(f"Redis is unreachable: {reason}", publishing=False)
        if self.hub is not None and self.hub.bus_ok:
            self._broadcast_status(DEGRADED, "updates from other servers are paused: Redis is unreachable")

    def _drop_connection(self, reason: str) -> None:
        """Give up on the current connection from outside the loop: the loop starts over."""
        if not self._up:
            return
        self._lose(reason)
        if self._task is not None:
            self._task.cancel()
        self._task = asyncio.get_running_loop().create_task(self._run(pause=RECONNECT_PAUSE), name="sse-redis-link")

    def _broadcast_status(self, state: str, reason: str) -> None:
        if self.hub is not None:
            self.hub.set_bus_status(state, reason)

    async def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        if pubsub is None:
            return
        try:
            await asyncio.wait_for(pubsub.aclose(), 1.0)
        except Exception:  # noqa: BLE001 - a broken connection may fail to close; it is dropped
            logger.debug("closing a broken pub/sub connection failed", exc_info=True)

    async def read_resume(self, channels: list[str], after_id: str) -> Resume:
        """Missed events of `channels` after `after_id`, or a reset (one round trip).

        At most RESUME_READS_AT_ONCE at a time; the rest wait their turn. When a process dies,
        thousands of streams come back to the others within a second, each with a resume: all
        at once they took more connections than the client's pool has, and every read that
        found none became a `reset` (the reconnect storm of bench/README.md)."""
        if self._resume_gate is None:
            self._resume_gate = asyncio.Semaphore(RESUME_READS_AT_ONCE)
        async with self._resume_gate:
            return await read_resume(self.commands, channels, after_id, self.history_size)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        await self._close_pubsub()
        await self.commands.aclose()
        await self._client.aclose()
