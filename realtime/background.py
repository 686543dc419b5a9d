"""The server process's background threads: the outbox relay and the recorder.

Started once per server process by `sse_project.asgi` (never by management commands or
tests, which drive the single steps themselves). No extra process is needed: every daphne
process runs them, and they share the work through the database and Redis.
"""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger(__name__)

_started = False
_lock = threading.Lock()


def start() -> None:
    global _started
    with _lock:
        if _started:
            return
        _started = True
    from realtime import outbox, recorder
    from realtime.bus import get_layer

    outbox.relay().start()
    # The memory recorder also takes what helpers deliver locally while Redis is unreachable.
    recorder.memory_recorder().start()
    target = get_layer().redis_target
    if target is not None:
        recorder.start_redis_recorders(target)
    logger.info("outbox relay and recorder started")
