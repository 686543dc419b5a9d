"""Direct writes: live frames of a started daphne response go straight to its socket.

Profiled at 1000 streams, daphne's path cost ~30 us per frame per connection: the ASGI
wrappers, then Twisted's buffered write, which registers the socket for writing and
unregisters it again (two epoll_ctl calls) for every frame. A direct `send()` is one
syscall; Twisted's own buffer still takes whatever the socket does not accept at once.
The bytes are exactly those daphne's `send` would write (the same chunk framing).

Only plain-TCP HTTP/1.x responses qualify, behind wrappers known to pass body messages on
untouched (`_daphne_request`); tests/test_stream_direct_write.py has a test per wrapper.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

# The attribute an ASGI `send` wrapper sets to say "I pass `http.response.body` messages on
# untouched; the send I wrap is this". realtime.middleware's body limit sets it.
PASSES_BODY_TO = "sse_passes_body_to"


def _daphne_request(send: Any) -> Any | None:
    """The daphne request behind an ASGI `send`, or None.

    Only wrappers known to pass `http.response.body` messages on untouched are looked
    through: channels' session middleware (it acts on `http.response.start` only) and any
    wrapper marked with PASSES_BODY_TO. Any other wrapper may do something with body
    messages, so its stream keeps the ASGI path.
    """
    from channels.sessions import InstanceSessionWrapper

    # Looked up, not imported: importing daphne.server installs Twisted's reactor, which only
    # daphne itself may do. Not loaded means not under daphne.
    server = sys.modules.get("daphne.server")
    if server is None:
        return None
    for _ in range(8):
        if isinstance(send, functools.partial):
            owner = getattr(send.func, "__self__", None)
            if isinstance(owner, server.Server) and send.func.__name__ == "handle_reply" and len(send.args) == 1:
                return send.args[0]  # daphne: partial(Server.handle_reply, protocol)
            return None
        owner = getattr(send, "__self__", None)
        if isinstance(owner, InstanceSessionWrapper):
            send = owner.real_send
            continue
        inner = getattr(send, PASSES_BODY_TO, None)
        if inner is not None:
            send = inner
            continue
        return None
    return None


# The chunk of the frame written last: the hub hands the same bytes object to every
# connection of a channel in a row, so the chunk framing is built once per event too.
_chunk_of: tuple[bytes, bytes] = (b"", b"")


def _chunk(data: bytes) -> bytes:
    """HTTP/1.1 chunked framing, byte for byte what twisted.web's Request.write produces."""
    global _chunk_of
    if _chunk_of[0] is not data:
        _chunk_of = (data, b"%x\r\n%b\r\n" % (len(data), data))
    return _chunk_of[1]


class DirectWriter:
    """Writes response body bytes of a started daphne response straight to its socket."""

    __slots__ = ("request", "transport", "socket")

    def __init__(self, request: Any, transport: Any) -> None:
        self.request = request
        self.transport = transport
        self.socket = transport.socket

    @classmethod
    def for_send(cls, send: Any) -> DirectWriter | None:
        """A writer for the response behind `send`, if it is a plain-TCP daphne HTTP/1.x response."""
        request = _daphne_request(send)
        protocol = sys.modules.get("daphne.http_protocol")
        # realtime.under_daphne.requests' request is a WebRequest too.
        if request is None or protocol is None or not isinstance(request, protocol.WebRequest):
            return None
        channel = getattr(request, "channel", None)
        transport = getattr(channel, "transport", None)
        needed = ("socket", "connected", "dataBuffer", "offset", "_tempDataLen", "_writeDisconnected")
        if (
            transport is None
            or getattr(transport, "TLS", True)  # TLS transports encrypt in write(): not for us
            or not all(hasattr(transport, name) for name in needed)
            or not getattr(request, "startedWriting", False)  # headers go out on the ASGI path
            or getattr(request, "method", b"HEAD") == b"HEAD"
        ):
            return None
        return cls(request, transport)

    def write(self, data: bytes) -> int:
        """Write like daphne's send would; returns the bytes still queued in Twisted's buffer."""
        request = self.request
        transport = self.transport
        # daphne and Twisted drop body bytes for a finished or disconnected response.
        if request.finished or request.channel is None or request._disconnected:
            return 0
        if not transport.connected or transport._writeDisconnected:
            return 0
        request.sentLength += len(data)
        if request.chunked:
            data = _chunk(data)
        queued = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        if queued:
            transport.write(data)  # behind what Twisted still holds, in order
            return queued + len(data)
        try:
            sent = self.socket.send(data)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            # A broken connection: Twisted meets the same error when it flushes and closes
            # the connection the usual way (daphne then tells the consumer).
            transport.write(data)
            return 0
        if sent < len(data):
            transport.write(data[sent:])
            return len(data) - sent
        return 0
