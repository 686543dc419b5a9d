"""While this process cannot reach Redis: helpers and POST /api/publish deliver to this process's
own streams at once (no id) and never fail because of Redis; commands answer with their events
(they wait in the outbox); /healthz says degraded and why (realtime/bus.py, realtime/health.py)."""

import asyncio
import json
import logging
import time

import pytest

from dashboard import services
from dashboard.models import ChatSession
from realtime import outbox
from realtime.auth import Principal
from realtime.bus import enqueue_sse_message, enqueue_sse_message_sync, get_layer, subscribe_sse_events
from realtime.health import RETRY_WHILE_DOWN, health
from tests.support.sessions import TEST_TOKEN, TEST_TOKENS, browser, make_user, post_as, unique

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")


@pytest.fixture
def down(stoppable_redis, settings):
    """The bus on a Redis of this test's own, stopped."""
    settings.SERVICE_TOKENS = TEST_TOKENS
    settings.BUS_ON_REDIS = True
    stoppable_redis.stop()
    return stoppable_redis


def test_the_sync_helper_returns_none_logs_a_warning_and_marks_the_bus_degraded(down, caplog):
    with caplog.at_level(logging.WARNING, logger="realtime"):
        event_id = enqueue_sse_message_sync("sse:broadcast", "status_change", {"n": 1}, source="ai_chatbot")

    assert event_id is None
    assert "delivered to this process's streams only" in caplog.text
    assert health.degraded and "Redis is unreachable" in health.current.reason


def test_while_a_publish_has_just_failed_the_next_ones_do_not_wait_on_redis(down, monkeypatch):
    enqueue_sse_message_sync("sse:broadcast", "status_change", {"n": 1}, source="ai_chatbot")
    layer = get_layer()
    tries = []
    real = layer.publish_event_sync
    monkeypatch.setattr(layer, "publish_event_sync", lambda item: tries.append(item) or real(item))

    for n in range(20):
        assert enqueue_sse_message_sync("sse:broadcast", "status_change", {"n": n}, source="ai_chatbot") is None
    assert tries == []  # within RETRY_WHILE_DOWN: delivered locally without a try

    time.sleep(RETRY_WHILE_DOWN + 0.05)
    enqueue_sse_message_sync("sse:broadcast", "status_change", {"n": 99}, source="ai_chatbot")
    assert len(tries) == 1  # one try now and then


def test_once_redis_is_back_publishing_gets_ids_again_and_the_bus_is_healthy(down):
    assert enqueue_sse_message_sync("sse:broadcast", "status_change", {"n": 1}, source="ai_chatbot") is None
    down.start()
    time.sleep(RETRY_WHILE_DOWN + 0.05)

    assert enqueue_sse_message_sync("sse:broadcast", "status_change", {"n": 2}, source="ai_chatbot")
    assert not health.degraded  # no link of this process is still healing


def test_a_subscriber_in_this_process_gets_the_event_at_once_without_an_id(down):
    async def scenario():
        events = subscribe_sse_events(["sse:broadcast"])
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.1)  # subscribed (degraded: the link cannot reach Redis)
        # The bus_status this process's streams are told comes first, then the event.
        got = [await asyncio.wait_for(first, 5)]
        assert await enqueue_sse_message("sse:broadcast", "status_change", {"n": 7}, source="ai_chatbot") is None
        got.append(await asyncio.wait_for(events.__anext__(), 5))
        await events.aclose()
        return got

    first, event = asyncio.run(scenario())
    assert (first["type"], first["payload"]["state"]) == ("bus_status", "degraded")
    assert event["type"] == "status_change" and event["payload"] == {"n": 7} and "id" not in event


def test_post_publish_answers_202_with_local_delivery(down, client):
    response = client.post(
        "/api/publish",
        json.dumps({"channel": "sse:broadcast", "type": "status_change", "payload": {}}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TEST_TOKEN}",
    )
    assert response.status_code == 202
    assert response.json() == {"id": None, "channel": "sse:broadcast", "event_ids": [], "delivery": "local"}


def test_commands_answer_with_their_events_which_wait_and_go_out_once_redis_is_back(down):
    alice = make_user("alice")
    name = unique("cmd")
    client = browser(alice)
    escalated = services.escalate(name, by=BOT)
    assert escalated.event_ids == []

    response = post_as(client, f"/api/sessions/{name}/accept")

    assert response.status_code == 200
    body = response.json()
    assert body["event_ids"] == [] and body["session"]["status"] == "agent_handling"
    assert [(e["type"], e["id"]) for e in body["events"]] == [("agent_joined", None), ("status_change", None)]
    assert outbox.pending_count() == 3 * 2 + 2 * 2  # escalate and accept, on their channels

    down.start()
    health.__init__()
    outbox.flush()
    assert outbox.pending_count() == 0


def test_healthz_says_degraded_and_why_and_counts_what_waits(down, client):
    services.escalate(unique("cmd"), by=BOT)
    body = client.get("/healthz").json()

    assert body["status"] == "degraded" and body["reason"].startswith("Redis is unreachable")
    assert body["redis"]["reachable"] is False and body["redis"]["target"] == down.url
    assert body["outbox_pending"] == 4 and body["since"]


def test_no_page_or_endpoint_answers_500_because_redis_is_down(down):
    boss = make_user("boss", staff=True)
    name = unique("pages")
    services.escalate(name, by=BOT)
    client = browser(boss)
    for url in [
        "/workbench/",
        "/dashboard/",
        "/dashboard/feed.json",
        f"/dashboard/sessions/{name}/",
        "/api/sessions",
        f"/api/sessions/{name}",
        "/api/presence",
        f"/admin/dashboard/chatsession/{ChatSession.objects.get(name=name).pk}/change/",
    ]:
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    assert client.get("/api/presence").json()["complete"] is False
    assert client.get("/api/sessions").json()["last_event_id"] is None  # open the stream without resuming
