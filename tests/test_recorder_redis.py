"""The recorder on Redis: what services publish on session channels is stored once, also after
the recorder was down for a while, and raw PUBLISHes while it runs (realtime/recorder.py)."""

import asyncio
import json
import threading
import time

import pytest

from dashboard import record
from dashboard.models import SessionEvent
from realtime import recorder
from realtime.bus import enqueue_sse_message_sync, get_layer
from realtime.health import health
from realtime.history import Resume
from realtime.redis_conn import RedisTarget
from tests.support.procs import PauseProxy, RedisServer
from tests.support.sessions import resume_from, unique

pytestmark = pytest.mark.django_db(transaction=True)


def say(name: str, text: str) -> str | None:
    payload = {"session_name": name, "data": {"text": text, "sender": "customer"}}
    return enqueue_sse_message_sync(f"sse:session:{name}", "new_message", payload, source="ai_chatbot")


def texts(name: str) -> list[str]:
    rows = SessionEvent.objects.filter(session__name=name).order_by("timestamp", "pk")
    return [row.payload["data"]["text"] for row in rows]


def client_of(server):
    return RedisTarget(url=server.url).sync_client()


def test_what_was_published_while_no_recorder_ran_is_stored_once_when_one_starts(stoppable_redis):
    name = unique("late")
    ids = [say(name, f"line {n}") for n in range(3)]
    assert all(ids)
    assert texts(name) == []  # nobody stored them yet

    first = recorder.StreamRecorder(client_of(stoppable_redis), consumer="a")
    assert first.step(block_ms=10) == 3
    assert texts(name) == ["line 0", "line 1", "line 2"]
    assert sorted(SessionEvent.objects.values_list("event_id", flat=True)) == sorted(ids)
    # Acknowledged: neither this recorder nor another one stores them again.
    assert first.step(block_ms=10) == 0
    assert recorder.StreamRecorder(client_of(stoppable_redis), consumer="b").step(block_ms=10) == 0
    assert texts(name) == ["line 0", "line 1", "line 2"]


def test_a_batch_the_database_refused_is_read_again_and_stored_once(stoppable_redis, monkeypatch):
    name = unique("retry")
    say(name, "keep me")
    stream = recorder.StreamRecorder(client_of(stoppable_redis), consumer="a")

    def refuse(envelopes):
        raise RuntimeError("the database is away")

    monkeypatch.setattr(recorder, "deliver", refuse)
    with pytest.raises(RuntimeError):
        stream.step(block_ms=10)
    monkeypatch.undo()

    assert stream.step(block_ms=10) == 1  # its own unacknowledged entries first
    assert texts(name) == ["keep me"]


def test_entries_a_dead_recorder_had_read_are_claimed_by_another(stoppable_redis, monkeypatch):
    name = unique("claim")
    say(name, "orphan")
    dead = recorder.StreamRecorder(client_of(stoppable_redis), consumer="dead")
    monkeypatch.setattr(recorder, "deliver", lambda envelopes: (_ for _ in ()).throw(RuntimeError("killed")))
    with pytest.raises(RuntimeError):
        dead.step(block_ms=10)
    monkeypatch.undo()

    monkeypatch.setattr(recorder, "CLAIM_AFTER_MS", 0)
    assert recorder.StreamRecorder(client_of(stoppable_redis), consumer="alive").step(block_ms=10) == 1
    assert texts(name) == ["orphan"]


def test_a_redis_restarted_empty_loses_the_group_and_the_recorder_makes_it_again(stoppable_redis):
    stream = recorder.StreamRecorder(client_of(stoppable_redis), consumer="a")
    assert stream.step(block_ms=10) == 0
    stoppable_redis.stop()
    stoppable_redis.start()

    assert stream.step(block_ms=10) == 0  # NOGROUP: noticed, not fatal
    name = unique("after")
    say(name, "after the restart")
    assert stream.step(block_ms=10) == 1
    assert texts(name) == ["after the restart"]


def raw(name: str, n: int) -> str:
    envelope = {
        "type": "new_message",
        "payload": {"session_name": name, "n": n, "data": {"text": f"raw {n}", "sender": "customer"}},
        "timestamp": time.time(),
        "source": "ai_chatbot",
    }
    return json.dumps(envelope)


def test_a_raw_publish_is_stored_once_with_a_message_id_from_its_bytes(stoppable_redis):
    name = unique("raw")
    client = client_of(stoppable_redis)
    holder = recorder.RawRecorder(client, owner="holder")
    assert holder.step(timeout=0.05) == 0  # takes the lease and subscribes
    message = raw(name, 1)
    client.publish(f"sse:session:{name}", message)
    say(name, "through the publish path")  # has an id: the record stream's, not the raw recorder's

    read, deadline = 0, time.monotonic() + 5
    while read < 2 and time.monotonic() < deadline:
        read += holder.step(timeout=0.5)  # both are read; the one with an id is the record stream's
    assert read == 2
    rows = list(SessionEvent.objects.filter(session__name=name))
    assert [r.payload["n"] for r in rows] == [1]
    from realtime.envelope import raw_message_id

    assert rows[0].message_id == raw_message_id(message.encode()) and rows[0].event_id == ""
    holder.stop_listening()


def test_only_the_lease_holder_listens_for_raw_publishes(stoppable_redis):
    client = client_of(stoppable_redis)
    holder = recorder.RawRecorder(client, owner="holder")
    other = recorder.RawRecorder(client, owner="other")
    holder.step(timeout=0.05)
    other.step(timeout=0.05)
    name = unique("lease")
    client.publish(f"sse:session:{name}", raw(name, 1))

    assert other.step(timeout=0.3) == 0
    assert holder.step(timeout=1.0) == 1
    assert texts(name) == ["raw 1"]
    holder.stop_listening()


def test_a_large_message_arriving_slowly_costs_the_messages_behind_it_nothing(stoppable_redis):
    """redis-py's get_message(timeout) cuts a message still arriving when the timeout runs out,
    and the connection with it: what follows in the same burst would be lost."""
    proxy = PauseProxy(stoppable_redis.port)
    try:
        listener = RedisTarget(url=proxy.url).sync_client(pubsub=True)
        holder = recorder.RawRecorder(client_of(stoppable_redis), owner="holder", listener=listener)
        holder.step(timeout=0.05)
        name = unique("slow")
        channel = f"sse:session:{name}"
        proxy.trickle(16_384, 0.05)  # ~320 KB/s: a 200 KB message takes ~0.6 s
        pipe = client_of(stoppable_redis).pipeline(transaction=True)
        pipe.publish(channel, raw(name, 1))
        pipe.publish(channel, "[" * 100_000 + "]" * 100_000)  # dropped (over 64 KiB), and slow
        pipe.publish(channel, raw(name, 2))
        pipe.execute()

        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(texts(name)) < 2:
            holder.step(timeout=0.2)
        assert texts(name) == ["raw 1", "raw 2"]
        holder.stop_listening()
    finally:
        proxy.close()


def test_the_memory_recorder_keeps_a_batch_the_database_refused_for_the_next_step(monkeypatch):
    memory = recorder.MemoryRecorder()
    name = unique("mem")
    memory.enqueue(
        json.dumps(
            {
                "channel": f"sse:session:{name}",
                "type": "new_message",
                "payload": {"session_name": name, "message_id": "m-1", "data": {"text": "kept", "sender": "customer"}},
                "timestamp": 1.0,
                "source": "ai_chatbot",
            }
        )
    )
    calls = []

    def refuse_once(envelopes):
        calls.append(len(envelopes))
        if len(calls) == 1:
            raise RuntimeError("the database is away")
        real(envelopes)

    real = recorder.deliver
    monkeypatch.setattr(recorder, "deliver", refuse_once)
    with pytest.raises(RuntimeError):
        memory.step(timeout=0)
    assert memory.step(timeout=0) == 1
    assert calls == [1, 1] and texts(name) == ["kept"]


def test_the_memory_recorder_gives_up_on_a_batch_refused_again_and_again(monkeypatch):
    memory = recorder.MemoryRecorder()
    memory.enqueue(
        json.dumps(
            {"channel": "sse:session:x", "type": "new_message", "payload": {}, "timestamp": 1, "source": "ai_chatbot"}
        )
    )
    monkeypatch.setattr(recorder, "deliver", lambda envelopes: (_ for _ in ()).throw(RuntimeError("no")))
    before = recorder.stats["record_dropped"]
    for _ in range(recorder.MemoryRecorder.MAX_ATTEMPTS - 1):
        with pytest.raises(RuntimeError):
            memory.step(timeout=0)
    assert memory.step(timeout=0) == 1  # dropped and counted
    assert recorder.stats["record_dropped"] == before + 1
    assert memory.step(timeout=0) == 0


def test_a_process_with_an_event_loop_and_no_recorder_thread_starts_one(settings, monkeypatch):
    """A chatbot process (no server threads) that publishes while Redis is away still stores
    its session events."""
    settings.SSE_BACKGROUND = True
    memory = recorder.MemoryRecorder()
    started = threading.Event()
    monkeypatch.setattr(memory, "start", started.set)

    async def publish_from_a_loop():
        memory.submit('{"channel":"sse:session:x"}')

    asyncio.run(publish_from_a_loop())
    assert started.is_set() and len(memory) == 1


# --- where a snapshot of the record may resume from ------------------------------------------


def test_a_snapshot_cursor_stops_before_what_the_record_does_not_hold_yet(stoppable_redis):
    from realtime.bus import bus_cursor, record_cursor

    name = unique("cursor")
    first = say(name, "not stored yet")
    say(name, "nor this")
    # No recorder has read anything: resume from before the first unrecorded event.
    assert record_cursor() == recorder.before_id(first)

    stream = recorder.StreamRecorder(client_of(stoppable_redis), consumer="a")
    assert stream.step(block_ms=10) == 2
    assert record_cursor() == bus_cursor()  # everything recorded: the bus's own cursor


def test_an_entry_read_but_not_stored_holds_the_cursor_back(stoppable_redis, monkeypatch):
    from realtime.bus import record_cursor

    name = unique("pending")
    stored = say(name, "stored")
    recorder.StreamRecorder(client_of(stoppable_redis), consumer="a").step(block_ms=10)
    waiting = say(name, "read, then the database failed")
    monkeypatch.setattr(recorder, "deliver", lambda envelopes: (_ for _ in ()).throw(RuntimeError("db down")))
    with pytest.raises(RuntimeError):
        recorder.StreamRecorder(client_of(stoppable_redis), consumer="a").step(block_ms=10)

    cursor = record_cursor()
    assert cursor == recorder.before_id(waiting) and cursor >= stored


def test_a_recorder_far_behind_is_not_waited_for(stoppable_redis, monkeypatch):
    from realtime.bus import bus_cursor, record_cursor

    say(unique("behind"), "old")
    import realtime.bus

    monkeypatch.setattr(realtime.bus, "unrecorded_lag_ms", lambda cursor, start: 60_000)
    assert record_cursor() == bus_cursor()


def snapshot_then_resume(server: RedisServer, name: str) -> tuple[list[str], Resume]:
    """What a page gets: the texts of the session's snapshot (the record up to record_cursor),
    and the resume of its stream from that cursor (the bus's history)."""
    from realtime.bus import record_cursor

    cursor = record_cursor()
    assert cursor is not None
    shown = [event["payload"]["data"]["text"] for event in record.transcript(name, upto=cursor)]

    return shown, resume_from(server.url, name, cursor)


def replayed_texts(resume: Resume) -> list[str]:
    return [json.loads(event.envelope)["payload"]["data"]["text"] for event in resume.events]


def test_after_an_empty_restart_the_first_event_not_yet_recorded_comes_with_the_stream(stoppable_redis):
    # Redis back empty, a bot's message is its very first event (the origin) and no recorder
    # has made its group again: the snapshot cannot hold the message, so its stream must bring
    # it, exactly (the cursor is the id right before the origin), not with a `reset`.
    name = unique("first")
    say(name, "before the restart")
    recorder.StreamRecorder(client_of(stoppable_redis), consumer="a").step(block_ms=10)
    stoppable_redis.restart()
    health.__init__()

    first = say(name, "the first after the restart")
    assert stoppable_redis.client().get("sse:origin").decode() == first
    shown, resume = snapshot_then_resume(stoppable_redis, name)

    assert shown == ["before the restart"]
    assert not resume.reset, resume.reason
    assert replayed_texts(resume) == ["the first after the restart"]


def test_a_group_made_again_and_handed_nothing_yet_holds_the_cursor_before_the_first_entry(stoppable_redis):
    # The recorder made its group again on a Redis restarted empty (id 0, so it reads every
    # entry) but has not read yet: the group says "0-0", which is no recorder far behind.
    name = unique("regroup")
    say(name, "before the restart")
    stream = recorder.StreamRecorder(client_of(stoppable_redis), consumer="a")
    stream.step(block_ms=10)
    stoppable_redis.restart()
    health.__init__()
    get_layer().cursor_sync()  # a process's link came back first: the origin is no event
    waiting = [say(name, f"waiting {n}") for n in range(2)]
    assert stream.step(block_ms=10) == 0  # NOGROUP: the group is gone
    stream._ensure_group()  # made again; the next step reads

    shown, resume = snapshot_then_resume(stoppable_redis, name)
    assert shown == ["before the restart"]
    assert not resume.reset, resume.reason
    assert [event.id for event in resume.events] == waiting

    assert stream.step(block_ms=10) == 2
    shown, resume = snapshot_then_resume(stoppable_redis, name)
    assert shown == ["before the restart", "waiting 0", "waiting 1"]
    assert not resume.reset and resume.events == []


def test_a_recorder_quiet_for_a_while_is_not_taken_for_one_far_behind(stoppable_redis):
    # The last entry handed out is a minute old (nothing was said since); a new one waits to be
    # read. The snapshot must stop before it, not give up on the record as if it were down.
    client = client_of(stoppable_redis)
    now_ms = int(time.time() * 1000)
    client.xadd("sse:record", {"c": "sse:broadcast", "e": "{}"}, id=f"{now_ms - 60_000}-0")
    stream = recorder.StreamRecorder(client, consumer="a")
    assert stream.step(block_ms=10) == 1
    name = unique("quiet")
    new = say(name, "after a quiet minute")

    assert recorder.unrecorded_from(client) == recorder.before_id(new)
    shown, resume = snapshot_then_resume(stoppable_redis, name)
    assert shown == []
    assert replayed_texts(resume) == ["after a quiet minute"]


def test_before_id_is_the_greatest_id_below():
    assert recorder.before_id("1700000000000-5") == "1700000000000-4"
    assert recorder.before_id("1700000000000-0") == f"1699999999999-{2**64 - 1}"


class _Stop(BaseException):
    """Ends a recorder's loop in a test (the loop itself never ends on an Exception)."""


def test_a_recorder_gives_its_database_connection_back_after_each_step(monkeypatch):
    # With a pool (PostgreSQL, DATABASE_POOL_SIZE) a thread that kept its connection between
    # steps would take one of the few a process has, for ever.
    calls: list[str] = []
    steps = iter([5, 0])

    def step() -> int:
        calls.append("step")
        try:
            return next(steps)
        except StopIteration:
            raise _Stop from None

    monkeypatch.setattr("django.db.close_old_connections", lambda: calls.append("closed"))
    monkeypatch.setattr(recorder, "LINGER", 0)
    with pytest.raises(_Stop):
        recorder._loop("test", step)
    assert calls == ["step", "closed", "step", "closed", "step"]
