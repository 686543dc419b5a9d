"""The SSE consumer on the in-memory layer, driven through the real ASGI application.

Agents authenticate with a real Django session cookie through Channels' auth stack; services
with a Bearer token. Every test gets a fresh layer (empty history, no hubs).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import channel_layers

from realtime import bus, limits
from realtime.channels import BROADCAST
from tests.support.streams import Stream, in_loop, login_cookie

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_layer", "keep_the_test_database_connection")]

TOKEN = "consumer-test-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
SESSION = "sse:session:user_123_abc"
OTHER = "sse:session:other_1"


@pytest.fixture(autouse=True)
def service_tokens(settings: Any) -> None:
    settings.SERVICE_TOKENS = {TOKEN: "ai_chatbot"}


def publish(channel: str, n: int, event_type: str = "new_message") -> str:
    return bus.enqueue_sse_message_sync(channel, event_type, {"n": n}, source="ai_chatbot")


def numbers(events: list[Any]) -> list[int]:
    return [e.json["payload"]["n"] for e in events]


def hub_subscribers() -> dict[str, Any]:
    return bus.get_layer().hub.subscribers


# --- opening --------------------------------------------------------------------------------


@in_loop
async def test_a_stream_opens_with_the_contracts_headers_and_a_first_frame(settings: Any) -> None:
    stream = Stream("/api/broadcast/events", headers=BEARER)
    assert await stream.open() == 200
    assert stream.headers[b"content-type"].startswith(b"text/event-stream")
    assert stream.headers[b"cache-control"] == b"no-cache"
    assert stream.headers[b"x-accel-buffering"] == b"no"
    assert stream.parser.retry is not None
    assert settings.SSE_RETRY_MS <= stream.parser.retry < 2 * settings.SSE_RETRY_MS  # jittered per stream
    assert stream.parser.comments == ["stream open"]
    assert stream.parser.events == []
    assert set(hub_subscribers()) == {BROADCAST}
    await stream.disconnect()


@in_loop
async def test_an_event_published_after_open_arrives_as_an_id_event_data_frame() -> None:
    stream = Stream("/api/sessions/user_123_abc/events", headers=BEARER)
    await stream.open()
    event_id = await bus.enqueue_sse_message(
        SESSION, "transfer_request", {"session_name": "user_123_abc", "status": "waiting_agent"}, source="ai_chatbot"
    )
    event = await stream.next_event()
    assert (event.type, event.id) == ("transfer_request", event_id)
    envelope = event.json
    assert list(envelope) == ["id", "channel", "type", "payload", "timestamp", "source"]
    assert envelope["channel"] == SESSION and envelope["source"] == "ai_chatbot"
    assert envelope["payload"] == {"session_name": "user_123_abc", "status": "waiting_agent"}
    frame = f"id: {event_id}\nevent: transfer_request\ndata: {json.dumps(envelope, separators=(',', ':'))}\n\n"
    assert stream.raw.endswith(frame.encode())
    await stream.disconnect()


# The publisher's thread stores the session event in the record on its own connection, outside
# the test's transaction: a transactional test empties the tables after it.
@pytest.mark.django_db(transaction=True)
@in_loop
async def test_an_event_published_by_sync_code_in_another_thread_arrives() -> None:
    stream = Stream("/api/sessions/user_123_abc/events", headers=BEARER)
    await stream.open()
    event_id = await sync_to_async(publish, thread_sensitive=False)(SESSION, 1)
    event = await stream.next_event()
    assert event.id == event_id and numbers([event]) == [1]
    await stream.disconnect()


@in_loop
async def test_a_stream_gets_only_its_own_channels() -> None:
    stream = Stream("/api/sessions/user_123_abc/events", headers=BEARER)
    await stream.open()
    publish(OTHER, 1)
    publish(BROADCAST, 2)
    publish(SESSION, 3)
    assert numbers([await stream.next_event()]) == [3]
    assert await stream.nothing_more()
    await stream.disconnect()


@in_loop
async def test_an_agent_with_a_session_cookie_listens_to_sessions_broadcast_and_their_own_channel() -> None:
    cookie = await sync_to_async(login_cookie)("agent_001")
    stream = Stream(
        "/api/events", query="channel=sse:agent:agent_001&channel=sse:broadcast", headers={"Cookie": cookie}
    )
    assert await stream.open() == 200
    publish("sse:agent:agent_001", 1, "status_change")
    publish(BROADCAST, 2, "status_change")
    assert numbers(await stream.events(2)) == [1, 2]
    await stream.disconnect()


@in_loop
async def test_a_supervisor_listens_to_any_agents_channel() -> None:
    cookie = await sync_to_async(login_cookie)("boss", supervisor=True)
    stream = Stream("/api/agents/agent_001/events", headers={"Cookie": cookie})
    assert await stream.open() == 200
    await stream.disconnect()


# --- resume ----------------------------------------------------------------------------------


@in_loop
async def test_a_last_event_id_header_resumes_with_the_missed_events_then_live() -> None:
    first, *_ = [publish(SESSION, n) for n in range(4)]
    stream = Stream("/api/sessions/user_123_abc/events", headers={**BEARER, "Last-Event-ID": first})
    await stream.open()
    assert numbers(await stream.events(3)) == [1, 2, 3]
    publish(SESSION, 4)
    assert numbers([await stream.next_event()]) == [4]
    assert await stream.nothing_more()
    await stream.disconnect()


@in_loop
async def test_a_last_event_id_query_parameter_resumes_too() -> None:
    ids = [publish(SESSION, n) for n in range(3)]
    stream = Stream("/api/sessions/user_123_abc/events", query=f"last_event_id={ids[1]}", headers=BEARER)
    await stream.open()
    event = await stream.next_event()
    assert numbers([event]) == [2] and event.id == ids[2]
    assert await stream.nothing_more()
    await stream.disconnect()


@in_loop
async def test_the_header_wins_over_the_query_parameter() -> None:
    ids = [publish(SESSION, n) for n in range(3)]
    stream = Stream(
        "/api/sessions/user_123_abc/events",
        query=f"last_event_id={ids[0]}",
        headers={**BEARER, "Last-Event-ID": ids[1]},
    )
    await stream.open()
    assert numbers([await stream.next_event()]) == [2]
    assert await stream.nothing_more()
    await stream.disconnect()


@in_loop
async def test_resuming_from_the_latest_id_sends_nothing_old() -> None:
    last = [publish(SESSION, n) for n in range(3)][-1]
    stream = Stream("/api/sessions/user_123_abc/events", headers={**BEARER, "Last-Event-ID": last})
    await stream.open()
    assert await stream.nothing_more()
    publish(SESSION, 3)
    assert numbers([await stream.next_event()]) == [3]
    await stream.disconnect()


@in_loop
async def test_an_unknown_old_id_gets_a_reset_first_then_the_live_stream() -> None:
    publish(SESSION, 0)
    stream = Stream("/api/sessions/user_123_abc/events", headers={**BEARER, "Last-Event-ID": "1000-0"})
    await stream.open()
    reset = await stream.next_event()
    assert reset.type == "reset" and reset.id == ""
    assert "id:" not in stream.raw.decode()
    envelope = reset.json
    assert (envelope["type"], envelope["source"], envelope["channel"]) == ("reset", "system", SESSION)
    assert envelope["payload"]["last_event_id"] == "1000-0"
    publish(SESSION, 1)
    assert numbers([await stream.next_event()]) == [1]
    await stream.disconnect()


@in_loop
async def test_an_id_this_bus_never_handed_out_gets_a_reset_and_the_live_stream_follows() -> None:
    # Say a Redis whose clock is behind replaced the one that made the id: nothing proves
    # that the client saw everything, and the live events of the new life must still flow.
    publish(SESSION, 0)
    stream = Stream("/api/sessions/user_123_abc/events", headers={**BEARER, "Last-Event-ID": "99999999999999-0"})
    await stream.open()
    reset = await stream.next_event()
    assert reset.type == "reset" and "newer" in reset.json["payload"]["reason"]
    publish(SESSION, 1)
    assert numbers([await stream.next_event()]) == [1]
    await stream.disconnect()


@in_loop
async def test_an_id_trimmed_out_of_history_gets_a_reset(settings: Any) -> None:
    settings.SSE_HISTORY_SIZE = 2
    channel_layers.backends.clear()
    ids = [publish(SESSION, n) for n in range(5)]
    stream = Stream("/api/sessions/user_123_abc/events", headers={**BEARER, "Last-Event-ID": ids[0]})
    await stream.open()
    assert (await stream.next_event()).type == "reset"
    assert await stream.nothing_more()
    await stream.disconnect()
    stream = Stream("/api/sessions/user_123_abc/events", headers={**BEARER, "Last-Event-ID": ids[3]})
    await stream.open()
    assert numbers([await stream.next_event()]) == [4]
    await stream.disconnect()


@in_loop
async def test_with_history_off_every_resume_is_a_reset(settings: Any) -> None:
    settings.SSE_HISTORY_SIZE = 0
    channel_layers.backends.clear()
    last = publish(SESSION, 0)
    stream = Stream("/api/sessions/user_123_abc/events", headers={**BEARER, "Last-Event-ID": last})
    await stream.open()
    reset = await stream.next_event()
    assert reset.type == "reset" and reset.json["payload"]["reason"] == "history is turned off"
    assert bus.get_layer().history_sync(SESSION) == []
    await stream.disconnect()


@in_loop
async def test_a_multi_channel_stream_resumes_every_channel_in_id_order() -> None:
    start = bus.get_layer().cursor_sync()
    for n, channel in enumerate([SESSION, OTHER, BROADCAST, OTHER, SESSION]):
        publish(channel, n)
    stream = Stream(
        "/api/events", query=f"channel={SESSION}&channel={OTHER}", headers={**BEARER, "Last-Event-ID": start}
    )
    await stream.open()
    events = await stream.events(4)
    assert numbers(events) == [0, 1, 3, 4]
    assert [e.json["channel"] for e in events] == [SESSION, OTHER, OTHER, SESSION]
    assert await stream.nothing_more()
    await stream.disconnect()


@in_loop
async def test_an_event_caught_between_history_and_live_is_sent_once() -> None:
    # A publisher in another thread has stored its event (history) but its hand-off to this
    # loop is still queued when the stream reads history: the late live copy must be dropped.
    layer = bus.get_layer()
    start = layer.cursor_sync()
    body = bus.draft(SESSION, "new_message", {"n": 1}, "ai_chatbot").body
    stored = layer.history.append(SESSION, body)
    stream = Stream("/api/sessions/user_123_abc/events", headers={**BEARER, "Last-Event-ID": start})
    await stream.open()
    layer.hub.deliver(SESSION, stored.envelope)
    publish(SESSION, 2)
    assert numbers(await stream.events(2)) == [1, 2]
    assert await stream.nothing_more()
    await stream.disconnect()


# --- heartbeat -------------------------------------------------------------------------------


@in_loop
async def test_a_heartbeat_arrives_every_interval_without_an_id(settings: Any) -> None:
    settings.SSE_HEARTBEAT_SECONDS = 0.05
    stream = Stream("/api/sessions/user_123_abc/events", headers=BEARER)
    await stream.open()
    last = publish(SESSION, 0)
    assert (await stream.next_event()).id == last
    beats = [await stream.next_event(skip_heartbeats=False) for _ in range(2)]
    assert [b.type for b in beats] == ["heartbeat", "heartbeat"]
    # No id line: the browser's Last-Event-ID stays at the last real event.
    assert [b.id for b in beats] == [last, last]
    assert beats[0].json["source"] == "system" and beats[0].json["channel"] == SESSION
    await stream.disconnect()


@in_loop
async def test_one_heartbeat_round_reaches_every_stream_once() -> None:
    streams = [
        Stream("/api/broadcast/events", headers=BEARER),
        Stream("/api/events", query=f"channel={SESSION}&channel={BROADCAST}", headers=BEARER),
    ]
    for stream in streams:
        await stream.open()
    assert bus.get_layer().hub.heartbeat_once() == 2
    for stream in streams:
        assert (await stream.next_event(skip_heartbeats=False)).type == "heartbeat"
        assert await stream.nothing_more(0.05)
        await stream.disconnect()


# --- leaving ---------------------------------------------------------------------------------


@in_loop
async def test_the_stream_leaves_the_hub_when_the_client_disconnects() -> None:
    before = limits.open_streams()
    stream = Stream("/api/events", query=f"channel={SESSION}&channel={BROADCAST}", headers=BEARER)
    await stream.open()
    assert set(hub_subscribers()) == {SESSION, BROADCAST}
    assert limits.open_streams() == before + 1
    await stream.disconnect()
    assert stream.communicator.future.done() and stream.communicator.future.exception() is None
    assert hub_subscribers() == {}
    assert limits.open_streams() == before


@in_loop
async def test_the_stream_leaves_the_hub_when_the_server_cancels_it() -> None:
    before = limits.open_streams()
    stream = Stream("/api/sessions/user_123_abc/events", headers=BEARER)
    await stream.open()
    stream.communicator.future.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stream.communicator.future
    assert hub_subscribers() == {}
    assert limits.open_streams() == before


@in_loop
async def test_the_others_keep_streaming_when_one_stream_on_the_channel_leaves() -> None:
    first = Stream("/api/sessions/user_123_abc/events", headers=BEARER)
    second = Stream("/api/sessions/user_123_abc/events", headers=BEARER)
    await first.open()
    await second.open()
    publish(SESSION, 1)
    assert numbers([await first.next_event()]) == numbers([await second.next_event()]) == [1]
    await first.disconnect()
    assert len(hub_subscribers()[SESSION]) == 1
    publish(SESSION, 2)
    assert numbers([await second.next_event()]) == [2]
    await second.disconnect()
    assert hub_subscribers() == {}


# --- the Python subscriber -------------------------------------------------------------------


@in_loop
async def test_subscribe_sse_events_resumes_then_follows_and_leaves_the_hub_when_closed() -> None:
    ids = [publish(SESSION, n) for n in range(3)]
    events = bus.subscribe_sse_events([SESSION, OTHER], last_event_id=ids[0])
    assert [(await anext(events))["payload"]["n"] for _ in range(2)] == [1, 2]
    publish(OTHER, 3)
    live = await asyncio.wait_for(anext(events), 1)
    assert live["payload"]["n"] == 3 and live["channel"] == OTHER
    await events.aclose()
    assert hub_subscribers() == {}


@in_loop
async def test_subscribe_sse_events_sends_an_event_caught_between_history_and_live_once() -> None:
    layer = bus.get_layer()
    start = layer.cursor_sync()
    stored = layer.history.append(SESSION, bus.draft(SESSION, "new_message", {"n": 1}, "ai_chatbot").body)
    events = bus.subscribe_sse_events([SESSION], last_event_id=start)
    assert (await anext(events))["payload"]["n"] == 1
    layer.hub.deliver(SESSION, stored.envelope)
    publish(SESSION, 2)
    assert (await asyncio.wait_for(anext(events), 1))["payload"]["n"] == 2
    await events.aclose()


@in_loop
async def test_subscribe_sse_events_starts_with_a_reset_for_an_unknown_id() -> None:
    publish(SESSION, 0)
    events = bus.subscribe_sse_events([SESSION], last_event_id="1000-0")
    first = await asyncio.wait_for(anext(events), 1)
    assert first["type"] == "reset" and first["source"] == "system"
    await events.aclose()


@in_loop
async def test_subscribe_sse_events_validates_like_the_http_layer() -> None:
    with pytest.raises(bus.InvalidChannel):
        await anext(bus.subscribe_sse_events(["sse:session:*"]))
    with pytest.raises(bus.InvalidEvent):
        await anext(bus.subscribe_sse_events([SESSION], last_event_id="yesterday"))
    with pytest.raises(bus.TooManyChannels):
        await anext(bus.subscribe_sse_events([f"sse:session:s{n}" for n in range(21)]))
    assert hub_subscribers() == {}
