"""The sessions API over HTTP (Django test client): status codes and the agreed JSON shapes."""

import pytest
from django.test import Client

from tests.support.sessions import browser, make_user, post_as, post_service, published

pytestmark = pytest.mark.django_db(transaction=True)

SESSION_KEYS = {
    "name",
    "status",
    "agent",
    "supervisor",
    "reason",
    "created_at",
    "escalated_at",
    "accepted_at",
    "closed_at",
    "resolution_note",
    "customer",
    "last_message",
    "awaiting_reply_since",
    "last_event_id",
    "waiting_seconds",
}


def test_the_first_escalation_answers_201_and_the_next_200_with_no_events(bus):
    first = post_service(Client(), "/api/manual/escalate", {"session_name": "api_1", "reason": "refund"})
    again = post_service(Client(), "/api/manual/escalate", {"session_name": "api_1"})

    assert first.status_code == 201, first.content
    body = first.json()
    assert set(body["session"]) == SESSION_KEYS
    assert body["session"]["status"] == "waiting_agent" and body["session"]["reason"] == "refund"
    assert body["session"]["waiting_seconds"] >= 0
    assert len(body["event_ids"]) == 4
    assert body["session"]["last_event_id"] == body["event_ids"][2]  # status_change on the session channel
    assert again.status_code == 200 and again.json()["event_ids"] == []


def test_a_whole_handoff_through_the_api(bus, alice):
    post_service(Client(), "/api/manual/escalate", {"session_name": "api_2"})

    accepted = post_as(alice, "/api/sessions/api_2/accept")
    assert accepted.status_code == 200, accepted.content
    assert accepted.json()["session"]["agent"] == "alice" and accepted.json()["session"]["waiting_seconds"] is None
    assert len(accepted.json()["event_ids"]) == 6

    said = post_as(alice, "/api/sessions/api_2/messages", {"text": "How can I help?"})
    assert said.status_code == 200 and len(said.json()["event_ids"]) == 3

    left = post_as(alice, "/api/sessions/api_2/leave", {})
    assert left.status_code == 200 and left.json()["session"]["status"] == "waiting_agent"

    closed = post_service(Client(), "/api/sessions/api_2/close", "")
    assert closed.status_code == 200 and closed.json()["session"]["status"] == "closed"
    assert [e["type"] for e in published(bus, "sse:session:api_2")] == [
        "transfer_request",
        "status_change",
        "agent_joined",
        "status_change",
        "new_message",
        "agent_left",
        "status_change",
        "status_change",
    ]


def test_the_second_agent_to_accept_gets_409(bus, alice):
    bob = browser(make_user("bob"))
    post_service(Client(), "/api/manual/escalate", {"session_name": "api_3"})
    assert post_as(alice, "/api/sessions/api_3/accept").status_code == 200

    refused = post_as(bob, "/api/sessions/api_3/accept")

    assert refused.status_code == 409
    assert refused.json()["error"] == "conflict" and "agent_handling" in refused.json()["detail"]


def test_a_supervisor_closes_a_session_with_a_cookie(bus, alice):
    sue = browser(make_user("sue", staff=True))
    post_service(Client(), "/api/manual/escalate", {"session_name": "api_4"})
    post_as(alice, "/api/sessions/api_4/accept")

    closed = post_as(sue, "/api/sessions/api_4/close")

    assert closed.status_code == 200 and closed.json()["session"]["status"] == "closed"
    assert published(bus, "sse:agent:alice")[-1]["payload"]["status"] == "closed"


def test_the_snapshot_of_one_session_has_its_events_oldest_first_and_a_cursor(bus, alice):
    post_service(Client(), "/api/manual/escalate", {"session_name": "api_5"})
    post_as(alice, "/api/sessions/api_5/accept")

    response = alice.get("/api/sessions/api_5")

    assert response.status_code == 200
    body = response.json()
    assert body["session"]["agent"] == "alice"
    assert [e["type"] for e in body["events"]] == ["transfer_request", "status_change", "agent_joined", "status_change"]
    assert [e["id"] for e in body["events"]] == [e["id"] for e in published(bus, "sse:session:api_5")]
    assert body["last_event_id"] == bus.cursor_sync()


def test_an_unknown_session_is_404_for_every_endpoint(bus, alice):
    assert alice.get("/api/sessions/nope").status_code == 404
    for action in ("accept", "leave", "close"):
        assert post_as(alice, f"/api/sessions/nope/{action}").status_code == 404, action
    assert post_as(alice, "/api/sessions/nope/messages", {"text": "hi"}).status_code == 404
    assert alice.get("/api/sessions/nope").json()["error"] == "not_found"
