"""The Redis side of the bus: key names, the Lua scripts that publish, and reading history.

Each script allocates ids from one `<ms>-<seq>` sequence per Redis (taken from the Redis
clock, so ids keep rising across a restart of a Redis that keeps nothing on disk), appends
to the channel's capped stream (history) and PUBLISHes the envelope on the channel's own
name, all in one atomic round trip: history and the live stream can never disagree.
"""

from __future__ import annotations

from typing import Any

from redis import asyncio as aioredis

from realtime.channels import SESSION_PREFIX
from realtime.envelope import with_id
from realtime.history import ChannelHistoryState, Resume, StoredEvent, decide_resume
from realtime.redis_conn import as_text

SEQUENCE_KEY = "sse:seq"  # the latest id this Redis handed out
ORIGIN_KEY = "sse:origin"  # the first id of this Redis's life: older ids cannot be resumed
HISTORY_PREFIX = "sse:history:"
# Session-channel events that came through the publish path (not the outbox), for the
# product's recorder to store in the database. Capped: the recorder is normally a few
# milliseconds behind; 100k entries ride out a recorder that is down for a long while.
RECORD_STREAM = "sse:record"
RECORD_MAXLEN = 100_000
# The outbox relay marks each published batch here, so a batch two relays race for (or
# one that crashed between publishing and marking) goes out once. Long enough to cover any
# relay's retry of the same rows; short enough that the keys stay few.
OUTBOX_DEDUPE_PREFIX = "sse:outbox:"
OUTBOX_DEDUPE_SECONDS = 3600


def history_key(channel: str) -> str:
    return HISTORY_PREFIX + channel


# --- how each script is called: its keys and arguments, built here only ---------------------

CURSOR_KEYS = (SEQUENCE_KEY, ORIGIN_KEY)


def publish_call(channel: str, body: str, history_size: int, ttl: int) -> tuple[list[str], list[Any]]:
    """PUBLISH_SCRIPT's keys and arguments for one event. Session-channel events from the
    publish path also go to the record stream (the recorder stores them in the database);
    the outbox's are stored with their command already."""
    recorded = "1" if channel.startswith(SESSION_PREFIX) else "0"
    return [SEQUENCE_KEY, ORIGIN_KEY, history_key(channel), RECORD_STREAM], [channel, body, history_size, ttl, recorded]


def publish_batch_call(
    items: list[tuple[str, str]], batch_key: str, history_size: int, ttl: int
) -> tuple[list[str], list[Any]]:
    """PUBLISH_BATCH_SCRIPT's keys and arguments for a batch of (channel, body)."""
    keys = [SEQUENCE_KEY, ORIGIN_KEY, OUTBOX_DEDUPE_PREFIX + batch_key, *(history_key(c) for c, _ in items)]
    args: list[Any] = [history_size, ttl, OUTBOX_DEDUPE_SECONDS]
    for channel, body in items:
        args += [channel, body]
    return keys, args


_NEXT_ID = """
local function next_id(seq_key, origin_key)
  local t = redis.call('TIME')
  local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  local seq = 0
  local last = redis.call('GET', seq_key)
  if last then
    local lms, lseq = string.match(last, '^(%d+)-(%d+)$')
    lms = tonumber(lms)
    lseq = tonumber(lseq)
    if ms <= lms then
      ms = lms
      seq = lseq + 1
    end
  end
  local id = string.format('%d-%d', ms, seq)
  redis.call('SET', seq_key, id)
  redis.call('SET', origin_key, id, 'NX')
  return id
end

local function emit(history, channel, body, size, ttl)
  local id = next_id(KEYS[1], KEYS[2])
  local envelope = '{"id":"' .. id .. '",' .. string.sub(body, 2)
  if size > 0 then
    redis.call('XADD', history, 'MAXLEN', size, id, 'e', body)
    if ttl > 0 then redis.call('EXPIRE', history, ttl) end
  end
  redis.call('PUBLISH', channel, envelope)
  return id, envelope
end
"""

# KEYS: sequence, origin, history, record stream.
# ARGV: channel, envelope JSON without id, history size, history ttl (0 = none), record (0/1).
PUBLISH_SCRIPT = (
    _NEXT_ID
    + """
local id, envelope = emit(KEYS[3], ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
if ARGV[5] == '1' then
  -- Under the event's own id, so how far the recorder got is a bus id (recorded_through).
  -- Ids only grow, so this cannot fail; if it ever did, '*' keeps the event for the record.
  local ok = redis.pcall('XADD', KEYS[4], 'MAXLEN', '~', """
    + str(RECORD_MAXLEN)
    + """, id, 'c', ARGV[1], 'e', envelope)
  if type(ok) == 'table' and ok.err then
    redis.call('XADD', KEYS[4], 'MAXLEN', '~', """
    + str(RECORD_MAXLEN)
    + """, '*', 'c', ARGV[1], 'e', envelope)
  end
end
return id
"""
)

# KEYS: sequence, origin, dedupe key, then one history key per event.
# ARGV: history size, history ttl, dedupe ttl, then channel and body for each event.
# Returns the ids, in order; the same ids again if this batch was published before.
PUBLISH_BATCH_SCRIPT = (
    _NEXT_ID
    + """
local done = redis.call('GET', KEYS[3])
if done then
  local ids = {}
  for id in string.gmatch(done, '[^,]+') do table.insert(ids, id) end
  return ids
end
local size = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local ids = {}
for i = 4, #KEYS do
  local n = (i - 4) * 2 + 4
  local id = emit(KEYS[i], ARGV[n], ARGV[n + 1], size, ttl)
  table.insert(ids, id)
end
redis.call('SET', KEYS[3], table.concat(ids, ','), 'EX', tonumber(ARGV[3]))
return ids
"""
)

# KEYS: sequence, origin. The latest id, starting the sequence if this Redis is new.
CURSOR_SCRIPT = (
    _NEXT_ID
    + """
local last = redis.call('GET', KEYS[1])
if last then return last end
return next_id(KEYS[1], KEYS[2])
"""
)


def _envelope_text(value: Any) -> str:
    """A history entry's envelope as text; "" for what cannot be one (an entry written to the
    stream by something else), which the reader then drops and counts like any bad message."""
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return ""
    return value if isinstance(value, str) else ""


def stored_from_stream(channel: str, entry_id: Any, fields: dict[Any, Any]) -> StoredEvent:
    event_id = as_text(entry_id)
    return StoredEvent(event_id, channel, with_id(event_id, _envelope_text(fields.get(b"e", fields.get("e")))))


async def read_resume(client: aioredis.Redis, channels: list[str], after_id: str, size: int) -> Resume:
    """Missed events of `channels` after `after_id`, or a reset: one round trip.

    A Redis error on any part of the read means the gap cannot be ruled out: reset.
    """
    if size <= 0:
        return decide_resume(after_id, None, size, {}, [])
    pipe = client.pipeline(transaction=False)
    pipe.get(ORIGIN_KEY)
    pipe.get(SEQUENCE_KEY)
    for channel in channels:
        key = history_key(channel)
        pipe.xrevrange(key, max=after_id, min="-", count=1)
        pipe.xinfo_stream(key)
        pipe.xrange(key, min="(" + after_id, max="+", count=size)
    results = await pipe.execute(raise_on_error=False)
    origin, latest = (as_text(r) if isinstance(r, (bytes, str)) else None for r in results[:2])
    if any(isinstance(r, Exception) and not _is_missing_key(r) for r in results):
        return Resume(reset=True, reason="history could not be read")
    states: dict[str, ChannelHistoryState] = {}
    events: list[StoredEvent] = []
    for index, channel in enumerate(channels):
        before, info, after = results[2 + 3 * index : 5 + 3 * index]
        trimmed = isinstance(info, dict) and int(info.get("entries-added", 0)) > int(info.get("length", 0))
        kept_before = isinstance(before, list) and bool(before)
        states[channel] = ChannelHistoryState(has_entry_at_or_before=kept_before, trimmed=trimmed)
        if isinstance(after, list):
            events.extend(stored_from_stream(channel, entry_id, fields) for entry_id, fields in after)
    return decide_resume(after_id, origin, size, states, events, latest)


def _is_missing_key(error: Exception) -> bool:
    # XINFO STREAM on a channel that never had an event: "ERR no such key".
    return "no such key" in str(error).lower()
