"""The transactional outbox: a command's events are written with its change and published after
the commit, in order, each once, also when Redis was away in between (realtime/outbox.py)."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from dashboard import services
from realtime import outbox
from realtime.auth import Principal
from realtime.bus import get_layer, publish_many_on_commit, publish_on_commit
from realtime.channels import BROADCAST
from realtime.envelope import draft, parse_event_id
from realtime.health import health
from realtime.models import OutboxEvent
from tests.support.sessions import history, published, unique

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")


def ids_in_order(ids: list[str]) -> bool:
    keys = [parse_event_id(i) for i in ids]
    return keys == sorted(keys) and len(set(keys)) == len(keys)


def test_the_events_are_rows_of_the_transaction_and_go_out_after_the_commit(bus):
    channel = "sse:session:" + unique("tx")
    with transaction.atomic():
        pending = publish_many_on_commit(
            [(channel, "status_change", {"n": 1}), (BROADCAST, "status_change", {"n": 1})], source="ai_chatbot"
        )
        assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 2
        assert published(bus, channel) == []
        assert [p.id for p in pending] == [None, None]

    assert [e["payload"] for e in published(bus, channel)] == [{"n": 1}]
    assert all(p.id for p in pending) and ids_in_order([p.id for p in pending])
    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [r.event_id for r in rows] == [p.id for p in pending]
    assert all(r.published_at for r in rows)


def test_a_rolled_back_transaction_leaves_no_row_and_publishes_nothing(bus):
    channel = "sse:session:" + unique("rollback")
    with pytest.raises(RuntimeError), transaction.atomic():
        publish_on_commit(channel, "status_change", {"n": 1}, source="ai_chatbot")
        raise RuntimeError("the command failed after queueing its event")

    assert not OutboxEvent.objects.exists()
    assert published(bus, channel) == []


def test_an_invalid_event_is_refused_before_anything_is_written(bus):
    with pytest.raises(ValueError), transaction.atomic():
        publish_on_commit("sse:session:bad*name", "status_change", {}, source="ai_chatbot")
    with pytest.raises(ValueError), transaction.atomic():
        publish_on_commit("sse:session:ok", "agent_joined", {}, source="ai_chatbot")  # not the bot's to say
    assert not OutboxEvent.objects.exists()


def test_a_batch_handed_in_twice_goes_out_once_with_the_same_ids(bus):
    # What happens when a process dies between publishing and marking, or two relays race.
    items = [draft("sse:session:twice", "status_change", {"n": n}, "ai_chatbot") for n in range(3)]
    first = bus.publish_batch_sync(items, "batch-twice")
    again = bus.publish_batch_sync(items, "batch-twice")

    assert first == again and ids_in_order(first)
    assert [e["id"] for e in published(bus, "sse:session:twice")] == first


def test_a_batch_handed_in_twice_goes_out_once_on_redis_too(redis_bus):
    channel = "sse:session:" + unique("twice")
    items = [draft(channel, "status_change", {"n": n}, "ai_chatbot") for n in range(3)]
    layer = get_layer()
    key = unique("batch")
    first = layer.publish_batch_sync(items, key)

    assert layer.publish_batch_sync(items, key) == first
    assert [e["id"] for e in history(redis_bus, channel)] == first
    assert redis_bus.ttl(f"sse:outbox:{key}") > 0  # remembered for a while, not for ever


def test_what_waited_for_redis_goes_out_in_commit_order_once_redis_is_back(stoppable_redis):
    name = unique("outage")
    services.escalate(name, by=BOT)
    stoppable_redis.stop()

    # Commands while Redis is down: committed, their events wait in the outbox.
    closed = services.close(name, by=BOT)
    reopened = services.escalate(name, by=BOT, reason="back again")
    assert closed.event_ids == [] and reopened.event_ids == []
    waiting = list(OutboxEvent.objects.filter(published_at__isnull=True).order_by("pk"))
    assert len(waiting) == 6  # close: 1 event, reopen: 2 events; each on the session channel and broadcast
    assert health.degraded
    assert outbox.flush() == {}  # still down: nothing published, nothing lost

    stoppable_redis.start()  # empty: nothing was kept
    health.__init__()  # the retry pause is over (the relay would wait half a second)
    published_batches = outbox.flush()

    assert len(published_batches) == 2
    rows = list(OutboxEvent.objects.filter(pk__in=[r.pk for r in waiting]).order_by("pk"))
    assert all(r.published_at and r.event_id for r in rows)
    assert ids_in_order([r.event_id for r in rows])  # commit order
    on_session = [(e["type"], e["payload"]["status"]) for e in history(stoppable_redis.client(), f"sse:session:{name}")]
    assert on_session == [
        ("status_change", "closed"),
        ("transfer_request", "waiting_agent"),
        ("status_change", "waiting_agent"),
    ]
    assert outbox.flush() == {}  # and only once


def test_a_flush_stops_at_the_first_batch_redis_refuses_so_no_later_one_overtakes_it(bus, monkeypatch):
    first = unique("first")
    second = unique("second")
    with transaction.atomic():
        monkeypatch.setattr(bus, "publish_batch_sync", lambda items, key: (_ for _ in ()).throw(ConnectionError()))
        publish_on_commit(f"sse:session:{first}", "status_change", {"n": 1}, source="ai_chatbot")
    with transaction.atomic():
        publish_on_commit(f"sse:session:{second}", "status_change", {"n": 2}, source="ai_chatbot")

    assert OutboxEvent.objects.filter(published_at__isnull=True).count() == 2
    monkeypatch.undo()
    health.__init__()
    outbox.flush()

    rows = list(OutboxEvent.objects.order_by("pk"))
    assert [r.channel for r in rows] == [f"sse:session:{first}", f"sse:session:{second}"]
    assert ids_in_order([r.event_id for r in rows])


def test_pruning_deletes_published_rows_past_the_retention_and_never_waiting_ones(bus, settings):
    settings.SSE_HISTORY_TTL_SECONDS = 2 * 86_400
    with transaction.atomic():
        publish_many_on_commit([("sse:session:old", "status_change", {"n": n}) for n in range(3)], source="ai_chatbot")
    old = timezone.now() - timedelta(days=3)
    OutboxEvent.objects.update(published_at=old)
    with transaction.atomic():
        publish_on_commit("sse:session:new", "status_change", {"n": 9}, source="ai_chatbot")
    # Old, but never published (Redis has been away since): it must stay.
    OutboxEvent.objects.create(batch="waiting", channel="sse:session:old", type="status_change", body="{}")
    OutboxEvent.objects.filter(batch="waiting").update(created_at=old)

    assert outbox.prune() == 3
    left = sorted((row.channel, row.published_at is None) for row in OutboxEvent.objects.all())
    assert left == [("sse:session:new", False), ("sse:session:old", True)]
    assert outbox.prune() == 0


def test_the_retention_follows_the_history_and_is_at_least_a_day(settings):
    settings.SSE_HISTORY_TTL_SECONDS = 3600
    assert outbox.retention_seconds() == 86_400
    settings.SSE_HISTORY_TTL_SECONDS = 0  # history never expires
    assert outbox.retention_seconds() == outbox.PRUNE_DEFAULT_SECONDS
    settings.SSE_HISTORY_TTL_SECONDS = 30 * 86_400
    assert outbox.retention_seconds() == 30 * 86_400


def test_the_relay_step_publishes_rows_a_committing_thread_left(bus):
    channel = "sse:session:" + unique("left")
    OutboxEvent.objects.create(
        batch="left-by-a-dead-process",
        channel=channel,
        type="status_change",
        body=draft(channel, "status_change", {"n": 1}, "ai_chatbot").body,
    )
    done = outbox.relay().step()

    assert list(done) == ["left-by-a-dead-process"]
    assert [e["payload"] for e in published(bus, channel)] == [{"n": 1}]
    assert outbox.pending_count() == 0


def test_a_flush_has_its_database_connection_before_it_takes_the_lock(bus, monkeypatch):
    # The committing threads wait for the lock holding their connections; a flush that took
    # the lock and then waited for a connection from the pool they had emptied (PostgreSQL)
    # would hold every one of them until the pool's timeout.
    import threading

    from django.db import connection

    order: list[str] = []
    lock = threading.Lock()

    class Watched:
        def __enter__(self) -> None:
            order.append("lock")
            lock.acquire()

        def __exit__(self, *exc: object) -> None:
            lock.release()

    real = connection.ensure_connection

    def ensure() -> None:
        order.append("connection")
        real()

    monkeypatch.setattr(outbox, "_flush_lock", Watched())
    monkeypatch.setattr(connection, "ensure_connection", ensure)
    channel = "sse:session:" + unique("pool")
    body = draft(channel, "status_change", {}, "ai_chatbot").body
    OutboxEvent.objects.create(batch="waiting", channel=channel, type="status_change", body=body)
    order.clear()

    assert list(outbox.flush()) == ["waiting"]
    assert order[:2] == ["connection", "lock"]


def test_a_flush_that_finds_a_batch_published_but_never_marked_sends_nothing_twice(redis_bus):
    # A process that died between publishing a batch and marking it: the next flush publishes
    # it again, and Redis, which remembers the batch, gives back the same ids.
    channel = "sse:session:" + unique("unmarked")
    body = draft(channel, "status_change", {"n": 1}, "ai_chatbot").body
    OutboxEvent.objects.create(batch="published-once", channel=channel, type="status_change", body=body)
    OutboxEvent.objects.create(batch="the-next-one", channel=channel, type="status_change", body=body)
    first = get_layer().publish_batch_sync([draft(channel, "status_change", {"n": 1}, "ai_chatbot")], "published-once")

    done = outbox.flush()

    assert done["published-once"] == first
    assert [e["id"] for e in history(redis_bus, channel)] == first + done["the-next-one"]
    assert outbox.pending_count() == 0
    assert set(OutboxEvent.objects.values_list("event_id", flat=True)) == {*first, *done["the-next-one"]}


@pytest.fixture
def running_relay(monkeypatch):
    """The process's relay thread, as a server process runs it (realtime.background)."""
    import threading

    steps: list[str] = []

    def step() -> dict[str, list[str]]:
        steps.append(threading.current_thread().name)
        return outbox.flush()

    relay = outbox.Relay(step=step, interval=0.2)
    monkeypatch.setattr(outbox, "_relay", relay)
    relay.start()
    yield steps
    relay.stop()


def test_with_a_relay_running_a_commit_hands_its_batch_to_it_and_answers_with_the_ids(bus, running_relay):
    name = unique("handed")
    outcome = services.escalate(name, by=BOT)

    assert outcome.events and all(event.id for event in outcome.events)
    for event in outcome.events:
        assert event.id in [e["id"] for e in published(bus, event.draft.channel)]
    assert "sse-outbox-relay" in running_relay  # the relay's thread flushed, not the committing one
    assert outbox.pending_count() == 0


def test_a_batch_another_process_published_first_is_not_waited_for(bus, running_relay, monkeypatch):
    # Another process's flush took it (its rows are marked) before this relay's step began:
    # the committing thread stops waiting after the relay's next step and reads the ids the
    # rows hold.
    import time

    def elsewhere() -> dict[str, list[str]]:
        outbox.flush()  # publishes and marks, as the other process would ...
        return {}  # ... and this relay's own step finds nothing left

    monkeypatch.setattr(outbox.relay(), "step", elsewhere)
    began = time.monotonic()
    outcome = services.escalate(unique("elsewhere"), by=BOT)

    assert outcome.events and all(event.id for event in outcome.events)
    assert time.monotonic() - began < outbox.HANDOFF_SECONDS / 2


def test_while_redis_is_down_a_commit_does_not_wait_for_the_relay(bus, monkeypatch):
    import time

    relay = outbox.Relay(interval=5.0)  # its next step would be 5 s away
    monkeypatch.setattr(outbox, "_relay", relay)
    relay.start()
    health.mark_down("a test: Redis is away")
    try:
        began = time.monotonic()
        outcome = services.escalate(unique("down"), by=BOT)
        took = time.monotonic() - began
        waiting = outbox.pending_count()
    finally:
        health.__init__()
        relay.stop()
    assert outcome.events and not any(event.id for event in outcome.events)
    assert waiting == len(outcome.events)  # in the outbox, for when Redis is back
    assert took < 2.5, took


def test_a_batch_the_flush_limit_cuts_in_two_goes_out_whole(redis_bus):
    # A backlog larger than one flush reads: the last batch it reads may be cut short. Were the
    # part published, Redis would remember the batch with only those ids and the rest would
    # never go out (seen in the contact-centre benchmark under overload).
    channel = "sse:session:" + unique("cut")
    for batch, count in (("first", 3), ("second", 4)):
        for n in range(count):
            body = draft(channel, "status_change", {"batch": batch, "n": n}, "ai_chatbot").body
            OutboxEvent.objects.create(batch=batch, channel=channel, type="status_change", body=body)

    done = outbox.flush(limit=5)  # the first batch and two rows of the second

    assert [len(done[key]) for key in ("first", "second")] == [3, 4]
    assert [(e["payload"]["batch"], e["payload"]["n"]) for e in history(redis_bus, channel)] == [
        ("first", 0),
        ("first", 1),
        ("first", 2),
        ("second", 0),
        ("second", 1),
        ("second", 2),
        ("second", 3),
    ]
    assert outbox.pending_count() == 0
