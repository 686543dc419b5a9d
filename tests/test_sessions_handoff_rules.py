"""Accept, messages, leave and close: who may do what, in which state, and what goes out."""

import pytest

from dashboard import services
from dashboard.models import ChatSession, Status
from realtime.auth import Principal
from realtime.channels import BROADCAST
from tests.support.sessions import fresh_bus, kinds, make_user, published

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")
ALICE = Principal("agent", "alice")
BOB = Principal("agent", "bob")
SUE = Principal("supervisor", "sue")


@pytest.fixture
def bus():
    make_user("alice")
    make_user("bob")
    make_user("sue", staff=True)
    yield fresh_bus()
    fresh_bus()


def waiting(name):
    services.escalate(name, by=BOT)
    return name


def handled(name, by=ALICE):
    services.accept(waiting(name), by=by)
    return name


def test_accepting_gives_the_session_to_the_agent_and_tells_all_three_channels(bus):
    outcome = services.accept(waiting("s1"), by=ALICE)

    session = ChatSession.objects.get(name="s1")
    assert (session.status, session.agent_name) == (Status.AGENT_HANDLING, "alice") and session.accepted_at
    for channel in ("sse:session:s1", BROADCAST, "sse:agent:alice"):
        assert kinds(bus, channel)[-2:] == ["agent_joined", "status_change"], channel
    joined, change = published(bus, "sse:agent:alice")
    assert joined["payload"] == {"session_name": "s1", "status": "agent_handling", "data": {"agent": "alice"}}
    assert change["payload"]["data"] == {"previous": "waiting_agent", "agent": "alice"}
    assert {joined["source"], change["source"]} == {"agent_workbench"}
    assert len(outcome.event_ids) == 6
    assert session.last_event_id == published(bus, "sse:session:s1")[-1]["id"]


def test_accepting_a_session_that_is_not_waiting_is_a_conflict(bus):
    handled("s2")

    with pytest.raises(services.Conflict):
        services.accept("s2", by=BOB)

    assert ChatSession.objects.get(name="s2").agent_name == "alice"
    assert "sse:agent:bob" not in {e["channel"] for e in published(bus, BROADCAST)}
    assert published(bus, "sse:agent:bob") == []


def test_accepting_an_unknown_session_is_not_found(bus):
    with pytest.raises(services.NotFound):
        services.accept("nobody_here", by=ALICE)


def test_a_service_may_not_accept(bus):
    waiting("s3")
    with pytest.raises(services.Forbidden):
        services.accept("s3", by=BOT)
    assert ChatSession.objects.get(name="s3").status == Status.WAITING_AGENT


def test_a_message_of_the_agent_goes_to_the_session_broadcast_and_agent_channels(bus):
    handled("s4")

    services.send_message("s4", "Hello, I am Alice", by=ALICE)

    for channel in ("sse:session:s4", BROADCAST, "sse:agent:alice"):
        message = published(bus, channel)[-1]
        assert message["type"] == "new_message" and message["source"] == "agent_workbench"
        assert message["payload"] == {
            "session_name": "s4",
            "message_id": message["payload"]["message_id"],
            "data": {"text": "Hello, I am Alice", "sender": "agent", "agent": "alice"},
        }
    # One message, one id, on every channel: clients and the record tell it by that id.
    assert len({published(bus, c)[-1]["payload"]["message_id"] for c in ("sse:session:s4", BROADCAST)}) == 1


def test_only_the_agent_on_the_session_may_write_to_it(bus):
    handled("s5")
    with pytest.raises(services.Forbidden):
        services.send_message("s5", "hi", by=BOB)
    waiting("s6")
    with pytest.raises(services.Conflict):
        services.send_message("s6", "hi", by=ALICE)
    assert "new_message" not in kinds(bus, BROADCAST)


def test_leaving_returns_the_session_to_the_queue_in_its_old_place_and_tells_the_agent(bus):
    handled("s7")
    escalated = ChatSession.objects.get(name="s7").escalated_at

    services.leave("s7", by=ALICE)

    session = ChatSession.objects.get(name="s7")
    assert (session.status, session.agent, session.accepted_at) == (Status.WAITING_AGENT, None, None)
    # Its old place: the first escalation of this episode, and its reason, kept.
    assert session.escalated_at == escalated
    left, change = published(bus, "sse:agent:alice")[-2:]
    assert left["type"] == "agent_left"
    assert left["payload"] == {
        "session_name": "s7",
        "status": "waiting_agent",
        "data": {"agent": "alice", "reason": session.reason, "escalated_at": escalated.isoformat()},
    }
    assert change["payload"]["data"] == {"previous": "agent_handling", "agent": None}
    assert kinds(bus, "sse:session:s7")[-2:] == ["agent_left", "status_change"]
    # and it can be taken again
    services.accept("s7", by=BOB)
    assert ChatSession.objects.get(name="s7").agent_name == "bob"


def test_only_the_agent_on_the_session_may_leave_it(bus):
    handled("s8")
    with pytest.raises(services.Forbidden):
        services.leave("s8", by=BOB)
    with pytest.raises(services.Forbidden):
        services.leave("s8", by=SUE)
    assert ChatSession.objects.get(name="s8").agent_name == "alice"


def test_the_agent_on_the_session_closes_it_and_stays_on_record(bus):
    handled("s9")

    services.close("s9", by=ALICE)

    session = ChatSession.objects.get(name="s9")
    assert (session.status, session.agent_name) == (Status.CLOSED, "alice") and session.closed_at
    change = published(bus, "sse:agent:alice")[-1]
    assert change["payload"] == {
        "session_name": "s9",
        "status": "closed",
        "data": {"previous": "agent_handling", "agent": "alice"},
    }
    assert kinds(bus, "sse:session:s9")[-1] == "status_change"


def test_an_agent_may_not_close_a_session_of_another_agent_or_one_in_the_queue(bus):
    handled("s10")
    with pytest.raises(services.Forbidden):
        services.close("s10", by=BOB)
    waiting("s11")
    with pytest.raises(services.Conflict):
        services.close("s11", by=ALICE)
    assert ChatSession.objects.get(name="s10").status == Status.AGENT_HANDLING
    assert ChatSession.objects.get(name="s11").status == Status.WAITING_AGENT


def test_a_supervisor_or_the_bot_may_close_any_open_session(bus):
    handled("s12")
    waiting("s13")
    ChatSession.objects.create(name="s14")

    services.close("s12", by=SUE)
    services.close("s13", by=BOT)
    services.close("s14", by=BOT)

    assert set(ChatSession.objects.filter(name__in=["s12", "s13", "s14"]).values_list("status", flat=True)) == {
        "closed"
    }
    assert published(bus, "sse:agent:alice")[-1]["payload"]["status"] == "closed"
    assert published(bus, "sse:agent:alice")[-1]["source"] == "agent_workbench"
    assert published(bus, "sse:session:s13")[-1]["source"] == "ai_chatbot"
    assert published(bus, "sse:session:s14")[-1]["payload"]["data"]["previous"] == "ai_handling"


def test_closing_a_closed_session_is_a_conflict(bus):
    services.close(waiting("s15"), by=BOT)
    count = len(published(bus, BROADCAST))
    with pytest.raises(services.Conflict):
        services.close("s15", by=BOT)
    assert len(published(bus, BROADCAST)) == count


def test_a_service_the_source_table_does_not_allow_may_not_close(bus):
    waiting("s16")
    with pytest.raises(services.Forbidden):
        services.close("s16", by=Principal("service", "crm"))
    assert ChatSession.objects.get(name="s16").status == Status.WAITING_AGENT


def test_a_supervisor_returns_a_session_to_the_queue_with_the_events_of_a_leave(bus):
    handled("s17")

    services.requeue("s17", by=SUE)

    assert ChatSession.objects.get(name="s17").status == Status.WAITING_AGENT
    left, change = published(bus, "sse:agent:alice")[-2:]
    session = ChatSession.objects.get(name="s17")
    assert (left["type"], left["payload"]["data"], left["source"]) == (
        "agent_left",
        {"agent": "alice", "reason": session.reason, "escalated_at": session.escalated_at.isoformat()},
        "agent_workbench",
    )
    assert change["payload"]["status"] == "waiting_agent"
    with pytest.raises(services.Forbidden):
        services.requeue("s17", by=ALICE)


def test_the_recorded_last_event_id_never_moves_back(bus):
    waiting("s18")
    session = ChatSession.objects.get(name="s18")

    assert not services.record_last_event("s18", "1-0")
    assert services.record_last_event("s18", "99999999999999-12")
    assert not services.record_last_event("s18", "99999999999999-9")

    assert ChatSession.objects.get(name="s18").last_event_id == "99999999999999-12" != session.last_event_id


def test_a_close_keeps_its_resolution_note_and_a_reopening_clears_it(bus):
    handled("s30")

    services.close("s30", by=ALICE, note="Refund sent; customer happy.")

    assert ChatSession.objects.get(name="s30").resolution_note == "Refund sent; customer happy."
    services.escalate("s30", by=Principal("service", "ai_chatbot"), reason="back again")
    assert ChatSession.objects.get(name="s30").resolution_note == ""


@pytest.mark.parametrize("note", [12, "x" * 2001])
def test_a_bad_resolution_note_is_refused_and_the_session_stays_open(bus, note):
    handled("s31")
    with pytest.raises(services.InvalidInput):
        services.close("s31", by=ALICE, note=note)
    assert ChatSession.objects.get(name="s31").status == Status.AGENT_HANDLING
