"""In-process SSE streams for consumer tests, and a spec-following SSE parser.

`Stream` drives the real ASGI application (`sse_project.asgi.application`, with the auth stack
and the body limit) through Channels' `ApplicationCommunicator`: `HttpCommunicator` waits for a
complete response, which a stream never finishes.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import async_to_sync
from channels.testing import ApplicationCommunicator


@dataclass
class Event:
    type: str
    data: str
    id: str  # the EventSource's lastEventId after this event

    @property
    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SSEParser:
    """The WHATWG "event stream interpretation" rules, fed bytes as they arrive."""

    events: list[Event] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)  # every field name seen, in order
    comments: list[str] = field(default_factory=list)
    retry: int | None = None
    _pending: str = ""
    _data: str = ""
    _type: str = ""
    _last_id: str = ""
    _started: bool = False

    def feed(self, chunk: bytes) -> list[Event]:
        text = chunk.decode("utf-8", errors="replace")
        if not self._started and text:
            text = text.removeprefix("\ufeff")
            self._started = True
        *lines, self._pending = re.split(r"\r\n|\r|\n", self._pending + text)
        before = len(self.events)
        for line in lines:
            self._line(line)
        return self.events[before:]

    def _line(self, line: str) -> None:
        if line == "":
            if self._data:
                self.events.append(Event(self._type or "message", self._data.removesuffix("\n"), self._last_id))
            self._data, self._type = "", ""
            return
        if line.startswith(":"):
            self.comments.append(line[1:].strip())
            return
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        self.fields.append(name)
        if name == "event":
            self._type = value
        elif name == "data":
            self._data += value + "\n"
        elif name == "id" and "\x00" not in value:
            self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self.retry = int(value)


def parse_sse(stream: bytes) -> SSEParser:
    parser = SSEParser()
    parser.feed(stream)
    return parser


def scope_for(path: str, query: str = "", headers: dict[str, str] | None = None, method: str = "GET") -> dict[str, Any]:
    """An HTTP scope as daphne builds it; a browser's `Host: testserver` unless `headers` say otherwise."""
    if not any(key.lower() == "host" for key in headers or {}):
        headers = {"Host": "testserver", **(headers or {})}
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogateescape"),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()],
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


class Stream:
    """One request to the ASGI application, read as a stream."""

    def __init__(
        self,
        path: str,
        query: str = "",
        headers: dict[str, str] | None = None,
        method: str = "GET",
        body: bytes = b"",
    ) -> None:
        from sse_project.asgi import application

        self.communicator = ApplicationCommunicator(application, scope_for(path, query, headers, method))
        self.body = body
        self.status: int | None = None
        self.headers: dict[bytes, bytes] = {}
        self.raw = b""
        self.parser = SSEParser()
        self._read = 0  # events already handed out by next_event
        self.finished = False

    async def open(self, timeout: float = 2) -> int:
        """Send the request; return the status. A 200 also waits for the first frame."""
        await self.communicator.send_input({"type": "http.request", "body": self.body, "more_body": False})
        start = await self.communicator.receive_output(timeout)
        assert start["type"] == "http.response.start", start
        self.status = start["status"]
        self.headers = dict(start.get("headers", []))
        await self._body(timeout)
        return self.status

    async def _body(self, timeout: float) -> bytes:
        message = await self.communicator.receive_output(timeout)
        assert message["type"] == "http.response.body", message
        chunk: bytes = message.get("body", b"")
        self.raw += chunk
        self.parser.feed(chunk)
        self.finished = not message.get("more_body", False)
        return chunk

    def error(self) -> dict[str, Any]:
        """The JSON error body of a refused stream."""
        assert self.headers.get(b"content-type") == b"application/json", self.headers
        body: dict[str, Any] = json.loads(self.raw)
        return body

    async def next_event(self, timeout: float = 1, skip_heartbeats: bool = True) -> Event:
        while True:
            while self._read < len(self.parser.events):
                event = self.parser.events[self._read]
                self._read += 1
                if not (skip_heartbeats and event.type == "heartbeat"):
                    return event
            await self._body(timeout)

    async def events(self, count: int, timeout: float = 1) -> list[Event]:
        return [await self.next_event(timeout) for _ in range(count)]

    async def nothing_more(self, timeout: float = 0.2) -> bool:
        """True if no further event (heartbeats aside) arrives within `timeout`.

        Uses `receive_nothing`, because a timed-out `receive_output` cancels the application.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (left := deadline - loop.time()) > 0:
            if await self.communicator.receive_nothing(left, interval=0.01):
                break
            await self._body(1)
        unread = [e for e in self.parser.events[self._read :] if e.type != "heartbeat"]
        assert unread == [], f"unexpected events {unread}"
        return True

    async def disconnect(self, timeout: float = 2) -> None:
        """The client goes away; waits for the application to finish."""
        await self.communicator.send_input({"type": "http.disconnect"})
        await self.communicator.wait(timeout)


def in_loop(test: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test on a fresh event loop through `async_to_sync`.

    Sync work the application hands back (`database_sync_to_async`) then runs in the test's
    own thread, which holds pytest-django's test database connection.
    """

    @functools.wraps(test)
    def run(*args: Any, **kwargs: Any) -> None:
        async_to_sync(test)(*args, **kwargs)

    return run


def login_cookie(username: str, *, supervisor: bool = False) -> str:
    """Create an agent (or supervisor) and log in with Django's test client; the Cookie header value."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    user = get_user_model().objects.create_user(username, password="pw-" + username, is_staff=supervisor)
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"
