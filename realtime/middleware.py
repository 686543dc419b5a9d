"""ASGI middleware: refuse request bodies over 64 KiB without reading them."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

from realtime.errors import error_body
from realtime.under_daphne.writes import PASSES_BODY_TO

MAX_BODY_BYTES = 64 * 1024


def _may_have_body(scope: dict[str, Any]) -> bool:
    """False for a GET or HEAD over HTTP/1.x without Content-Length or Transfer-Encoding.

    HTTP/1.x framing gives such a request no body at all (RFC 9112, 6.3); every other
    request goes through the limit.
    """
    if scope.get("method") not in ("GET", "HEAD") or scope.get("http_version") not in ("1.0", "1.1"):
        return True
    return any(name in (b"content-length", b"transfer-encoding") for name, _ in scope.get("headers", []))


class BodyLimitMiddleware:
    """413 for a body over MAX_BODY_BYTES: at once when Content-Length says so, else as soon
    as the streamed body passes the limit (Django would otherwise spool it all first)."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        if scope["type"] != "http" or not _may_have_body(scope):
            # Nothing to limit: hand over the app's own coroutine, with no wrappers and no
            # frame of ours, which an SSE stream would keep alive (~0.6 KiB) while it is open.
            return self.app(scope, receive, send)
        return self._limited(scope, receive, send)

    async def _limited(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.limit
            except ValueError:
                too_big = False
            if too_big:
                await self.refuse(send)
                return
        seen = 0
        overflow = False
        started = False

        async def limited_receive() -> dict[str, Any]:
            nonlocal seen, overflow
            message: dict[str, Any] = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    overflow = True
                    # Django stops reading and sends nothing when the client "goes away".
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        # It acts on http.response.start only: streams behind it keep the direct writes.
        setattr(tracking_send, PASSES_BODY_TO, send)
        await self.app(scope, limited_receive, tracking_send)
        if overflow and not started:
            await self.refuse(send)

    async def refuse(self, send: Any) -> None:
        body = error_body(413, f"the request body is over {self.limit} bytes")
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})
