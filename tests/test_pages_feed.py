"""The dashboard's snapshot: recent broadcast events, totals by status, and a cursor to resume from."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from dashboard.models import ChatSession, Status
from realtime.bus import enqueue_sse_message_sync

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_layer")]


@pytest.fixture
def supervisor_client(client: Client, django_user_model: Any) -> Client:
    client.force_login(django_user_model.objects.create_user("sam", is_staff=True))
    return client


def publish(channel: str, n: int) -> str:
    payload = {
        "session_name": f"cust_{n}",
        "status": "waiting_agent",
        "data": {"previous": "ai_handling", "agent": None},
    }
    return enqueue_sse_message_sync(channel, "status_change", payload, source="ai_chatbot")


def test_the_feed_holds_the_broadcast_events_oldest_first_and_only_those(supervisor_client: Client) -> None:
    ids = [publish("sse:broadcast", n) for n in range(3)]
    publish("sse:session:cust_elsewhere", 9)
    body = supervisor_client.get("/dashboard/feed.json").json()
    assert [event["id"] for event in body["events"]] == ids
    assert {event["channel"] for event in body["events"]} == {"sse:broadcast"}
    assert body["events"][0]["payload"]["session_name"] == "cust_0"


def test_the_feed_cursor_is_the_bus_position_so_the_stream_resumes_after_the_last_event(
    supervisor_client: Client,
) -> None:
    publish("sse:broadcast", 1)
    last = publish("sse:session:cust_other", 2)
    body = supervisor_client.get("/dashboard/feed.json").json()
    assert body["last_event_id"] == last


def test_the_feed_keeps_only_the_latest_hundred_events(supervisor_client: Client) -> None:
    ids = [publish("sse:broadcast", n) for n in range(105)]
    events = supervisor_client.get("/dashboard/feed.json").json()["events"]
    assert [event["id"] for event in events] == ids[-100:]


def test_the_feed_counts_sessions_by_status_with_zeros_for_the_empty_ones(supervisor_client: Client) -> None:
    for n, status in enumerate([Status.WAITING_AGENT, Status.WAITING_AGENT, Status.CLOSED]):
        ChatSession.objects.create(name=f"cust_count_{n}", status=status)
    counts = supervisor_client.get("/dashboard/feed.json").json()["counts"]
    assert counts == {"ai_handling": 0, "waiting_agent": 2, "agent_handling": 0, "closed": 1}
