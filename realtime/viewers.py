"""Who is viewing a session right now, on any process (the pages' "Also viewing" line).

The viewers of a session are the people (signed-in agents and supervisors, never services)
with an open stream that carries `sse:session:<name>`: the workbench's stream while the
session is open in its pane, the session page's stream. A person's tabs share one stream
(static/js/live.js), which carries the union of their channels, so this says "has it open in
some tab", not in which.

Each event loop's hub keeps a `Viewers`: per (session, person), how many of its streams carry
the session and since when. The work is per stream open and close and per refresh round,
never per event. On Redis each process keeps a sorted set per session fresh,
`sse:viewers:<name>`, with one member per process and person, `"<person> <since> <token>"`,
scored by the Unix time its lease ends:

- the person's first stream on the session writes their member at once; every
  `SSE_VIEWERS_LEASE_SECONDS / 3` the process renews the leases of everyone it holds, drops
  members whose lease has ended (a process that died) and sets the key to expire with the
  lease, so a session nobody views leaves nothing behind;
- the person's last stream on it closing removes their member LINGER_SECONDS later, unless a
  stream of theirs carries it again by then (a page that opens or closes another session
  closes its stream and opens one with the new channels: the person does not blink out);
- a process that dies renews nothing: its members lapse within the lease.

The member holds this loop's token so that one process removing its member never removes
another's (the same person in two browsers on two processes), and the `since` so that a
read needs this one key. Without Redis, the process's own hubs are the whole store.
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from realtime.channels import SESSION_PREFIX, session_channel

logger = logging.getLogger(__name__)

KEY_PREFIX = "sse:viewers:"  # + session name: sorted set "<person> <since> <token>" -> lease end
# A person whose last stream on a session closed stays a viewer this long: a page that changes
# its channels closes its stream and opens another at once.
LINGER_SECONDS = 2.0


def viewers_key(session: str) -> str:
    return KEY_PREFIX + session


def lease_seconds() -> float:
    """SSE_VIEWERS_LEASE_SECONDS (default 10): how long a process that stopped renewing
    (it died) still counts its viewers."""
    return float(settings.SSE_VIEWERS_LEASE_SECONDS)


def refresh_seconds() -> float:
    # Three renewals per lease: one late round never drops a viewer.
    return lease_seconds() / 3


def sessions_of(channels: Iterable[str]) -> tuple[str, ...]:
    """The sessions whose channels are among `channels` (already validated)."""
    return tuple(channel[len(SESSION_PREFIX) :] for channel in channels if channel.startswith(SESSION_PREFIX))


def member(person: str, since: float, token: str) -> str:
    return f"{person} {since:.3f} {token}"


def parse_member(value: bytes | str) -> tuple[str, float] | None:
    """(person, since) of a member, or None for one this module did not write."""
    text = value.decode() if isinstance(value, bytes) else value
    parts = text.split(" ")
    if len(parts) != 3:
        return None
    try:
        return parts[0], float(parts[1])
    except ValueError:
        return None


@dataclass(slots=True)
class Entry:
    """One person on one session, as far as this loop's streams go."""

    streams: int
    since: float
    leaving: asyncio.TimerHandle | None = None  # set while their last stream has closed


class Viewers:
    """This loop's part: who its streams show each session to, written to the shared store."""

    def __init__(self, redis: Callable[[], Any] | None = None) -> None:
        self.redis = redis  # gives this loop's async redis client; None on the in-memory layer
        self.token = secrets.token_hex(6)
        self.entries: dict[tuple[str, str], Entry] = {}  # (session, person) -> entry
        self._task: asyncio.Task[None] | None = None
        self._removals: set[asyncio.Task[None]] = set()  # kept referenced until done
        self._failing = False  # the last write failed: log the next failure once, and the recovery

    async def opened(self, person: str, sessions: Iterable[str]) -> None:
        """A stream of `person` carrying `sessions` has opened."""
        now = time.time()
        fresh = []
        for session in sessions:
            entry = self.entries.get((session, person))
            if entry is None:
                entry = self.entries[(session, person)] = Entry(0, now)
                fresh.append((session, person, entry))
            elif entry.leaving is not None:
                entry.leaving.cancel()
                entry.leaving = None
            entry.streams += 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._refresh_loop())
        if fresh:
            await self._write(fresh, now)

    def closed(self, person: str, sessions: Iterable[str]) -> None:
        """A stream of `person` carrying `sessions` has closed (on its loop)."""
        loop = asyncio.get_running_loop()
        for session in sessions:
            entry = self.entries.get((session, person))
            if entry is None:
                continue
            entry.streams -= 1
            if entry.streams <= 0 and entry.leaving is None:
                entry.leaving = loop.call_later(LINGER_SECONDS, self._drop, session, person, entry)

    def _drop(self, session: str, person: str, entry: Entry) -> None:
        if self.entries.get((session, person)) is not entry or entry.streams > 0:
            return
        del self.entries[(session, person)]
        if self.redis is not None:
            task = asyncio.get_running_loop().create_task(self._remove(self.redis, session, person, entry))
            self._removals.add(task)
            task.add_done_callback(self._removals.discard)

    async def _remove(self, redis: Callable[[], Any], session: str, person: str, entry: Entry) -> None:
        try:
            await redis().zrem(viewers_key(session), member(person, entry.since, self.token))
        except Exception as exc:  # noqa: BLE001 - the lease ends it anyway
            logger.info("could not remove %s from the viewers of %s (the lease ends it): %s", person, session, exc)

    async def refresh(self, now: float | None = None) -> None:
        """Renew the leases of everyone this loop's streams hold (one step of the refresh loop)."""
        stamp = time.time() if now is None else now
        await self._write([(session, person, entry) for (session, person), entry in self.entries.items()], stamp)

    async def _write(self, rows: list[tuple[str, str, Entry]], now: float) -> None:
        if self.redis is None or not rows:
            return
        until = now + lease_seconds()
        by_session: dict[str, dict[str, float]] = {}
        for session, person, entry in rows:
            by_session.setdefault(session, {})[member(person, entry.since, self.token)] = until
        try:
            pipe = self.redis().pipeline(transaction=False)
            for session, members in by_session.items():
                key = viewers_key(session)
                pipe.zadd(key, members)
                pipe.zremrangebyscore(key, "-inf", f"({now}")  # the members of processes that died
                pipe.expire(key, math.ceil(lease_seconds()) + 1)
            await pipe.execute()
        except Exception as exc:  # noqa: BLE001 - viewers must never break a stream
            if not self._failing:
                logger.warning("could not write who is viewing sessions to Redis: %s", exc)
            self._failing = True
            return
        if self._failing:
            logger.info("writing who is viewing sessions to Redis again")
            self._failing = False

    async def _refresh_loop(self) -> None:
        while self.entries:
            await asyncio.sleep(refresh_seconds())
            await self.refresh()


def from_memory(viewers: Viewers, session: str) -> dict[str, float]:
    """person -> since, for one loop's streams (read from any thread: one copy of the dict)."""
    return {person: entry.since for (name, person), entry in list(viewers.entries.items()) if name == session}


def from_redis(client: Any, session: str, now: float | None = None) -> dict[str, float]:
    """person -> since, from the shared set (a sync client); members whose lease ended are not read."""
    stamp = time.time() if now is None else now
    found: dict[str, float] = {}
    for value in client.zrangebyscore(viewers_key(session), stamp, "+inf"):
        parsed = parse_member(value)
        if parsed is not None:
            person, since = parsed
            found[person] = min(since, found.get(person, since))
    return found


def merged(found: Iterable[dict[str, float]]) -> dict[str, float]:
    """Several sources' person -> since as one, each person since their earliest."""
    result: dict[str, float] = {}
    for part in found:
        for person, since in part.items():
            result[person] = min(since, result.get(person, since))
    return result


def rows(found: dict[str, float]) -> list[dict[str, str]]:
    """The API's rows, who came first first."""
    ordered = sorted(found.items(), key=lambda item: (item[1], item[0]))
    return [{"agent": person, "since": datetime.fromtimestamp(since, tz=UTC).isoformat()} for person, since in ordered]


def viewers_of(session: str) -> tuple[list[dict[str, str]], bool]:
    """Who has `session` open on any process, and whether that is complete (sync).

    While Redis cannot be read, the viewers of this process's own streams, not complete."""
    from realtime.bus import get_layer
    from realtime.hub import all_hubs
    from realtime.redis_conn import REDIS_ERRORS

    session_channel(session)  # validates the name
    local = [from_memory(hub.viewers, session) for hub in all_hubs() if not hub.loop.is_closed()]
    client = get_layer().sync_client()
    if client is None:
        return rows(merged(local)), True
    try:
        shared = from_redis(client, session)
    except REDIS_ERRORS as exc:
        logger.warning("viewers of %s from this process only: %s", session, exc)
        return rows(merged(local)), False
    # This process's own streams too: a first write that failed (a Redis blip) hides nobody here.
    return rows(merged([shared, *local])), True
