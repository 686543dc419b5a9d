"""The naive SSE consumer: one AsyncHttpConsumer per connection, one group per channel.

This is how a stream is usually written with Channels: every connection gets its own
channel (on the pub/sub layer: its own Redis subscription), joins the channel's group, and
every event arrives through the consumer's queue and dispatch, is unpacked from msgpack and
JSON-encoded again for this one connection. Fixed only for the known trap (the stock
`http_request` would stop the consumer as soon as `handle()` returns).
"""

import json

from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer

HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


def group_for(channel: str) -> str:
    return channel.replace(":", ".")


class NaiveSSEConsumer(AsyncHttpConsumer):
    async def http_request(self, message):
        # Keep running after the headers: events come later through the group.
        kwargs = self.scope["url_route"]["kwargs"]
        if "session_name" in kwargs:
            channel = f"sse:session:{kwargs['session_name']}"
        else:
            channel = "sse:broadcast"
        self.group = group_for(channel)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_headers(status=200, headers=HEADERS)
        await self.send_body(b"retry: 2000\n: stream open\n\n", more_body=True)

    async def sse_event(self, message):
        event = message["event"]
        data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        frame = f"id: {event['id']}\nevent: {event['type']}\ndata: {data}\n\n".encode()
        await self.send_body(frame, more_body=True)

    async def http_disconnect(self, message):
        await self.channel_layer.group_discard(self.group, self.channel_name)
        raise StopConsumer()
