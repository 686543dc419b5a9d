"""Escalation: the bot hands a session to the queue (services.escalate)."""

import pytest

from dashboard import services
from dashboard.models import ChatSession, Status
from realtime.auth import Principal
from realtime.channels import BROADCAST
from tests.support.sessions import fresh_bus, kinds, make_user, published

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")


@pytest.fixture
def bus():
    yield fresh_bus()
    fresh_bus()


def test_a_first_escalation_creates_the_session_waiting_and_announces_it(bus):
    outcome = services.escalate("cust_1", by=BOT, reason="refund", data={"lang": "en"})

    assert outcome.created
    session = ChatSession.objects.get(name="cust_1")
    assert session.status == Status.WAITING_AGENT and session.reason == "refund" and session.escalated_at
    on_session = published(bus, "sse:session:cust_1")
    assert [e["type"] for e in on_session] == ["transfer_request", "status_change"]
    assert on_session[0]["payload"] == {
        "session_name": "cust_1",
        "status": "waiting_agent",
        "data": {"lang": "en", "reason": "refund"},
    }
    assert on_session[1]["payload"] == {
        "session_name": "cust_1",
        "status": "waiting_agent",
        "data": {"previous": "ai_handling", "agent": None},
    }
    assert {e["source"] for e in on_session} == {"ai_chatbot"}
    assert kinds(bus, BROADCAST) == ["transfer_request", "status_change"]
    assert len(outcome.event_ids) == 4
    assert session.last_event_id == on_session[-1]["id"] == outcome.session.last_event_id


def test_escalating_a_session_that_is_already_waiting_publishes_nothing(bus):
    services.escalate("cust_2", by=BOT, reason="first")
    before = ChatSession.objects.get(name="cust_2")

    again = services.escalate("cust_2", by=BOT, reason="second")

    assert not again.created and again.event_ids == []
    assert kinds(bus, "sse:session:cust_2") == ["transfer_request", "status_change"]
    after = ChatSession.objects.get(name="cust_2")
    assert (after.reason, after.escalated_at, after.version) == ("first", before.escalated_at, before.version)


def test_escalating_a_session_an_agent_handles_is_a_conflict(bus):
    make_user("alice")
    services.escalate("cust_3", by=BOT)
    services.accept("cust_3", by=Principal("agent", "alice"))
    count = len(published(bus, BROADCAST))

    with pytest.raises(services.Conflict):
        services.escalate("cust_3", by=BOT)

    assert ChatSession.objects.get(name="cust_3").status == Status.AGENT_HANDLING
    assert len(published(bus, BROADCAST)) == count


def test_escalating_a_closed_session_reopens_it_into_the_queue(bus):
    make_user("alice")
    services.escalate("cust_4", by=BOT)
    services.accept("cust_4", by=Principal("agent", "alice"))
    services.close("cust_4", by=Principal("agent", "alice"))

    outcome = services.escalate("cust_4", by=BOT, reason="back again")

    session = ChatSession.objects.get(name="cust_4")
    assert not outcome.created
    assert session.status == Status.WAITING_AGENT
    assert (session.agent, session.accepted_at, session.closed_at, session.reason) == (None, None, None, "back again")
    last = published(bus, "sse:session:cust_4")[-1]
    assert last["payload"]["data"] == {"previous": "closed", "agent": None}


def test_escalating_a_session_the_bot_handles_moves_it_to_the_queue(bus):
    ChatSession.objects.create(name="cust_5")

    outcome = services.escalate("cust_5", by=BOT)

    assert not outcome.created
    assert ChatSession.objects.get(name="cust_5").status == Status.WAITING_AGENT
    assert published(bus, "sse:session:cust_5")[-1]["payload"]["data"]["previous"] == "ai_handling"


def test_a_service_the_source_table_does_not_allow_may_not_escalate(bus):
    with pytest.raises(services.Forbidden):
        services.escalate("cust_6", by=Principal("service", "crm"))

    assert not ChatSession.objects.filter(name="cust_6").exists()
    assert published(bus, BROADCAST) == []
