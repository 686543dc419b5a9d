"""What daphne does with a request before the application sees it: the one place that hooks
daphne's Twisted request object (tested against the pinned daphne and Twisted).

- **Bodies**: a body over the limit is refused with 413 before it is buffered. Twisted reads
  the whole body into memory, or a temporary file past 100 kB, before daphne hands the request
  to the application, so an ASGI middleware only gets to say no once it is all stored. Here
  the `Content-Length` is checked as soon as the headers are in, and a chunked body is counted
  as it arrives; the 413 goes out at once and whatever else the client sends is read and thrown
  away for a moment (so the client sees the answer rather than a reset), then the connection
  is closed. Bodies under the limit are kept in memory, never in a temporary file.
- **Slow requests** (slowloris): Twisted's idle timeout restarts with every byte, so a client
  sending one byte a minute holds a connection for ever. Here a connection must deliver a whole
  request (line, headers and body) within `request_seconds` of being ready for one (opened, or
  done with the previous response); otherwise it gets 408 and is closed. A stream, once its
  request is in, is not affected: only receiving a request has a deadline.

`install()` is called by sse_project/asgi.py; under any other server it changes nothing.
"""

from __future__ import annotations

import io
import logging
from typing import Any

from realtime.errors import error_body

logger = logging.getLogger(__name__)

# How long a closed-for-writing connection goes on reading (and dropping) what the client is
# still sending after a 413, so that the client reads the answer instead of a reset.
LINGER_SECONDS = 1.0

_installed: dict[str, Any] = {}


def _raw_response(status: int, reason: str, detail: str) -> bytes:
    body = error_body(status, detail)
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


def _reactor() -> Any:
    """Twisted's reactor: only ever asked for under daphne, which installed it."""
    from twisted.internet import reactor

    return reactor


def _abort(transport: Any) -> None:
    if transport is not None and not getattr(transport, "disconnected", False):
        transport.abortConnection()


def _peer(channel: Any) -> str:
    try:
        return str(channel.transport.getPeer())
    except Exception:  # noqa: BLE001 - only ever for a log line
        return "?"


def _arm(channel: Any) -> None:
    """Start the deadline for the next whole request on this connection."""
    _disarm(channel)
    channel._sse_request_deadline = _reactor().callLater(_installed["request_seconds"], _too_slow, channel)


def _disarm(channel: Any) -> None:
    deadline = getattr(channel, "_sse_request_deadline", None)
    if deadline is not None and deadline.active():
        deadline.cancel()
    channel._sse_request_deadline = None


def _too_slow(channel: Any) -> None:
    channel._sse_request_deadline = None
    transport = getattr(channel, "transport", None)
    if transport is None or getattr(transport, "disconnected", True):
        return
    seconds = _installed["request_seconds"]
    logger.info("closed a connection that sent no whole request in %ss, from %s", seconds, _peer(channel))
    transport.write(_raw_response(408, "Request Timeout", "the request took too long to arrive"))
    transport.loseConnection()
    _reactor().callLater(LINGER_SECONDS, _abort, transport)


class _Guard:
    """Mixed into daphne's request class by `install()`: the body limit and the deadline.
    Twisted's names (gotLength, ...) are the ones it calls; everything of ours starts _sse_."""

    _sse_refused = False
    _sse_received = 0
    channel: Any
    content: Any
    finished: Any
    _disconnected: bool

    def gotLength(self, length: int | None) -> None:  # noqa: N802 - Twisted's name
        if length is not None and length > _installed["limit"]:
            self._sse_refuse()
            return
        # At most the limit, so always in memory (Twisted spools 100 kB and more to disk).
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 - Twisted's name
        if self._sse_refused:
            return  # read and dropped
        self._sse_received += len(data)
        if self._sse_received > _installed["limit"]:
            self._sse_refuse()
            return
        self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:  # noqa: N802
        channel = self.channel
        if self._sse_refused:
            # The whole oversized body came in and was dropped: close the usual way, so a
            # client that sends everything before it reads still reads the 413 (an abort
            # would reset the connection and discard the answer on the client's side).
            channel.transport.loseConnection()
            return
        _disarm(channel)
        super().requestReceived(command, path, version)  # type: ignore[misc]

    def finish(self) -> None:
        channel = self.channel
        if channel is not None and channel.persistent and not self._disconnected and not self.finished:
            # The next request on this connection gets the same deadline. Armed before
            # finishing: finishing may go straight on to a pipelined request, whose arrival
            # disarms it again.
            _arm(channel)
        super().finish()  # type: ignore[misc]

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 - Twisted's name
        if self.channel is not None:
            _disarm(self.channel)
        super().connectionLost(reason)  # type: ignore[misc]

    def _sse_refuse(self) -> None:
        self._sse_refused = True
        self.content = io.BytesIO()
        channel = self.channel
        _disarm(channel)
        channel.persistent = False
        transport = channel.transport
        limit = _installed["limit"]
        logger.info("refused a request body over %d bytes from %s", limit, _peer(channel))
        transport.write(_raw_response(413, "Content Too Large", f"the request body is over {limit} bytes"))
        transport.loseWriteConnection()
        _reactor().callLater(LINGER_SECONDS, _abort, transport)


def install(limit: int, request_seconds: float) -> bool:
    """Hook daphne's HTTP factory (once per process); False when daphne is not importable."""
    try:
        from daphne.http_protocol import HTTPFactory, WebRequest
    except ImportError:  # another ASGI server: the ASGI body-limit middleware still applies
        return False
    first = not _installed
    _installed.update(limit=limit, request_seconds=request_seconds)
    if not first:
        return True
    # Made here, not at import: importing daphne's protocol module outside daphne is not free.
    guarded = type("GuardedRequest", (_Guard, WebRequest), {"__doc__": "daphne's request, guarded."})
    original_build = HTTPFactory.buildProtocol

    def buildProtocol(factory: Any, addr: Any) -> Any:  # noqa: N802 - Twisted's name
        protocol = original_build(factory, addr)
        if protocol is None:
            return None
        protocol.requestFactory = guarded
        # daphne's protocol wraps the HTTP/1.1 channel (to allow HTTP/2); the deadline and the
        # request both live on the channel.
        _arm(getattr(protocol, "_channel", protocol))
        return protocol

    HTTPFactory.buildProtocol = buildProtocol
    _installed["request_class"] = guarded
    return True


def request_class() -> type | None:
    """The request class daphne uses once installed (tests check the hook is in place)."""
    return _installed.get("request_class")
