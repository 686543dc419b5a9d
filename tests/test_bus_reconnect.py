"""Open streams across a lost Redis connection: missed events are replayed, or a reset is sent.

Each test has its own redis-server and daphne processes, since it kills connections or
restarts the server.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Daphne, DelayProxy, RedisServer, SSEClient, publish, wait_until


@pytest.fixture
def slow_pair(redis_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[RedisServer, Daphne, Daphne]]:
    """Like private_pair, but A reaches Redis through a proxy that holds its commands 300 ms,
    so A's re-SUBSCRIBE after a cut lands well after the publishes the test makes meanwhile."""
    redis = RedisServer().start()
    proxy = DelayProxy(redis.port, delay=0.3)
    a = Daphne({**redis_env, "REDIS_URL": proxy.url}, log_path=tmp_path / "a.log").start()
    b = Daphne({**redis_env, "REDIS_URL": redis.url}, log_path=tmp_path / "b.log").start()
    yield redis, a, b
    a.stop()
    b.stop()
    proxy.close()
    redis.stop()


def test_events_published_while_the_pubsub_connection_was_down_are_replayed_in_order_once(slow_pair):
    redis, a, b = slow_pair
    channel = f"sse:session:heal_{uuid.uuid4().hex[:8]}"
    client = SSEClient(a.url, f"/api/events?channel={channel}&channel=sse:broadcast").wait_open()
    publish(b, channel, 0)
    client.wait_for(lambda e: e.event == "new_message", timeout=1)

    # Cut every pub/sub connection; publish at once, before daphne A has reconnected.
    killed = redis.client().client_kill_filter(_type="pubsub")
    assert killed >= 1
    ids = [publish(b, channel, n) for n in range(1, 6)]
    live = publish(b, channel, 6)

    events = client.wait_for(lambda e: e.event == "new_message", timeout=5, count=7)
    assert [e.json["payload"]["n"] for e in events] == [0, 1, 2, 3, 4, 5, 6]
    assert [e.id for e in events[1:]] == [*ids, live]
    assert "reset" not in client.types()
    client.close()


def test_an_open_stream_gets_a_reset_when_redis_comes_back_empty(private_pair):
    redis, a, b = private_pair
    channel = f"sse:session:restart_{uuid.uuid4().hex[:8]}"
    client = SSEClient(a.url, f"/api/sessions/{channel.rsplit(':', 1)[1]}/events").wait_open()
    publish(b, channel, 1)
    client.wait_for(lambda e: e.event == "new_message", timeout=1)

    redis.restart()
    # Within the contract's 5 s the stream is told it may have missed events...
    reset = client.wait_for(lambda e: e.event == "reset", timeout=5)[0]
    assert reset.id is None and reset.json["source"] == "system"
    # ...and then carries on live, on the same connection.
    after = wait_until(lambda: publish(b, channel, 2), timeout=5, what="a publish after the restart")
    [event] = client.wait_for(lambda e: e.event == "new_message" and e.json["payload"]["n"] == 2, timeout=2)
    assert event.id == after
    client.close()
