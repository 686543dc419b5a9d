"""The transactional outbox: a command's events are rows written with its change, published
after the commit by the product itself.

    write (in the command's transaction) -> commit -> flush() in the committing thread
                                                   -> the relay thread of any server process
                                                      retries what is left, oldest first

Every flush takes what is left to publish oldest first and publishes it batch by batch (a
batch is one transaction's events). A batch is published once even when two flushes race
for it or one dies between publishing and marking: Redis remembers each batch for an hour
(`OUTBOX_DEDUPE_SECONDS`) and answers a repeat with the ids it gave the first time. Since
every flush goes oldest first and a batch is done before the next is tried, the events of
one session (whose commands the database orders) go out in commit order.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import redis
from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.utils import timezone

from realtime import signals
from realtime.envelope import Draft, format_event_id, parse_event_id, with_id
from realtime.health import health
from realtime.hub import stats
from realtime.models import OutboxEvent
from realtime.redis_conn import REDIS_ERRORS, as_text
from realtime.redis_store import OUTBOX_DEDUPE_PREFIX

logger = logging.getLogger(__name__)

# Rows read per flush: a backlog after an outage drains in steps of this many.
FLUSH_ROWS = 500
# How long a committing thread waits for the relay to publish its batch before it answers
# without the ids (the events still go out: the relay or another process publishes them).
HANDOFF_SECONDS = 5.0
# The relay thread looks for leftovers this often (rows a committing thread could not
# publish: Redis was down, or the process died right after the commit).
RELAY_INTERVAL = 1.0
# Published rows are pruned this often, in chunks small enough that a large backlog never
# holds the database (or this process's memory) for long.
PRUNE_EVERY = 3600.0
PRUNE_CHUNK = 2000
# Retention when SSE_HISTORY_TTL_SECONDS is 0 (history never expires): a week.
PRUNE_DEFAULT_SECONDS = 7 * 86_400


@dataclass
class Batch:
    """The events one transaction wrote; `ids` is filled in once they are published."""

    key: str
    drafts: list[Draft]
    ids: list[str] = field(default_factory=list)
    rows: list[OutboxEvent] = field(default_factory=list)


def write(drafts: list[Draft], using: str | None = None) -> Batch:
    """Store `drafts` as one batch in the current transaction; publish after the commit."""
    batch = Batch(uuid.uuid4().hex, drafts)
    batch.rows = OutboxEvent.objects.using(using).bulk_create(
        [OutboxEvent(batch=batch.key, channel=d.channel, type=d.type, body=d.body) for d in drafts]
    )
    transaction.on_commit(lambda: _after_commit(batch), using=using, robust=True)
    return batch


def _after_commit(batch: Batch) -> None:
    running = relay()
    if running.running and not health.degraded:
        # The process's relay publishes it, with every other batch committed meanwhile: one
        # flush for many commits, instead of each committing thread flushing in turn while it
        # holds its database connection (the contact-centre benchmark, bench/README.md).
        if connection.settings_dict.get("OPTIONS", {}).get("pool"):
            # Pooled (PostgreSQL): the connection goes back while this thread waits, for the
            # requests behind it; what the request still reads takes one again.
            connection.close()
        ids = running.publish(batch.key, HANDOFF_SECONDS)
    else:
        # No relay in this process (tests, management commands, SSE_BACKGROUND=false), or Redis
        # is down (a flush here finds that out at once, without waiting for a relay's step).
        ids = flush().get(batch.key)
    if ids is None:
        # Published by another thread or process meanwhile, or still waiting for Redis.
        found = dict(OutboxEvent.objects.filter(batch=batch.key).values_list("pk", "event_id"))
        ids = [found.get(row.pk, "") for row in batch.rows]
        relay().wake()
    batch.ids = ids if all(ids) else []


_flush_lock = threading.Lock()


def flush(limit: int = FLUSH_ROWS) -> dict[str, list[str]]:
    """One step: publish what is left, oldest first; returns the ids of each batch published.

    Stops at the first batch Redis cannot take (the rest must not overtake it).
    """
    from realtime.bus import get_layer, reached_redis

    layer = get_layer()
    published: dict[str, list[str]] = {}
    # The connection first, the lock second: the committing threads wait for the lock while
    # holding their connections, so a flush that took the lock and then waited for a
    # connection from a pool they had emptied (PostgreSQL, DATABASE_POOL_SIZE) would wait for
    # ever (until the pool's timeout).
    connection.ensure_connection()
    done: list[tuple[list[OutboxEvent], list[str]]] = []
    with _flush_lock:
        rows = list(OutboxEvent.objects.filter(published_at__isnull=True).order_by("pk")[:limit])
        groups: dict[str, list[OutboxEvent]] = {}
        for row in rows:
            groups.setdefault(row.batch, []).append(row)
        if len(rows) == limit and groups:
            # The limit may have cut the last batch short. A batch goes out whole or not at all:
            # Redis remembers a batch by its key and answers a repeat with the ids it gave the
            # first time, so a part published once would keep the rest from ever going out.
            last = next(reversed(groups))
            groups[last] = list(OutboxEvent.objects.filter(batch=last, published_at__isnull=True).order_by("pk"))
        for key, members in groups.items():
            if not health.should_try():
                break
            drafts = [Draft(row.channel, row.type, row.body) for row in members]
            try:
                ids = layer.publish_batch_sync(drafts, key)
            except REDIS_ERRORS as exc:
                health.mark_down(f"Redis is unreachable: {exc}")
                logger.warning("outbox: %d event(s) wait for Redis: %s", len(rows), exc)
                break
            reached_redis()
            done.append((members, ids))
            published[key] = ids
            stats["outbox_published"] += len(ids)
        # All the batches of one flush marked in one transaction, still under the lock: two
        # flushes marking the same rows at once (one that found the other's batches published
        # but not yet marked) deadlock on PostgreSQL, each holding some of the rows.
        if done:
            _mark(done)
    return published


def _mark(done: list[tuple[list[OutboxEvent], list[str]]]) -> None:
    now = timezone.now()
    rows = []
    for members, ids in done:
        for row, event_id in zip(members, ids, strict=True):
            row.event_id = event_id
            row.published_at = now
            rows.append(row)
    with transaction.atomic():
        OutboxEvent.objects.bulk_update(rows, ["event_id", "published_at"])
        signals.outbox_published.send(sender=OutboxEvent, rows=rows)


def published_on(channel: str, limit: int, *, upto: str | None = None) -> list[dict[str, Any]]:
    """The latest `limit` commands' events published on `channel`, oldest first, as envelopes
    (from the database: they outlive the bus's history); with `upto`, none after that id."""
    rows = OutboxEvent.objects.filter(channel=channel).exclude(event_id="").order_by("-pk")
    last = parse_event_id(upto) if upto else None
    events = []
    for event_id, body in rows.values_list("event_id", "body")[: limit * 2]:
        if last is not None and parse_event_id(event_id) > last:
            continue
        events.append(json.loads(with_id(event_id, body)))
        if len(events) == limit:
            break
    return events[::-1]


def pending_count() -> int:
    return OutboxEvent.objects.filter(published_at__isnull=True).count()


# Unmarked rows looked at for batches already published (see first_published_unmarked).
UNMARKED_LOOKUP_ROWS = 200


def first_published_unmarked(client: redis.Redis) -> str | None:
    """The first id of the batches Redis has published whose rows are not marked yet (a flush
    between its publish and its marks, up to a transaction later), or None.

    A snapshot's cursor must stop before it: the record still shows those events as waiting
    (leaving out all but chat messages), and a stream resumed after their ids would skip them.
    Flushes publish the oldest first, so only the oldest unmarked rows are looked at: one
    indexed query, and one MGET of their batches' keys while rows wait.
    """
    rows = OutboxEvent.objects.filter(published_at__isnull=True).order_by("pk")
    keys = list(dict.fromkeys(rows.values_list("batch", flat=True)[:UNMARKED_LOOKUP_ROWS]))
    if not keys:
        return None
    firsts = [
        parse_event_id(as_text(done).split(",", 1)[0])
        for done in client.mget([OUTBOX_DEDUPE_PREFIX + key for key in keys])
        if done
    ]
    return format_event_id(*min(firsts)) if firsts else None


def retention_seconds() -> int:
    """How long published rows are kept: as long as the bus keeps a channel's history (the
    feed and resumes never look further back), at least a day; the record of each session's
    events is kept for good in the dashboard's own table."""
    return max(settings.SSE_HISTORY_TTL_SECONDS or PRUNE_DEFAULT_SECONDS, 86_400)


def prune(now: datetime | None = None) -> int:
    """One step: delete published rows older than the retention, a chunk at a time; returns
    how many. Rows still waiting to be published are never touched."""
    cutoff = (now or timezone.now()) - timedelta(seconds=retention_seconds())
    deleted = 0
    while True:
        chunk = list(
            OutboxEvent.objects.filter(published_at__lt=cutoff)
            .order_by("pk")
            .values_list("pk", flat=True)[:PRUNE_CHUNK]
        )
        if not chunk:
            return deleted
        with transaction.atomic():
            OutboxEvent.objects.filter(pk__in=chunk).delete()
        deleted += len(chunk)


class Relay:
    """A thread per server process that publishes the batches its committing threads hand it,
    and what was left (Redis was down, a process died after its commit), oldest first."""

    def __init__(self, step: Callable[[], dict[str, list[str]]] = flush, interval: float = RELAY_INTERVAL) -> None:
        self.step = step
        self.interval = interval
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = False
        # The batches committing threads wait for, the ids of those published, and the steps
        # done so far: a thread whose batch a step begun after its commit did not publish
        # (another process did) stops waiting.
        self._done = threading.Condition()
        self._wanted: set[str] = set()
        self._results: dict[str, list[str]] = {}
        self._steps = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopping

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(target=self._run, name="sse-outbox-relay", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """For tests: end the thread after its current step."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def publish(self, key: str, timeout: float) -> list[str] | None:
        """Wake the relay for a batch just committed and wait for its ids; None when a step that
        began after the commit did not publish it (another process did, or Redis is down), or
        after `timeout` seconds."""
        with self._done:
            self._wanted.add(key)
            begun = self._steps
        self.wake()
        deadline = time.monotonic() + timeout
        with self._done:
            try:
                # The step under way when the batch was handed in may have begun before the
                # commit; the one after it cannot have.
                while key not in self._results and self._steps < begun + 2:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._done.wait(left)
                return self._results.get(key)
            finally:
                self._wanted.discard(key)
                self._results.pop(key, None)

    def _told(self, published: dict[str, list[str]]) -> None:
        with self._done:
            for key, ids in published.items():
                if key in self._wanted:
                    self._results[key] = ids
            self._steps += 1
            self._done.notify_all()

    def _run(self) -> None:
        next_prune = time.monotonic() + PRUNE_EVERY
        while not self._stopping:
            self._wake.wait(self.interval)
            self._wake.clear()
            published: dict[str, list[str]] | None = {}
            try:
                while True:
                    published = self.step()
                    self._told(published)
                    if sum(len(ids) for ids in published.values()) < FLUSH_ROWS:
                        break  # else a backlog: keep going
                published = None
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + PRUNE_EVERY
                    pruned = prune()
                    if pruned:
                        logger.info("outbox: pruned %d published event(s)", pruned)
            except Exception:
                logger.exception("outbox relay step failed")
                # A broken connection is opened anew next time. A good one is kept: committing
                # threads wait for this thread holding theirs, so with a pool (PostgreSQL) a
                # relay that had to ask the pool for one could wait behind them for ever.
                close_old_connections()
            finally:
                if published is not None:
                    self._told({})  # a step failed: the waiting must not wait for it


_relay = Relay()


def relay() -> Relay:
    return _relay
