"""The SSE wire format: no id, event name or payload can forge a frame or a field (docs/bus.md section 4)."""

from __future__ import annotations

import json
import re

from hypothesis import example, given
from hypothesis import strategies as st

from realtime import sse
from realtime.envelope import dumps, system_event
from realtime.hub import encode
from tests.support.streams import parse_sse as parse


def normalised(data: str) -> str:
    """The data a client gets back: line breaks become LF, NUL is dropped."""
    return re.sub(r"\r\n|\r", "\n", data.replace("\x00", ""))


hostile = st.text(alphabet=st.sampled_from("ab :\r\n\x00é\u2028\ufeff"), max_size=30) | st.text(max_size=30)


@given(data=hostile, event=st.none() | hostile, event_id=st.none() | hostile)
@example(data="x\n\nid: 666\nevent: reset\ndata: forged\n\n", event="status_change", event_id="1-0")
@example(data="\r\rretry: 1\r", event="a\nretry: 1", event_id="1-0\n\ndata: forged")
@example(data="", event="", event_id="")
@example(data="\n", event=None, event_id="\x00")
def test_a_frame_parses_back_to_exactly_one_event_with_the_same_data(
    data: str, event: str | None, event_id: str | None
) -> None:
    parsed = parse(sse.frame(data, event=event, event_id=event_id))
    assert len(parsed.events) == 1
    event_type, got_data, got_id = parsed.events[0].type, parsed.events[0].data, parsed.events[0].id
    assert got_data == normalised(data)
    assert event_type == (sse.field(event or "") or "message")
    assert got_id == (sse.field(event_id) if event_id is not None else "")
    expected_fields = ["id"] * (event_id is not None) + ["event"] * (event is not None)
    assert parsed.fields == expected_fields + ["data"] * (normalised(data).count("\n") + 1)
    assert parsed.retry is None


@given(hostile)
def test_id_and_event_lines_never_hold_a_line_break_or_nul(value: str) -> None:
    frame = sse.frame("x", event=value, event_id=value).decode()
    id_line, event_line, *_ = frame.split("\n")
    assert id_line == "id: " + re.sub(r"[\r\n\x00]", "", value)
    assert event_line == "event: " + re.sub(r"[\r\n\x00]", "", value)


@given(hostile)
def test_a_comment_can_never_become_an_event_or_a_field(text: str) -> None:
    parsed = parse(sse.comment(text))
    assert parsed.events == [] and parsed.fields == []


def test_a_frame_has_id_event_and_data_lines_and_ends_with_a_blank_line() -> None:
    assert sse.frame('{"a":1}', event="new_message", event_id="5-0") == (
        b'id: 5-0\nevent: new_message\ndata: {"a":1}\n\n'
    )


def test_the_opening_retry_and_comment_set_the_reconnect_delay_and_no_event() -> None:
    parsed = parse(sse.retry(2000) + sse.comment("stream open"))
    assert parsed.retry == 2000
    assert parsed.events == []


@given(st.dictionaries(hostile, hostile, max_size=4))
def test_an_envelope_frame_carries_the_envelope_json_on_one_data_line(payload: dict[str, str]) -> None:
    raw = dumps(
        {"id": "7-1", "type": "new_message", "payload": payload, "timestamp": 1.5, "source": "ai_chatbot"}
    ).encode()
    encoded = encode(raw, "sse:session:x")
    assert encoded is not None
    frame, _ = encoded
    parsed = parse(frame)
    assert parsed.fields == ["id", "event", "data"]
    [event] = parsed.events
    assert (event.type, event.id) == ("new_message", "7-1")
    assert json.loads(event.data)["payload"] == payload


def test_heartbeat_and_reset_frames_carry_no_id_so_they_never_move_the_resume_point() -> None:
    for kind in ("heartbeat", "reset"):
        frame = sse.frame(dumps(system_event(kind, "sse:broadcast", {})), event=kind)
        parsed = parse(b"id: 9-0\nevent: new_message\ndata: {}\n\n" + frame)
        assert [e.id for e in parsed.events] == ["9-0", "9-0"]
        assert "id" not in parse(frame).fields


def test_the_stream_headers_are_the_contracts() -> None:
    headers = dict(sse.HEADERS)
    assert headers[b"content-type"].startswith(b"text/event-stream")
    assert headers[b"cache-control"] == b"no-cache"
    assert headers[b"x-accel-buffering"] == b"no"
