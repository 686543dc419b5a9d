"""What the bus tells the rest of the product, as Django signals (realtime never imports it).

- `events_to_record`: session-channel events that came through the publish path (a service's
  helper call or `POST /api/publish`) or raw from Redis, for the database record; sent from
  the recorder's thread with `envelopes=[dict, ...]`.
- `outbox_published`: rows of the outbox just published, inside the transaction that marks
  them, with `rows=[OutboxEvent, ...]`.
- `redis_reconnected`: a link is back after a loss, with `empty=True` when that Redis lost
  its data (restarted empty, or a failover to a server that lacks it); sent from a thread of
  its own, so receivers may use the database.
"""

from __future__ import annotations

import logging
import threading

from django.dispatch import Signal

from realtime.history import StoredEvent

logger = logging.getLogger(__name__)

events_to_record = Signal()
outbox_published = Signal()
redis_reconnected = Signal()


def redis_came_back(empty: bool) -> None:
    """Called on an event loop: the receivers run in a thread (they use the database)."""

    def send() -> None:
        try:
            redis_reconnected.send(sender=None, empty=empty)
        except Exception:
            logger.exception("a receiver of redis_reconnected failed")

    threading.Thread(target=send, name="sse-redis-reconnected", daemon=True).start()


def record_published(stored: StoredEvent) -> None:
    """The in-memory layer's publish path: hand a session-channel event to the recorder."""
    from realtime.recorder import memory_recorder

    memory_recorder().submit(stored.envelope)
