"""The record of a conversation: every event of a session, kept in the database.

Two ways in:

- A command (`dashboard.services`) writes its events here in its own transaction, linked to
  their outbox rows (`realtime.outbox`), which publish them after the commit.
- Events other services publish on `sse:session:{name}` (the Python helpers,
  `POST /api/publish`, a raw `PUBLISH`) arrive from the bus's recorder through
  `realtime.signals.events_to_record` and are stored once each: by their bus id, and chat
  messages also by their `message_id`.

Transcripts, the admin timeline and the session snapshot read `transcript()`; none of them
reads the bus's history, so a Redis restart or a trimmed history loses nothing.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from dashboard.models import ChatSession, SessionEvent, Status
from realtime.bus import PendingEvent
from realtime.channels import SESSION_PREFIX, InvalidChannel, validate_name
from realtime.envelope import InvalidEvent, format_event_id, parse_event_id

logger = logging.getLogger(__name__)


def store_command_events(session: ChatSession, pending: Iterable[PendingEvent], source: str) -> None:
    """Store a command's session-channel events with it (call inside its transaction)."""
    channel = SESSION_PREFIX + session.name
    rows = []
    for event in pending:
        if event.draft.channel != channel:
            continue
        envelope = json.loads(event.draft.body)
        payload = envelope["payload"]
        rows.append(
            SessionEvent(
                session=session,
                type=envelope["type"],
                source=source,
                payload=payload,
                timestamp=envelope["timestamp"],
                outbox=event.batch.rows[event.index],
                message_id=_message_id(envelope["type"], payload),
                **message_fields(envelope["type"], source, payload),
            )
        )
    SessionEvent.objects.bulk_create(rows)


def message_fields(event_type: str, source: str, payload: Any) -> dict[str, str]:
    """`sender` and `text` of a chat message, as the pages show it: "agent" only when the
    workbench sent it (a service claiming to be an agent is the bot), else "bot" or "customer"."""
    if event_type != "new_message" or not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return {"sender": "", "text": ""}
    data = payload["data"]
    claimed = data.get("sender")
    if claimed == "agent" and source == "agent_workbench":
        sender = "agent"
    elif claimed in ("agent", "bot"):
        sender = "bot"
    else:
        sender = "customer"
    text = data.get("text")
    return {"sender": sender, "text": text if isinstance(text, str) else ""}


def transcript(name: str, *, upto: str | None = None, limit: int = 200, waiting: bool = False) -> list[dict[str, Any]]:
    """The latest `limit` events of session `name`, oldest first, as envelopes.

    For a snapshot that a stream resumed from `upto` (a bus cursor) follows: events published
    after `upto` are left out (the stream brings them), and so are a command's events still
    waiting in the outbox (the stream brings them too, with an id, once Redis takes them),
    except chat messages, which a page recognises by `message_id` and shows at once. Events
    that never get an id (a raw PUBLISH, or published while Redis was unreachable) are
    always in. `waiting=True` (the admin timeline) keeps the waiting events too, marked
    `"waiting": true`.
    """
    rows = list(SessionEvent.objects.of_session(name).order_by("-timestamp", "-pk")[: max(limit, 0) * 2])
    last = _key(upto) if upto else None
    kept = []
    for row in reversed(rows):
        bus_id = row.bus_id
        if last is not None and bus_id is not None and _key(bus_id) > last:
            continue
        if row.waits_for_the_bus:
            if not waiting and row.message_id is None:
                continue
            kept.append({**row.envelope(name), "waiting": True} if waiting else row.envelope(name))
            continue
        kept.append(row.envelope(name))
    return kept[-limit:] if limit else []


def _key(event_id: str) -> tuple[int, int]:
    try:
        return parse_event_id(event_id)
    except InvalidEvent:
        return (0, 0)


def _message_id(event_type: str, payload: Any) -> str | None:
    if event_type != "new_message" or not isinstance(payload, dict):
        return None
    value = payload.get("message_id")
    try:
        return validate_name(value, "message_id") if isinstance(value, str) else None
    except InvalidChannel:
        return None  # not one the publish path gave: stored, but not by that id


# --- from the bus's recorder -----------------------------------------------------------


def store_bus_events(envelopes: list[dict[str, Any]]) -> int:
    """Store session-channel events published by other services; returns how many were new.

    Idempotent: an event already stored (same bus id, or same `message_id`) is skipped, so
    the recorder may hand the same events in again after a crash. One transaction and a
    handful of queries per batch, whatever its size: the recorder sees every chat message.
    """
    rows = [row for row in (_row(envelope) for envelope in envelopes) if row is not None]
    if not rows:
        return 0
    event_ids = {row["event_id"] for row in rows if row["event_id"]}
    message_ids = {row["message_id"] for row in rows if row["message_id"]}
    names = {row["name"] for row in rows}
    with transaction.atomic():
        seen_ids = set(SessionEvent.objects.filter(event_id__in=event_ids).values_list("event_id", flat=True))
        seen_messages = set(
            SessionEvent.objects.filter(message_id__in=message_ids).values_list("message_id", flat=True)
        )
        sessions = _sessions_for(names)
        new = []
        for row in rows:
            if (row["event_id"] and row["event_id"] in seen_ids) or (
                row["message_id"] and row["message_id"] in seen_messages
            ):
                continue
            seen_ids.add(row["event_id"])
            if row["message_id"]:
                seen_messages.add(row["message_id"])
            new.append(SessionEvent(session_id=sessions[row.pop("name")], **row))
        # A row stored meanwhile by another process's recorder is skipped by the database.
        SessionEvent.objects.bulk_create(new, ignore_conflicts=True)
        _summarise_messages(new)
    return len(new)


def _summarise_messages(rows: list[SessionEvent]) -> None:
    """Keep each session's last message and reply clock current (two UPDATEs per session)."""
    by_session: dict[int, list[SessionEvent]] = {}
    for row in rows:
        if row.type == "new_message" and row.sender:
            by_session.setdefault(row.session_id, []).append(row)
    for session_id, messages in by_session.items():
        messages.sort(key=lambda row: row.timestamp)
        first_customer = next((row for row in messages if row.sender == "customer"), None)
        if first_customer is not None:
            at = _when(first_customer.timestamp)
            # Waiting starts with the first customer message after the agent's last word; a
            # message recorded late, from before the agent's reply, starts nothing.
            ChatSession.objects.filter(
                Q(pk=session_id, status=Status.AGENT_HANDLING, awaiting_reply_since__isnull=True)
                & (~Q(last_message_sender="agent") | Q(last_message_at__lt=at) | Q(last_message_at__isnull=True))
            ).update(awaiting_reply_since=at)
        last = messages[-1]
        at = _when(last.timestamp)
        ChatSession.objects.filter(
            Q(pk=session_id) & (Q(last_message_at__isnull=True) | Q(last_message_at__lt=at))
        ).update(last_message_text=last.text[:200], last_message_sender=last.sender, last_message_at=at)


def _when(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, tz=UTC)


def _row(envelope: dict[str, Any]) -> dict[str, Any] | None:
    """The fields of a SessionEvent for one envelope, or None if it is no session's event."""
    name = _session_name(envelope.get("channel"))
    if name is None:
        return None
    payload = envelope.get("payload") if isinstance(envelope.get("payload"), dict) else {}
    event_id = envelope.get("id")
    try:
        event_id = format_event_id(*parse_event_id(event_id)) if event_id else ""
    except InvalidEvent:
        return None
    stamp = envelope.get("timestamp")
    return {
        "name": name,
        "type": str(envelope.get("type"))[:32],
        "source": str(envelope.get("source"))[:64],
        "payload": payload,
        "timestamp": float(stamp) if isinstance(stamp, (int, float)) else timezone.now().timestamp(),
        "event_id": event_id,
        "message_id": _message_id(str(envelope.get("type")), payload),
        **message_fields(str(envelope.get("type")), str(envelope.get("source")), payload),
    }


def _sessions_for(names: set[str]) -> dict[str, int]:
    """The pk of each named session; the first message of a chat creates it (the bot's)."""
    found = dict(ChatSession.objects.filter(name__in=names).values_list("name", "pk"))
    missing = names - found.keys()
    if missing:
        ChatSession.objects.bulk_create(
            [ChatSession(name=name, status=Status.AI_HANDLING) for name in sorted(missing)], ignore_conflicts=True
        )
        found.update(ChatSession.objects.filter(name__in=missing).values_list("name", "pk"))
    return found


def _session_name(channel: object) -> str | None:
    if not isinstance(channel, str) or not channel.startswith(SESSION_PREFIX):
        return None
    try:
        return validate_name(channel[len(SESSION_PREFIX) :], "session_name")
    except InvalidChannel:
        return None


# --- receivers of the bus's signals ---------------------------------------------------


def on_events_to_record(sender: object, envelopes: list[dict[str, Any]], **kwargs: Any) -> None:
    count = store_bus_events(envelopes)
    if count:
        logger.debug("recorded %d session event(s) from the bus", count)


def on_outbox_published(sender: object, rows: list[Any], **kwargs: Any) -> None:
    """A command's events went out: the session remembers the newest id (`last_event_id`)."""
    from dashboard.services import record_last_event

    newest: dict[str, str] = {}
    for row in rows:
        name = _session_name(row.channel)
        if name is not None and row.event_id:
            newest[name] = row.event_id
            # The record carries the id itself: it outlives the outbox row (pruned later).
            SessionEvent.objects.filter(outbox=row).update(event_id=row.event_id)
    for name, event_id in newest.items():
        record_last_event(name, event_id)
    if newest:
        transaction.on_commit(lambda: _sync_keys(list(newest)), robust=True)


def _sync_keys(names: list[str]) -> None:
    from dashboard.session_keys import sync_all_to_redis

    sync_all_to_redis(ChatSession.objects.select_related("agent", "supervisor").filter(name__in=names))


def on_redis_reconnected(sender: object, empty: bool, **kwargs: Any) -> None:
    """A Redis that lost its data gets the session keys back from the database."""
    if not empty:
        return
    from dashboard.session_keys import sync_all_to_redis

    written = sync_all_to_redis()
    logger.info("Redis has no session keys (new, or restarted empty): wrote the keys of %d session(s)", written)
