"""The supervisors' admin: list, filters, search, waiting time, the timeline and the actions."""

import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from dashboard import services
from dashboard.admin import format_duration
from dashboard.models import ChatSession, Status
from realtime.auth import Principal
from realtime.bus import enqueue_sse_message_sync
from tests.support.sessions import fresh_bus, kinds, make_user, published, record_pending

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")
ALICE = Principal("agent", "alice")
CHANGELIST = "/admin/dashboard/chatsession/"


@pytest.fixture
def bus():
    yield fresh_bus()
    fresh_bus()


@pytest.fixture
def supervisor(bus):
    client = Client()
    client.force_login(make_user("sue", staff=True))
    return client


@pytest.fixture
def sessions(bus):
    """adm_wait (waiting 3 min), adm_alice (alice handling), adm_bob (bob handling), adm_done (closed)."""
    make_user("alice")
    make_user("bob")
    for name in ("adm_wait", "adm_alice", "adm_bob", "adm_done"):
        services.escalate(name, by=BOT, reason=f"reason of {name}")
    services.accept("adm_alice", by=ALICE)
    services.accept("adm_bob", by=Principal("agent", "bob"))
    services.close("adm_done", by=BOT)
    ChatSession.objects.filter(name="adm_wait").update(escalated_at=timezone.now() - timedelta(minutes=3, seconds=5))


def listed(response):
    assert response.status_code == 200
    return set(
        re.findall(r'href="/admin/dashboard/chatsession/\d+/change/[^"]*">(adm_\w+)<', response.content.decode())
    )


def test_the_list_shows_every_session_with_its_waiting_time(supervisor, sessions):
    response = supervisor.get(CHANGELIST)

    assert listed(response) == {"adm_wait", "adm_alice", "adm_bob", "adm_done"}
    assert "3m 05s" in response.content.decode()


def test_the_list_filters_by_status_and_agent_and_searches_by_name(supervisor, sessions):
    alice_id = ChatSession.objects.get(name="adm_alice").agent_id

    assert listed(supervisor.get(CHANGELIST + "?status__exact=waiting_agent")) == {"adm_wait"}
    assert listed(supervisor.get(CHANGELIST + f"?agent__id__exact={alice_id}")) == {"adm_alice"}
    assert listed(supervisor.get(CHANGELIST + "?q=bob")) == {"adm_bob"}


def test_a_session_page_shows_its_event_timeline(supervisor, sessions, bus):
    enqueue_sse_message_sync(
        "sse:session:adm_alice",
        "new_message",
        {"session_name": "adm_alice", "data": {"text": "my parcel <b>never</b> came", "sender": "customer"}},
        source="ai_chatbot",
    )
    record_pending()  # stored already: a sync publish outside a server's loop records at once
    session = ChatSession.objects.get(name="adm_alice")

    response = supervisor.get(f"{CHANGELIST}{session.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    rows = re.findall(r'<tr class="timeline-event" data-event-id="([^"]+)">', page)
    assert rows == [e["id"] for e in published(bus, "sse:session:adm_alice")]
    assert "The bot asked for an agent: reason of adm_alice" in page
    assert "alice joined" in page and "Status: Waiting → With an agent (alice)" in page
    assert "Customer: my parcel &lt;b&gt;never&lt;/b&gt; came" in page  # escaped, never rendered as HTML
    assert 'name="_save"' not in page  # read-only: state changes only through the actions


def test_the_close_action_goes_through_the_service_and_publishes_its_events(supervisor, sessions, bus):
    ids = list(ChatSession.objects.filter(name__in=["adm_wait", "adm_alice"]).values_list("pk", flat=True))

    response = supervisor.post(CHANGELIST, {"action": "close_sessions", "_selected_action": ids}, follow=True)

    assert response.status_code == 200
    assert "2 session(s) ended" in response.content.decode()
    assert set(ChatSession.objects.filter(pk__in=ids).values_list("status", flat=True)) == {Status.CLOSED}
    closed_alice = published(bus, "sse:agent:alice")[-1]
    assert closed_alice["payload"] == {
        "session_name": "adm_alice",
        "status": "closed",
        "data": {"previous": "agent_handling", "agent": "alice"},
    }
    assert closed_alice["source"] == "agent_workbench"
    assert kinds(bus, "sse:session:adm_wait")[-1] == "status_change"


def test_the_return_to_queue_action_publishes_agent_left_and_status_change(supervisor, sessions, bus):
    session = ChatSession.objects.get(name="adm_bob")

    response = supervisor.post(CHANGELIST, {"action": "return_to_queue", "_selected_action": [session.pk]}, follow=True)

    assert "1 session(s) returned to the queue" in response.content.decode()
    session.refresh_from_db()
    assert (session.status, session.agent) == (Status.WAITING_AGENT, None)
    assert kinds(bus, "sse:agent:bob")[-2:] == ["agent_left", "status_change"]


def test_an_action_on_a_session_in_the_wrong_state_is_reported_and_publishes_nothing(supervisor, sessions, bus):
    done = ChatSession.objects.get(name="adm_done")
    before = published(bus, "sse:session:adm_done")

    response = supervisor.post(CHANGELIST, {"action": "return_to_queue", "_selected_action": [done.pk]}, follow=True)

    refusal = "Session adm_done was not returned to the queue: cannot leave: session adm_done is closed"
    assert refusal in response.content.decode()
    assert published(bus, "sse:session:adm_done") == before


def test_an_agent_who_is_not_staff_cannot_open_the_admin(sessions):
    client = Client()
    client.force_login(ChatSession.objects.get(name="adm_alice").agent)

    response = client.get(CHANGELIST)

    assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_sessions_cannot_be_added_or_deleted_in_the_admin(supervisor, sessions):
    session = ChatSession.objects.get(name="adm_wait")

    assert supervisor.get(CHANGELIST + "add/").status_code == 403
    assert supervisor.get(f"{CHANGELIST}{session.pk}/delete/").status_code == 403


def test_waiting_time_reads_like_a_clock():
    assert [format_duration(s) for s in (None, 4.9, 75.2, 3720)] == ["-", "4s", "1m 15s", "1h 02m"]


def test_the_timeline_names_who_said_something_from_the_source_not_the_payload():
    from dashboard.admin import summarise

    forged = {
        "type": "new_message",
        "source": "ai_chatbot",
        "payload": {"data": {"text": "hi", "sender": "agent", "agent": "alice"}},
    }
    real = {**forged, "source": "agent_workbench"}
    assert summarise(forged) == "Bot: hi"
    assert summarise(real) == "alice: hi"
    assert summarise({**forged, "payload": {"data": {"text": "hello", "sender": "customer"}}}) == "Customer: hello"
