"""The bus across real processes: redis-server, two daphne processes, publishers in other processes.

Every test uses channels of its own, so the session's shared daphne pair never mixes their events.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import (
    Daphne,
    DelayProxy,
    RedisServer,
    SSEClient,
    SSEEvent,
    publish,
    request,
    run_python,
    wait_until,
)

Pair = tuple[Daphne, Daphne]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def numbers(events: list[SSEEvent]) -> list[int]:
    return [e.json["payload"]["n"] for e in events]


def counters(daphne: Daphne) -> dict[str, int]:
    status, body = request("GET", daphne.url + "/healthz", token=None)
    assert status == 200, body
    result: dict[str, int] = body["counters"]
    return result


def stream(daphne: Daphne, channels: list[str], last_event_id: str | None = None) -> SSEClient:
    query = "&".join(f"channel={c}" for c in channels)
    return SSEClient(daphne.url, f"/api/events?{query}", last_event_id=last_event_id).wait_open()


@pytest.fixture
def clients() -> Iterator[list[SSEClient]]:
    """SSE clients a test opens; closed at the end whatever happens."""
    opened: list[SSEClient] = []
    yield opened
    for client in opened:
        client.close()


# --- one event, every way in ----------------------------------------------------------------


def test_an_event_posted_on_b_reaches_a_stream_on_a_within_a_second(daphne_pair: Pair, clients: list) -> None:
    a, b = daphne_pair
    channel = "sse:session:" + unique("post")
    clients.append(client := stream(a, [channel]))
    sent = time.monotonic()
    event_id = publish(b, channel, 1)
    [event] = client.wait_for(lambda e: e.event == "new_message", timeout=1)
    assert event.received_at - sent < 1
    assert event.id == event_id and event.json["source"] == "ai_chatbot" and event.json["channel"] == channel


def test_events_published_by_both_python_helpers_in_a_third_process_reach_a(
    daphne_pair: Pair, redis_env: dict[str, str], clients: list
) -> None:
    a, _ = daphne_pair
    channel = "sse:session:" + unique("python")
    clients.append(client := stream(a, [channel]))
    code = f"""
import asyncio, json
from realtime.bus import enqueue_sse_message, enqueue_sse_message_sync
first = asyncio.run(enqueue_sse_message({channel!r}, "new_message", {{"n": 1}}, source="ai_chatbot"))
second = enqueue_sse_message_sync({channel!r}, "transfer_request", {{"n": 2}}, source="ai_chatbot")
print(json.dumps([first, second]))
"""
    ids = json.loads(run_python(code, redis_env))
    events = client.wait_for(lambda e: e.event in ("new_message", "transfer_request"), timeout=1, count=2)
    assert [e.id for e in events] == ids
    assert [e.event for e in events] == ["new_message", "transfer_request"]
    assert numbers(events) == [1, 2]


def test_a_raw_redis_publish_without_id_or_channel_reaches_a_as_a_live_event(
    daphne_pair: Pair, redis_server: RedisServer, clients: list
) -> None:
    a, _ = daphne_pair
    channel = "sse:session:" + unique("raw")
    clients.append(client := stream(a, [channel]))
    raw = {"type": "status_change", "payload": {"n": 1}, "timestamp": time.time(), "source": "ai_chatbot"}
    assert redis_server.client().publish(channel, json.dumps(raw)) >= 1
    [event] = client.wait_for(lambda e: e.event == "status_change", timeout=1)
    assert event.id is None  # no id: live only, never in history
    assert event.json == {**raw, "channel": channel}


def test_malformed_oversize_and_forged_raw_messages_are_dropped_and_the_stream_goes_on(
    daphne_pair: Pair, redis_server: RedisServer, clients: list
) -> None:
    a, b = daphne_pair
    channel = "sse:session:" + unique("dropped")
    clients.append(client := stream(a, [channel]))
    good = {"type": "new_message", "payload": {"n": 0}, "timestamp": 1.0, "source": "ai_chatbot"}
    bad = [
        b"not json",
        b"\xff\xfe\x00",
        b"[1, 2]",
        json.dumps({**good, "payload": {"pad": "x" * 70_000}}).encode(),
        json.dumps({**good, "type": "agent_joined"}).encode(),  # forged: only the workbench may
        json.dumps({**good, "type": "transfer_request", "source": "agent_workbench"}).encode(),
        json.dumps({**good, "type": "reset", "source": "system"}).encode(),
        json.dumps({**good, "type": "heartbeat", "source": "system"}).encode(),
        json.dumps({**good, "channel": "sse:broadcast"}).encode(),
        json.dumps({**good, "id": "not-an-id"}).encode(),
        json.dumps({**good, "timestamp": "now"}).encode(),
    ]
    before = counters(a).get("dropped_invalid", 0)
    redis = redis_server.client()
    for message in bad:
        redis.publish(channel, message)
    event_id = publish(b, channel, 1)
    [event] = client.wait_for(lambda e: e.event != "heartbeat", timeout=1)
    assert event.id == event_id and numbers([event]) == [1]
    assert client.types() == ["new_message"]
    assert counters(a)["dropped_invalid"] == before + len(bad)
    assert not client.closed.is_set()


# --- resume ---------------------------------------------------------------------------------


def test_resume_after_a_disconnect_loses_nothing_and_duplicates_nothing(daphne_pair: Pair, clients: list) -> None:
    a, b = daphne_pair
    channel = "sse:session:" + unique("resume")
    clients.append(first := stream(a, [channel]))
    publish(b, channel, 0)
    [seen] = first.wait_for(lambda e: e.event == "new_message", timeout=1)
    first.close()
    missed = [publish(b, channel, n) for n in (1, 2, 3)]
    # Reconnect to the other process, as a load balancer may.
    clients.append(second := stream(b, [channel], last_event_id=seen.id))
    second.wait_for(lambda e: e.event == "new_message", timeout=1, count=3)
    live = publish(a, channel, 4)
    events = second.wait_for(lambda e: e.event == "new_message", timeout=1, count=4)
    time.sleep(0.2)  # a duplicate, if any, would arrive right behind
    assert [e.id for e in second.payload_events()] == [*missed, live]
    assert numbers(events) == [1, 2, 3, 4]


def test_a_multi_channel_stream_resumes_every_channel_across_processes(daphne_pair: Pair, clients: list) -> None:
    a, b = daphne_pair
    x, y = "sse:session:" + unique("x"), "sse:agent:" + unique("y")
    clients.append(first := stream(a, [x, y]))
    publish(b, y, 0, "status_change")
    [seen] = first.wait_for(lambda e: e.event == "status_change", timeout=1)
    first.close()
    missed = [publish(b, channel, n, "status_change") for n, channel in enumerate([x, y, "sse:broadcast", x], 1)]
    clients.append(second := stream(a, [x, y], last_event_id=seen.id))
    events = second.wait_for(lambda e: e.event == "status_change", timeout=1, count=3)
    assert [e.id for e in events] == [missed[0], missed[1], missed[3]]
    assert [e.json["channel"] for e in events] == [x, y, x]


def test_reconnecting_under_a_steady_stream_of_events_loses_and_duplicates_nothing(
    daphne_pair: Pair, clients: list
) -> None:
    a, b = daphne_pair
    channel = "sse:session:" + unique("steady")
    published: list[str] = []
    done = threading.Event()

    def publisher() -> None:
        for n in range(60):
            published.append(publish(b, channel, n))
            time.sleep(0.01)
        done.set()

    clients.append(client := stream(a, [channel]))
    received: list[SSEEvent] = []
    thread = threading.Thread(target=publisher)
    thread.start()
    while not done.is_set() or len(received) + len(client.payload_events()) < len(published):
        if client.payload_events() and (done.is_set() or len(client.payload_events()) >= 5):
            # Drop the connection mid-stream and come back with the last id seen, on either process.
            client.close()
            client.closed.wait(2)
            received.extend(client.payload_events())
            target = a if len(received) % 2 else b
            clients.append(client := stream(target, [channel], last_event_id=received[-1].id))
        time.sleep(0.01)
        assert len(received) <= len(published) + 1
    thread.join()
    wait_until(lambda: len(received) + len(client.payload_events()) >= len(published), timeout=2, what="the rest")
    time.sleep(0.2)  # a duplicate, if any, would arrive right behind
    received.extend(client.payload_events())
    assert [e.id for e in received] == published
    assert numbers(received) == list(range(60))
    assert len(clients) > 5  # it really reconnected, several times


def test_an_id_this_bus_never_handed_out_gets_a_reset_then_the_live_stream(daphne_pair: Pair, clients: list) -> None:
    a, b = daphne_pair
    channel = "sse:session:" + unique("future")
    clients.append(client := stream(a, [channel], last_event_id="99999999999999-0"))
    [reset] = client.wait_for(lambda e: e.event == "reset", timeout=1)
    assert "newer" in reset.json["payload"]["reason"]
    event_id = publish(b, channel, 1)
    [event] = client.wait_for(lambda e: e.event == "new_message", timeout=1)
    assert event.id == event_id


# --- the wire format on Redis -------------------------------------------------------------------


def test_psubscribe_on_redis_shows_the_contracts_envelope(daphne_pair: Pair, redis_server: RedisServer) -> None:
    _, b = daphne_pair
    channel = "sse:session:" + unique("wire")
    pubsub = redis_server.client().pubsub()
    pubsub.psubscribe("sse:*")
    wait_until(lambda: pubsub.get_message(timeout=0.1), what="the psubscribe confirmation")
    event_id = publish(b, channel, 1, "transfer_request")

    def ours() -> dict[str, Any] | None:
        message = pubsub.get_message(timeout=0.1)
        if message and message["type"] == "pmessage" and message["channel"] == channel.encode():
            return message
        return None

    message = wait_until(ours, timeout=2, what="the event on sse:*")
    pubsub.close()
    assert message["pattern"] == b"sse:*"
    envelope = json.loads(message["data"])
    assert list(envelope) == ["id", "channel", "type", "payload", "timestamp", "source"]
    assert envelope["id"] == event_id and envelope["channel"] == channel
    assert (envelope["type"], envelope["payload"], envelope["source"]) == ("transfer_request", {"n": 1}, "ai_chatbot")
    assert abs(envelope["timestamp"] - time.time()) < 10


def test_history_is_capped_at_sse_history_size(
    redis_env: dict[str, str], redis_server: RedisServer, tmp_path: Path, clients: list
) -> None:
    small = Daphne({**redis_env, "SSE_HISTORY_SIZE": "5"}, log_path=tmp_path / "small.log").start()
    try:
        channel = "sse:session:" + unique("capped")
        ids = [publish(small, channel, n) for n in range(8)]
        redis = redis_server.client()
        assert redis.xlen("sse:history:" + channel) == 5
        assert [i.decode() for i, _ in redis.xrange("sse:history:" + channel)] == ids[3:]
        for old in (ids[0], ids[2]):
            clients.append(client := stream(small, [channel], last_event_id=old))
            [reset] = client.wait_for(lambda e: e.event == "reset", timeout=1)
            assert reset.json["payload"]["last_event_id"] == old
        clients.append(client := stream(small, [channel], last_event_id=ids[3]))
        events = client.wait_for(lambda e: e.event == "new_message", timeout=1, count=4)
        assert [e.id for e in events] == ids[4:] and client.types() == ["new_message"] * 4
    finally:
        small.stop()


# --- opening ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slow_daphne(redis_env: dict[str, str], redis_server: RedisServer, tmp_path_factory: Any) -> Iterator[Daphne]:
    """A daphne process whose commands reach Redis 50 ms late (see DelayProxy)."""
    proxy = DelayProxy(redis_server.port, delay=0.05)
    log = tmp_path_factory.mktemp("slow") / "slow.log"
    daphne = Daphne({**redis_env, "REDIS_URL": proxy.url}, log_path=log).start()
    yield daphne
    daphne.stop()
    proxy.close()


@pytest.mark.parametrize("which", ["a", "slow"], ids=["daphne a", "daphne with a slow redis link"])
def test_a_stream_that_has_opened_never_misses_an_event_published_right_after(
    daphne_pair: Pair, slow_daphne: Daphne, redis_server: RedisServer, which: str
) -> None:
    server = daphne_pair[0] if which == "a" else slow_daphne
    _, b = daphne_pair
    redis = redis_server.client()
    raw = json.dumps({"type": "new_message", "payload": {"n": 0}, "timestamp": 1.0, "source": "ai_chatbot"})
    for attempt in range(16):
        # A new channel each time, so the open really waits for a new Redis subscription.
        channel = "sse:session:" + unique(f"open{attempt}")
        client = stream(server, [channel])
        try:
            if attempt % 2:
                publish(b, channel, attempt)
            else:
                redis.publish(channel, raw)  # the quickest publisher there is
            client.wait_for(lambda e: e.event == "new_message", timeout=1)
        finally:
            client.close()


# --- a Redis restart ---------------------------------------------------------------------------


def test_after_a_redis_restart_old_ids_get_a_reset_and_new_ids_are_still_greater(
    private_pair: tuple[RedisServer, Daphne, Daphne], clients: list
) -> None:
    redis, a, b = private_pair
    channel = "sse:session:" + unique("restart")
    clients.append(first := stream(a, [channel]))
    old = publish(b, channel, 1)
    first.wait_for(lambda e: e.event == "new_message", timeout=1)
    first.close()

    redis.restart()

    def reconnected() -> SSEClient | None:
        client = SSEClient(a.url, f"/api/events?channel={channel}", last_event_id=old)
        if client.wait_status() == 200:
            return client.wait_open()
        client.close()
        return None

    # The contract gives a process 5 s to find a restarted Redis again.
    clients.append(second := wait_until(reconnected, timeout=5, what="a stream after the restart"))
    # The stream's own reset comes first. A second one may follow when this process notices
    # the lost pub/sub connection only after the stream opened (heal cannot tell it apart).
    reset = second.wait_for(lambda e: e.event == "reset", timeout=1)[0]
    assert second.events[0].event == "reset"
    assert reset.id is None and reset.json["payload"]["last_event_id"] == old
    if "bus_status" in second.types():
        # It opened while A was still reconnecting (degraded): publish once A says it is back,
        # since what comes before is covered by the reset A's link sends when it heals.
        second.wait_for(lambda e: e.event == "bus_status" and e.json["payload"]["state"] == "ok", timeout=5)
    new = wait_until(lambda: publish(b, channel, 2), timeout=5, what="a publish after the restart")
    [event] = second.wait_for(lambda e: e.event == "new_message", timeout=1)
    assert event.id == new
    ms_old, seq_old = map(int, old.split("-"))
    ms_new, seq_new = map(int, new.split("-"))
    assert (ms_new, seq_new) > (ms_old, seq_old)
    # And the new id resumes exactly, on the other process too.
    clients.append(third := stream(b, [channel], last_event_id=old))
    assert third.wait_for(lambda e: e.event != "heartbeat", timeout=1)[0].event == "reset"
    newer = publish(a, channel, 3)
    clients.append(fourth := stream(b, [channel], last_event_id=new))
    [event] = fourth.wait_for(lambda e: e.event == "new_message", timeout=1)
    assert event.id == newer and fourth.types() == ["new_message"]


def test_a_channel_whose_unsubscribe_failed_while_redis_was_down_is_subscribed_again_once_redis_is_back() -> None:
    """The last stream of a channel leaves just as Redis dies: Redis never hears the
    UNSUBSCRIBE. The next stream on that channel must not take the channel for subscribed:
    the link subscribes it again, confirmed, when Redis is back."""
    from realtime.hub import Hub
    from realtime.link import RedisLink
    from realtime.redis_conn import RedisTarget

    redis = RedisServer().start()
    channel = "sse:session:" + unique("unsub")

    async def scenario() -> tuple[bool, int]:
        link = RedisLink(RedisTarget(url=redis.url), 100)
        link.hub = Hub(link, asyncio.get_running_loop())
        await link.subscribe_channel(channel)
        assert link.up
        redis.stop()
        for _ in range(40):  # the link notices within 2 s (an unanswered ping at the latest)
            if not link.up:
                break
            await asyncio.sleep(0.1)
        await link.unsubscribe_channel(channel)  # never reaches Redis
        redis.start()
        await link.subscribe_channel(channel)
        for _ in range(50):
            if link.up:
                break
            await asyncio.sleep(0.1)
        subscribers: int = redis.client().pubsub_numsub(channel)[0][1]
        up = link.up
        await link.close()
        return up, subscribers

    try:
        assert asyncio.run(scenario()) == (True, 1)
    finally:
        redis.stop()
