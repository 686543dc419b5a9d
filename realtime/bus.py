"""The one way events enter and leave the bus (CONTRACT.md section 5).

Every event in the product is published through `enqueue_sse_message` (async) or its sync
twin `enqueue_sse_message_sync` (alias `group_send`, the design card's helper), or
`publish_on_commit` for changes written to the database. All of them validate exactly as
the HTTP layer does, before anything reaches Redis.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol, cast

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.db import transaction

from realtime import sse
from realtime.channels import InvalidChannel, validate_channel
from realtime.envelope import Draft, InvalidEvent, draft, dumps, parse_event_id, system_event
from realtime.history import Resume, StoredEvent
from realtime.hub import Hub, encode, stats
from realtime.stream import QueueSubscriber

logger = logging.getLogger(__name__)

__all__ = [
    "BusUnavailable",
    "InvalidChannel",
    "InvalidEvent",
    "enqueue_sse_message",
    "enqueue_sse_message_sync",
    "group_send",
    "publish_on_commit",
    "subscribe_sse_events",
]


class BusUnavailable(RuntimeError):
    """The cross-process layer (Redis) could not take the event."""


class SSELayer(Protocol):
    """What the bus needs from a channel layer (see realtime.layers)."""

    history_size: int

    @property
    def hub(self) -> Hub: ...
    async def publish_event(self, item: Draft) -> str: ...
    def publish_event_sync(self, item: Draft) -> str: ...
    async def resume(self, channels: list[str], after_id: str) -> Resume: ...
    async def cursor(self, channel: str = ...) -> str: ...
    def cursor_sync(self, channel: str = ...) -> str: ...
    def history_sync(self, channel: str, limit: int = ...) -> list[StoredEvent]: ...
    async def ping(self) -> bool: ...
    def ping_sync(self) -> bool: ...
    def online_agents(self) -> list[dict[str, Any]]: ...
    def sync_client(self, key: str = ...) -> redis.Redis | None: ...


_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)


def get_layer() -> SSELayer:
    layer = get_channel_layer()
    if layer is None or not hasattr(layer, "publish_event_sync"):
        raise RuntimeError("CHANNEL_LAYERS['default'] must be one of realtime.layers' layers")
    return cast(SSELayer, layer)


def redis_client(key: str = "") -> redis.Redis | None:
    """A thread-safe sync Redis client for `key`'s server, or None on the in-memory layer.

    For state other services read (the seed's `session:{name}` and `status:{status}` keys).
    """
    return get_layer().sync_client(key)


def _log_published(item: Draft, event_id: str) -> None:
    stats["published"] += 1
    logger.debug("published %s %s on %s", event_id, item.type, item.channel)


async def enqueue_sse_message(
    channel: str, event_type: str, payload: dict[str, Any], *, source: str, timestamp: float | None = None
) -> str:
    """Publish one event; returns its id. Raises InvalidChannel/InvalidEvent/BusUnavailable."""
    item = draft(channel, event_type, payload, source, timestamp)
    try:
        event_id = await get_layer().publish_event(item)
    except _UNAVAILABLE as exc:
        logger.error("could not publish %s on %s: %s", event_type, channel, exc)
        raise BusUnavailable(f"the realtime bus is unavailable: {exc}") from exc
    _log_published(item, event_id)
    return event_id


def publish_draft_sync(item: Draft) -> str:
    try:
        event_id = get_layer().publish_event_sync(item)
    except _UNAVAILABLE as exc:
        logger.error("could not publish %s on %s: %s", item.type, item.channel, exc)
        raise BusUnavailable(f"the realtime bus is unavailable: {exc}") from exc
    _log_published(item, event_id)
    return event_id


def enqueue_sse_message_sync(
    channel: str, event_type: str, payload: dict[str, Any], *, source: str, timestamp: float | None = None
) -> str:
    """The sync twin, for views, management commands and other sync code.

    Uses one thread-safe Redis client per process, not `async_to_sync` (which would open a
    new event loop and connection pool on every call).
    """
    return publish_draft_sync(draft(channel, event_type, payload, source, timestamp))


group_send = enqueue_sse_message_sync


@dataclass
class PendingEvent:
    """An event that goes out when the surrounding transaction commits; `id` is set then."""

    draft: Draft
    id: str | None = None


def publish_on_commit(
    channel: str, event_type: str, payload: dict[str, Any], *, source: str, using: str | None = None
) -> PendingEvent:
    """Validate now, publish after the database commit; nothing goes out on rollback."""
    pending = PendingEvent(draft(channel, event_type, payload, source))

    def send() -> None:
        try:
            pending.id = publish_draft_sync(pending.draft)
        except BusUnavailable:
            logger.error("event %s on %s was committed but not published", event_type, channel)

    transaction.on_commit(send, using=using)
    return pending


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
    history, minus those the history already holds. Raises BusUnavailable.
    """
    hub = layer.hub
    hub.start_heartbeat(settings.SSE_HEARTBEAT_SECONDS)
    try:
        await hub.add(subscriber)
        if last_event_id is None:
            return Opening([], None)
        resume = await layer.resume(list(channels), last_event_id)
    except _UNAVAILABLE as exc:
        await hub.remove(subscriber)
        raise BusUnavailable(f"the realtime bus is unavailable: {exc}") from exc
    except BaseException:
        await hub.remove(subscriber)
        raise
    if resume.reset:
        logger.info("reset for a resume from %s on %s: %s", last_event_id, channels, resume.reason)
        event = system_event("reset", channels[0], {"reason": resume.reason, "last_event_id": last_event_id})
        return Opening([(sse.frame(dumps(event), event="reset"), event)], None)
    events = [e for e in (encode(s.envelope, s.channel) for s in resume.events) if e is not None]
    cut = resume.events[-1].id if resume.events else last_event_id
    return Opening(events, cut)


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
                yield system_event("reset", names[0], {"reason": "the subscriber fell behind"})
    finally:
        await layer.hub.remove(subscriber)
