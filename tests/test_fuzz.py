"""Fuzzing what comes from outside (hypothesis, a bounded number of examples so `make test`
stays quick): HTTP bodies, paths and query strings of the API, and raw messages on the Redis
side. Whatever arrives, the answer is never a 500, and a bad message never costs a good one."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.hub import Hub, encode
from tests.support.sessions import browser, make_user, post_as, post_service

FUZZ = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)

# JSON-ish values with the odd parts: huge numbers, lone surrogates, control characters,
# deep nesting, wrong types where objects are expected.
odd_text = st.text(alphabet=st.characters(codec=None, exclude_categories=()), max_size=40) | st.sampled_from(
    ["\ud800", "\udfff", "a\x00b", "\u2028", "\U0001f600", "sse:broadcast", "user_1", "x" * 70]
)
scalars = st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40) | st.floats() | odd_text
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4), max_leaves=12
)


def deep(depth: int, kind: str) -> str:
    return ("[" * depth + "]" * depth) if kind == "list" else ('{"a":' * depth + "1" + "}" * depth)


def body_text(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


bodies = st.one_of(
    values.map(body_text),
    st.dictionaries(
        st.sampled_from(["channel", "type", "payload", "session_name", "reason", "data", "text", "note", "up_to"]),
        values,
    ).map(body_text),
    # An escalation's customer (data.customer): any JSON where an object with id/name/email is expected.
    st.builds(
        lambda customer: {"session_name": "fuzz_c", "data": {"customer": customer}},
        st.one_of(values, st.dictionaries(st.sampled_from(["id", "name", "email", "plan", ""]), values)),
    ).map(body_text),
    st.builds(lambda d, k: deep(d, k).encode(), st.integers(1, 3000), st.sampled_from(["list", "dict"])),
    st.binary(max_size=200),
)


def assert_json_answer(response: Any) -> None:
    assert response.status_code < 500, response.content[:300]
    if response.status_code >= 400:
        body = json.loads(response.content)
        assert set(body) == {"error", "detail"}


@pytest.mark.django_db
@FUZZ
@given(body=bodies)
def test_service_commands_answer_any_body_without_a_500(bus: Any, body: bytes) -> None:
    for url in ("/api/publish", "/api/manual/escalate", "/api/sessions/fuzz_s/close"):
        assert_json_answer(post_service(bus_client(), url, body))


def bus_client() -> Any:
    from django.test import Client

    return Client()


@pytest.mark.django_db
@FUZZ
@given(body=bodies)
def test_agent_commands_answer_any_body_without_a_500(bus: Any, body: bytes) -> None:
    client = browser(agent())
    for url in (
        "/api/sessions/fuzz_s/messages",
        "/api/sessions/fuzz_s/accept",
        "/api/sessions/fuzz_s/leave",
        "/api/sessions/fuzz_s/read",
    ):
        assert_json_answer(post_as(client, url, body))


def agent() -> Any:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.filter(username="fuzz_agent").first()
    return user or make_user("fuzz_agent", staff=True)


@pytest.mark.django_db
@FUZZ
@given(name=odd_text, query=st.lists(st.tuples(odd_text, odd_text), max_size=4))
def test_reads_answer_any_path_and_query_without_a_500(bus: Any, name: str, query: list[tuple[str, str]]) -> None:
    client = browser(agent())
    quoted = quote(name.encode("utf-8", "surrogatepass"), safe="")
    qs = "&".join(
        f"{quote(k.encode('utf-8', 'surrogatepass'), safe='')}={quote(v.encode('utf-8', 'surrogatepass'), safe='')}"
        for k, v in query
    )
    for url in (
        f"/api/sessions?{qs}",
        f"/api/sessions/{quoted}",
        f"/dashboard/feed.json?{qs}",
        f"/api/canned-replies?{qs}",
    ):
        response = client.get(url)
        assert response.status_code < 500, (url, response.content[:300])


# --- the raw Redis side ---------------------------------------------------------------------------

CHANNEL = "sse:session:fuzz_raw"


def good(n: int) -> str:
    return json.dumps(
        {
            "channel": CHANNEL,
            "type": "new_message",
            "payload": {"session_name": "fuzz_raw", "n": n},
            "timestamp": 1_700_000_000.0,
            "source": "ai_chatbot",
            "id": f"1700000000000-{n}",
        }
    )


raw_messages = st.one_of(
    st.binary(max_size=300),
    odd_text,
    values.map(lambda v: body_text(v)),
    st.dictionaries(
        st.sampled_from(["channel", "type", "payload", "timestamp", "source", "id"]), values, max_size=6
    ).map(body_text),
    st.builds(lambda d, k: deep(d, k), st.integers(1, 40_000), st.sampled_from(["list", "dict"])),
    st.builds(
        lambda payload: body_text(
            {"channel": CHANNEL, "type": "new_message", "payload": payload, "timestamp": 1.0, "source": "ai_chatbot"}
        ),
        values,
    ),
)


@settings(max_examples=300, deadline=None)
@given(raw=raw_messages)
def test_encode_never_raises_on_a_raw_message(raw: bytes | str) -> None:
    result = encode(raw, CHANNEL)
    if result is not None:
        frame, event = result
        assert frame.endswith(b"\n\n") and event["channel"] == CHANNEL


class Collector:
    def __init__(self) -> None:
        self.channels = (CHANNEL,)
        self.events: list[dict[str, Any]] = []

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        self.events.append(event)

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


class NoBackend:
    async def subscribe_channel(self, channel: str) -> None: ...

    async def unsubscribe_channel(self, channel: str) -> None: ...


@settings(max_examples=150, deadline=None)
@given(bad=st.lists(raw_messages, min_size=1, max_size=5), where=st.integers(0, 5))
def test_bad_raw_messages_never_cost_a_good_one_its_delivery(bad: list[bytes | str], where: int) -> None:
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        hub = Hub(NoBackend(), loop)
        collector = Collector()
        hub.subscribers[CHANNEL] = {collector}
        batch: list[tuple[str, bytes | str]] = [(CHANNEL, good(1))]
        batch += [(CHANNEL, b) for b in bad[:where]]
        batch.append((CHANNEL, good(2)))
        batch += [(CHANNEL, b) for b in bad[where:]]
        batch.append((CHANNEL, good(3)))
        hub.deliver_batch(batch)
        for raw in bad:  # and one at a time
            hub.deliver(CHANNEL, raw)
        hub.deliver(CHANNEL, good(4))
    finally:
        loop.close()
    delivered = [
        e["payload"]["n"]
        for e in collector.events
        if e["payload"].get("session_name") == "fuzz_raw" and "n" in e["payload"]
    ]
    assert [n for n in delivered if n in (1, 2, 3, 4)][-4:] == [1, 2, 3, 4]


GARBAGE: list[bytes | str] = [b"\xff\xfe", "[" * 5000 + "]" * 5000, '{"x": "\\ud800"}', "", '{"type": 5}']


def poison_history(redis: Any, channel: str, after_id: str) -> list[str]:
    """Entries that are no envelope, written into `channel`'s history right after `after_id` as
    a writer with access to Redis could, moving the id sequence on past them."""
    from realtime.redis_store import SEQUENCE_KEY, history_key

    ms, seq = (int(part) for part in after_id.split("-"))
    ids = [f"{ms}-{seq + n}" for n in range(1, len(GARBAGE) + 2)]
    for n, garbage in enumerate(GARBAGE, start=1):
        value = garbage.encode("utf-8", "surrogatepass") if isinstance(garbage, str) else garbage
        redis.xadd(history_key(channel), {"e": value}, id=f"{ms}-{seq + n}")
    redis.xadd(history_key(channel), {"not_e": "x"}, id=f"{ms}-{seq + len(GARBAGE) + 1}")
    redis.set(SEQUENCE_KEY, f"{ms}-{seq + len(GARBAGE) + 1}")
    return ids


# --- the raw Redis side, over real processes ------------------------------------------------------


def test_over_real_processes_bad_raw_messages_cost_no_event_and_no_stream(daphne_pair: Any, redis_server: Any) -> None:
    import itertools

    from tests.support.procs import SSEClient, request
    from tests.support.sessions import unique

    a, b = daphne_pair
    name = unique("fuzzraw")
    channel = f"sse:session:{name}"
    clients = [SSEClient(d.url, f"/api/sessions/{name}/events").wait_open() for d in (a, b)]
    redis = redis_server.client()
    numbers = itertools.count(1)
    sent: list[int] = []

    @settings(max_examples=25, deadline=None)
    @given(bad=st.lists(raw_messages, min_size=1, max_size=3))
    def one_round(bad: list[bytes | str]) -> None:
        n = next(numbers)
        pipe = redis.pipeline(transaction=True)
        for raw in bad:  # as bytes: a lone surrogate reaches Redis as its UTF-8-like bytes
            pipe.publish(channel, raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw)
        pipe.execute()
        status, answer = request(
            "POST",
            a.url + "/api/publish",
            {"channel": channel, "type": "new_message", "payload": {"session_name": name, "n": n}},
        )
        assert status == 202, answer
        sent.append(n)
        for client in clients:
            client.wait_for(lambda e, n=n: e.event == "new_message" and e.json["payload"].get("n") == n, timeout=5)

    try:
        one_round()
        for client in clients:
            got = [e.json["payload"].get("n") for e in client.events if e.event == "new_message" and e.id]
            assert [n for n in got if n is not None] == sent, "each good event once, in order"
            assert [e.event for e in client.events if e.event in ("reset", "bus_status")] == []
            assert client.status == 200 and not client.closed.is_set()
    finally:
        for client in clients:
            client.close()


def test_a_resume_across_garbage_in_the_history_answers_200(daphne_pair: Any, redis_server: Any) -> None:
    from tests.support.procs import SSEClient, request
    from tests.support.sessions import unique

    a, _ = daphne_pair
    name = unique("garbage")
    channel = f"sse:session:{name}"
    redis = redis_server.client()

    def publish(n: int) -> str:
        status, answer = request(
            "POST",
            a.url + "/api/publish",
            {"channel": channel, "type": "new_message", "payload": {"session_name": name, "n": n}},
        )
        assert status == 202, answer
        return str(answer["id"])

    first = publish(1)
    poison_history(redis, channel, first)
    last = publish(2)
    client = SSEClient(a.url, f"/api/sessions/{name}/events", last_event_id=first).wait_open()
    try:
        assert client.status == 200
        events = client.wait_for(lambda e: e.event in ("new_message", "reset"), timeout=5)
        if events[0].event == "new_message":  # replayed, the garbage dropped
            assert events[0].id == last
    finally:
        client.close()


@pytest.mark.django_db
def test_the_dashboard_feed_leaves_out_garbage_in_the_broadcast_history(redis_bus: Any) -> None:
    from realtime.bus import enqueue_sse_message_sync
    from realtime.channels import BROADCAST
    from realtime.redis_store import history_key

    good_id = enqueue_sse_message_sync(BROADCAST, "status_change", {"n": 1}, source="ai_chatbot")
    assert good_id is not None
    garbage = poison_history(redis_bus, BROADCAST, good_id)
    try:
        last_id = enqueue_sse_message_sync(BROADCAST, "status_change", {"n": 2}, source="ai_chatbot")
        response = browser(make_user("feed_boss", staff=True)).get("/dashboard/feed.json")
        assert response.status_code == 200, response.content[:300]
        ids = [e["id"] for e in response.json()["events"]]
        assert good_id in ids and last_id in ids
    finally:  # sse:broadcast's history is shared by the whole run: other tests read it
        redis_bus.xdel(history_key(BROADCAST), *garbage)
