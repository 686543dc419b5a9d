"""Local subscribers of the hub: an SSE response, and a queue for Python code.

An `SSEConnection` turns ready frame bytes into `http.response.body` messages. Under daphne
the ASGI `send` never suspends (it writes to the Twisted transport and returns), so the
send coroutine is stepped once, in place: no task, no scheduling, per connection per event.
If a server's `send` does suspend, the rest runs in a task and later frames queue behind it,
bounded, so a slow client can never eat the process's memory.

Under daphne, once the response has started, live frames skip even that: a `DirectWriter`
(realtime.under_daphne.writes) puts the bytes that daphne's `send` would write straight onto
the socket.
"""

from __future__ import annotations

import asyncio
import logging
import types
from collections.abc import Awaitable, Callable, Generator
from typing import Any

from realtime import sse
from realtime.envelope import parse_event_id
from realtime.hub import stats
from realtime.under_daphne.writes import DirectWriter

logger = logging.getLogger(__name__)

Send = Callable[[dict[str, Any]], Awaitable[None]]

# The cancel message of a consumer task woken by `SSEConnection.close()`.
CLOSED_BY_HUB = "closed by the hub"

# A client that is this far behind (bytes waiting for a suspended send) is cut off; it
# reconnects with Last-Event-ID and catches up from history instead of from our memory.
MAX_PENDING_BYTES = 1024 * 1024


@types.coroutine
def _finish(coro: Any, yielded: Any) -> Generator[Any, Any, None]:
    """Let a task carry on a coroutine that was started by hand and has suspended."""
    while True:
        try:
            value = yield yielded
        except BaseException as exc:  # noqa: BLE001 - passed on into the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration:
                return
        else:
            try:
                yielded = coro.send(value)
            except StopIteration:
                return


# The frames joined last: the hub hands one list to every subscriber of a burst's channel.
_joined_of: tuple[list[bytes], bytes] = ([], b"")


def _joined(frames: list[bytes]) -> bytes:
    """`b"".join(frames)`, once per burst instead of once per connection."""
    global _joined_of
    if _joined_of[0] is not frames or len(_joined_of[0]) != len(frames):
        _joined_of = (frames, b"".join(frames))
    return _joined_of[1]


def step(awaitable: Awaitable[None]) -> Any:
    """Run a coroutine until it first suspends. Returns None if it finished, else what it awaits."""
    coro: Any = awaitable
    try:
        return coro.send(None)
    except StopIteration:
        return None


class SeamFilter:
    """Drops live copies of events that a subscriber's opening history already held."""

    _seam: tuple[int, int] | None = None

    def _behind_seam(self, event_id: str | None) -> bool:
        """True for a live copy of an event that history already sent.

        The live copy of an event read from history can still arrive after `go_live` (its
        hand-off was in flight while history was read). Live ids arrive in increasing order,
        so the first later id closes the seam and later pushes skip this check.
        """
        if event_id is None or self._seam is None:
            return False
        if parse_event_id(event_id) <= self._seam:
            return True
        self._seam = None
        return False


class SSEConnection(SeamFilter):
    """One open SSE response, subscribed to `channels` through the hub."""

    # Thousands of these live per process: slots instead of a __dict__ each.
    __slots__ = (
        "send",
        "channels",
        "_closed",
        "_wake",
        "_buffering",
        "_buffered",
        "_inflight",
        "_pending",
        "_pending_bytes",
        "_direct",
        "_seam",
    )

    def __init__(self, send: Send, channels: tuple[str, ...]) -> None:
        self.send = send
        self.channels = channels
        self._closed = False
        self._wake: asyncio.Task[Any] | None = None
        self._buffering = True
        self._buffered: list[tuple[bytes, str | None]] = []
        self._inflight: asyncio.Task[None] | None = None
        self._pending: list[bytes] | None = None  # only while a suspended send is in flight
        self._pending_bytes = 0
        self._direct: DirectWriter | None = None
        self._seam = None

    @property
    def is_closed(self) -> bool:
        return self._closed

    # --- the hub calls this, once per event (or batch) --------------------------------

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        if self._buffering:
            # Still sending history: hold live frames until the seam is known.
            self._buffered.append((frame, event.get("id")))
        elif self._seam is None or not self._behind_seam(event.get("id")):
            self.write(frame)

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        if self._buffering:
            self._buffered.extend((f, e.get("id")) for f, e in zip(frames, events, strict=True))
        elif self._seam is not None:
            self.write(b"".join(f for f, e in zip(frames, events, strict=True) if not self._behind_seam(e.get("id"))))
        else:
            self.write(_joined(frames))

    # --- writing --------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._direct is not None:
            try:
                queued = self._direct.write(data)
            except Exception:
                logger.info("stream on %s could not be written; closing it", self.channels, exc_info=True)
                self.close()
                return
            if queued > MAX_PENDING_BYTES:
                stats["streams_cut_slow"] += 1
                logger.warning("closing a stream on %s: client is %d bytes behind", self.channels, queued)
                self.close()
            return
        if self._inflight is not None:
            if self._pending is None:
                self._pending = []
            self._pending.append(data)
            self._pending_bytes += len(data)
            if self._pending_bytes > MAX_PENDING_BYTES:
                stats["streams_cut_slow"] += 1
                logger.warning("closing a stream on %s: client is %d bytes behind", self.channels, self._pending_bytes)
                self.close()
            return
        coro = self.send({"type": "http.response.body", "body": data, "more_body": True})
        try:
            yielded = step(coro)
        except Exception:
            logger.info("stream on %s could not be written; closing it", self.channels, exc_info=True)
            self.close()
            return
        if yielded is not None:
            self._inflight = asyncio.ensure_future(self._drain(coro, yielded))

    async def _drain(self, coro: Any, yielded: Any) -> None:
        try:
            await _finish(coro, yielded)
            while self._pending and not self._closed:
                data = b"".join(self._pending)
                self._pending = None
                self._pending_bytes = 0
                await self.send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception:
            logger.info("stream on %s failed while writing; closing it", self.channels, exc_info=True)
            self.close()
        finally:
            self._inflight = None

    def go_live(self, opening: bytes, after_id: str | None) -> None:
        """Send the opening bytes (first frame, history), then the live frames held meanwhile.

        Held frames already covered by history (id <= `after_id`) are skipped, and so are
        such frames arriving later, so the seam between history and live has no duplicate;
        ids are totally ordered per bus.
        """
        self._seam = parse_event_id(after_id) if after_id else None
        parts = [opening]
        for frame, event_id in self._buffered:
            if not self._behind_seam(event_id):
                parts.append(frame)
        self._buffered.clear()
        self._buffering = False
        self.write(b"".join(parts))
        if self._inflight is None and not self._closed:
            # The response has started (headers and first bytes went the ASGI way): from now
            # on, write directly where the server allows it.
            self._direct = DirectWriter.for_send(self.send)
            if self._direct is not None:
                stats["direct_streams"] += 1

    def close(self) -> None:
        """Stop writing; wake the task waiting in `wake_on_close`, if any."""
        if self._closed:
            return
        self._closed = True
        if self._wake is not None and not self._wake.done():
            self._wake.cancel(CLOSED_BY_HUB)

    def wake_on_close(self, task: asyncio.Task[Any] | None) -> None:
        """`close()` cancels `task` (with the message CLOSED_BY_HUB) while it is set.

        The consumer waits for the client to go by reading `receive` in its own task; this
        wakes it when the stream is closed from this side, without a second task and an
        `asyncio.wait` per connection.
        """
        self._wake = task

    def start_response(self, status: int = 200) -> Awaitable[None]:
        return self.send({"type": "http.response.start", "status": status, "headers": sse.HEADERS})


class QueueSubscriber(SeamFilter):
    """A hub subscriber for Python code (`subscribe_sse_events`): envelopes into a queue."""

    # A Python consumer that falls this far behind gets a reset instead of unbounded memory.
    MAX_QUEUED = 10_000

    def __init__(self, channels: tuple[str, ...]) -> None:
        self.channels = channels
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._buffering = True
        self._buffered: list[dict[str, Any]] = []
        self.overflowed = False

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        if self._buffering:
            self._buffered.append(event)
        elif self._seam is not None and self._behind_seam(event.get("id")):
            return
        elif self.queue.qsize() >= self.MAX_QUEUED:
            self.overflowed = True
        else:
            self.queue.put_nowait(event)

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        for frame, event in zip(frames, events, strict=True):
            self.push(frame, event)

    def go_live(self, opening: list[dict[str, Any]], after_id: str | None) -> None:
        """As SSEConnection.go_live: history first, then held and later live events past the seam."""
        self._seam = parse_event_id(after_id) if after_id else None
        for event in opening:
            self.queue.put_nowait(event)
        for event in self._buffered:
            if not self._behind_seam(event.get("id")):
                self.queue.put_nowait(event)
        self._buffered.clear()
        self._buffering = False
