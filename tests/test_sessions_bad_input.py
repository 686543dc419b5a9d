"""Bad input is refused whole: 400/401/403/404/405/409, and a refused command changes no row
and publishes nothing.

Unknown fields are refused (400), not ignored: see docs/sessions.md.
"""

import json

import pytest
from django.test import Client

from dashboard.models import ChatSession
from tests.support.sessions import (
    CRM_TOKEN,
    browser,
    make_user,
    post_as,
    post_service,
    published,
)

pytestmark = pytest.mark.django_db(transaction=True)


def escalate(name):
    response = post_service(Client(), "/api/manual/escalate", {"session_name": name})
    assert response.status_code == 201, response.content


def handled_by(client, name):
    escalate(name)
    assert post_as(client, f"/api/sessions/{name}/accept").status_code == 200


def snapshot(bus):
    """Everything a refused command must leave alone: the rows and the bus."""
    rows = list(ChatSession.objects.order_by("name").values())
    return rows, bus.cursor_sync()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"session_name": 5},
        {"session_name": None},
        {"session_name": ""},
        {"session_name": "a*b"},
        {"session_name": "line\nbreak"},
        {"session_name": "x" * 65},
        {"session_name": "bad_1", "reason": 3},
        {"session_name": "bad_1", "reason": "r" * 501},
        {"session_name": "bad_1", "data": [1, 2]},
        {"session_name": "bad_1", "data": "text"},
        {"session_name": "bad_1", "source": "agent_workbench"},
        {"session_name": "bad_1", "status": "agent_handling"},
        "not json",
        "[1, 2]",
    ],
)
def test_a_bad_escalation_body_is_400_and_creates_nothing(bus, body):
    before = snapshot(bus)

    response = post_service(Client(), "/api/manual/escalate", body)

    assert response.status_code == 400, response.content
    assert set(response.json()) == {"error", "detail"}
    assert snapshot(bus) == before


def test_an_unknown_field_is_named_in_the_error(bus):
    response = post_service(Client(), "/api/manual/escalate", {"session_name": "bad_2", "reson": "typo"})

    assert response.json() == {
        "error": "unknown_field",
        "detail": "unknown field(s): reson (accepted: session_name, reason, data)",
    }


def test_an_escalation_too_large_for_an_event_is_413_and_leaves_no_session(bus):
    before = snapshot(bus)

    # The body fits in 64 KiB; the event, with its envelope around the data, does not (by far
    # more than the few bytes a timestamp's length varies by).
    body = {"session_name": "big_1", "data": {"x": "y" * 65450}}
    assert len(json.dumps(body)) < 64 * 1024
    response = post_service(Client(), "/api/manual/escalate", body)

    assert response.status_code == 413, response.content
    assert snapshot(bus) == before


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"text": ""},
        {"text": "   \n "},
        {"text": 12},
        {"text": None},
        {"text": "x" * 4001},
        {"text": "hi", "agent": "bob"},
    ],
)
def test_a_bad_message_is_400_and_publishes_nothing(alice, bus, body):
    handled_by(alice, "msg_1")
    before = snapshot(bus)

    response = post_as(alice, "/api/sessions/msg_1/messages", body)

    assert response.status_code == 400, response.content
    assert snapshot(bus) == before


def test_a_message_of_exactly_4000_characters_is_accepted(alice, bus):
    handled_by(alice, "msg_2")

    response = post_as(alice, "/api/sessions/msg_2/messages", {"text": "é" * 4000})

    assert response.status_code == 200
    assert published(bus, "sse:session:msg_2")[-1]["payload"]["data"]["text"] == "é" * 4000


@pytest.mark.parametrize("action", ["accept", "leave", "close"])
def test_a_command_without_a_body_refuses_any_field(alice, bus, action):
    escalate("body_1")
    before = snapshot(bus)

    response = post_as(alice, f"/api/sessions/body_1/{action}", {"agent": "bob"})

    assert response.status_code == 400 and response.json()["error"] == "unknown_field"
    assert snapshot(bus) == before


def test_a_cookie_command_without_the_csrf_token_is_403_and_changes_nothing(alice, bus):
    escalate("csrf_1")
    before = snapshot(bus)

    response = post_as(alice, "/api/sessions/csrf_1/accept", csrf=False)

    assert response.status_code == 403 and response.json()["error"] == "csrf_failed"
    assert snapshot(bus) == before
    assert post_as(alice, "/api/sessions/csrf_1/accept").status_code == 200


def test_a_bad_session_name_in_the_path_is_400(alice):
    assert post_as(alice, "/api/sessions/bad.name/accept").status_code == 400
    assert alice.get("/api/sessions/" + "x" * 65).status_code == 400


@pytest.mark.parametrize(
    ("action", "body", "status"),
    [("accept", None, 409), ("leave", None, 409), ("messages", {"text": "hi"}, 409), ("close", None, 409)],
)
def test_a_command_in_the_wrong_state_is_409_and_changes_nothing(alice, bus, action, body, status):
    escalate("state_1")
    post_service(Client(), "/api/sessions/state_1/close", "")
    before = snapshot(bus)

    response = post_as(alice, f"/api/sessions/state_1/{action}", body)

    assert response.status_code == status and response.json()["error"] == "conflict"
    assert snapshot(bus) == before


def test_someone_elses_session_is_403_for_messages_leave_and_close(alice, bus):
    bob = browser(make_user("bob"))
    handled_by(alice, "other_1")
    before = snapshot(bus)

    assert post_as(bob, "/api/sessions/other_1/messages", {"text": "hi"}).status_code == 403
    assert post_as(bob, "/api/sessions/other_1/leave").status_code == 403
    assert post_as(bob, "/api/sessions/other_1/close").status_code == 403
    assert snapshot(bus) == before


def test_who_may_call_what(alice, bus):
    escalate("who_1")
    anonymous = Client()

    assert anonymous.post("/api/sessions/who_1/accept").status_code == 401
    assert anonymous.get("/api/sessions").status_code == 401
    assert post_as(alice, "/api/manual/escalate", {"session_name": "who_2"}).status_code == 403
    assert post_service(Client(), "/api/sessions/who_1/accept", "").status_code == 403
    assert post_service(Client(), "/api/sessions/who_1/messages", {"text": "hi"}).status_code == 403
    assert post_service(Client(), "/api/sessions/who_1/close", "", token=CRM_TOKEN).status_code == 403
    assert post_service(Client(), "/api/manual/escalate", {"session_name": "who_3"}, token=CRM_TOKEN).status_code == 403
    assert ChatSession.objects.get(name="who_1").status == "waiting_agent"
    assert not ChatSession.objects.filter(name__in=["who_2", "who_3"]).exists()


def test_the_wrong_method_is_405(alice):
    assert alice.get("/api/sessions/x/accept").status_code == 405
    assert post_as(alice, "/api/sessions", {}).status_code == 405
    assert post_as(alice, "/api/sessions/x").status_code == 405


def test_listing_refuses_an_unknown_status_a_bad_agent_or_limit(alice):
    assert alice.get("/api/sessions?status=sleeping").status_code == 400
    assert alice.get("/api/sessions?agent=a*").status_code == 400
    assert alice.get("/api/sessions?limit=0").status_code == 400
    assert alice.get("/api/sessions?limit=abc").status_code == 400
