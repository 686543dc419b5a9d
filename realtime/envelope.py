"""The event envelope: the type/source table, validation, ids and JSON encoding.

An envelope is `{"id", "channel", "type", "payload", "timestamp", "source"}` (docs/bus.md
section 2). Everything here is pure: no I/O, so the rules are tested without a server.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from realtime.channels import InvalidChannel, validate_channel, validate_name

# The type/source table: which sources may publish which types. Receivers drop the rest,
# which is the defence against forged messages.
ALLOWED_SOURCES: dict[str, frozenset[str]] = {
    "status_change": frozenset({"ai_chatbot", "agent_workbench", "system"}),
    "transfer_request": frozenset({"ai_chatbot"}),
    "new_message": frozenset({"ai_chatbot", "agent_workbench"}),
    "agent_joined": frozenset({"agent_workbench"}),
    "agent_left": frozenset({"agent_workbench"}),
    "heartbeat": frozenset({"system"}),
    "reset": frozenset({"system"}),
    "bus_status": frozenset({"system"}),
}
# Types the server makes for one connection; they are never published or stored.
CONNECTION_ONLY_TYPES = frozenset({"heartbeat", "reset", "bus_status"})
# Every JSON document the bus accepts nests at most this deep: far more than any real
# payload needs, far less than what makes json or Python's recursion limit fail.
MAX_DEPTH = 32

# 64 KiB: far above any chat event, far below what would stall a fan-out loop.
MAX_ENVELOPE_BYTES = 64 * 1024

# ASCII digits only: `\d` would take other scripts' digits ("١٢٣-٠"), which int() reads.
_EVENT_ID = re.compile(r"([0-9]{1,20})-([0-9]{1,20})\Z")


class InvalidEvent(ValueError):
    """An event that breaks the envelope rules (type, source, payload, size, id)."""


class EventTooLarge(InvalidEvent):
    """An envelope over MAX_ENVELOPE_BYTES."""


class SourceNotAllowed(InvalidEvent):
    """The type/source table does not let this source publish this type (403 over HTTP)."""


class InvalidJSON(InvalidEvent):
    """Input that is not JSON the product can handle (see `load_json`)."""


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


def check_timestamp(stamp: object) -> None:
    """A timestamp is a finite number of seconds (not a bool, which Python counts as an int)."""
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not math.isfinite(stamp):
        raise InvalidEvent("timestamp must be a number of seconds")


def check_source(event_type: object, source: object) -> None:
    if not isinstance(event_type, str) or event_type not in ALLOWED_SOURCES:
        raise InvalidEvent(f"unknown event type {str(event_type)[:40]!r}; known: {', '.join(sorted(ALLOWED_SOURCES))}")
    if not isinstance(source, str) or source not in ALLOWED_SOURCES[event_type]:
        allowed = ", ".join(sorted(ALLOWED_SOURCES[event_type]))
        raise SourceNotAllowed(f"source {str(source)[:40]!r} may not publish {event_type} (allowed: {allowed})")


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
    if not depth_ok(payload, MAX_DEPTH - 1):  # the envelope itself is one level
        raise InvalidEvent(f"the payload nests deeper than {MAX_DEPTH} levels")
    stamp = time.time() if timestamp is None else timestamp
    # The receivers' rule (parse_incoming): an event they would drop must not be published.
    check_timestamp(stamp)
    try:
        body = dumps({"channel": channel, "type": event_type, "payload": payload, "timestamp": stamp, "source": source})
        size = len(body.encode())  # inside the try: a lone surrogate cannot be encoded as UTF-8
    except (TypeError, ValueError) as exc:
        raise InvalidEvent(f"payload is not JSON-serialisable: {exc}") from None
    if size + 40 > MAX_ENVELOPE_BYTES:  # 40: room for the id the bus adds
        raise EventTooLarge(f"the event is larger than {MAX_ENVELOPE_BYTES} bytes")
    return Draft(channel, event_type, body)


def depth_ok(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Does a decoded JSON value nest at most `limit` levels (an object or list is a level)?"""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return False
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return True


def _may_be_deep(raw: bytes | str) -> bool:
    # A document with fewer than MAX_DEPTH brackets cannot nest deeper: skips the walk for
    # nearly every event (counting is C speed; the walk is Python).
    opening = (b"{", b"[") if isinstance(raw, bytes) else ("{", "[")
    return raw.count(opening[0]) + raw.count(opening[1]) > MAX_DEPTH  # type: ignore[arg-type]


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _may_hold_surrogate(raw: bytes | str) -> bool:
    # json.loads turns a lone "\ud800" escape into a str that cannot be written as UTF-8; the
    # error would only come later, when the event is framed or stored. Only a document with
    # such an escape (nearly none) pays for the full check.
    if isinstance(raw, str):
        try:
            raw = raw.encode()  # a str may hold a surrogate itself, not only as an escape
        except UnicodeEncodeError:
            return True
    return b"\\u" in raw and _SURROGATE_ESCAPE.search(raw) is not None


def _encodable(event: Any) -> bool:
    try:
        dumps(event).encode()
    except (UnicodeEncodeError, ValueError):
        return False
    return True


def with_message_id(event_type: object, payload: Any) -> Any:
    """A `new_message` payload with its stable `message_id` (a new one when it has none).

    Clients tell a message they already show by it; the database stores each message once.
    """
    if event_type != "new_message" or not isinstance(payload, dict):
        return payload
    given = payload.get("message_id")
    if given is None:
        return {**payload, "message_id": uuid.uuid4().hex}
    try:
        validate_name(given, "payload.message_id")
    except InvalidChannel as exc:
        raise InvalidEvent(str(exc)) from None
    return payload


def raw_message_id(raw: bytes | str) -> str:
    """The `message_id` of a raw PUBLISHed message that has none: the same bytes, the same id
    (every process that receives it, and the recorder, agree without talking)."""
    data = raw.encode(errors="surrogatepass") if isinstance(raw, str) else raw
    return "raw-" + hashlib.sha1(data, usedforsecurity=False).hexdigest()[:28]


def with_id(event_id: str, body: str) -> str:
    """Put `id` first into an envelope JSON that has none. The Redis publish script does the same."""
    return '{"id":"' + event_id + '",' + body[1:]


def load_json(raw: bytes | str) -> Any:
    """Decode JSON that came from outside (a request body, a raw Redis message).

    Raises InvalidJSON for anything that is not JSON this product can handle: malformed,
    not UTF-8, nested deeper than MAX_DEPTH (a very deep document would otherwise raise
    RecursionError, which is not a ValueError), or holding a lone surrogate (which json
    accepts and which fails only later, when the value is written out as UTF-8).
    """
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidJSON("is not valid JSON") from None
    if _may_be_deep(raw) and not depth_ok(value):
        raise InvalidJSON(f"nests deeper than {MAX_DEPTH} levels")
    if _may_hold_surrogate(raw) and not _encodable(value):
        raise InvalidJSON("holds a lone surrogate (\\ud800-\\udfff): not valid Unicode")
    return value


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
        event = load_json(raw)
    except InvalidJSON as exc:
        raise InvalidEvent(f"message {exc}") from None
    if not isinstance(event, dict):
        raise InvalidEvent("message is not a JSON object")
    event_type = event.get("type")
    check_source(event_type, event.get("source"))
    if event_type in CONNECTION_ONLY_TYPES:
        raise InvalidEvent(f"{event_type} is never sent over the bus")
    if not isinstance(event.get("payload"), dict):
        raise InvalidEvent("payload must be a JSON object")
    check_timestamp(event.get("timestamp"))
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
