"""GET /api/sessions: the queue oldest-waiting first, filters, and the resume cursor."""

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard import services
from dashboard.models import ChatSession
from realtime.auth import Principal
from realtime.bus import enqueue_sse_message_sync
from realtime.channels import BROADCAST
from tests.support.sessions import TEST_TOKENS

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")


def waiting_since(name, minutes_ago):
    services.escalate(name, by=BOT)
    ChatSession.objects.filter(name=name).update(escalated_at=timezone.now() - timedelta(minutes=minutes_ago))


def names(response):
    assert response.status_code == 200, response.content
    return [s["name"] for s in response.json()["sessions"]]


def test_the_queue_lists_the_session_waiting_longest_first(alice):
    waiting_since("q_new", 1)
    waiting_since("q_old", 30)
    waiting_since("q_mid", 5)

    response = alice.get("/api/sessions?status=waiting_agent")

    assert names(response) == ["q_old", "q_mid", "q_new"]
    waits = [s["waiting_seconds"] for s in response.json()["sessions"]]
    assert waits[0] > waits[1] > waits[2] > 0


def test_without_a_status_the_queue_comes_first_then_the_rest_newest_first_and_no_closed(alice):
    ChatSession.objects.create(name="r_bot", created_at=timezone.now() - timedelta(hours=2))
    waiting_since("r_handled", 50)
    services.accept("r_handled", by=Principal("agent", "alice"))
    ChatSession.objects.filter(name="r_handled").update(created_at=timezone.now() - timedelta(hours=1))
    waiting_since("r_wait_new", 1)
    waiting_since("r_wait_old", 9)
    waiting_since("r_closed", 20)
    services.close("r_closed", by=BOT)

    assert names(alice.get("/api/sessions")) == ["r_wait_old", "r_wait_new", "r_handled", "r_bot"]
    assert names(alice.get("/api/sessions?status=closed")) == ["r_closed"]
    assert names(alice.get("/api/sessions?agent=alice")) == ["r_handled"]
    assert names(alice.get("/api/sessions?status=waiting_agent&limit=1")) == ["r_wait_old"]


def test_the_cursor_is_taken_before_the_query_so_resuming_from_it_misses_nothing(bus, alice):
    waiting_since("c_1", 1)
    latest = bus.cursor_sync()

    body = alice.get("/api/sessions?status=waiting_agent").json()
    later = enqueue_sse_message_sync(BROADCAST, "status_change", {"n": 1}, source="system")

    assert body["last_event_id"] == latest
    resumed = bus.history.resume([BROADCAST], body["last_event_id"])
    assert not resumed.reset
    assert [e.id for e in resumed.events] == [later]


def test_a_service_may_read_the_queue_too(bus):
    waiting_since("svc_1", 1)

    response = Client().get("/api/sessions", HTTP_AUTHORIZATION=f"Bearer {next(iter(TEST_TOKENS))}")

    assert names(response) == ["svc_1"]


@pytest.mark.parametrize(("status", "limit"), [("waiting_agent", 1), ("", 2), ("ai_handling", 1)])
def test_the_limit_is_applied_in_sql_not_after_loading_every_row(alice, status, limit):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ChatSession.objects.bulk_create(
        [ChatSession(name=f"bulk_{n}", status="waiting_agent", escalated_at=timezone.now()) for n in range(300)]
        + [ChatSession(name=f"bot_{n}", status="ai_handling") for n in range(300)]
    )
    with CaptureQueriesContext(connection) as queries:
        response = alice.get(f"/api/sessions?status={status}&limit={limit}")
    assert len(names(response)) == limit
    listing = [q["sql"] for q in queries.captured_queries if "dashboard_chatsession" in q["sql"]]
    assert listing and all(f"LIMIT {limit}" in sql for sql in listing), listing
