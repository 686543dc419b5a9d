"""What the bus takes from its libraries beyond their documented API, checked against the pinned
versions: an upgrade that changes any of it fails here, loudly, instead of in production.

- channels-redis: realtime/redis_layer.py subclasses its pub/sub layer and relies on
  `RedisPubSubChannelLayer._get_layer`, `._layers`, `._args`, `._kwargs`,
  `RedisPubSubLoopLayer._get_group_channel_name` and `channels_redis.utils._wrap_close`.
- redis-py: the link (realtime/link.py) drains a burst with async `get_message(timeout=0)`,
  which must leave a message that is still arriving intact for the next read; the raw
  recorder waits for a message's first bytes with `PubSub.connection.can_read(timeout)`.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from typing import Any

import channels_redis.pubsub as pubsub_module
import channels_redis.utils as utils_module
import pytest
from redis import asyncio as aioredis

from realtime.hub import Hub
from realtime.layers import RedisSSEChannelLayer, RedisSSELoopLayer
from realtime.link import RedisLink
from realtime.redis_conn import RedisTarget
from tests.support.hubs import Collect
from tests.support.procs import PauseProxy, RedisServer


def test_channels_redis_still_has_the_internals_the_layer_builds_on(redis_server: RedisServer) -> None:
    assert callable(getattr(pubsub_module.RedisPubSubChannelLayer, "_get_layer", None))
    assert callable(getattr(pubsub_module.RedisPubSubLoopLayer, "_get_group_channel_name", None))
    assert list(inspect.signature(utils_module._wrap_close).parameters) == ["proxy", "loop"]
    layer = RedisSSEChannelLayer(hosts=[redis_server.url])
    assert isinstance(layer._layers, dict)
    assert isinstance(layer._args, tuple) and isinstance(layer._kwargs, dict)

    async def loop_layer() -> Any:
        return layer._get_layer()

    made = asyncio.run(loop_layer())
    assert isinstance(made, RedisSSELoopLayer)
    # An SSE group's Redis channel is the contract's channel name, any other group stays stock.
    assert made._get_group_channel_name("sse.session.abc") == "sse:session:abc"
    assert made._get_group_channel_name("chat") != "chat"


def test_an_async_read_that_times_out_mid_message_keeps_it_for_the_next_read(redis_server: RedisServer) -> None:
    proxy = PauseProxy(redis_server.port)

    async def scenario() -> list[int]:
        client = aioredis.Redis.from_url(proxy.url)
        ps = client.pubsub(ignore_subscribe_messages=True)
        await ps.subscribe("internals:slow")
        await asyncio.sleep(0.1)
        proxy.trickle(8192, 0.02)
        big = b"x" * 200_000
        publisher = aioredis.Redis.from_url(redis_server.url)
        await publisher.publish("internals:slow", big)
        await publisher.publish("internals:slow", b"after")
        sizes: list[int] = []
        deadline = time.monotonic() + 10
        while len(sizes) < 2 and time.monotonic() < deadline:
            message = await ps.get_message(timeout=0)  # times out again and again mid-message
            if message is not None:
                sizes.append(len(message["data"]))
            else:
                await asyncio.sleep(0.005)
        await ps.aclose()
        await client.aclose()
        await publisher.aclose()
        return sizes

    try:
        assert asyncio.run(scenario()) == [200_000, 5]
    finally:
        proxy.close()


def test_a_sync_pubsub_connection_can_say_a_message_has_begun(redis_server: RedisServer) -> None:
    ps = RedisTarget(url=redis_server.url).sync_client(pubsub=True).pubsub(ignore_subscribe_messages=True)
    ps.subscribe("internals:begun")
    ps.get_message(timeout=1.0)  # the subscribe confirmation
    assert ps.connection.can_read(timeout=0.05) is False
    RedisTarget(url=redis_server.url).sync_client().publish("internals:begun", b"hi")
    assert ps.connection.can_read(timeout=1.0) is True
    assert ps.get_message(timeout=1.0)["data"] == b"hi"
    ps.close()


def test_the_link_reads_a_slow_burst_whole_and_stays_up(redis_server: RedisServer) -> None:
    """Through a slow link: a valid event, a 200 KB one (dropped: over 64 KiB), a valid one."""
    proxy = PauseProxy(redis_server.port)
    channel = "sse:session:internals_slow"

    def envelope(n: int) -> str:
        return json.dumps(
            {"type": "new_message", "payload": {"n": n}, "timestamp": 1.0, "source": "ai_chatbot"},
        )

    async def scenario() -> tuple[list[Any], bool, tuple[str, str]]:
        link = RedisLink(RedisTarget(url=proxy.url), 100)
        hub = link.hub = Hub(link, asyncio.get_running_loop())
        subscriber = Collect(channel)
        await hub.add(subscriber)
        proxy.trickle(16_384, 0.02)
        publisher = RedisTarget(url=redis_server.url).sync_client()
        pipe = publisher.pipeline(transaction=True)
        pipe.publish(channel, envelope(1))
        pipe.publish(channel, "[" * 100_000 + "]" * 100_000)
        pipe.publish(channel, envelope(2))
        pipe.execute()
        deadline = time.monotonic() + 10
        while len(subscriber.events) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await link.close()
        return [e["payload"]["n"] for e in subscriber.events], link.up, hub.bus_state

    try:
        numbers, up, state = asyncio.run(scenario())
    finally:
        proxy.close()
    assert numbers == [1, 2]
    assert up and state[0] == "ok"


@pytest.mark.parametrize(
    ("host", "described"),
    [
        ("redis://:s3cret@db.example:6380/2", "redis://db.example:6380/2"),
        ({"address": "redis://user:pw@127.0.0.1:6379/0"}, "redis://127.0.0.1:6379/0"),
        ({"sentinels": [("10.0.0.1", 26379), ("10.0.0.2", 26379)], "master_name": "main"}, None),
    ],
)
def test_a_redis_target_comes_from_any_channels_redis_host_form_and_never_shows_a_password(
    host: Any, described: str | None
) -> None:
    target = RedisTarget.from_host(host)
    text = target.describe()
    assert "s3cret" not in text and "pw@" not in text
    if described is not None:
        assert text == described
    else:
        assert text == "sentinel master main via 10.0.0.1:26379,10.0.0.2:26379"
