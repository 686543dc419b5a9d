"""The record of a conversation: every event of a session is in the database, whatever happens to
the bus (dashboard/record.py)."""

import asyncio

import pytest

from dashboard import record, services
from dashboard.models import ChatSession, SessionEvent, Status
from realtime import outbox
from realtime.auth import Principal
from realtime.bus import enqueue_sse_message_sync, get_layer, record_cursor
from realtime.envelope import Draft, InvalidEvent
from realtime.health import health
from realtime.models import OutboxEvent
from tests.support.sessions import browser, fresh_bus, make_user, resume_from, unique

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")
ALICE = Principal("agent", "alice")


@pytest.fixture(autouse=True)
def alice(db):
    return make_user("alice")


def bot_says(name: str, text: str, sender: str = "customer", **extra) -> str | None:
    payload = {"session_name": name, "data": {"text": text, "sender": sender}, **extra}
    return enqueue_sse_message_sync(f"sse:session:{name}", "new_message", payload, source="ai_chatbot")


def conversation(name: str) -> list[tuple[str, str]]:
    """(type, text or status) of the session's recorded events, oldest first."""
    out = []
    for event in record.transcript(name, waiting=True):
        payload = event["payload"]
        out.append((event["type"], payload.get("data", {}).get("text") or payload.get("status") or ""))
    return out


def test_a_conversation_is_in_the_database_after_the_bus_has_forgotten_it(bus):
    name = unique("talk")
    bot_says(name, "hello, I need help")
    bot_says(name, "Let me find a person for you.", sender="bot")
    services.escalate(name, by=BOT, reason="asks for a person")
    services.accept(name, by=ALICE)
    services.send_message(name, "Hi, I am Alice.", by=ALICE)

    fresh_bus()  # a restart of the in-memory layer: its history is gone
    client = browser(ChatSession.objects.get(name=name).agent)
    events = client.get(f"/api/sessions/{name}").json()["events"]

    assert [(e["type"], e["source"]) for e in events] == [
        ("new_message", "ai_chatbot"),
        ("new_message", "ai_chatbot"),
        ("transfer_request", "ai_chatbot"),
        ("status_change", "ai_chatbot"),
        ("agent_joined", "agent_workbench"),
        ("status_change", "agent_workbench"),
        ("new_message", "agent_workbench"),
    ]
    assert all(e["id"] for e in events)
    texts = [e["payload"]["data"]["text"] for e in events if e["type"] == "new_message"]
    assert texts == ["hello, I need help", "Let me find a person for you.", "Hi, I am Alice."]


def test_every_stored_message_carries_a_message_id_in_its_event(bus):
    name = unique("ids")
    bot_says(name, "one")
    services.escalate(name, by=BOT)
    services.accept(name, by=ALICE)
    sent = services.send_message(name, "two", by=ALICE)

    messages = [e for e in record.transcript(name) if e["type"] == "new_message"]
    ids = [e["payload"]["message_id"] for e in messages]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(len(i) == 32 for i in ids)
    assert sent.message_id == ids[1]
    assert sorted(SessionEvent.objects.exclude(message_id=None).values_list("message_id", flat=True)) == sorted(ids)


def test_a_message_id_chosen_by_the_service_is_kept_and_checked(bus):
    name = unique("chosen")
    bot_says(name, "mine", message_id="crm-4711")
    assert [e["payload"]["message_id"] for e in record.transcript(name)] == ["crm-4711"]
    with pytest.raises(InvalidEvent):
        bot_says(name, "bad", message_id="no spaces allowed")
    with pytest.raises(InvalidEvent):
        bot_says(name, "bad", message_id=42)


def test_the_same_event_handed_in_twice_is_stored_once_by_id_and_by_message_id(bus):
    name = unique("once")
    envelope = {
        "id": "1732410000123-0",
        "channel": f"sse:session:{name}",
        "type": "new_message",
        "payload": {"session_name": name, "message_id": "m-1", "data": {"text": "hi", "sender": "customer"}},
        "timestamp": 1732410000.1,
        "source": "ai_chatbot",
    }
    assert record.store_bus_events([envelope]) == 1
    assert record.store_bus_events([envelope]) == 0  # the recorder read it again after a crash
    # The same message once more, now with another id (published again by a service's retry).
    assert record.store_bus_events([{**envelope, "id": "1732410000999-0"}]) == 0
    assert SessionEvent.objects.filter(session__name=name).count() == 1


def test_events_of_other_channels_and_bad_names_are_not_stored(bus):
    base = {"type": "status_change", "payload": {}, "timestamp": 1.0, "source": "ai_chatbot"}
    stored = record.store_bus_events(
        [
            {**base, "channel": "sse:broadcast"},
            {**base, "channel": "sse:agent:alice"},
            {**base, "channel": "sse:session:bad*name"},
            {**base, "channel": None},
        ]
    )
    assert stored == 0 and not SessionEvent.objects.exists()


def test_the_first_message_of_a_chat_creates_the_session_with_the_bot(bus):
    name = unique("first")
    bot_says(name, "hello")
    session = ChatSession.objects.get(name=name)
    assert session.status == Status.AI_HANDLING and session.agent is None


def test_a_snapshot_leaves_out_what_its_stream_will_bring_and_keeps_what_it_cannot(stoppable_redis):
    name = unique("snap")
    services.escalate(name, by=BOT)
    cursor = record.transcript(name)[-1]["id"]
    stoppable_redis.stop()
    services.accept(name, by=ALICE)  # waits in the outbox
    message = services.send_message(name, "while Redis is down", by=ALICE)  # waits too

    snapshot = record.transcript(name, upto=cursor)
    # The agent_joined and status_change reach the stream later, with ids: not here. The chat
    # message is here (without an id): a page tells its later copy by message_id.
    assert [(e["type"], e["id"] is None) for e in snapshot] == [
        ("transfer_request", False),
        ("status_change", False),
        ("new_message", True),
    ]
    assert snapshot[-1]["payload"]["message_id"] == message.message_id
    # The admin timeline shows everything, marking what waits.
    timeline = record.transcript(name, waiting=True)
    assert [e.get("waiting", False) for e in timeline] == [False, False, True, True, True]


def test_a_snapshot_taken_between_a_relays_publish_and_its_marks_gets_those_events_from_its_stream(stoppable_redis):
    # Redis is back: a relay has published what waited (the agent's accept) but not yet written
    # its marks when a page reloads its snapshot. The record still shows the events as waiting,
    # so the snapshot leaves them out: the stream resumed from its cursor must bring them.
    name = unique("marks")
    services.escalate(name, by=BOT)
    stoppable_redis.stop()
    services.accept(name, by=ALICE)
    stoppable_redis.restart()
    health.__init__()
    rows = list(OutboxEvent.objects.filter(published_at__isnull=True).order_by("pk"))
    ids = get_layer().publish_batch_sync([Draft(r.channel, r.type, r.body) for r in rows], rows[0].batch)
    joined = [i for i, r in zip(ids, rows, strict=True) if r.channel == f"sse:session:{name}"]

    cursor = record_cursor()
    assert cursor is not None
    assert [e["type"] for e in record.transcript(name, upto=cursor)] == ["transfer_request", "status_change"]
    assert [e.id for e in resume_from(stoppable_redis.url, name, cursor).events] == joined

    assert outbox.flush() == {rows[0].batch: ids}  # the marks: the same ids again, once
    cursor = record_cursor()
    assert [e["id"] for e in record.transcript(name, upto=cursor)][-2:] == joined
    assert resume_from(stoppable_redis.url, name, cursor).events == []


def test_once_published_the_record_holds_each_commands_bus_id(bus):
    name = unique("ids")
    outcome = services.escalate(name, by=BOT)
    own = [e.id for e in outcome.events if e.draft.channel == f"sse:session:{name}"]

    assert (
        list(SessionEvent.objects.filter(session__name=name).order_by("pk").values_list("event_id", flat=True)) == own
    )
    OutboxEvent.objects.all().delete()  # pruned: the record keeps the ids
    assert [e["id"] for e in record.transcript(name)] == own


def test_a_snapshot_on_the_memory_layer_holds_what_was_published_from_an_event_loop_just_before(bus):
    """The in-memory recorder stores such events in a thread; the snapshot does not wait for it."""

    from realtime.bus import enqueue_sse_message

    name = unique("loop")
    services.escalate(name, by=BOT)

    async def publish():
        payload = {"session_name": name, "data": {"text": "from the bot's loop", "sender": "bot"}}
        return await enqueue_sse_message(f"sse:session:{name}", "new_message", payload, source="ai_chatbot")

    event_id = asyncio.run(publish())
    client = browser(ChatSession.objects.get(name=name).agent or make_user("reader"))
    body = client.get(f"/api/sessions/{name}").json()
    assert event_id in [e["id"] for e in body["events"]]
    assert body["last_event_id"] == event_id
