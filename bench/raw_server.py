"""Baseline (a): raw redis-py Pub/Sub fan-out, the practical ceiling.

One Redis subscription per channel per process; each message becomes one SSE frame (no
validation, no JSON work) written as the same bytes to every plain asyncio socket that
listens to the channel. No Django, no Channels, no daphne, no chunked encoding.

    python -m bench.raw_server --port 8001 --redis redis://127.0.0.1:6379/0
"""

from __future__ import annotations

import argparse
import asyncio
import logging

from redis import asyncio as aioredis

from bench.procs import raise_file_limit

logger = logging.getLogger("bench.raw")

HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
    b"cache-control: no-cache\r\nx-accel-buffering: no\r\nconnection: close\r\n\r\n"
)
OPEN = b"retry: 2000\n: stream open\n\n"
MAX_BATCH = 256


def channel_for(path: str) -> str | None:
    path = path.split("?", 1)[0].rstrip("/")
    if path == "/api/broadcast/events":
        return "sse:broadcast"
    parts = path.split("/")
    if len(parts) == 5 and parts[1:3] == ["api", "sessions"] and parts[4] == "events":
        return "sse:session:" + parts[3]
    return None


def frame(data: bytes) -> bytes:
    # The id sits first in the envelopes the product's publish script makes: slice it out.
    if data.startswith(b'{"id":"'):
        end = data.index(b'"', 7)
        return b"id: " + data[7:end] + b"\ndata: " + data + b"\n\n"
    return b"data: " + data + b"\n\n"


class Fanout:
    def __init__(self, url: str) -> None:
        self.redis = aioredis.Redis.from_url(url)
        self.pubsub = self.redis.pubsub()
        self.members: dict[str, set[asyncio.Transport]] = {}
        self.confirmed: dict[str, asyncio.Future[None]] = {}
        self.lock = asyncio.Lock()

    async def join(self, channel: str, transport: asyncio.Transport) -> None:
        members = self.members.setdefault(channel, set())
        members.add(transport)
        async with self.lock:
            waiter = self.confirmed.get(channel)
            if waiter is None:
                waiter = self.confirmed[channel] = asyncio.get_running_loop().create_future()
                await self.pubsub.subscribe(channel)
        await waiter

    def leave(self, channel: str, transport: asyncio.Transport) -> None:
        members = self.members.get(channel)
        if members is not None:
            members.discard(transport)

    async def receive_forever(self) -> None:
        while True:
            if not self.pubsub.subscribed:
                await asyncio.sleep(0.01)
                continue
            message = await self.pubsub.get_message(timeout=1.0)
            batch = []
            while message is not None and len(batch) < MAX_BATCH:
                batch.append(message)
                message = await self.pubsub.get_message(timeout=0)
            if message is not None:
                batch.append(message)
            frames: dict[str, list[bytes]] = {}
            for item in batch:
                name = item["channel"].decode()
                if item["type"] == "subscribe":
                    waiter = self.confirmed.get(name)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(None)
                elif item["type"] == "message":
                    frames.setdefault(name, []).append(frame(item["data"]))
            for name, parts in frames.items():
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                for transport in self.members.get(name, ()):
                    transport.write(data)


class SSEProtocol(asyncio.Protocol):
    def __init__(self, fanout: Fanout) -> None:
        self.fanout = fanout
        self.buffer = b""
        self.channel: str | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self.channel is not None:
            return
        self.buffer += data
        if b"\r\n\r\n" not in self.buffer:
            return
        assert self.transport is not None
        path = self.buffer.split(b" ", 2)[1].decode("latin-1")
        channel = channel_for(path)
        if channel is None:
            self.transport.write(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            self.transport.close()
            return
        self.channel = channel
        asyncio.ensure_future(self._open(channel, self.transport))

    async def _open(self, channel: str, transport: asyncio.Transport) -> None:
        await self.fanout.join(channel, transport)
        transport.write(HEAD + OPEN)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.channel is not None and self.transport is not None:
            self.fanout.leave(self.channel, self.transport)


async def serve(port: int, url: str) -> None:
    fanout = Fanout(url)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SSEProtocol(fanout), "127.0.0.1", port, backlog=1024)
    receiver = asyncio.ensure_future(fanout.receive_forever())
    async with server:
        await asyncio.gather(server.serve_forever(), receiver)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis", required=True)
    args = parser.parse_args()
    raise_file_limit()
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(serve(args.port, args.redis))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
