"""The one way events enter and leave the bus (docs/bus.md section 5).

Every event in the product is published through `enqueue_sse_message` (async) or its sync
twin `enqueue_sse_message_sync` (also named `group_send`, for sync code), or
`publish_on_commit` / `publish_many_on_commit` for changes written to the database (the
outbox, `realtime.outbox`). All of them validate exactly as the HTTP layer does, before
anything reaches Redis.

While this process cannot reach Redis, the helpers do not fail: the event goes at once to
this process's own streams, live only (no id), they log a warning and return None. The
outbox's events wait in the database and go out to everyone once Redis is back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import redis
from channels.layers import get_channel_layer
from django.conf import settings

from realtime import outbox
from realtime.channels import SESSION_PREFIX, InvalidChannel, validate_channel
from realtime.envelope import Draft, InvalidEvent, draft, parse_event_id, with_message_id
from realtime.health import health
from realtime.history import Resume, StoredEvent, before_id
from realtime.hub import Hub, all_hubs, encode, reset_frame, stats
from realtime.recorder import MAX_RECORD_LAG_MS, memory_recorder, unrecorded_from, unrecorded_lag_ms
from realtime.redis_conn import REDIS_ERRORS, RedisTarget
from realtime.stream import QueueSubscriber

logger = logging.getLogger(__name__)

__all__ = [
    "InvalidChannel",
    "InvalidEvent",
    "enqueue_sse_message",
    "enqueue_sse_message_sync",
    "group_send",
    "publish_on_commit",
    "subscribe_sse_events",
]


class SSELayer(Protocol):
    """What the bus needs from a channel layer (see realtime.layers)."""

    history_size: int

    @property
    def hub(self) -> Hub: ...
    async def publish_event(self, item: Draft) -> str: ...
    def publish_event_sync(self, item: Draft) -> str: ...
    def publish_batch_sync(self, items: list[Draft], batch_key: str) -> list[str]: ...
    async def resume(self, channels: list[str], after_id: str) -> Resume: ...
    async def cursor(self, channel: str = ...) -> str: ...
    def cursor_sync(self, channel: str = ...) -> str: ...
    def history_sync(self, channel: str, limit: int = ...) -> list[StoredEvent]: ...
    async def ping(self) -> bool: ...
    def ping_sync(self) -> bool: ...
    def describe_target(self) -> str | None: ...
    @property
    def redis_target(self) -> RedisTarget | None: ...
    def online_agents(self) -> list[dict[str, Any]]: ...
    def local_online_agents(self) -> list[dict[str, Any]]: ...
    def sync_client(self, key: str = ...) -> redis.Redis | None: ...


def get_layer() -> SSELayer:
    layer = get_channel_layer()
    if layer is None or not hasattr(layer, "publish_event_sync"):
        raise RuntimeError("CHANNEL_LAYERS['default'] must be one of realtime.layers' layers")
    return cast(SSELayer, layer)


def redis_client(key: str = "") -> redis.Redis | None:
    """A thread-safe sync Redis client for `key`'s server, or None on the in-memory layer.

    For state other services read (the session keys `session:{name}` and `status:{status}`).
    """
    return get_layer().sync_client(key)


def reached_redis() -> None:
    """A call just reached Redis: publish there again; healthy once no link is still healing.

    A process's links say when it is healthy (after they have replayed what was missed); a
    process with none (a management command, a server with no stream open) is healthy now.
    """
    health.note_success()
    if health.degraded and all(hub.bus_ok for hub in all_hubs()):
        health.mark_up()


def bus_cursor() -> str | None:
    """The bus's current id, taken before a snapshot is read; None (and a warning) while Redis
    is unreachable: the page then opens its stream without resuming."""
    try:
        return get_layer().cursor_sync()
    except REDIS_ERRORS as exc:
        logger.warning("no bus cursor for a snapshot: %s", exc)
        return None


def record_cursor() -> str | None:
    """A cursor for a snapshot that reads the record of session events (`dashboard.record`).

    The bus's current id, brought back to where the record is complete: an event a service
    published just before it may still be on its way to the database (the recorder stores it
    a moment later), and so may a command's event that Redis took before its outbox row was
    marked; a stream resumed from an earlier id brings them instead. A recorder that is far
    behind (down) is not waited for: the cursor then stays with the bus.
    """
    cursor = bus_cursor()
    if cursor is None:
        return None
    client = redis_client()
    if client is None:
        memory_recorder().drain()  # one process: store what it has queued, now
        return cursor
    try:
        start = unrecorded_from(client)
        published = outbox.first_published_unmarked(client)
    except REDIS_ERRORS as exc:
        logger.warning("could not tell how far the record is: %s", exc)
        return cursor
    if published is not None:
        # The record shows these as waiting until their marks are written: the stream brings them.
        held = before_id(published)
        if start is None or parse_event_id(held) < parse_event_id(start):
            start = held
    if start is None or parse_event_id(start) >= parse_event_id(cursor):
        return cursor
    lag = unrecorded_lag_ms(cursor, start)
    if lag > MAX_RECORD_LAG_MS:
        logger.warning("the record of session events is %.1f s behind the bus; is a recorder running?", lag / 1000)
        return cursor
    return start


def _log_published(item: Draft, event_id: str) -> None:
    stats["published"] += 1
    logger.debug("published %s %s on %s", event_id, item.type, item.channel)


def deliver_locally(item: Draft) -> None:
    """To this process's own streams only, live (no id): what a process does without Redis."""
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    for hub in all_hubs():
        if hub.loop is running:
            hub.deliver_local(item.channel, item.body)
        elif not hub.loop.is_closed():
            hub.loop.call_soon_threadsafe(hub.deliver_local, item.channel, item.body)


def _fell_back(item: Draft, exc: BaseException | None) -> None:
    if exc is not None:
        health.mark_down(f"Redis is unreachable: {exc}")
    logger.warning(
        "Redis is unreachable: %s on %s delivered to this process's streams only%s",
        item.type,
        item.channel,
        f" ({exc})" if exc is not None else "",
    )
    stats["published_locally"] += 1
    deliver_locally(item)
    if item.channel.startswith(SESSION_PREFIX):
        # Not in Redis, so not in the record stream: the record takes it from here.
        memory_recorder().submit(item.body)


async def enqueue_sse_message(
    channel: str, event_type: str, payload: dict[str, Any], *, source: str, timestamp: float | None = None
) -> str | None:
    """Publish one event; returns its id, or None when it could only be delivered locally.

    Raises InvalidChannel/InvalidEvent for bad input; never because of Redis.
    """
    item = draft(channel, event_type, with_message_id(event_type, payload), source, timestamp)
    if not health.should_try():
        _fell_back(item, None)
        return None
    try:
        event_id = await get_layer().publish_event(item)
    except REDIS_ERRORS as exc:
        _fell_back(item, exc)
        return None
    reached_redis()
    _log_published(item, event_id)
    return event_id


def publish_draft_sync(item: Draft) -> str | None:
    if not health.should_try():
        _fell_back(item, None)
        return None
    try:
        event_id = get_layer().publish_event_sync(item)
    except REDIS_ERRORS as exc:
        _fell_back(item, exc)
        return None
    reached_redis()
    _log_published(item, event_id)
    return event_id


def enqueue_sse_message_sync(
    channel: str, event_type: str, payload: dict[str, Any], *, source: str, timestamp: float | None = None
) -> str | None:
    """The sync twin, for views, management commands and other sync code.

    Uses one thread-safe Redis client per process, not `async_to_sync` (which would open a
    new event loop and connection pool on every call).
    """
    return publish_draft_sync(draft(channel, event_type, with_message_id(event_type, payload), source, timestamp))


group_send = enqueue_sse_message_sync


@dataclass
class PendingEvent:
    """An event stored in the outbox; `id` is known once it has been published."""

    draft: Draft
    batch: outbox.Batch
    index: int

    @property
    def id(self) -> str | None:
        return self.batch.ids[self.index] if self.batch.ids else None

    def envelope(self) -> dict[str, Any]:
        """The event as subscribers get it; `id` is None until it has been published."""
        return {"id": self.id, **json.loads(self.draft.body)}


def publish_many_on_commit(
    events: list[tuple[str, str, dict[str, Any]]], *, source: str, using: str | None = None
) -> list[PendingEvent]:
    """Validate `(channel, type, payload)` events now and store them in the outbox with the
    current transaction: they go out after the commit, in order, once; never on rollback."""
    drafts = [draft(channel, event_type, payload, source) for channel, event_type, payload in events]
    batch = outbox.write(drafts, using=using)
    return [PendingEvent(item, batch, index) for index, item in enumerate(drafts)]


def publish_on_commit(
    channel: str, event_type: str, payload: dict[str, Any], *, source: str, using: str | None = None
) -> PendingEvent:
    """One event through the outbox (see publish_many_on_commit)."""
    return publish_many_on_commit([(channel, event_type, payload)], source=source, using=using)[0]


# --- subscribing ---------------------------------------------------------------------


def validate_channels(channels: Iterable[object]) -> tuple[str, ...]:
    """Check names and the per-connection cap; duplicates collapse. Raises InvalidChannel/TooManyChannels."""
    unique: dict[str, None] = {}
    for channel in channels:
        unique[validate_channel(channel)] = None
    if not unique:
        raise InvalidChannel("at least one channel is required")
    if len(unique) > settings.SSE_MAX_CHANNELS_PER_CONNECTION:
        raise TooManyChannels(
            f"{len(unique)} channels on one connection; the limit is {settings.SSE_MAX_CHANNELS_PER_CONNECTION}"
        )
    return tuple(unique)


class TooManyChannels(ValueError):
    """More channels on one connection than SSE_MAX_CHANNELS_PER_CONNECTION."""


def validate_last_event_id(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    try:
        parse_event_id(value)
    except InvalidEvent:
        raise InvalidEvent(f"Last-Event-ID {value[:40]!r} is not an event id like 1732410000123-0") from None
    return value


@dataclass
class Opening:
    """What a new subscription starts with: a reset, or the missed events, and the seam id."""

    events: list[tuple[bytes, dict[str, Any]]]
    cut: str | None


async def open_subscription(
    layer: SSELayer, subscriber: Any, channels: tuple[str, ...], last_event_id: str | None
) -> Opening:
    """Register with the hub (subscriptions confirmed), then read what was missed.

    Live events that arrive meanwhile are held by the subscriber and released after the
    history, minus those the history already holds. While Redis is unreachable the stream
    still opens, with `bus_status` degraded (and a `reset` if it asked to resume): the
    link heals it with the rest once Redis is back.
    """
    hub = layer.hub
    hub.start_heartbeat(settings.SSE_HEARTBEAT_SECONDS)
    told = hub.status_changes
    try:
        await hub.add(subscriber)
        resume = None if last_event_id is None else await _read_resume(layer, list(channels), last_event_id)
    except BaseException:
        await hub.remove(subscriber)
        raise
    # A stream that opens on a degraded process is told so first; one that was registered
    # while the state changed has heard it already (once is enough).
    status = hub.opening_status(channels[0]) if hub.status_changes == told else None
    prefix = [status] if status is not None else []
    if resume is None:
        return Opening(prefix, None)
    if resume.reset:
        stats["resumes_reset"] += 1
        logger.info("reset for a resume from %s on %s: %s", last_event_id, channels, resume.reason)
        return Opening([reset_frame(resume.reason, channels[0], last_event_id=last_event_id), *prefix], None)
    stats["resumes_replayed"] += 1
    events = [e for e in (encode(s.envelope, s.channel) for s in resume.events) if e is not None]
    cut = resume.events[-1].id if resume.events else last_event_id
    return Opening(prefix + events, cut)


async def _read_resume(layer: SSELayer, channels: list[str], last_event_id: str) -> Resume:
    """History after `last_event_id`; a reset when it cannot be read (Redis unreachable)."""
    try:
        return await layer.resume(channels, last_event_id)
    except REDIS_ERRORS as exc:
        logger.warning("could not read history for a resume on %s: %s", channels, exc)
        return Resume(reset=True, reason="history cannot be read while Redis is unreachable")


async def subscribe_sse_events(
    channels: Iterable[str], last_event_id: str | None = None
) -> AsyncIterator[dict[str, Any]]:
    """Yield envelopes published on `channels` (after `last_event_id`, when given), forever.

    Validates like the HTTP layer. A consumer that falls MAX_QUEUED events behind gets a
    `reset` envelope and the stream goes on from the live position.
    """
    names = validate_channels(channels)
    after = validate_last_event_id(last_event_id)
    layer = get_layer()
    subscriber = QueueSubscriber(names)
    opening = await open_subscription(layer, subscriber, names, after)
    subscriber.go_live([event for _, event in opening.events], opening.cut)
    try:
        while True:
            event = await subscriber.queue.get()
            yield event
            if subscriber.overflowed and subscriber.queue.empty():
                subscriber.overflowed = False
                yield reset_frame("the subscriber fell behind", names[0])[1]
    finally:
        await layer.hub.remove(subscriber)
