"""The event envelope: the type/source table, the 64 KiB cap, and what the wire may carry (docs/bus.md section 2)."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from realtime.channels import InvalidChannel
from realtime.envelope import (
    MAX_ENVELOPE_BYTES,
    EventTooLarge,
    InvalidEvent,
    check_source,
    draft,
    parse_event_id,
    parse_incoming,
    with_id,
)
from realtime.hub import encode, stats

CHANNEL = "sse:session:user_123_abc"

# The contract's table, written out again here on purpose: a test that read ALLOWED_SOURCES
# could never fail.
CONTRACT_TABLE = {
    "status_change": {"ai_chatbot", "agent_workbench", "system"},
    "transfer_request": {"ai_chatbot"},
    "new_message": {"ai_chatbot", "agent_workbench"},
    "agent_joined": {"agent_workbench"},
    "agent_left": {"agent_workbench"},
    "heartbeat": {"system"},
    "reset": {"system"},
}
SOURCES = ["ai_chatbot", "agent_workbench", "system", "crm", "", "AI_CHATBOT", "ai_chatbot "]
PAIRS = [(t, s) for t in CONTRACT_TABLE for s in SOURCES]
PAIR_IDS = [f"{t}-from-{s or 'nobody'}" for t, s in PAIRS]
PUBLISHABLE = [t for t in CONTRACT_TABLE if t not in ("heartbeat", "reset")]


def wire(**fields: Any) -> str:
    """A raw envelope as another service would PUBLISH it (no id, no channel unless given)."""
    event = {
        "type": "new_message",
        "payload": {"data": {"text": "hi"}},
        "timestamp": 1732410000.5,
        "source": "ai_chatbot",
    }
    event.update(fields)
    return json.dumps({k: v for k, v in event.items() if v is not ...}, ensure_ascii=False)


@pytest.mark.parametrize(("event_type", "source"), PAIRS, ids=PAIR_IDS)
def test_the_source_table_is_the_contracts(event_type: str, source: str) -> None:
    if source in CONTRACT_TABLE[event_type]:
        check_source(event_type, source)
    else:
        with pytest.raises(InvalidEvent, match="may not publish"):
            check_source(event_type, source)


@pytest.mark.parametrize(("event_type", "source"), PAIRS, ids=PAIR_IDS)
def test_publishing_follows_the_table_and_never_takes_connection_only_types(event_type: str, source: str) -> None:
    if event_type in ("heartbeat", "reset"):
        with pytest.raises(InvalidEvent, match="cannot be published"):
            draft(CHANNEL, event_type, {}, source)
    elif source in CONTRACT_TABLE[event_type]:
        made = draft(CHANNEL, event_type, {"session_name": "user_123_abc"}, source)
        assert json.loads(made.body)["source"] == source
    else:
        with pytest.raises(InvalidEvent, match="may not publish"):
            draft(CHANNEL, event_type, {}, source)


@pytest.mark.parametrize(("event_type", "source"), PAIRS, ids=PAIR_IDS)
def test_receiving_follows_the_table_and_never_takes_connection_only_types(event_type: str, source: str) -> None:
    raw = wire(type=event_type, source=source)
    if event_type in PUBLISHABLE and source in CONTRACT_TABLE[event_type]:
        assert parse_incoming(raw, CHANNEL)["source"] == source
    else:
        with pytest.raises(InvalidEvent):
            parse_incoming(raw, CHANNEL)


@pytest.mark.parametrize("event_type", ["unknown", "", "Status_Change", None, 5, ["new_message"], {"a": 1}])
def test_an_unknown_or_malformed_type_is_refused_with_invalid_event(event_type: Any) -> None:
    # A list or dict type used to escape as a TypeError (unhashable) instead of a ValueError.
    with pytest.raises(InvalidEvent, match="unknown event type"):
        draft(CHANNEL, event_type, {}, "ai_chatbot")
    with pytest.raises(InvalidEvent, match="unknown event type"):
        parse_incoming(wire(type=event_type), CHANNEL)


@pytest.mark.parametrize("source", [None, 5, ["ai_chatbot"], {"ai_chatbot": 1}])
def test_a_source_that_is_not_a_string_is_refused(source: Any) -> None:
    with pytest.raises(InvalidEvent, match="may not publish"):
        draft(CHANNEL, "new_message", {}, source)
    with pytest.raises(InvalidEvent, match="may not publish"):
        parse_incoming(wire(source=source), CHANNEL)


@pytest.mark.parametrize("payload", [None, [], "text", 5, True], ids=["null", "list", "string", "number", "bool"])
def test_the_payload_must_be_an_object(payload: Any) -> None:
    with pytest.raises(InvalidEvent, match="payload must be a JSON object"):
        draft(CHANNEL, "new_message", payload, "ai_chatbot")
    with pytest.raises(InvalidEvent, match="payload must be a JSON object"):
        parse_incoming(wire(payload=payload), CHANNEL)


def test_a_payload_that_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidEvent, match="JSON-serialisable"):
        draft(CHANNEL, "new_message", {"data": {1, 2}}, "ai_chatbot")
    with pytest.raises(InvalidEvent, match="JSON-serialisable"):
        draft(CHANNEL, "new_message", {"data": math.nan}, "ai_chatbot")


def test_a_payload_with_text_that_utf_8_cannot_carry_is_refused() -> None:
    # A lone surrogate (from a JSON "\ud800" escape) used to escape as UnicodeEncodeError.
    with pytest.raises(InvalidEvent, match="JSON-serialisable"):
        draft(CHANNEL, "new_message", {"data": {"text": "\ud800"}}, "ai_chatbot")


@pytest.mark.parametrize("timestamp", ["now", math.nan, math.inf, True], ids=["string", "NaN", "infinity", "bool"])
def test_a_timestamp_that_receivers_would_drop_is_refused_when_publishing(timestamp: Any) -> None:
    with pytest.raises(InvalidEvent, match="timestamp"):
        draft(CHANNEL, "new_message", {}, "ai_chatbot", timestamp=timestamp)


def test_a_bad_channel_is_refused_before_anything_else() -> None:
    with pytest.raises(InvalidChannel):
        draft("sse:session:*", "new_message", {}, "ai_chatbot")


def test_a_draft_is_one_line_of_json_without_id() -> None:
    made = draft(CHANNEL, "new_message", {"data": {"text": "line one\nline two\r\n\x00"}}, "ai_chatbot", timestamp=12.5)
    assert "\n" not in made.body and "\r" not in made.body and "\x00" not in made.body
    assert json.loads(made.body) == {
        "channel": CHANNEL,
        "type": "new_message",
        "payload": {"data": {"text": "line one\nline two\r\n\x00"}},
        "timestamp": 12.5,
        "source": "ai_chatbot",
    }


def test_with_id_puts_the_id_first() -> None:
    made = draft(CHANNEL, "new_message", {}, "ai_chatbot")
    envelope = with_id("1732410000123-7", made.body)
    assert envelope.startswith('{"id":"1732410000123-7",')
    assert list(json.loads(envelope)) == ["id", "channel", "type", "payload", "timestamp", "source"]


# --- the 64 KiB cap ------------------------------------------------------------------------


def padded_payload(total: int) -> dict[str, Any]:
    """A payload whose draft body is exactly `total` bytes."""
    empty = len(draft(CHANNEL, "new_message", {"pad": ""}, "ai_chatbot", timestamp=1.0).body.encode())
    return {"pad": "x" * (total - empty)}


def test_a_draft_that_fits_in_64_kib_with_its_id_is_accepted() -> None:
    made = draft(CHANNEL, "new_message", padded_payload(MAX_ENVELOPE_BYTES - 40), "ai_chatbot", timestamp=1.0)
    envelope = with_id("17324100001234-123", made.body)
    assert len(envelope.encode()) <= MAX_ENVELOPE_BYTES
    assert parse_incoming(envelope.encode(), CHANNEL)["payload"]["pad"]


def test_a_draft_over_64_kib_is_too_large() -> None:
    with pytest.raises(EventTooLarge):
        draft(CHANNEL, "new_message", padded_payload(MAX_ENVELOPE_BYTES - 39), "ai_chatbot", timestamp=1.0)


def test_the_cap_counts_bytes_not_characters() -> None:
    # 30 000 characters of a 3-byte letter: 90 000 bytes.
    with pytest.raises(EventTooLarge):
        draft(CHANNEL, "new_message", {"text": "\u4e2d" * 30_000}, "ai_chatbot")
    raw = wire(payload={"text": "\u4e2d" * 30_000})
    assert len(raw) < MAX_ENVELOPE_BYTES < len(raw.encode())
    with pytest.raises(EventTooLarge):
        parse_incoming(raw, CHANNEL)
    with pytest.raises(EventTooLarge):
        parse_incoming(raw.encode(), CHANNEL)


def test_an_incoming_message_of_exactly_64_kib_is_accepted_and_one_byte_more_is_dropped() -> None:
    base = wire(payload={"pad": ""})
    exact = wire(payload={"pad": "x" * (MAX_ENVELOPE_BYTES - len(base))})
    assert len(exact) == MAX_ENVELOPE_BYTES
    assert parse_incoming(exact.encode(), CHANNEL)
    over = wire(payload={"pad": "x" * (MAX_ENVELOPE_BYTES - len(base) + 1)})
    with pytest.raises(EventTooLarge):
        parse_incoming(over.encode(), CHANNEL)


def test_a_huge_message_is_refused_before_it_is_parsed() -> None:
    with pytest.raises(EventTooLarge):
        parse_incoming(b"[" * (MAX_ENVELOPE_BYTES + 1), CHANNEL)


# --- what may arrive over the wire -----------------------------------------------------------


def test_a_raw_envelope_without_id_and_channel_is_accepted_and_gets_its_channel() -> None:
    event = parse_incoming(wire().encode(), CHANNEL)
    assert event["channel"] == CHANNEL
    assert "id" not in event
    assert event["payload"] == {"data": {"text": "hi"}}


def test_an_envelope_with_its_own_channel_and_id_is_accepted() -> None:
    event = parse_incoming(wire(id="1732410000123-0", channel=CHANNEL), CHANNEL)
    assert event["id"] == "1732410000123-0"


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"not json",
        b"{",
        b'{"type": "new_message",}',
        b"\xff\xfe{}",
        b"\x00",
        "{\ud800}".encode("utf-8", "surrogatepass"),
    ],
    ids=["empty", "text", "truncated", "trailing comma", "bad utf-8", "NUL", "surrogate"],
)
def test_a_message_that_is_not_json_is_dropped(raw: bytes) -> None:
    with pytest.raises(InvalidEvent):
        parse_incoming(raw, CHANNEL)


@pytest.mark.parametrize("raw", [b"[]", b'"text"', b"5", b"null", b"true", b'[{"type": "new_message"}]'])
def test_a_message_that_is_not_an_object_is_dropped(raw: bytes) -> None:
    with pytest.raises(InvalidEvent, match="not a JSON object"):
        parse_incoming(raw, CHANNEL)


@pytest.mark.parametrize(
    ("event_type", "source"),
    [("transfer_request", "agent_workbench"), ("agent_joined", "ai_chatbot"), ("status_change", "crm")],
)
def test_a_forged_source_is_dropped(event_type: str, source: str) -> None:
    with pytest.raises(InvalidEvent, match="may not publish"):
        parse_incoming(wire(type=event_type, source=source), CHANNEL)


def test_a_message_without_a_source_is_dropped() -> None:
    with pytest.raises(InvalidEvent):
        parse_incoming(wire(source=...), CHANNEL)


@pytest.mark.parametrize("event_type", ["heartbeat", "reset"])
def test_heartbeat_and_reset_never_come_over_the_wire(event_type: str) -> None:
    with pytest.raises(InvalidEvent, match="never sent over the bus"):
        parse_incoming(wire(type=event_type, source="system"), CHANNEL)


@pytest.mark.parametrize("channel", ["sse:broadcast", "sse:session:other", "sse:session:*", 5])
def test_an_envelope_that_names_another_channel_is_dropped(channel: Any) -> None:
    with pytest.raises(InvalidEvent, match="arrived on"):
        parse_incoming(wire(channel=channel), CHANNEL)


def test_a_message_on_a_channel_that_is_not_an_sse_channel_is_dropped() -> None:
    with pytest.raises(InvalidEvent):
        parse_incoming(wire(), "sse:session:a*")


@pytest.mark.parametrize(
    "timestamp", [..., None, "1732410000", True, [1]], ids=["missing", "null", "string", "bool", "list"]
)
def test_a_message_without_a_numeric_timestamp_is_dropped(timestamp: Any) -> None:
    with pytest.raises(InvalidEvent, match="timestamp"):
        parse_incoming(wire(timestamp=timestamp), CHANNEL)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_a_timestamp_that_is_not_finite_is_dropped(literal: str) -> None:
    raw = wire(timestamp=0).replace('"timestamp": 0', f'"timestamp": {literal}')
    with pytest.raises(InvalidEvent, match="timestamp"):
        parse_incoming(raw, CHANNEL)


@pytest.mark.parametrize("event_id", ["", "abc", "1-", "-1", "1-2-3", "1-2\n", " 1-2", 12, None, "1" * 21 + "-0"])
def test_a_message_with_a_malformed_id_is_dropped(event_id: Any) -> None:
    with pytest.raises(InvalidEvent, match="event id"):
        parse_incoming(wire(id=event_id), CHANNEL)


def test_event_ids_compare_by_time_then_sequence() -> None:
    assert parse_event_id("1732410000123-0") == (1732410000123, 0)
    assert parse_event_id("999-10") > parse_event_id("999-9")
    assert parse_event_id("1000-0") > parse_event_id("999-99")


def test_the_hub_drops_counts_and_keeps_going_on_a_bad_message() -> None:
    before = stats["dropped_invalid"]
    assert encode(b"not json", CHANNEL) is None
    assert encode(wire(type="agent_joined", source="ai_chatbot"), CHANNEL) is None
    assert stats["dropped_invalid"] == before + 2
    encoded = encode(wire(id="5-0"), CHANNEL)
    assert encoded is not None
    frame, event = encoded
    assert frame.startswith(b"id: 5-0\nevent: new_message\ndata: {")
    assert event["channel"] == CHANNEL
