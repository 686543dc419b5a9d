"""`GET /api/events?channel=...` the naive way: one stock `AsyncHttpConsumer` per stream.

Signed in through Channels' stock `AuthMiddlewareStack` (the session cookie), 403 when
anonymous. One `group_add` per channel (on the pub/sub layer: a Redis subscription each), every
event arrives through the consumer's queue and dispatch, unpacked from msgpack and
JSON-encoded again for this one connection. No heartbeat, no history, no resume
(`Last-Event-ID` / `last_event_id` are ignored). Fixed only for the known trap (the stock
`http_request` stops the consumer as soon as `handle()` returns).
"""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

from bench.naive.centre_events import AGENT_PREFIX, group_for

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
CHANNEL = re.compile(r"sse:(broadcast|(session|agent):[A-Za-z0-9_-]{1,64})\Z")
MAX_CHANNELS = 20


class CentreStreamConsumer(AsyncHttpConsumer):
    groups_joined: list[str]

    async def http_request(self, message: dict[str, Any]) -> None:
        self.groups_joined = []
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self.refuse(403, "log in first")
            return
        query = parse_qs(self.scope.get("query_string", b"").decode("latin-1"))
        channels = list(dict.fromkeys(query.get("channel", [])))
        if not channels or len(channels) > MAX_CHANNELS or not all(CHANNEL.match(c) for c in channels):
            await self.refuse(
                400, f"give 1 to {MAX_CHANNELS} channels: sse:broadcast, sse:session:<name>, sse:agent:<id>"
            )
            return
        me = user.get_username()
        for channel in channels:
            if channel.startswith(AGENT_PREFIX) and channel != AGENT_PREFIX + me and not user.is_staff:
                await self.refuse(403, f"{me} may not listen to {channel}")
                return
        for channel in channels:
            group = group_for(channel)
            await self.channel_layer.group_add(group, self.channel_name)
            self.groups_joined.append(group)
        # Keep running after the headers: events come later through the groups.
        await self.send_headers(status=200, headers=HEADERS)
        await self.send_body(b"retry: 2000\n: stream open\n\n", more_body=True)

    async def refuse(self, status: int, text: str) -> None:
        await self.send_response(status, text.encode(), headers=[(b"content-type", b"text/plain; charset=utf-8")])
        raise StopConsumer()

    async def sse_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        frame = f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n".encode()
        await self.send_body(frame, more_body=True)

    async def http_disconnect(self, message: dict[str, Any]) -> None:
        for group in self.groups_joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        raise StopConsumer()
