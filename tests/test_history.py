"""History and the resume decision: exact resume, or a reset when events may have been lost."""

from __future__ import annotations

import json
import threading

import pytest

from realtime.envelope import InvalidEvent, draft, parse_event_id
from realtime.history import (
    ChannelHistoryState,
    IdSequence,
    MemoryHistory,
    StoredEvent,
    before_id,
    decide_resume,
)

A = "sse:session:a"
B = "sse:session:b"
KEPT = ChannelHistoryState(has_entry_at_or_before=True, trimmed=True)
UNTRIMMED = ChannelHistoryState(has_entry_at_or_before=False, trimmed=False)
TRIMMED_PAST = ChannelHistoryState(has_entry_at_or_before=False, trimmed=True)


def stored(event_id: str, channel: str = A) -> StoredEvent:
    return StoredEvent(event_id, channel, "{}")


def body(n: int) -> str:
    return draft(A, "new_message", {"n": n}, "ai_chatbot").body


def ids(events: list[StoredEvent]) -> list[str]:
    return [e.id for e in events]


# --- decide_resume: the pure rule ----------------------------------------------------------


def test_it_resumes_with_the_events_after_the_id_in_order() -> None:
    events = [stored("100-2"), stored("100-0"), stored("100-1"), stored("99-5")]
    resume = decide_resume("100-0", "50-0", 1000, {A: UNTRIMMED}, events)
    assert not resume.reset
    assert ids(resume.events) == ["100-1", "100-2"]


def test_ids_are_ordered_as_numbers_not_as_text() -> None:
    events = [stored("1000-0"), stored("999-10"), stored("999-9")]
    resume = decide_resume("999-0", "1-0", 1000, {A: UNTRIMMED}, events)
    assert ids(resume.events) == ["999-9", "999-10", "1000-0"]


def test_it_merges_several_channels_in_id_order() -> None:
    events = [stored("5-0", A), stored("7-0", A), stored("4-0", B), stored("6-0", B), stored("3-0", B)]
    resume = decide_resume("3-0", "1-0", 1000, {A: UNTRIMMED, B: KEPT}, events)
    assert [(e.id, e.channel) for e in resume.events] == [("4-0", B), ("5-0", A), ("6-0", B), ("7-0", A)]


def test_it_resets_an_id_older_than_the_bus_origin() -> None:
    resume = decide_resume("99-0", "100-0", 1000, {A: UNTRIMMED}, [stored("100-0")])
    assert resume.reset and resume.events == []
    assert "older" in resume.reason


def test_the_origin_itself_can_be_resumed() -> None:
    resume = decide_resume("100-0", "100-0", 1000, {A: UNTRIMMED}, [stored("100-0"), stored("101-0")])
    assert not resume.reset and ids(resume.events) == ["101-0"]


def test_the_id_just_before_the_origin_resumes_with_the_first_event() -> None:
    # A snapshot's cursor on a Redis restarted empty whose first event is not in the record
    # yet (realtime.bus.record_cursor): no id lies between the two, so nothing was lost.
    cursor = before_id("100-0")
    assert cursor == f"99-{2**64 - 1}"
    resume = decide_resume(cursor, "100-0", 1000, {A: UNTRIMMED}, [stored("100-0"), stored("101-0")], latest="101-0")
    assert not resume.reset and ids(resume.events) == ["100-0", "101-0"]
    # Any earlier id may come from the Redis before the restart: events after it are gone.
    assert decide_resume(f"99-{2**64 - 2}", "100-0", 1000, {A: UNTRIMMED}, [stored("100-0")]).reset
    assert decide_resume("99-0", "100-0", 1000, {A: UNTRIMMED}, [stored("100-0")]).reset


def test_no_id_is_below_the_first_possible_one() -> None:
    # (The rest of before_id: tests/test_recorder_redis.py.)
    assert before_id("0-0") == "0-0"


def test_it_resets_an_id_newer_than_any_the_bus_handed_out() -> None:
    resume = decide_resume("300-0", "100-0", 1000, {A: UNTRIMMED}, [stored("200-0")], latest="200-0")
    assert resume.reset and "newer" in resume.reason


def test_the_latest_id_itself_resumes_with_nothing_to_send() -> None:
    resume = decide_resume("200-0", "100-0", 1000, {A: UNTRIMMED}, [stored("200-0")], latest="200-0")
    assert not resume.reset and resume.events == []


def test_it_resets_when_the_bus_has_no_origin_yet() -> None:
    # A Redis that restarted empty: nothing proves the client's id belongs to this bus's life.
    assert decide_resume("100-0", None, 1000, {A: UNTRIMMED}, []).reset


def test_it_resets_when_a_channel_was_trimmed_past_the_id() -> None:
    resume = decide_resume("100-0", "1-0", 3, {A: UNTRIMMED, B: TRIMMED_PAST}, [stored("200-0", B)])
    assert resume.reset and resume.events == []
    assert B in resume.reason


def test_it_resumes_a_trimmed_channel_that_still_holds_an_event_at_or_before_the_id() -> None:
    resume = decide_resume("100-0", "1-0", 3, {A: KEPT}, [stored("100-0"), stored("101-0")])
    assert not resume.reset and ids(resume.events) == ["101-0"]


def test_it_does_not_reset_when_nothing_was_trimmed() -> None:
    # The channel's first event is after the id, but it never dropped any: nothing is lost.
    resume = decide_resume("100-0", "1-0", 3, {A: UNTRIMMED}, [stored("150-0"), stored("160-0")])
    assert not resume.reset and ids(resume.events) == ["150-0", "160-0"]


@pytest.mark.parametrize("size", [0, -1])
def test_it_always_resets_when_history_is_off(size: int) -> None:
    resume = decide_resume("100-0", "1-0", size, {A: UNTRIMMED}, [])
    assert resume.reset and "off" in resume.reason


def test_a_malformed_id_is_refused() -> None:
    with pytest.raises(InvalidEvent):
        decide_resume("yesterday", "1-0", 10, {}, [])


# --- the id sequence -------------------------------------------------------------------------


def test_ids_follow_the_clock_and_count_within_one_millisecond() -> None:
    seq = IdSequence()
    assert [seq.next(1000), seq.next(1000), seq.next(1001)] == ["1000-0", "1000-1", "1001-0"]
    assert seq.origin == "1000-0"


def test_ids_keep_increasing_when_the_clock_steps_back() -> None:
    seq = IdSequence()
    made = [seq.next(5000), seq.next(4000), seq.next(4999), seq.next(5001)]
    assert made == ["5000-0", "5000-1", "5000-2", "5001-0"]


def test_the_cursor_starts_the_sequence_and_stays_until_the_next_event() -> None:
    seq = IdSequence()
    assert seq.current(7000) == "7000-0" == seq.origin
    assert seq.current(9000) == "7000-0"
    assert seq.next(7000) == "7000-1"
    assert seq.current() == "7000-1"


# --- MemoryHistory ---------------------------------------------------------------------------


def test_memory_history_stores_the_envelope_with_its_id() -> None:
    history = MemoryHistory(10)
    event = history.append(A, body(1))
    envelope = json.loads(event.envelope)
    assert envelope["id"] == event.id and envelope["payload"] == {"n": 1}
    assert history.events(A) == [event]


def test_memory_history_resumes_exactly_after_the_id() -> None:
    history = MemoryHistory(10)
    first, second, third = (history.append(A, body(n)) for n in range(3))
    resume = history.resume([A], first.id)
    assert not resume.reset and resume.events == [second, third]
    assert history.resume([A], third.id).events == []


def test_memory_history_resumes_from_the_cursor_with_what_came_after_it() -> None:
    history = MemoryHistory(10)
    history.append(A, body(0))
    cursor = history.cursor()
    later = history.append(A, body(1))
    assert history.resume([A], cursor).events == [later]


def test_memory_history_resets_an_id_it_never_handed_out() -> None:
    history = MemoryHistory(10)
    last = history.append(A, body(1))
    ms, seq = parse_event_id(last.id)
    assert history.resume([A], f"{ms}-{seq + 1}").reset
    assert not history.resume([A], last.id).reset


def test_memory_history_resets_an_id_from_before_its_life() -> None:
    history = MemoryHistory(10)
    history.append(A, body(1))
    assert history.resume([A], "1000-0").reset


def test_memory_history_resets_when_trimmed_past_the_id() -> None:
    history = MemoryHistory(3)
    made = [history.append(A, body(n)) for n in range(5)]
    assert history.events(A) == made[2:]
    assert history.resume([A], made[0].id).reset
    resume = history.resume([A], made[2].id)
    assert not resume.reset and resume.events == made[3:]


def test_memory_history_does_not_reset_a_quiet_channel_when_another_was_trimmed() -> None:
    history = MemoryHistory(2)
    quiet = history.append(B, body(0))
    made = [history.append(A, body(n)) for n in range(5)]
    resume = history.resume([B], quiet.id)
    assert not resume.reset and resume.events == []
    # A channel that never saw an event after the id is not "trimmed past" it either.
    resume = history.resume([B], made[0].id)
    assert not resume.reset and resume.events == []


def test_memory_history_does_not_reset_when_nothing_was_trimmed() -> None:
    history = MemoryHistory(10)
    origin = history.cursor()
    history.append(B, body(0))
    made = [history.append(A, body(n)) for n in range(3)]
    resume = history.resume([A], origin)
    assert not resume.reset and resume.events == made


def test_memory_history_merges_channels_in_id_order() -> None:
    history = MemoryHistory(10)
    start = history.cursor()
    made = [history.append(channel, body(n)) for n, channel in enumerate([A, B, B, A, B])]
    resume = history.resume([A, B], start)
    assert resume.events == made
    assert history.resume([B, A], made[1].id).events == made[2:]


def test_memory_history_of_size_zero_stores_nothing_and_always_resets() -> None:
    history = MemoryHistory(0)
    event = history.append(A, body(0))
    assert parse_event_id(event.id)
    assert history.events(A) == []
    assert history.resume([A], event.id).reset


def test_memory_history_hands_out_unique_increasing_ids_across_threads() -> None:
    history = MemoryHistory(10_000)
    made: list[StoredEvent] = []

    def publish() -> None:
        made.extend(history.append(A, body(n)) for n in range(500))

    threads = [threading.Thread(target=publish) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    kept = history.events(A)
    assert len({e.id for e in made}) == 2000
    assert [parse_event_id(e.id) for e in kept] == sorted(parse_event_id(e.id) for e in made)
