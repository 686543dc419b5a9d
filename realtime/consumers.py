"""The SSE endpoints (docs/bus.md section 4, Streams), as one Channels consumer.

The consumer is thin: it authenticates, checks the channels, registers an SSEConnection with
the process's hub and then only waits for the client to go. Events never pass through the
consumer's own channel-layer queue or `dispatch` (that costs a task, an `asyncio.wait` and a
thread hop per message per connection); the hub writes ready bytes straight to the socket.

Note the AsyncHttpConsumer trap: its stock `http_request` stops the consumer as soon as
`handle()` returns. This consumer keeps running until the client disconnects, the server
shuts down or the connection is closed by the hub, and leaves the hub on every exit path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddlewareStack
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from realtime import sse
from realtime.access import owner_of
from realtime.auth import NotAuthenticated, Principal, may_listen, principal_from
from realtime.bus import (
    TooManyChannels,
    get_layer,
    open_subscription,
    validate_channels,
    validate_last_event_id,
)
from realtime.channels import BROADCAST, InvalidChannel, agent_channel, channel_kind, session_channel
from realtime.envelope import InvalidEvent
from realtime.errors import ApiError, error_body
from realtime.hub import Hub, stats
from realtime.limits import TooManyStreams
from realtime.metrics import count_request, is_refusal, note_refused, who_asked
from realtime.stream import SSEConnection
from realtime.under_daphne import shutdown
from realtime.viewers import sessions_of

logger = logging.getLogger(__name__)


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


def check_host(host: str | None) -> None:
    """The Host header must be one of DJANGO_ALLOWED_HOSTS, as for every other request (Django
    checks it for its views; the streams do not pass through Django's request)."""
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = [".localhost", "127.0.0.1", "[::1]"]  # what Django allows in this case
    domain, _port = split_domain_port(host or "")
    if not domain or not validate_host(domain, allowed):
        raise ApiError(400, f"the Host header {str(host)[:80]!r} is not one of DJANGO_ALLOWED_HOSTS", "invalid_host")


def requested_channels(scope: dict[str, Any]) -> list[str]:
    """The channels a request asks for, from its route and query string (not yet validated)."""
    kwargs = scope.get("url_route", {}).get("kwargs", {})
    if "session_name" in kwargs:
        return [session_channel(kwargs["session_name"])]
    if "agent_id" in kwargs:
        return [agent_channel(kwargs["agent_id"])]
    if kwargs.get("broadcast"):
        return [BROADCAST]
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
    return query.get("channel", [])


def stream_route(scope: dict[str, Any]) -> str:
    """The route pattern of a stream request, for the request counts and the logs."""
    kwargs = scope.get("url_route", {}).get("kwargs", {})
    if "session_name" in kwargs:
        return "api/sessions/<name>/events"
    if "agent_id" in kwargs:
        return "api/agents/<id>/events"
    if kwargs.get("broadcast"):
        return "api/broadcast/events"
    return "api/events"


def _kinds(channels: tuple[str, ...]) -> set[str]:
    return {channel_kind(channel)[0] for channel in channels}


def _opened(connection: SSEConnection, who: str, last_id: str | None, replayed: int) -> None:
    """Count and log a stream that just opened (once per stream: not the hot path)."""
    for kind in _kinds(connection.channels):
        stats[f"streams_open_{kind}"] += 1
    logger.info(
        "stream opened by %s on %s%s",
        who,
        ",".join(connection.channels),
        f", resuming after {last_id} ({replayed} event(s) replayed)" if last_id else "",
    )


def _closed(hub: Hub, connection: SSEConnection, who: str, started: float, seen: int, ended: str) -> None:
    """Uncount and log a stream that ends: how long it was open and the events it was sent, the
    replayed ones and those on its channels meanwhile (from the hub's per-channel counts:
    nothing is counted per delivery)."""
    for kind in _kinds(connection.channels):
        stats[f"streams_open_{kind}"] -= 1
    logger.info(
        "stream closed for %s on %s after %.1f s, %d event(s): %s",
        who,
        ",".join(connection.channels),
        time.monotonic() - started,
        hub.events_on(connection.channels) - seen,
        ended,
    )


def requested_last_id(scope: dict[str, Any]) -> str | None:
    # The header wins: a browser's automatic reconnect sends it with the original URL.
    header = _header(scope, b"last-event-id")
    if header:
        return header
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    values = query.get("last_event_id")
    return values[-1] if values else None


class SSEConsumer(AsyncHttpConsumer):
    """GET /api/sessions/{name}/events, /api/agents/{id}/events, /api/broadcast/events, /api/events."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        # Deliberately no `new_channel()`: on the Redis layer that would be one more Redis
        # subscription per connection; delivery goes through the hub instead.
        self.scope = scope
        self.base_send = send
        try:
            await self.serve(receive, send)
        except StopConsumer:
            pass

    async def serve(self, receive: Any, send: Any) -> None:
        if not await self._read_request(receive):
            return
        if self.scope.get("method") != "GET":
            await self._error(ApiError(405, "event streams are read with GET"))
            return
        try:
            principal, channels, last_id = self.check_request()
        except ApiError as error:
            await self._error(error)
            return
        if not shutdown.installed:
            # Once per process, from inside daphne's running reactor: SIGTERM then ends every
            # stream with the chunked terminator instead of cutting it (realtime.under_daphne.shutdown).
            shutdown.install()
        layer = get_layer()
        connection = SSEConnection(send, channels)
        guard = layer.hub.guard
        owner = owner_of(principal, self.scope, channels)
        try:
            # SSE_MAX_CONNECTIONS, the person's and the identity's share (realtime.limits).
            await guard.admit(connection, owner)
        except TooManyStreams as exc:
            await self._error(ApiError(429, str(exc), retry_after=exc.retry_after))
            return
        # For the closing log line: when it opened, the events on its channels by then, why it ended.
        started: float | None = None
        seen = 0
        ended = "the server stopped"
        try:
            # Never fails because of Redis: while it is unreachable the stream opens degraded.
            opening = await open_subscription(layer, connection, channels, last_id)
            await connection.start_response()
            # Each stream its own reconnect delay: after a restart, clients come back spread out.
            first = sse.retry(sse.jittered_retry_ms(settings.SSE_RETRY_MS)) + sse.comment("stream open")
            connection.go_live(first + b"".join(frame for frame, _ in opening.events), opening.cut)
            replayed = sum(1 for _, event in opening.events if "id" in event)  # not a reset, not a status
            # This frame stays suspended for the life of the stream: drop the history it
            # replayed instead of holding it until the client goes.
            del opening, first
            # Counted from here on: the events on its channels, plus those it was replayed.
            started, seen = time.monotonic(), layer.hub.events_on(channels) - replayed
            count_request(stream_route(self.scope), "GET", 200)
            _opened(connection, owner.identity, last_id, replayed)
            # A person's stream that carries their own agent channel is a workbench page:
            # while it is open, they count as online (realtime.presence).
            person = None if principal.is_service else principal.name
            present = person if person is not None and agent_channel(person) in channels else None
            # A person's stream that carries a session's channel shows them that session: they
            # are one of its viewers while it is open (realtime.viewers).
            viewing = sessions_of(channels) if person is not None else ()
            del principal  # not needed while the stream is open
            try:
                # Inside the try: counted at once (before the Redis write), so a stream cancelled
                # during that write is still uncounted below and never stays "online" for good.
                if present is not None:
                    await layer.hub.presence.connected(present)
                if person is not None and viewing:
                    # Inside the try: counted at once, so a cancellation during its write still uncounts.
                    await layer.hub.viewers.opened(person, viewing)
                ended = await self._wait_for_end(receive, connection)
            finally:
                if present is not None:
                    layer.hub.presence.disconnected(present)
                if person is not None and viewing:
                    layer.hub.viewers.closed(person, viewing)
        finally:
            if started is not None:
                _closed(layer.hub, connection, owner.identity, started, seen, ended)
            await layer.hub.remove(connection)
            connection.close()
            await guard.release(connection)

    async def _read_request(self, receive: Any) -> bool:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            if message["type"] == "http.request" and not message.get("more_body"):
                return True

    def check_request(self) -> tuple[Principal, tuple[str, ...], str | None]:
        check_host(_header(self.scope, b"host"))
        try:
            principal = principal_from(_header(self.scope, b"authorization"), self.scope.get("user"))
        except NotAuthenticated as exc:
            raise ApiError(401, str(exc)) from None
        try:
            channels = validate_channels(requested_channels(self.scope))
            last_id = validate_last_event_id(requested_last_id(self.scope))
        except TooManyChannels as exc:
            raise ApiError(429, str(exc)) from None
        except InvalidChannel as exc:
            raise ApiError(400, str(exc), "invalid_channel") from None
        except InvalidEvent as exc:
            raise ApiError(400, str(exc), "invalid_last_event_id") from None
        if principal is None:
            raise ApiError(401, "log in at /accounts/login/ or send Authorization: Bearer <token>")
        for channel in channels:
            if not may_listen(principal, channel):
                raise ApiError(403, f"{principal.name} may not listen to {channel}")
        return principal, channels, last_id

    async def _wait_for_end(self, receive: Any, connection: SSEConnection) -> str:
        """Until the client goes, the server shuts down (cancellation) or the hub closes us;
        returns which of the first and the last it was.

        This task itself waits on `receive`, and `connection.close()` cancels it: no second
        task and no `asyncio.wait` per open stream (their memory adds up at 5000 streams).
        """
        task = asyncio.current_task()
        assert task is not None
        connection.wake_on_close(task)
        try:
            while not connection.is_closed:
                if (await receive())["type"] == "http.disconnect":
                    return "the client left"
        except asyncio.CancelledError:
            # Closed by the hub (a client too far behind) and by nothing else: carry on and
            # end the response properly. A server shutdown's cancellation goes on up.
            if not connection.is_closed or task.uncancel() > 0:
                raise
        finally:
            connection.wake_on_close(None)
        await self.send({"type": "http.response.body", "body": b"", "more_body": False})
        return "closed by the server"

    async def _error(self, error: ApiError) -> None:
        route = stream_route(self.scope)
        method = str(self.scope.get("method") or "GET")
        count_request(route, method, error.status)
        if is_refusal(error.status):
            client = self.scope.get("client")
            note_refused(
                route,
                method,
                error.status,
                error.code,
                who_asked(_header(self.scope, b"authorization"), self.scope.get("user")),
                client[0] if client else None,
            )
        await self.send_response(
            error.status, error_body(error.status, error.detail, error.code), headers=error.headers
        )


def stream_app() -> Any:
    """The ASGI app of the SSE endpoints.

    Channels' auth stack reads the session cookie. A request that carries an Authorization
    header is never judged by its cookie (`principal_from`: the header wins or the request
    gets 401), so it skips the stack, whose scope copies, session and user objects would
    otherwise stay alive for the whole stream: ~4 KiB per open stream, measured.
    """
    with_cookie = AuthMiddlewareStack(SSEConsumer.as_asgi())

    def app(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[None]:
        # A plain function handing over the coroutine: no frame of its own for the stream's
        # lifetime. One consumer instance per request, as as_asgi() makes.
        if _header(scope, b"authorization"):
            return SSEConsumer()(scope, receive, send)
        return with_cookie(scope, receive, send)

    return app
