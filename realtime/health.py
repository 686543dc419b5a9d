"""Whether this process reaches Redis: one answer for the sync paths, `/healthz` and the hubs.

Two things are tracked, because they fail apart:

- the links (one pub/sub connection per event loop, `realtime.link`) report when they lose
  Redis and when they are back (after replaying what was missed): while one is down the
  process is degraded, its streams hear only this process's events;
- publishing (the helpers, `POST /api/publish`, the outbox) reports its own failures. While
  a publish has just failed, sync publishers try Redis at most every `RETRY_WHILE_DOWN`
  seconds and deliver locally in between, so a request never waits on a Redis that is known
  to be down. A lost pub/sub connection alone does not stop publishing: Redis may be fine
  (a killed connection, a failover already over), and an event that reaches Redis reaches
  every process.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Often enough that publishing goes back to Redis well within the contract's 5 s once it is
# back; rare enough that a stopped Redis costs a refused connection twice a second, not per call.
RETRY_WHILE_DOWN = 0.5

OK = "ok"
DEGRADED = "degraded"


@dataclass(frozen=True)
class BusState:
    state: str
    reason: str
    since: float  # time.time() of the last change


class BusHealth:
    """Thread-safe: links run on event loops, sync publishers in request threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = BusState(OK, "", time.time())
        self._next_try = 0.0
        self._publish_failed = False  # the last publish could not reach Redis
        self.degradations = 0  # times the state went from ok to degraded (/metrics)

    @property
    def current(self) -> BusState:
        return self._state

    @property
    def degraded(self) -> bool:
        return self._state.state == DEGRADED

    def mark_down(self, reason: str, *, publishing: bool = True) -> bool:
        """Record that Redis cannot be reached; True if this changed the state.

        `publishing=False`: only a link lost its connection; publishers go on trying Redis.
        """
        with self._lock:
            if publishing:
                self._publish_failed = True
                self._next_try = time.monotonic() + RETRY_WHILE_DOWN
            if self._state.state == DEGRADED:
                return False
            self._state = BusState(DEGRADED, reason, time.time())
            self.degradations += 1
        logger.warning("the realtime bus is degraded: %s", reason)
        return True

    def mark_up(self) -> bool:
        with self._lock:
            self._publish_failed = False
            if self._state.state == OK:
                return False
            down_for = time.time() - self._state.since
            self._state = BusState(OK, "", time.time())
        logger.warning("the realtime bus is back after %.1f s", down_for)
        return True

    def note_success(self) -> None:
        """A publish reached Redis: publishers try Redis on every call again (the links still
        decide when the process is healthy: after they have replayed what was missed)."""
        self._publish_failed = False

    def should_try(self) -> bool:
        """May a sync publisher try Redis now? Unless a publish just failed: now and then."""
        if not self._publish_failed:
            return True
        with self._lock:
            now = time.monotonic()
            if now < self._next_try:
                return False
            self._next_try = now + RETRY_WHILE_DOWN
            return True


health = BusHealth()
