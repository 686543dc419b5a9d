"""The layers keep the stock Channels group API: an SSE channel's group (`sse.session.x`) is
published through the bus, and ordinary consumers in that group receive `sse.event` messages."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from django.test import override_settings

from realtime.envelope import InvalidEvent
from realtime.layers import MemorySSEChannelLayer, RedisSSEChannelLayer, history_key

EVENT = {"type": "new_message", "payload": {"session_name": "grp", "data": {"text": "hi"}}, "source": "ai_chatbot"}


async def round_trip(layer: Any) -> dict[str, Any]:
    consumer = await layer.new_channel()
    await layer.group_add("sse.session.grp", consumer)
    await layer.group_send("sse.session.grp", {"type": "sse.event", "event": EVENT})
    message: dict[str, Any] = await asyncio.wait_for(layer.receive(consumer), 2)
    await layer.group_discard("sse.session.grp", consumer)
    return message


@override_settings(SSE_HISTORY_SIZE=10)
def test_on_the_memory_layer_a_stock_consumer_in_an_sse_group_gets_the_published_envelope() -> None:
    layer = MemorySSEChannelLayer()
    message = asyncio.run(round_trip(layer))
    assert message["type"] == "sse.event"
    assert message["event"]["channel"] == "sse:session:grp" and message["event"]["payload"] == {
        **EVENT["payload"],
        "message_id": message["event"]["payload"]["message_id"],  # given by the publish path
    }
    assert [e.id for e in layer.history_sync("sse:session:grp")] == [message["event"]["id"]]


@override_settings(SSE_HISTORY_SIZE=10)
def test_on_redis_group_send_to_an_sse_group_publishes_the_contracts_json_on_the_channels_own_name(
    redis_server: Any,
) -> None:
    layer = RedisSSEChannelLayer(hosts=[redis_server.url])
    client = redis_server.client()
    watcher = client.pubsub()
    watcher.subscribe("sse:session:grp")
    watcher.get_message(timeout=1)  # the subscribe confirmation

    async def scenario() -> dict[str, Any]:
        try:
            return await round_trip(layer)
        finally:
            await layer.flush()

    message = asyncio.run(scenario())
    raw = watcher.get_message(timeout=2)
    watcher.close()
    assert raw is not None and raw["channel"] == b"sse:session:grp"
    on_the_wire = json.loads(raw["data"])
    assert on_the_wire == message["event"]
    assert set(on_the_wire) == {"id", "channel", "type", "payload", "timestamp", "source"}
    assert client.xlen(history_key("sse:session:grp")) >= 1


def test_group_send_to_an_sse_group_validates_like_every_other_publish() -> None:
    layer = MemorySSEChannelLayer()
    bad = {"type": "sse.event", "event": {**EVENT, "source": "crm"}}
    with pytest.raises(InvalidEvent):
        asyncio.run(layer.group_send("sse.session.grp", bad))
    with pytest.raises(InvalidEvent):
        asyncio.run(layer.group_send("sse.session.grp", {"type": "chat.message", "text": "not an envelope"}))
    assert layer.history_sync("sse:session:grp") == []


def test_other_groups_behave_as_stock_channels() -> None:
    async def scenario() -> dict[str, Any]:
        layer = MemorySSEChannelLayer()
        consumer = await layer.new_channel()
        await layer.group_add("chat", consumer)
        await layer.group_send("chat", {"type": "chat.message", "text": "hello"})
        return await asyncio.wait_for(layer.receive(consumer), 1)  # type: ignore[no-any-return]

    assert asyncio.run(scenario()) == {"type": "chat.message", "text": "hello"}
