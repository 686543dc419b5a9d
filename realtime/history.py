"""Bounded per-channel history and the resume decision.

Ids come from one sequence per bus (one Redis server, or one process on the in-memory
layer), derived from the clock like Redis stream ids: `<ms>-<seq>`. One sequence across all
channels gives a total order, so a single `Last-Event-ID` resumes every channel of a
multi-channel connection, and ids keep increasing across a restart of a Redis that keeps
nothing on disk (the clock moves on; a counter would start again at 1).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field

from realtime.envelope import format_event_id, parse_event_id, with_id


@dataclass(frozen=True, slots=True)
class StoredEvent:
    id: str
    channel: str
    envelope: str  # the envelope JSON, id included


@dataclass(slots=True)
class Resume:
    """What a reconnecting client gets: the missed events in order, or a reset."""

    events: list[StoredEvent] = field(default_factory=list)
    reset: bool = False
    reason: str = ""


@dataclass(frozen=True, slots=True)
class ChannelHistoryState:
    """What the store knows about one channel, as the resume decision needs it."""

    has_entry_at_or_before: bool  # an event with id <= the client's id is still kept
    trimmed: bool  # the channel has ever dropped events to stay within its bound


def decide_resume(
    after_id: str,
    origin: str | None,
    history_size: int,
    channels: dict[str, ChannelHistoryState],
    events: list[StoredEvent],
    latest: str | None = None,
) -> Resume:
    """Pure rule: can `after_id` be resumed exactly, or must the client reset?

    Exact resume needs: history on; the id from this bus's current life (not older than
    its first event, which after a Redis restart is later than anything before it, and not
    newer than `latest`, the last id it handed out); and, per channel, that nothing after the
    id was trimmed away. Trimming removes the oldest first, so a kept entry at or before the
    id proves nothing after it was lost.

    The greatest id below the first one (`before_id(origin)`) counts as this life's too: no
    id lies between the two, so nothing can have been lost there. A snapshot's cursor is
    such an id when the first event of a Redis restarted empty is not in the record yet
    (`realtime.bus.record_cursor`): its stream must get that event, not a `reset`.
    """
    if history_size <= 0:
        return Resume(reset=True, reason="history is turned off")
    wanted = parse_event_id(after_id)
    if origin is None or wanted < parse_event_id(before_id(origin)):
        return Resume(reset=True, reason="the id is older than this bus's history")
    if latest is not None and wanted > parse_event_id(latest):
        # An id from another bus (a Redis whose clock is behind replaced the one that made
        # it): it cannot be resumed, and taking it as the seam would hide live events.
        return Resume(reset=True, reason="the id is newer than any this bus has handed out")
    for channel, state in channels.items():
        if state.trimmed and not state.has_entry_at_or_before:
            return Resume(reset=True, reason=f"events of {channel} after the id were trimmed")
    ordered = sorted(events, key=lambda e: parse_event_id(e.id))
    return Resume(events=[e for e in ordered if parse_event_id(e.id) > wanted])


def before_id(event_id: str) -> str:
    """The greatest id below `event_id` (ids are `<ms>-<seq>`, seq below 2**64); "0-0" has none
    below it and stays itself."""
    ms, seq = parse_event_id(event_id)
    if seq:
        return format_event_id(ms, seq - 1)
    return format_event_id(ms - 1, 2**64 - 1) if ms else format_event_id(0, 0)


class IdSequence:
    """`<ms>-<seq>` ids that only go up, even when the clock steps back."""

    def __init__(self) -> None:
        self.last: tuple[int, int] | None = None
        self.origin: str | None = None

    def current(self, now_ms: int | None = None) -> str:
        """The latest id: a cursor meaning "everything after now". Starts the sequence if new."""
        if self.last is None:
            self.last = (int(time.time() * 1000) if now_ms is None else now_ms, 0)
            self.origin = format_event_id(*self.last)
        return format_event_id(*self.last)

    def next(self, now_ms: int | None = None) -> str:
        ms = int(time.time() * 1000) if now_ms is None else now_ms
        seq = 0
        if self.last is not None and ms <= self.last[0]:
            ms, seq = self.last[0], self.last[1] + 1
        self.last = (ms, seq)
        event_id = format_event_id(ms, seq)
        if self.origin is None:
            self.origin = event_id
        return event_id


class MemoryHistory:
    """The in-memory layer's history: a ring buffer per channel, one id sequence.

    Thread-safe, because sync publishers (views running in a worker thread) and the event
    loop both use it.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._lock = threading.Lock()
        self._ids = IdSequence()
        self._rings: dict[str, deque[StoredEvent]] = {}
        self._added: dict[str, int] = {}

    def append(self, channel: str, body: str) -> StoredEvent:
        with self._lock:
            event_id = self._ids.next()
            event = StoredEvent(event_id, channel, with_id(event_id, body))
            if self.size > 0:
                ring = self._rings.get(channel)
                if ring is None:
                    ring = self._rings[channel] = deque(maxlen=self.size)
                ring.append(event)
                self._added[channel] = self._added.get(channel, 0) + 1
            return event

    def cursor(self) -> str:
        """The bus's latest id: resuming from it misses nothing published after this call."""
        with self._lock:
            return self._ids.current()

    def events(self, channel: str) -> list[StoredEvent]:
        with self._lock:
            return list(self._rings.get(channel, ()))

    def resume(self, channels: list[str], after_id: str) -> Resume:
        wanted = parse_event_id(after_id)
        with self._lock:
            states = {}
            events: list[StoredEvent] = []
            for channel in channels:
                ring = self._rings.get(channel, deque())
                states[channel] = ChannelHistoryState(
                    has_entry_at_or_before=bool(ring) and parse_event_id(ring[0].id) <= wanted,
                    trimmed=self._added.get(channel, 0) > len(ring),
                )
                events.extend(ring)
            origin = self._ids.origin
            latest = format_event_id(*self._ids.last) if self._ids.last else None
        return decide_resume(after_id, origin, self.size, states, events, latest)
