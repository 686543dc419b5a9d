"""What the workbench reads about a session from the server: who the customer is, the last
message, how long the customer has waited for a reply, and each agent's read marker."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from django.test import Client

from dashboard import record
from dashboard.models import ChatSession, ReadMarker
from tests.support.sessions import browser, make_user, post_as, post_service

pytestmark = pytest.mark.django_db(transaction=True)

CUSTOMER = {"id": "c42", "name": "Ana Costa", "email": "ana@example.com", "plan": "Plus", "orders": 3, "vip": True}


def escalate(name: str, **data: Any) -> Any:
    body: dict[str, Any] = {"session_name": name, "reason": "refund"}
    if data:
        body["data"] = data
    return post_service(Client(), "/api/manual/escalate", body)


def customer_says(name: str, text: str, *, at: float | None = None, sender: str = "customer") -> str:
    """A message the bot published on the session's channel, as the recorder stores it."""
    message_id = uuid.uuid4().hex
    envelope = {
        "id": None,
        "channel": f"sse:session:{name}",
        "type": "new_message",
        "payload": {"session_name": name, "message_id": message_id, "data": {"text": text, "sender": sender}},
        "timestamp": at if at is not None else time.time(),
        "source": "ai_chatbot",
    }
    assert record.store_bus_events([envelope]) == 1
    return message_id


def detail(client: Any, name: str) -> dict[str, Any]:
    answer = client.get(f"/api/sessions/{name}")
    assert answer.status_code == 200, answer.content
    return answer.json()  # type: ignore[no-any-return]


# --- the customer ---------------------------------------------------------------------


def test_the_escalations_customer_is_kept_and_shown_with_their_earlier_sessions(bus, alice):
    escalate("ctx_old", customer=CUSTOMER)
    post_service(Client(), "/api/sessions/ctx_old/close", {"note": "refunded"})
    escalate("ctx_new", customer=CUSTOMER)
    escalate("ctx_other", customer={"id": "c7", "name": "Ben"})

    shown = detail(alice, "ctx_new")

    assert shown["customer"] == {
        "id": "c42",
        "name": "Ana Costa",
        "email": "ana@example.com",
        "fields": {"plan": "Plus", "orders": 3, "vip": True},
    }
    assert shown["session"]["customer"] == shown["customer"]
    assert [(s["name"], s["status"], s["resolution_note"]) for s in shown["customer_sessions"]] == [
        ("ctx_old", "closed", "refunded")
    ]


def test_a_bare_string_is_the_customers_name_and_no_customer_is_none(bus, alice):
    escalate("ctx_str", customer="Ana")
    escalate("ctx_none")

    assert detail(alice, "ctx_str")["customer"] == {"name": "Ana"}
    assert detail(alice, "ctx_none")["customer"] is None
    assert detail(alice, "ctx_none")["customer_sessions"] == []


@pytest.mark.parametrize(
    "customer",
    [
        ["not", "an", "object"],
        {"id": "has space"},
        {"name": "x" * 201},
        {"email": 5},
        {"nested": {"a": 1}},
        {"list": [1, 2]},
        {f"f{i}": i for i in range(21)},
        {"": "empty field name"},
    ],
)
def test_a_bad_customer_is_refused_and_changes_nothing(bus, customer):
    answer = escalate("ctx_bad", customer=customer)

    assert answer.status_code == 400, answer.content
    assert answer.json()["error"] == "invalid_input"
    assert not ChatSession.objects.filter(name="ctx_bad").exists()


def test_a_reescalation_without_a_customer_keeps_the_one_known(bus, alice):
    escalate("ctx_keep", customer=CUSTOMER)
    post_service(Client(), "/api/sessions/ctx_keep/close", "")
    escalate("ctx_keep")

    assert detail(alice, "ctx_keep")["customer"]["name"] == "Ana Costa"


# --- last message, reply clock, messages ------------------------------------------------


def test_the_reply_clock_starts_at_the_accept_stops_at_the_reply_and_restarts_with_the_customer(bus, alice):
    escalate("ctx_clock")
    post_as(alice, "/api/sessions/ctx_clock/accept")
    accepted = ChatSession.objects.get(name="ctx_clock")
    assert accepted.awaiting_reply_since == accepted.accepted_at

    post_as(alice, "/api/sessions/ctx_clock/messages", {"text": "Hello, I am Alice"})
    replied = ChatSession.objects.get(name="ctx_clock")
    assert replied.awaiting_reply_since is None
    assert (replied.last_message_sender, replied.last_message_text) == ("agent", "Hello, I am Alice")

    said_at = time.time() + 1
    customer_says("ctx_clock", "My kettle broke", at=said_at)
    customer_says("ctx_clock", "Are you there?", at=said_at + 5)
    waiting = ChatSession.objects.get(name="ctx_clock")
    assert waiting.awaiting_reply_since is not None
    assert waiting.awaiting_reply_since.timestamp() == pytest.approx(said_at)  # the first unanswered one
    listed = alice.get("/api/sessions?status=agent_handling&agent=alice").json()["sessions"][0]
    assert listed["last_message"]["text"] == "Are you there?" and listed["last_message"]["sender"] == "customer"
    assert listed["awaiting_reply_since"] == waiting.awaiting_reply_since.isoformat()


def test_a_customer_message_recorded_late_from_before_the_reply_starts_no_clock(bus, alice):
    escalate("ctx_late")
    post_as(alice, "/api/sessions/ctx_late/accept")
    before_reply = time.time()
    post_as(alice, "/api/sessions/ctx_late/messages", {"text": "Hi"})

    customer_says("ctx_late", "written before the agent's reply", at=before_reply)

    session = ChatSession.objects.get(name="ctx_late")
    assert session.awaiting_reply_since is None
    assert session.last_message_sender == "agent"  # the older message does not become the last


def test_leave_and_close_stop_the_reply_clock(bus, alice):
    escalate("ctx_stop")
    post_as(alice, "/api/sessions/ctx_stop/accept")
    post_as(alice, "/api/sessions/ctx_stop/leave")
    assert ChatSession.objects.get(name="ctx_stop").awaiting_reply_since is None
    post_as(alice, "/api/sessions/ctx_stop/accept")
    post_as(alice, "/api/sessions/ctx_stop/close")
    assert ChatSession.objects.get(name="ctx_stop").awaiting_reply_since is None


def test_the_snapshot_lists_the_messages_with_who_wrote_them(bus, alice):
    escalate("ctx_msgs")
    customer_says("ctx_msgs", "I want a refund")
    customer_says("ctx_msgs", "I can help with that", sender="bot")
    customer_says("ctx_msgs", "pretending", sender="agent")  # a service is never an agent
    post_as(alice, "/api/sessions/ctx_msgs/accept")
    post_as(alice, "/api/sessions/ctx_msgs/messages", {"text": "Alice here"})

    messages = detail(alice, "ctx_msgs")["messages"]

    assert [(m["sender"], m["text"]) for m in messages] == [
        ("customer", "I want a refund"),
        ("bot", "I can help with that"),
        ("bot", "pretending"),
        ("agent", "Alice here"),
    ]
    assert all(set(m) == {"message_id", "source", "sender", "text", "timestamp"} for m in messages)


# --- read markers -----------------------------------------------------------------------


def test_unread_counts_come_from_the_server_and_survive_a_reload(bus, alice):
    escalate("ctx_unread")
    post_as(alice, "/api/sessions/ctx_unread/accept")
    later = time.time() + 1
    first = customer_says("ctx_unread", "one", at=later)
    customer_says("ctx_unread", "two", at=later + 1)
    customer_says("ctx_unread", "from the bot", at=later + 2, sender="bot")  # not the customer: not counted

    listed = alice.get("/api/sessions?status=agent_handling&agent=alice").json()["sessions"]
    assert [(s["name"], s["unread"], s["read_up_to"]) for s in listed] == [("ctx_unread", 2, None)]

    marked = post_as(alice, "/api/sessions/ctx_unread/read", {"up_to": first})
    assert marked.status_code == 200, marked.content
    assert marked.json() == {"unread": 1, "read_up_to": first}
    again = detail(alice, "ctx_unread")  # another device, or a reload
    assert (again["unread"], again["read_up_to"]) == (1, first)


def test_a_read_marker_never_moves_back(bus, alice):
    escalate("ctx_back")
    post_as(alice, "/api/sessions/ctx_back/accept")
    later = time.time() + 1
    old = customer_says("ctx_back", "one", at=later)
    new = customer_says("ctx_back", "two", at=later + 1)

    post_as(alice, "/api/sessions/ctx_back/read", {"up_to": new})
    post_as(alice, "/api/sessions/ctx_back/read", {"up_to": old})  # a slower tab

    assert ReadMarker.objects.get(session__name="ctx_back").message_id == new
    assert detail(alice, "ctx_back")["unread"] == 0


def test_messages_before_the_accept_are_context_not_unread(bus, alice):
    escalate("ctx_before")
    customer_says("ctx_before", "said to the bot", at=time.time() - 10)
    post_as(alice, "/api/sessions/ctx_before/accept")

    assert detail(alice, "ctx_before")["unread"] == 0


def test_only_the_agent_on_the_session_keeps_a_marker_and_bad_input_is_refused(bus, alice):
    bob = browser(make_user("bob"))
    escalate("ctx_rules")
    post_as(alice, "/api/sessions/ctx_rules/accept")
    message = customer_says("ctx_rules", "hello", at=time.time() + 1)

    assert post_as(bob, "/api/sessions/ctx_rules/read", {"up_to": message}).status_code == 403
    assert post_as(alice, "/api/sessions/ctx_rules/read", {"up_to": "nope"}).status_code == 404
    assert post_as(alice, "/api/sessions/ctx_rules/read", {"up_to": 5}).status_code == 400
    assert post_as(alice, "/api/sessions/ctx_rules/read", {"up_to": "a b"}).status_code == 400
    assert post_as(alice, "/api/sessions/ctx_rules/read", {}).status_code == 400
    assert post_as(alice, "/api/sessions/ctx_rules/read", {"up_to": message, "x": 1}).status_code == 400
    assert post_as(alice, "/api/sessions/nobody_here/read", {"up_to": message}).status_code == 404
    assert post_service(Client(), "/api/sessions/ctx_rules/read", {"up_to": message}).status_code == 403
    assert not ReadMarker.objects.exists()
    # Others see no unread count: it is the agent's own.
    assert "unread" not in bob.get("/api/sessions/ctx_rules").json()["session"]
