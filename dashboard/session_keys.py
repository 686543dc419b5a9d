"""The session keys in Redis: `session:{name}` (the session as JSON) and `status:{status}` (sets
of names), kept current for other services whenever Redis is configured.

The database is the record: these keys are a copy, rewritten after every change and rebuilt
from the database when a Redis comes back without its data (`dashboard.record`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from typing import Any

import redis

from dashboard.models import ChatSession, Status
from realtime.bus import redis_client

logger = logging.getLogger(__name__)


SESSION_KEY = "session:{name}"
STATUS_KEY = "status:{status}"
# Every state key lives on the server that holds this key (one server in practice), so the
# script below can update a session and its status sets in one atomic step.
STATE_SHARD = "session-state"

# KEYS: session:{name}, then status:{s} for each status. ARGV: JSON, version, status, name.
# A writer holding an older version than the stored one changes nothing: two processes that
# write after their commits in the other order cannot leave an old state behind.
SYNC_SCRIPT = """
local current = redis.call('GET', KEYS[1])
if current then
  local ok, stored = pcall(cjson.decode, current)
  if ok and type(stored) == 'table' and tonumber(stored['version']) and
     tonumber(stored['version']) > tonumber(ARGV[2]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1])
for i = 2, #KEYS do
  if KEYS[i] == 'status:' .. ARGV[3] then
    redis.call('SADD', KEYS[i], ARGV[4])
  else
    redis.call('SREM', KEYS[i], ARGV[4])
  end
end
return 1
"""


def redis_state(session: ChatSession) -> dict[str, Any]:
    """What `session:{name}` holds: the session object (minus the clock-dependent
    `waiting_seconds`) and the row's version."""
    return {**session.state_json(), "version": session.version}


def sync_to_redis(session: ChatSession) -> bool:
    """Rewrite the session keys for `session` when Redis is configured; True if written.

    The database stays the record: a Redis failure is logged, the next change (or
    `manage.py sync_session_keys`) rewrites the keys.
    """
    try:
        client = redis_client(STATE_SHARD)
        if client is None:
            return False
        keys = [SESSION_KEY.format(name=session.name), *(STATUS_KEY.format(status=s) for s in Status.values)]
        args: list[str | int] = [
            json.dumps(redis_state(session), separators=(",", ":")),
            session.version,
            session.status,
            session.name,
        ]
        # register_script runs EVALSHA and loads the script only when the server lacks it.
        return bool(client.register_script(SYNC_SCRIPT)(keys=keys, args=args))
    except (redis.RedisError, OSError) as exc:
        logger.error("could not write the Redis keys of session %s: %s", session.name, exc)
        return False


def sync_all_to_redis(sessions: Iterable[ChatSession] | None = None) -> int:
    """Rewrite the keys of every session (after a Redis restart); returns how many were written."""
    rows = sessions if sessions is not None else ChatSession.objects.select_related("agent", "supervisor").iterator()
    return sum(1 for session in rows if sync_to_redis(session))
