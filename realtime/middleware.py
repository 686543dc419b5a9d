"""ASGI middleware: refuse request bodies over 64 KiB without reading them."""

from __future__ import annotations

from typing import Any

from realtime.errors import error_body

MAX_BODY_BYTES = 64 * 1024


class BodyLimitMiddleware:
    """413 for a body over MAX_BODY_BYTES: at once when Content-Length says so, else as soon
    as the streamed body passes the limit (Django would otherwise spool it all first)."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
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
