"""The event envelope: the type/source table, validation, ids and JSON encoding.

An envelope is `{"id", "channel", "type", "payload", "timestamp", "source"}` (CONTRACT.md
section 2). Everything here is pure: no I/O, so the rules are tested without a server.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import dataclass
from typing import Any

from realtime.channels import InvalidChannel, validate_channel, validate_name

# The seed's table: which sources may publish which types. Receivers drop the rest,
# which is the seed's defence against forged messages.
ALLOWED_SOURCES: dict[str, frozenset[str]] = {
    "status_change": frozenset({"ai_chatbot", "agent_workbench", "system"}),
    "transfer_request": frozenset({"ai_chatbot"}),
    "new_message": frozenset({"ai_chatbot", "agent_workbench"}),
    "agent_joined": frozenset({"agent_workbench"}),
    "agent_left": frozenset({"agent_workbench"}),
    "heartbeat": frozenset({"system"}),
    "reset": frozenset({"system"}),
}
# Types the server makes for one connection; they are never published or stored.
CONNECTION_ONLY_TYPES = frozenset({"heartbeat", "reset"})

# 64 KiB: far above any chat event, far below what would stall a fan-out loop.
MAX_ENVELOPE_BYTES = 64 * 1024

_EVENT_ID = re.compile(r"(\d{1,20})-(\d{1,20})\Z")


class InvalidEvent(ValueError):
    """An event that breaks the envelope rules (type, source, payload, size, id)."""


class EventTooLarge(InvalidEvent):
    """An envelope over MAX_ENVELOPE_BYTES."""


def parse_event_id(value: object) -> tuple[int, int]:
    """`"1732410000123-0"` -> (1732410000123, 0); raises InvalidEvent otherwise."""
    if not isinstance(value, str):
        raise InvalidEvent("event id must be a string like 1732410000123-0")
    match = _EVENT_ID.match(value)
    if not match:
        raise InvalidEvent(f"malformed event id {value[:40]!r}: expected <ms>-<seq>")
    return int(match.group(1)), int(match.group(2))


def format_event_id(ms: int, seq: int) -> str:
    return f"{ms}-{seq}"


def check_source(event_type: object, source: object) -> None:
    if not isinstance(event_type, str) or event_type not in ALLOWED_SOURCES:
        raise InvalidEvent(f"unknown event type {str(event_type)[:40]!r}; known: {', '.join(sorted(ALLOWED_SOURCES))}")
    if not isinstance(source, str) or source not in ALLOWED_SOURCES[event_type]:
        allowed = ", ".join(sorted(ALLOWED_SOURCES[event_type]))
        raise InvalidEvent(f"source {str(source)[:40]!r} may not publish {event_type} (allowed: {allowed})")


def dumps(value: Any) -> str:
    """Compact one-line JSON. Control characters are always escaped, so it never holds CR/LF."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


@dataclass(frozen=True, slots=True)
class Draft:
    """A validated event before the bus gives it an id: `body` is its envelope JSON without `id`."""

    channel: str
    type: str
    body: str


def draft(channel: str, event_type: str, payload: Any, source: str, timestamp: float | None = None) -> Draft:
    """Validate an event for publishing and encode it once. Raises InvalidChannel/InvalidEvent."""
    validate_channel(channel)
    # isinstance first: a list or dict type would make the set lookup raise TypeError.
    if isinstance(event_type, str) and event_type in CONNECTION_ONLY_TYPES:
        raise InvalidEvent(f"{event_type} events are made by the server for one connection and cannot be published")
    check_source(event_type, source)
    if not isinstance(payload, dict):
        raise InvalidEvent("payload must be a JSON object")
    session_name = payload.get("session_name")
    if session_name is not None:
        validate_name(session_name, "payload.session_name")
    stamp = time.time() if timestamp is None else timestamp
    # The receivers' rule (parse_incoming): an event they would drop must not be published.
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        raise InvalidEvent("timestamp must be a number of seconds")
    try:
        body = dumps({"channel": channel, "type": event_type, "payload": payload, "timestamp": stamp, "source": source})
        size = len(body.encode())  # inside the try: a lone surrogate cannot be encoded as UTF-8
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"payload is not JSON-serialisable: {exc}") from None
    if size + 40 > MAX_ENVELOPE_BYTES:  # 40: room for the id the bus adds
        raise EventTooLarge(f"the event is larger than {MAX_ENVELOPE_BYTES} bytes")
    return Draft(channel, event_type, body)


def with_id(event_id: str, body: str) -> str:
    """Put `id` first into an envelope JSON that has none. The Redis publish script does the same."""
    return '{"id":"' + event_id + '",' + body[1:]


def parse_incoming(raw: bytes | str, channel: str) -> dict[str, Any]:
    """Validate an envelope as it arrives from the wire (Redis, possibly a raw PUBLISH).

    Returns the envelope with `channel` filled in; raises InvalidEvent for anything that
    must be dropped: bad JSON, wrong shape, over size, a source not allowed for the type,
    or a `channel` field that disagrees with the channel it arrived on.
    """
    # The cap is in bytes: a str is measured as UTF-8 (a character is at most 4 bytes, so
    # short strings skip the encode).
    size = len(raw)
    if isinstance(raw, str) and size * 4 > MAX_ENVELOPE_BYTES:
        size = len(raw.encode(errors="surrogatepass"))
    if size > MAX_ENVELOPE_BYTES:
        raise EventTooLarge(f"message of {size} bytes is over {MAX_ENVELOPE_BYTES}")
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidEvent("message is not valid JSON") from None
    if not isinstance(event, dict):
        raise InvalidEvent("message is not a JSON object")
    event_type = event.get("type")
    check_source(event_type, event.get("source"))
    if event_type in CONNECTION_ONLY_TYPES:
        raise InvalidEvent(f"{event_type} is never sent over the bus")
    if not isinstance(event.get("payload"), dict):
        raise InvalidEvent("payload must be a JSON object")
    stamp = event.get("timestamp")
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        raise InvalidEvent("timestamp must be a number of seconds")
    if "id" in event:
        parse_event_id(event["id"])
    if event.get("channel", channel) != channel:
        raise InvalidEvent(f"envelope names channel {str(event.get('channel'))[:80]!r} but arrived on {channel!r}")
    try:
        validate_channel(channel)
    except InvalidChannel as exc:
        raise InvalidEvent(str(exc)) from None
    event["channel"] = channel
    return event


def system_event(event_type: str, channel: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A server-made envelope (heartbeat, reset): no id, source `system`."""
    return {"channel": channel, "type": event_type, "payload": payload, "timestamp": time.time(), "source": "system"}
