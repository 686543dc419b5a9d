"""The recorder: session-channel events other services publish are handed to the database.

Commands store their events themselves (the outbox). Events a service publishes on a
session channel through the publish path (the Python helpers, `POST /api/publish`) are
stored by the recorder instead, exactly once even when it was down for a while:

- On Redis, the publish script also appends such events to the stream `sse:record`; each
  server process reads it as a consumer of one group (`XREADGROUP`), hands the events to
  `signals.events_to_record` and acknowledges them only after that returned. An event a
  dead process had read but not acknowledged is claimed by another after `CLAIM_AFTER_MS`.
  Receivers store by the event's id, so a repeat is harmless.
- Raw `PUBLISH`ed events (no id, not in the stream) are stored while a recorder runs: one
  process at a time (a lease in Redis) listens to `sse:session:*` for them.
- On the in-memory layer, the publish path hands events straight to a queue read by a
  thread here.

(Over 400 lines on purpose: the two recorders and their shared single step are one concept,
the way session events reach the record; split, each half would need the other to be read.)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import threading
import time
from collections import deque
from typing import Any

import redis
from django.conf import settings

from realtime import signals
from realtime.channels import SESSION_PREFIX
from realtime.envelope import InvalidEvent, parse_event_id, parse_incoming, raw_message_id
from realtime.history import before_id
from realtime.hub import stats
from realtime.redis_conn import COMMAND_TIMEOUT, REDIS_ERRORS, RedisTarget, as_text
from realtime.redis_store import RECORD_STREAM

logger = logging.getLogger(__name__)

GROUP = "recorder"
# Entries read per step: a backlog after downtime is stored in steps of this many.
READ_COUNT = 200
# How long one read waits for new entries; also how fast a stop is noticed.
BLOCK_MS = 1000
# An entry read but not acknowledged for this long belongs to a recorder that died.
CLAIM_AFTER_MS = 30_000
# Between steps that found less than a full batch: the record is this much behind at most
# (snapshots do not depend on it: their cursor stops where the record is complete), and a
# busy chat stores a batch per transaction instead of a transaction per message.
LINGER = 0.05
# A snapshot's cursor goes back to where the record is complete unless that is further back
# than this (a recorder that is down): then it stays with the bus, whose history the page
# could not resume from anyway.
MAX_RECORD_LAG_MS = 30_000
# One process at a time listens for raw PUBLISHes (each would otherwise store them too).
RAW_LEASE_KEY = "sse:recorder:raw"
RAW_LEASE_MS = 10_000


def deliver(envelopes: list[dict[str, Any]]) -> None:
    """Hand validated envelopes to the receivers; raises if a receiver failed (retry later)."""
    if not envelopes:
        return
    for _receiver, response in signals.events_to_record.send_robust(sender=None, envelopes=envelopes):
        if isinstance(response, Exception):
            raise response
    stats["recorded"] += len(envelopes)


def _valid(raw: bytes | str, channel: str) -> dict[str, Any] | None:
    try:
        return parse_incoming(raw, channel)
    except InvalidEvent:
        return None
    except Exception:  # noqa: BLE001 - any bad input is dropped, like the hub does
        return None


class StreamRecorder:
    """One server process's reader of `sse:record` (a loop of single steps)."""

    def __init__(self, client: redis.Redis, consumer: str | None = None) -> None:
        self.client = client
        self.consumer = consumer or f"{socket.gethostname()}:{os.getpid()}"
        self._group_ready = False
        self._next_claim = 0.0
        # Read this consumer's own unacknowledged entries first: at start, and after a step
        # that failed between reading and acknowledging.
        self._recovering = True

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # From the start of the stream: events written before any recorder ran count too.
            self.client.xgroup_create(RECORD_STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def step(self, block_ms: int = BLOCK_MS) -> int:
        """Store what is waiting (after a failure, own unacknowledged entries first); returns
        how many entries it handled."""
        self._ensure_group()
        try:
            entries = (self._read("0", 0) if self._recovering else []) or self._claim() or self._read(">", block_ms)
        except redis.ResponseError as exc:
            if "NOGROUP" in str(exc):  # Redis restarted empty: the group is gone
                self._group_ready = False
                return 0
            raise
        self._recovering = True  # until this batch is stored and acknowledged
        if not entries:
            self._recovering = False
            return 0
        envelopes = []
        for _entry_id, fields in entries:
            channel = as_text(fields.get(b"c", b""))
            event = _valid(fields.get(b"e", b""), channel) if channel.startswith(SESSION_PREFIX) else None
            if event is not None:
                envelopes.append(event)
        deliver(envelopes)
        self.client.xack(RECORD_STREAM, GROUP, *[entry_id for entry_id, _ in entries])
        self._recovering = False
        return len(entries)

    def _read(self, start: str, block_ms: int) -> list[Any]:
        answer: Any = self.client.xreadgroup(
            GROUP, self.consumer, {RECORD_STREAM: start}, count=READ_COUNT, block=block_ms or None
        )
        return [(i, f) for _, items in (answer or []) for i, f in items if f]

    def _claim(self) -> list[Any]:
        if time.monotonic() < self._next_claim:
            return []
        self._next_claim = time.monotonic() + CLAIM_AFTER_MS / 1000 / 2
        answer: Any = self.client.xautoclaim(
            RECORD_STREAM, GROUP, self.consumer, min_idle_time=CLAIM_AFTER_MS, start_id="0-0", count=READ_COUNT
        )
        return [(i, f) for i, f in answer[1] if f]


def unrecorded_from(client: redis.Redis) -> str | None:
    """The id before which every event of the record stream is in the database, or None when
    nothing is outstanding. One round trip; two while entries wait to be handed to a recorder.

    The stream's entries carry their events' ids, so this is `before_id` of the first entry not
    stored yet: the oldest read but not acknowledged, else the first the recorders' group has
    not been handed, or the stream's first while there is no group (a Redis restarted empty,
    before a recorder made the group again).
    """
    pipe = client.pipeline(transaction=False)
    pipe.xinfo_stream(RECORD_STREAM)
    pipe.xinfo_groups(RECORD_STREAM)
    pipe.xpending(RECORD_STREAM, GROUP)
    info, groups, pending = pipe.execute(raise_on_error=False)
    if isinstance(info, Exception):
        return None  # no stream: nothing was ever published for the record
    group = (
        None
        if isinstance(groups, Exception)
        else next((g for g in groups if as_text(g.get("name", b"")) == GROUP), None)
    )
    if group is None:
        first = info.get("first-entry")
        return before_id(as_text(first[0])) if first else None
    if isinstance(pending, dict) and int(pending.get("pending") or 0):
        return before_id(as_text(pending["min"]))
    delivered = as_text(group.get("last-delivered-id", b"0-0"))
    last = as_text(info.get("last-generated-id", b"0-0"))
    if parse_event_id(delivered) >= parse_event_id(last):
        return None
    # Not `delivered` itself: a group handed nothing yet says "0-0" (one just made again on a
    # Redis restarted empty), which would pass for a recorder far behind, and after a quiet
    # while the last entry handed out is old too; either way the snapshot's cursor would be
    # left with the bus, after events the record does not hold yet.
    following: Any = client.xrange(RECORD_STREAM, min="(" + delivered, max="+", count=1)
    return before_id(as_text(following[0][0])) if following else None


def unrecorded_lag_ms(cursor: str, start: str) -> int:
    """How far (in the ids' milliseconds) the record is behind the bus."""
    return parse_event_id(cursor)[0] - parse_event_id(start)[0]


class RawRecorder:
    """Stores raw PUBLISHes on session channels, in the one process that holds the lease.

    `listener` is a client without retries (`RedisTarget.sync_client(pubsub=True)`): a lost
    connection must end the subscription visibly, not be replaced behind our back.
    """

    def __init__(self, client: redis.Redis, owner: str | None = None, listener: redis.Redis | None = None) -> None:
        self.client = client
        self.listener = listener or client
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self._pubsub: Any = None
        self._renew_at = 0.0
        self._unsaved: list[dict[str, Any]] = []

    def _holds_lease(self) -> bool:
        now = time.monotonic()
        if now < self._renew_at:
            return True
        mine = self.client.set(RAW_LEASE_KEY, self.owner, nx=True, px=RAW_LEASE_MS)
        if not mine and as_text(self.client.get(RAW_LEASE_KEY) or b"") == self.owner:
            self.client.pexpire(RAW_LEASE_KEY, RAW_LEASE_MS)
            mine = True
        self._renew_at = now + RAW_LEASE_MS / 1000 / 3 if mine else now + 1.0
        return bool(mine)

    def step(self, timeout: float = 1.0) -> int:
        """Store the raw messages that arrive within `timeout` (if this process holds the
        lease); returns how many messages it read (most, the publish path's own, are skipped).
        A batch the database refused is tried again first."""
        if self._unsaved:
            deliver(self._unsaved)
            self._unsaved = []
        if not self._holds_lease():
            self.stop_listening()
            time.sleep(timeout)
            return 0
        if self._pubsub is None:
            self._pubsub = self.listener.pubsub(ignore_subscribe_messages=True)
            self._pubsub.psubscribe(SESSION_PREFIX + "*")
        envelopes: list[dict[str, Any]] = []
        wait = timeout
        handled = 0
        for _ in range(READ_COUNT):
            message = self._next_message(wait)
            if message is None:
                break
            wait = 0.0
            handled += 1
            raw = message.get("data")
            if message.get("type") != "pmessage" or not isinstance(raw, (bytes, str)) or _has_id(raw):
                continue  # the publish path's own events: the record stream brings those
            event = _valid(raw, as_text(message.get("channel")))
            if event is not None and "id" not in event:
                event.setdefault("payload", {}).setdefault("message_id", raw_message_id(raw))
                envelopes.append(event)
        self._unsaved = envelopes
        deliver(envelopes)
        self._unsaved = []
        return handled

    def _next_message(self, wait: float) -> dict[str, Any] | None:
        """The next message, once its first bytes are there within `wait` seconds.

        Not `get_message(timeout=wait)`: redis-py (8.1) applies that timeout to reading the
        whole message, and a large message still arriving when it runs out is cut: the
        connection is dropped and the rest of the burst lost. Waiting for the first bytes,
        then giving the message a command's time to complete, loses nothing.
        """
        if not self._pubsub.connection.can_read(timeout=wait):
            return None
        message: dict[str, Any] | None = self._pubsub.get_message(timeout=COMMAND_TIMEOUT)
        return message

    def stop_listening(self) -> None:
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except (redis.RedisError, OSError):
                pass
            self._pubsub = None


def _has_id(raw: bytes | str) -> bool:
    # The publish scripts write `id` first: a cheap test that skips nearly every message
    # without decoding it (this process sees every session channel's traffic).
    if isinstance(raw, bytes):
        return raw.startswith(b'{"id":"')
    return raw.startswith('{"id":"')


def _loop(name: str, step: Any, on_error: Any = None) -> None:
    """Run `step` for ever; a failure is logged once, retried every second. After a step that
    found less than a full batch, wait LINGER: the next one then stores a batch, not an event."""
    from django.db import close_old_connections

    failing = False
    while True:
        try:
            stored = step()
            # Back to the pool (PostgreSQL, DATABASE_POOL_SIZE) between steps: a thread that
            # kept its connection for ever would take one of the few a process has.
            close_old_connections()
            if stored < READ_COUNT:
                time.sleep(LINGER)
        except Exception as exc:
            if isinstance(exc, REDIS_ERRORS):
                if not failing:
                    logger.warning("recorder %s cannot reach Redis, retrying every second: %s", name, exc)
                if on_error is not None:
                    on_error()
            else:
                logger.exception("recorder %s step failed; retrying", name)
                close_old_connections()  # a broken database connection is opened anew
            failing = True
            time.sleep(1.0)
            continue
        if failing:
            logger.info("recorder %s is working again", name)
            failing = False


def start_redis_recorders(target: RedisTarget) -> None:
    client = target.sync_client()
    stream = StreamRecorder(client)
    raw = RawRecorder(client, listener=target.sync_client(pubsub=True))
    threading.Thread(target=_loop, args=("stream", stream.step), name="sse-recorder", daemon=True).start()
    threading.Thread(
        target=_loop, args=("raw", raw.step, raw.stop_listening), name="sse-recorder-raw", daemon=True
    ).start()


class MemoryRecorder:
    """Session events this process published without Redis (the in-memory layer, or a Redis
    that was unreachable): a queue, and a thread that stores them.

    Items are taken from the queue only while `_store_lock` is held, so `drain()` (a snapshot
    about to read the record) sees every event published before it: queued, or being stored.
    """

    # A process without the thread keeps at most this many; the thread stores them within
    # milliseconds.
    MAX_QUEUED = 100_000
    # A batch the database refused this many times in a row is dropped (and counted), so one
    # bad event cannot hold up the rest for ever; a database outage shorter than that (the
    # thread retries every second) loses nothing.
    MAX_ATTEMPTS = 30

    def __init__(self) -> None:
        self._items: deque[str] = deque()
        self._ready = threading.Condition()  # guards _items; notified on submit
        self._store_lock = threading.Lock()  # taking items and storing them
        self._pending: list[str] = []  # taken, not yet stored
        self._attempts = 0
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items) + len(self._pending)

    def submit(self, envelope: str) -> None:
        """Store an event: at once outside an event loop (a script, a sync view's thread);
        from an event loop through the queue and the thread (started here in a process that
        has none yet, such as a chatbot process, unless SSE_BACKGROUND is off)."""
        if self._thread is None and not _in_event_loop():
            event = _json(envelope)
            if event is not None:
                try:
                    deliver([event])
                except Exception:
                    stats["record_dropped"] += 1
                    logger.exception("a session event could not be stored")
            return
        if self._thread is None and settings.SSE_BACKGROUND:
            self.start()
        self.enqueue(envelope)

    def enqueue(self, envelope: str) -> None:
        """Queue an event for the next step (the thread's, or a `drain`)."""
        with self._ready:
            if len(self._items) >= self.MAX_QUEUED:
                stats["record_dropped"] += 1
                logger.error("the recorder queue is full: a session event was not stored")
                return
            self._items.append(envelope)
            self._ready.notify()

    def clear(self) -> None:
        """Forget what is queued (tests: what one test published is not another's)."""
        with self._store_lock, self._ready:
            self._items.clear()
            self._pending, self._attempts = [], 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=_loop, args=("memory", lambda: self.step(1.0)), name="sse-recorder-memory", daemon=True
                )
                self._thread.start()

    def step(self, timeout: float | None = None) -> int:
        """Store what is queued (waits for the first item up to `timeout`); returns how many.

        A batch the database refuses stays for the next step (see MAX_ATTEMPTS).
        """
        with self._ready:
            if not self._items and not self._pending and timeout:
                self._ready.wait(timeout)
        with self._store_lock:
            return self._store_some()

    def drain(self) -> None:
        """Store everything queued, now (a snapshot about to read the record)."""
        with self._store_lock:
            while self._store_some():
                pass

    def _store_some(self) -> int:
        with self._ready:
            while self._items and len(self._pending) < READ_COUNT:
                self._pending.append(self._items.popleft())
        items = self._pending
        if not items:
            return 0
        envelopes = [event for event in (_json(item) for item in items) if event is not None]
        self._attempts += 1
        try:
            deliver(envelopes)
        except Exception:
            if self._attempts < self.MAX_ATTEMPTS:
                raise
            stats["record_dropped"] += len(items)
            logger.error("dropped %d session event(s) the database refused %d times", len(items), self._attempts)
        self._pending, self._attempts = [], 0
        return len(items)


def _in_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _json(raw: str) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


_memory = MemoryRecorder()


def memory_recorder() -> MemoryRecorder:
    return _memory
