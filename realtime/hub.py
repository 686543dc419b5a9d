"""Process-local fan-out: one subscription per channel per process, one frame per event.

The channel layer hands every message that arrives for an SSE channel to this process's
`Hub` (one per event loop). The hub validates and decodes it once, builds the SSE frame
bytes once, and gives those same bytes to every local subscriber of the channel. A
subscriber's `push` is a write of ready bytes, never JSON work, never a task.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
import weakref
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol

from realtime import sse
from realtime.access import StreamGuard
from realtime.envelope import InvalidEvent, dumps, parse_event_id, parse_incoming, raw_message_id, system_event
from realtime.health import OK
from realtime.history import Resume
from realtime.metrics import delivery_latency
from realtime.presence import Presence
from realtime.viewers import Viewers

logger = logging.getLogger(__name__)

# Counters shown by /healthz and read by /metrics (realtime.metrics); process-wide, cheap to
# bump: each is bumped once per event or per stream, never per delivery.
stats: Counter[str] = Counter()


class Subscriber(Protocol):
    channels: tuple[str, ...]

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        """Take one ready frame and the envelope it was built from."""

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        """Take several frames that arrived together (one write, where it can)."""


class SubscriptionBackend(Protocol):
    async def subscribe_channel(self, channel: str) -> None: ...
    async def unsubscribe_channel(self, channel: str) -> None: ...


def encode(raw: bytes | str, channel: str) -> tuple[bytes, dict[str, Any]] | None:
    """Validate one wire message and build its SSE frame, or None (dropped, logged, counted).

    Anything at all that goes wrong with one message (not JSON, not an envelope, a lone
    surrogate that cannot be written as UTF-8, nesting too deep to decode) drops that message
    alone: it must never look like a lost connection or cost another message its delivery.
    """
    try:
        event = parse_incoming(raw, channel)
        if "id" not in event and event["type"] == "new_message" and "message_id" not in event["payload"]:
            # A raw PUBLISH: the record stores it under an id made from its bytes; the same id
            # here lets a page tell the live copy from the stored one.
            event["payload"]["message_id"] = raw_message_id(raw)
        return sse.frame(dumps(event), event=event["type"], event_id=event.get("id")), event
    except InvalidEvent as exc:
        reason = str(exc)
    except Exception as exc:  # noqa: BLE001 - RecursionError, UnicodeEncodeError, ...: still bad input
        reason = f"{type(exc).__name__} while decoding"
    stats["dropped_invalid"] += 1
    logger.warning("dropped a message on %s: %s", channel, reason[:200])
    return None


def status_frame(state: str, reason: str, channel: str) -> tuple[bytes, dict[str, Any]]:
    """A `bus_status` event for one connection (never stored, no id)."""
    event = system_event("bus_status", channel, {"state": state, "reason": reason})
    return sse.frame(dumps(event), event="bus_status"), event


def reset_frame(reason: str, channel: str, **extra: Any) -> tuple[bytes, dict[str, Any]]:
    """A `reset` event for one connection: it must reload its state from the snapshots."""
    event = system_event("reset", channel, {"reason": reason, **extra})
    return sse.frame(dumps(event), event="reset"), event


def freeze_startup_objects() -> None:
    """Put everything alive at start-up (Django, URLconf, modules) out of the GC's way; the
    ASGI module calls it once the application is built.

    Profiled at 2500 streams per process, a full collection took 100-230 ms, mostly scanning
    objects that live as long as the process anyway; with them frozen it scans the streams'
    own objects only. Once per process.
    """
    if not stats["gc_frozen"]:
        stats["gc_frozen"] = gc.get_freeze_count() + 1
        gc.freeze()


# Every hub of this process (one per event loop), for what concerns them all: local
# delivery while Redis is unreachable, the bus state, shutdown.
_hubs: weakref.WeakSet[Hub] = weakref.WeakSet()


def all_hubs() -> list[Hub]:
    return list(_hubs)


class Hub:
    """Local subscribers of one event loop, by channel."""

    def __init__(
        self,
        backend: SubscriptionBackend,
        loop: asyncio.AbstractEventLoop,
        presence: Presence | None = None,
        guard: StreamGuard | None = None,
        viewers: Viewers | None = None,
    ) -> None:
        self.backend = backend
        self.loop = loop
        self.presence = presence or Presence()
        # Who has each session open, from the streams' channels (realtime.viewers).
        self.viewers = viewers or Viewers()
        # Who owns each open stream: slots per person, and access re-checked (realtime.access).
        self.guard = guard or StreamGuard()
        self.subscribers: dict[str, set[Subscriber]] = {}
        # Events fanned out per subscribed channel, for the "events" of a stream's closing log
        # line (realtime.consumers): one addition per event, none per delivery.
        self.channel_events: Counter[str] = Counter()
        self._channel_locks: dict[str, asyncio.Lock] = {}
        self._heartbeat_task: asyncio.Task[None] | None = None
        # The id of the last event delivered (ids are one sequence per bus): where a replay
        # after a lost connection starts.
        self.last_seen: str | None = None
        self._last_key: tuple[int, int] = (-1, -1)
        # What this process's link to the other processes is like, as its streams were told.
        self.bus_state: tuple[str, str] = (OK, "")
        self.status_changes = 0  # how often bus_state changed (a stream opening meanwhile heard it)
        _hubs.add(self)

    # --- membership ---------------------------------------------------------------

    async def add(self, subscriber: Subscriber) -> None:
        """Register a subscriber; returns once every channel's subscription is in place."""
        added: list[str] = []
        try:
            for channel in subscriber.channels:
                if channel not in self.subscribers:
                    self.subscribers[channel] = set()
                    self.channel_events[channel] = 0
                self.subscribers[channel].add(subscriber)
                added.append(channel)
                await self._ensure_subscribed(channel)
        except BaseException:
            await self._remove_from(subscriber, added)
            raise

    async def remove(self, subscriber: Subscriber) -> None:
        await self._remove_from(subscriber, subscriber.channels)

    async def _remove_from(self, subscriber: Subscriber, channels: Iterable[str]) -> None:
        for channel in channels:
            members = self.subscribers.get(channel)
            if members is None:
                continue
            members.discard(subscriber)
            if not members:
                del self.subscribers[channel]
                self.channel_events.pop(channel, None)
                await self._release(channel)

    def events_on(self, channels: Iterable[str]) -> int:
        """Events fanned out so far on `channels` (while they have subscribers)."""
        return sum(self.channel_events.get(channel, 0) for channel in channels)

    def connection_count(self) -> int:
        return len(self.all_subscribers())

    def all_subscribers(self) -> set[Subscriber]:
        return {s for members in self.subscribers.values() for s in members}

    def close_all(self) -> int:
        """Close every local subscriber that can be closed (server shutdown); returns how many.

        Must run on the hub's loop. An SSE stream's consumer then ends its response properly.
        """
        closed = 0
        for subscriber in self.all_subscribers():
            close = getattr(subscriber, "close", None)
            if close is not None:
                close()
                closed += 1
        return closed

    async def _ensure_subscribed(self, channel: str) -> None:
        # One lock per channel orders subscribe and unsubscribe, so a subscriber that
        # arrives while the last one is leaving never ends up deaf.
        lock = self._channel_locks.get(channel)
        if lock is None:
            lock = self._channel_locks[channel] = asyncio.Lock()
        try:
            async with lock:
                if channel in self.subscribers:
                    await self.backend.subscribe_channel(channel)
        finally:
            # Kept only while held or awaited: an idle lock per channel adds up at thousands
            # of session channels. `_waiters` is CPython's asyncio.Lock internal; if it goes,
            # no lock is ever dropped and tests/test_hub_channel_locks.py fails.
            if not lock.locked() and not getattr(lock, "_waiters", True) and self._channel_locks.get(channel) is lock:
                del self._channel_locks[channel]

    async def _release(self, channel: str) -> None:
        lock = self._channel_locks.setdefault(channel, asyncio.Lock())
        try:
            async with lock:
                if channel not in self.subscribers:
                    await self.backend.unsubscribe_channel(channel)
        except Exception:
            logger.exception("could not unsubscribe from %s", channel)
        finally:
            if channel not in self.subscribers and not lock.locked():
                self._channel_locks.pop(channel, None)

    # --- delivery -------------------------------------------------------------------

    def _accept(self, channel: str, raw: bytes | str, live: bool = True) -> tuple[bytes, dict[str, Any]] | None:
        """Encode one message for delivery; None: dropped. Counted here, once per event."""
        encoded = encode(raw, channel)
        if encoded is None:
            return None
        stats["events"] += 1
        self.channel_events[channel] += 1
        if live:
            # Replays after a reconnect are not: their publish was long before.
            delivery_latency.observe(time.time() - encoded[1]["timestamp"])
        event_id = encoded[1].get("id")
        if event_id is not None:
            self.note_seen(event_id)
        return encoded

    def note_seen(self, event_id: str) -> None:
        """Move the replay point (`last_seen`) to `event_id`, only ever forward: a message
        that arrives late, or a raw PUBLISH carrying an old id, must not move it back, or the
        next heal would send doubles."""
        key = parse_event_id(event_id)
        if key > self._last_key:
            self.last_seen, self._last_key = event_id, key

    def deliver(self, channel: str, raw: bytes | str) -> None:
        """One message from the bus: encode once, hand the bytes to every local subscriber."""
        members = self.subscribers.get(channel)
        if not members:
            return
        encoded = self._accept(channel, raw)
        if encoded is None:
            return
        stats["deliveries"] += len(members)
        frame, event = encoded
        for subscriber in tuple(members):
            subscriber.push(frame, event)

    def deliver_batch(self, messages: list[tuple[str, bytes | str]], live: bool = True) -> None:
        """Several messages that arrived together: one write per subscriber for all of them.

        `live=False`: a replay of missed events (they stay out of the latency histogram)."""
        if len(messages) == 1 and live:
            self.deliver(*messages[0])
            return
        accepted: list[tuple[str, bytes, dict[str, Any]]] = []
        for channel, raw in messages:
            members = self.subscribers.get(channel)
            if not members:
                continue
            encoded = self._accept(channel, raw, live)
            if encoded is not None:
                stats["deliveries"] += len(members)
                accepted.append((channel, *encoded))
        if not accepted:
            return
        channel = accepted[0][0]
        if all(item[0] == channel for item in accepted):
            # A burst on one channel (the broadcast case): every subscriber gets the same
            # two lists, so no containers per subscriber for the GC to chase at 5000.
            frames = [item[1] for item in accepted]
            events = [item[2] for item in accepted]
            for subscriber in tuple(self.subscribers.get(channel, ())):
                if len(frames) == 1:
                    subscriber.push(frames[0], events[0])
                else:
                    subscriber.push_many(frames, events)
            return
        # Several channels: each subscriber gets its frames in arrival (= id) order.
        pending: dict[Subscriber, tuple[list[bytes], list[dict[str, Any]]]] = {}
        for channel, frame, event in accepted:
            for subscriber in self.subscribers.get(channel, ()):
                mine = pending.setdefault(subscriber, ([], []))
                mine[0].append(frame)
                mine[1].append(event)
        for subscriber, (frames, events) in pending.items():
            if len(frames) == 1:
                subscriber.push(frames[0], events[0])
            else:
                subscriber.push_many(frames, events)

    # --- the link to the other processes ---------------------------------------------

    @property
    def bus_ok(self) -> bool:
        return self.bus_state[0] == OK

    def set_bus_status(self, state: str, reason: str) -> None:
        """Tell every local stream that the link changed (`bus_status`); new ones hear it on opening."""
        self.bus_state = (state, reason)
        self.status_changes += 1
        frames: dict[str, tuple[bytes, dict[str, Any]]] = {}
        for subscriber in self.all_subscribers():
            first = subscriber.channels[0]
            if first not in frames:
                frames[first] = status_frame(state, reason, first)
            subscriber.push(*frames[first])

    def opening_status(self, channel: str) -> tuple[bytes, dict[str, Any]] | None:
        """The `bus_status` a stream opening now must start with, if the link is not ok."""
        return None if self.bus_ok else status_frame(*self.bus_state, channel)

    def deliver_local(self, channel: str, body: str) -> None:
        """An event this process could not send through Redis: to its own streams, live only."""
        stats["delivered_locally"] += 1
        self.deliver(channel, body)

    async def heal(
        self, since: str | None, read: Callable[[list[str], str], Awaitable[Resume]], reason: str
    ) -> str | None:
        """After the link came back: replay to every local stream what was published after
        `since` (the last id delivered before the loss), or reset them; returns the last id
        replayed (live copies up to it must be skipped), or None.

        Every stream counts, also those opened while the link was down: none of them can
        know what it missed. A failed read is a reset, never "nothing missed".
        """
        channels = sorted(self.subscribers)
        if not channels:
            return None
        if since is None:
            resume = Resume(reset=True, reason=reason)
        else:
            try:
                resume = await read(channels, since)
            except Exception as exc:  # noqa: BLE001 - any failure: the gap cannot be ruled out
                logger.warning("could not replay %d channel(s) after a reconnect: %s", len(channels), exc)
                resume = Resume(reset=True, reason=reason)
        if resume.reset:
            stats["heal_resets"] += 1
            logger.warning("reset for the streams of %d channel(s) after a reconnect: %s", len(channels), resume.reason)
            self._push_reset(resume.reason or reason)
            return None
        stats["heals_replayed"] += 1
        stats["heal_replayed"] += len(resume.events)
        logger.info("replayed %d missed event(s) on %d channel(s) after a reconnect", len(resume.events), len(channels))
        batch: list[tuple[str, bytes | str]] = [(stored.channel, stored.envelope) for stored in resume.events]
        if batch:
            self.deliver_batch(batch, live=False)
        return resume.events[-1].id if resume.events else None

    def _push_reset(self, reason: str) -> None:
        for subscriber in self.all_subscribers():
            subscriber.push(*reset_frame(reason, subscriber.channels[0]))

    # --- heartbeat ------------------------------------------------------------------

    def heartbeat_once(self) -> int:
        """Write a heartbeat to every local subscriber; returns how many got one."""
        frames: dict[str, tuple[bytes, dict[str, Any]]] = {}
        seen: set[Subscriber] = set()
        for members in list(self.subscribers.values()):
            for subscriber in tuple(members):
                if subscriber in seen:
                    continue
                seen.add(subscriber)
                first = subscriber.channels[0]
                if first not in frames:
                    event = system_event("heartbeat", first, {})
                    frames[first] = (sse.frame(dumps(event), event="heartbeat"), event)
                subscriber.push(*frames[first])
        return len(seen)

    def start_heartbeat(self, interval: float) -> None:
        if self._heartbeat_task is None or self._heartbeat_task.done():
            self._heartbeat_task = self.loop.create_task(self._heartbeat_loop(interval))

    async def _heartbeat_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.heartbeat_once()
            except Exception:
                logger.exception("heartbeat round failed")
