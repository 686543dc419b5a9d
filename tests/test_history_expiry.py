"""A channel's history expires SSE_HISTORY_TTL_SECONDS after its last event, so Redis holds the
channels in use, not every channel ever used (one service inventing channel names cannot fill
it). The record of a conversation stays in the database."""

from __future__ import annotations

import time
from typing import Any

from realtime.bus import enqueue_sse_message_sync, get_layer
from realtime.envelope import draft
from realtime.redis_store import history_key
from tests.support.sessions import unique


def test_every_publish_path_gives_the_history_key_the_ttl(redis_bus: Any, settings: Any) -> None:
    settings.SSE_HISTORY_TTL_SECONDS = 3600
    one = "sse:session:" + unique("ttl")
    enqueue_sse_message_sync(one, "status_change", {"n": 1}, source="ai_chatbot")
    batch = "sse:session:" + unique("ttl")
    get_layer().publish_batch_sync([draft(batch, "status_change", {"n": 1}, "ai_chatbot")], unique("batch"))
    for channel in (one, batch):
        assert 3590 < redis_bus.ttl(history_key(channel)) <= 3600


def test_each_event_pushes_the_expiry_back(redis_bus: Any, settings: Any) -> None:
    settings.SSE_HISTORY_TTL_SECONDS = 3600
    channel = "sse:session:" + unique("ttl")
    enqueue_sse_message_sync(channel, "status_change", {"n": 1}, source="ai_chatbot")
    redis_bus.expire(history_key(channel), 10)
    enqueue_sse_message_sync(channel, "status_change", {"n": 2}, source="ai_chatbot")
    assert redis_bus.ttl(history_key(channel)) > 3590


def test_a_thousand_channels_used_once_are_gone_after_the_ttl(redis_bus: Any, settings: Any) -> None:
    settings.SSE_HISTORY_TTL_SECONDS = 1
    prefix = unique("flood")
    channels = [f"sse:session:{prefix}_{n}" for n in range(1000)]
    for channel in channels:
        enqueue_sse_message_sync(channel, "status_change", {}, source="ai_chatbot")
    assert sum(redis_bus.exists(history_key(c)) for c in channels[:50]) == 50
    time.sleep(2.2)
    assert redis_bus.keys(history_key(f"sse:session:{prefix}_*")) == []


def test_a_ttl_of_zero_keeps_the_history(redis_bus: Any, settings: Any) -> None:
    settings.SSE_HISTORY_TTL_SECONDS = 0
    channel = "sse:session:" + unique("forever")
    enqueue_sse_message_sync(channel, "status_change", {}, source="ai_chatbot")
    assert redis_bus.ttl(history_key(channel)) == -1
