"""The bus in one process: the embedded default when no Redis is configured.

Channels' in-memory layer with a ring-buffer history (`realtime.history.MemoryHistory`);
every publish in the process reaches each event loop's hub directly.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from channels.layers import InMemoryChannelLayer

from realtime import signals
from realtime.channels import BROADCAST, SESSION_PREFIX
from realtime.envelope import Draft, parse_incoming
from realtime.history import MemoryHistory, Resume, StoredEvent
from realtime.hub import Hub
from realtime.layer_base import SSEGroupSend, _history_size, merged_presence


class MemorySSEChannelLayer(SSEGroupSend, InMemoryChannelLayer):
    """The embedded default: the in-memory layer with a ring-buffer history. One process only."""

    def __init__(self, history_size: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.history = MemoryHistory(_history_size(history_size))
        self.history_size = self.history.size
        self._hubs: dict[asyncio.AbstractEventLoop, Hub] = {}
        self._hubs_lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._batches: dict[str, list[str]] = {}  # batch key -> ids, the newest 10k

    @property
    def hub(self) -> Hub:
        loop = asyncio.get_running_loop()
        with self._hubs_lock:
            hub = self._hubs.get(loop)
            if hub is None:
                hub = self._hubs[loop] = Hub(self, loop)
            return hub

    async def subscribe_channel(self, channel: str) -> None:
        """Nothing to do: every publish in this process reaches the hubs directly."""

    async def unsubscribe_channel(self, channel: str) -> None:
        """Nothing to do, as above."""

    async def publish_event(self, item: Draft) -> str:
        return self.publish_event_sync(item)

    def publish_event_sync(self, item: Draft) -> str:
        # Id allocation and hand-off to the loops happen under one lock, so two threads
        # publishing at once can never deliver in an order other than their ids'.
        with self._publish_lock:
            stored = self.history.append(item.channel, item.body)
            self._fan_out(stored)
        if item.channel.startswith(SESSION_PREFIX):
            signals.record_published(stored)
        return stored.id

    def publish_batch_sync(self, items: list[Draft], batch_key: str) -> list[str]:
        """As on Redis: a batch goes out once, however often it is handed in."""
        with self._publish_lock:
            done = self._batches.get(batch_key)
            if done is not None:
                return done
            ids = []
            for item in items:
                stored = self.history.append(item.channel, item.body)
                self._fan_out(stored)
                ids.append(stored.id)
            self._batches[batch_key] = ids
            while len(self._batches) > 10_000:
                self._batches.pop(next(iter(self._batches)))
            return ids

    def _fan_out(self, stored: StoredEvent) -> None:
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        with self._hubs_lock:
            hubs = [hub for loop, hub in self._hubs.items() if not loop.is_closed()]
        for hub in hubs:
            if hub.loop is running:
                hub.deliver(stored.channel, stored.envelope)
            else:
                hub.loop.call_soon_threadsafe(hub.deliver, stored.channel, stored.envelope)
        if self.groups.get(stored.channel.replace(":", ".")):
            # asyncio queues are not thread-safe: stock consumers are fed on a loop.
            if running is not None:
                self._feed_stock_consumers(stored)
            elif hubs:
                hubs[0].loop.call_soon_threadsafe(self._feed_stock_consumers, stored)

    def _feed_stock_consumers(self, stored: StoredEvent) -> None:
        message = {"type": "sse.event", "event": parse_incoming(stored.envelope, stored.channel)}
        for channel_name in list(self.groups.get(stored.channel.replace(":", "."), ())):
            # As the stock layer's send(): the queue may not exist before the first receive,
            # and it holds (expiry, message) pairs. A full queue drops, as group_send does.
            queue = self.channels.setdefault(channel_name, asyncio.Queue(maxsize=self.get_capacity(channel_name)))
            if not queue.full():
                queue.put_nowait((time.time() + self.expiry, message))

    async def cursor(self, channel: str = BROADCAST) -> str:
        return self.history.cursor()

    def cursor_sync(self, channel: str = BROADCAST) -> str:
        return self.history.cursor()

    async def resume(self, channels: list[str], after_id: str) -> Resume:
        return self.history.resume(channels, after_id)

    def history_sync(self, channel: str, limit: int = 200) -> list[StoredEvent]:
        return self.history.events(channel)[-limit:]

    async def ping(self) -> bool:
        return True

    def ping_sync(self) -> bool:
        return True

    def sync_client(self, key: str = "") -> None:
        """No Redis on the embedded default."""
        return None

    def describe_target(self) -> str | None:
        return None

    @property
    def redis_target(self) -> None:
        return None

    def online_agents(self) -> list[dict[str, Any]]:
        with self._hubs_lock:
            hubs = list(self._hubs.values())
        return merged_presence(hubs)

    def local_online_agents(self) -> list[dict[str, Any]]:
        return self.online_agents()
