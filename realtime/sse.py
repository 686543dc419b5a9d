"""Server-Sent Events wire format as pure functions.

Frames are built once per event per process and written as-is to every connection.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable

# CR, LF and NUL end or corrupt an SSE field; they must never reach an id:/event: line.
_UNSAFE = re.compile(r"[\r\n\x00]")

HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    # Tells nginx and friends not to buffer the stream.
    (b"x-accel-buffering", b"no"),
]


def field(value: str) -> str:
    return _UNSAFE.sub("", value)


def frame(data: str, *, event: str | None = None, event_id: str | None = None) -> bytes:
    """One SSE frame: optional `id:` and `event:` lines, `data:` lines, blank line."""
    parts = []
    if event_id is not None:
        parts.append(f"id: {field(event_id)}\n")
    if event is not None:
        parts.append(f"event: {field(event)}\n")
    # A data value split on any line break becomes several data: lines, which the
    # client joins back with "\n"; so a payload can never start a new field.
    for line in re.split(r"\r\n|\r|\n", data.replace("\x00", "")):
        parts.append(f"data: {line}\n")
    parts.append("\n")
    return "".join(parts).encode()


def comment(text: str = "") -> bytes:
    return f": {field(text)}\n\n".encode()


def retry(milliseconds: int) -> bytes:
    return f"retry: {int(milliseconds)}\n".encode()


def jittered_retry_ms(base_ms: int, rand: Callable[[], float] = random.random) -> int:
    """A reconnect delay drawn uniformly from [base_ms, 2 * base_ms), for one stream.

    When a server restarts, every browser it held loses its stream in the same instant; with
    one fixed `retry:` they would all come back in the same instant too, a thundering herd on
    the surviving servers. Spreading each stream's delay over one more `base_ms` smooths that
    herd into a ramp, and never reconnects sooner than the configured delay. `rand` returns a
    float in [0, 1) (as `random.random`); tests pass their own.
    """
    base = int(base_ms)
    if base <= 0:
        return 0
    # min(): a source that returns 1.0 (allowed by some) must not reach 2 * base.
    return min(base + int(base * rand()), 2 * base - 1)
