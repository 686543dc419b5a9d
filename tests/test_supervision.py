"""Supervisor tools in the API: transfer, join and part, availability, and round-robin assignment."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from dashboard import availability
from dashboard.models import ChatSession
from tests.support.sessions import browser, make_user, post_as, post_service, published

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def people(bus: Any) -> dict[str, Any]:
    return {
        "ana": browser(make_user("ana")),
        "ben": browser(make_user("ben")),
        "sam": browser(make_user("sam", staff=True)),
    }


def handled_by(client: Any, name: str) -> None:
    assert post_service(Client(), "/api/manual/escalate", {"session_name": name}).status_code == 201
    assert post_as(client, f"/api/sessions/{name}/accept").status_code == 200


def types_on(bus: Any, channel: str, name: str) -> list[str]:
    return [e["type"] for e in published(bus, channel) if e["payload"].get("session_name") == name]


# --- transfer -----------------------------------------------------------------------------


def test_a_supervisor_transfers_a_session_to_another_agent_who_sees_it_and_the_old_one_loses_it(bus, people):
    handled_by(people["ana"], "tr_1")

    moved = post_as(people["sam"], "/api/sessions/tr_1/transfer", {"to": "ben"})

    assert moved.status_code == 200, moved.content
    assert moved.json()["session"]["agent"] == "ben"
    assert [e["type"] for e in moved.json()["events"]] == ["agent_left", "agent_joined", "status_change"]
    left, joined, change = (e["payload"] for e in moved.json()["events"])
    assert left["data"] == {"agent": "ana", "by": "sam", "from": "ana", "to": "ben"}
    assert joined["data"] == {"agent": "ben", "by": "sam", "from": "ana", "to": "ben"}
    assert change["data"] == {"previous": "agent_handling", "agent": "ben"}
    # The old agent's workbench hears it on their own channel; the new one on theirs.
    assert types_on(bus, "sse:agent:ana", "tr_1")[-3:] == ["agent_left", "agent_joined", "status_change"]
    assert types_on(bus, "sse:agent:ben", "tr_1") == ["agent_left", "agent_joined", "status_change"]
    assert post_as(people["ana"], "/api/sessions/tr_1/messages", {"text": "still mine?"}).status_code == 403
    assert post_as(people["ben"], "/api/sessions/tr_1/messages", {"text": "Ben here"}).status_code == 200


def test_an_agent_transfers_their_own_session_but_not_someone_elses(bus, people):
    handled_by(people["ana"], "tr_2")
    assert post_as(people["ben"], "/api/sessions/tr_2/transfer", {"to": "ben"}).status_code == 403
    assert post_as(people["ana"], "/api/sessions/tr_2/transfer", {"to": "ben"}).status_code == 200
    assert ChatSession.objects.get(name="tr_2").agent.username == "ben"


def test_transfer_to_the_queue_is_a_leave_that_keeps_the_place(bus, people):
    handled_by(people["ana"], "tr_q")
    escalated = ChatSession.objects.get(name="tr_q").escalated_at

    back = post_as(people["sam"], "/api/sessions/tr_q/transfer", {"to": None})

    assert back.status_code == 200, back.content
    session = ChatSession.objects.get(name="tr_q")
    assert (session.status, session.agent, session.escalated_at) == ("waiting_agent", None, escalated)
    assert [e["type"] for e in back.json()["events"]] == ["agent_left", "status_change"]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"to": "nobody_here"}, 404),
        ({"to": "ana"}, 409),  # already hers
        ({"to": "sam"}, 409),  # a supervisor is away until they choose otherwise
        ({"to": 5}, 400),
        ({"to": "a b"}, 400),
        ({}, 400),
        ({"to": "ben", "why": "x"}, 400),
    ],
)
def test_a_transfer_that_cannot_be_done_is_refused_and_changes_nothing(bus, people, body, status):
    handled_by(people["ana"], "tr_bad")
    before = ChatSession.objects.get(name="tr_bad").version

    answer = post_as(people["sam"], "/api/sessions/tr_bad/transfer", body)

    assert answer.status_code == status, answer.content
    session = ChatSession.objects.get(name="tr_bad")
    assert (session.agent.username, session.version) == ("ana", before)


def test_a_session_not_being_handled_cannot_be_transferred(bus, people):
    assert post_service(Client(), "/api/manual/escalate", {"session_name": "tr_w"}).status_code == 201
    assert post_as(people["sam"], "/api/sessions/tr_w/transfer", {"to": "ben"}).status_code == 409
    assert post_as(people["sam"], "/api/sessions/tr_none/transfer", {"to": "ben"}).status_code == 404
    assert post_service(Client(), "/api/sessions/tr_w/transfer", {"to": "ben"}).status_code == 403


def test_an_away_agent_cannot_be_given_a_session(bus, people):
    handled_by(people["ana"], "tr_away")
    assert post_as(people["ben"], "/api/agents/ben/availability", {"state": "away"}).status_code == 200
    refused = post_as(people["sam"], "/api/sessions/tr_away/transfer", {"to": "ben"})
    assert refused.status_code == 409 and "away" in refused.json()["detail"]


# --- join and part ------------------------------------------------------------------------


def test_a_supervisor_joins_writes_and_parts_while_the_agent_keeps_the_session(bus, people):
    handled_by(people["ana"], "jn_1")

    joined = post_as(people["sam"], "/api/sessions/jn_1/join")
    assert joined.status_code == 200, joined.content
    assert joined.json()["session"]["supervisor"] == "sam"
    [event] = joined.json()["events"]
    assert (event["type"], event["payload"]["data"]) == ("agent_joined", {"agent": "sam", "role": "supervisor"})
    assert post_as(people["sam"], "/api/sessions/jn_1/messages", {"text": "Sam, supervisor"}).status_code == 200
    assert types_on(bus, "sse:agent:sam", "jn_1")[-1] == "new_message"  # the joined one follows it
    assert post_as(people["sam"], "/api/sessions/jn_1/join").status_code == 409  # already in

    parted = post_as(people["sam"], "/api/sessions/jn_1/part")
    assert parted.status_code == 200
    assert parted.json()["events"][0]["payload"]["data"] == {"agent": "sam", "role": "supervisor"}
    session = ChatSession.objects.get(name="jn_1")
    assert (session.agent.username, session.supervisor) == ("ana", None)
    assert post_as(people["sam"], "/api/sessions/jn_1/messages", {"text": "gone?"}).status_code == 403
    assert post_as(people["sam"], "/api/sessions/jn_1/part").status_code == 409


def test_only_supervisors_join_and_only_sessions_with_an_agent(bus, people):
    handled_by(people["ana"], "jn_2")
    assert post_as(people["ben"], "/api/sessions/jn_2/join").status_code == 403
    assert post_service(Client(), "/api/manual/escalate", {"session_name": "jn_3"}).status_code == 201
    assert post_as(people["sam"], "/api/sessions/jn_3/join").status_code == 409
    assert post_as(people["sam"], "/api/sessions/jn_none/join").status_code == 404


def test_closing_or_leaving_lets_the_joined_supervisor_go_too(bus, people):
    handled_by(people["ana"], "jn_close")
    post_as(people["sam"], "/api/sessions/jn_close/join")

    closed = post_as(people["ana"], "/api/sessions/jn_close/close")

    assert closed.status_code == 200
    assert ChatSession.objects.get(name="jn_close").supervisor is None
    assert types_on(bus, "sse:agent:sam", "jn_close")[-1] == "status_change"


# --- availability ---------------------------------------------------------------------------


def test_availability_is_remembered_and_shown_in_presence(bus, people):
    assert post_as(people["ana"], "/api/agents/ana/availability", {"state": "away"}).json() == {
        "agent": "ana",
        "state": "away",
    }
    assert availability.states(["ana", "ben", "sam"]) == {"ana": "away", "ben": "available", "sam": "away"}
    assert post_as(people["sam"], "/api/agents/sam/availability", {"state": "available"}).status_code == 200
    presence = people["sam"].get("/api/presence").json()
    assert set(presence) == {"agents", "complete", "available"}
    assert "sam" in presence["available"] and "ana" not in presence["available"]


@pytest.mark.parametrize(
    ("who", "url", "body", "status"),
    [
        ("ben", "/api/agents/ana/availability", {"state": "away"}, 403),  # not their own
        ("sam", "/api/agents/ana/availability", {"state": "away"}, 200),  # a supervisor may
        ("ana", "/api/agents/ana/availability", {"state": "busy"}, 400),
        ("ana", "/api/agents/ana/availability", {}, 400),
        ("sam", "/api/agents/nobody_here/availability", {"state": "away"}, 404),
        ("sam", "/api/agents/a%20b/availability", {"state": "away"}, 400),
    ],
)
def test_availability_rules(bus, people, who, url, body, status):
    assert post_as(people[who], url, body).status_code == status


# --- round robin ----------------------------------------------------------------------------


def test_round_robin_gives_the_oldest_waiting_to_the_least_loaded_available_online_agent(bus, people, settings):
    settings.ASSIGNMENT = "round_robin"
    settings.ASSIGNMENT_MAX_PER_AGENT = 2
    online = {"ana", "ben", "sam"}
    bus.online_agents = lambda: [{"agent": name, "since": 0.0} for name in online]
    handled_by(people["ana"], "rr_0")  # ana already has one
    for name in ("rr_1", "rr_2", "rr_3", "rr_4"):
        assert post_service(Client(), "/api/manual/escalate", {"session_name": name}).status_code == 201

    assert availability.assign_waiting() == 3  # ben 2, ana 1 more; sam is away by default

    owners = {s.name: s.agent_name for s in ChatSession.objects.filter(name__startswith="rr_")}
    # Oldest first, each to the least loaded (then the one longest without a session); rr_4
    # waits: everyone available is at the cap.
    assert owners == {"rr_0": "ana", "rr_1": "ben", "rr_2": "ana", "rr_3": "ben", "rr_4": None}
    assert ChatSession.objects.get(name="rr_4").status == "waiting_agent"
    assert availability.assign_waiting() == 0


def test_round_robin_skips_away_and_offline_agents_and_manual_assignment_does_nothing(bus, people, settings):
    bus.online_agents = lambda: [{"agent": "ana", "since": 0.0}, {"agent": "ben", "since": 0.0}]
    assert post_service(Client(), "/api/manual/escalate", {"session_name": "rr_m"}).status_code == 201
    settings.ASSIGNMENT = "manual"
    assert availability.assign_waiting() == 0
    settings.ASSIGNMENT = "round_robin"
    post_as(people["ana"], "/api/agents/ana/availability", {"state": "away"})
    bus.online_agents = lambda: [{"agent": "ana", "since": 0.0}]  # ben has no workbench open
    assert availability.assign_waiting() == 0
    bus.online_agents = lambda: [{"agent": "ana", "since": 0.0}, {"agent": "ben", "since": 0.0}]
    assert availability.assign_waiting() == 1
    assert ChatSession.objects.get(name="rr_m").agent.username == "ben"
