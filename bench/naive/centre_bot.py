"""The bot's side of the naive contact centre: plain sync functions the bot process calls.

Django must be set up with `DJANGO_SETTINGS_MODULE=bench.naive.centre_settings` (REDIS_URL,
DATABASE_URL as for the servers). Each function is one transaction on the product's tables,
then, after the commit, one stock `async_to_sync(channel_layer.group_send)` per event per
channel. Called from the bot's asyncio loop through `sync_to_async(thread_sensitive=False)`
(bench/centre_bot.py), or from plain sync code.

- `escalate(name, reason, customer)`: the session joins the queue (created on first sight),
  `transfer_request` and `status_change` stored and sent to its channel and sse:broadcast, as
  the product's `dashboard.services.escalate`. A session already waiting is left alone (nothing
  sent); one an agent is handling raises `Conflict`.
- `say(name, channels, payload)`: a customer's (or the bot's) chat message, source
  `ai_chatbot`. Stored when the session's own channel is among `channels` (the session is
  created, with the bot, on first sight, as the product's recorder does), with the session's
  last message kept current; then the same message sent to each channel.
"""

from __future__ import annotations

import time
from typing import Any

from django.db import transaction
from django.utils import timezone

from bench.naive.centre_events import BROADCAST, SESSION_PREFIX, envelope, record_rows, send
from dashboard.models import ChatSession, SessionEvent, Status

SOURCE = "ai_chatbot"


class Conflict(Exception):
    """The session is with an agent: it already has a human (the product answers 409)."""


def escalate(name: str, reason: str, customer: dict[str, Any]) -> None:
    customer = customer or {}
    columns = {
        "customer": customer,
        "customer_ref": str(customer.get("id", ""))[:64],
        "customer_name": str(customer.get("name", ""))[:200],
    }
    with transaction.atomic():
        now = timezone.now()
        waiting = {
            "status": Status.WAITING_AGENT,
            "escalated_at": now,
            "accepted_at": None,
            "closed_at": None,
            "resolution_note": "",
            "agent": None,
            "supervisor": None,
            "reason": reason,
            "awaiting_reply_since": None,
            **(columns if customer else {}),
        }
        session, created = ChatSession.objects.select_for_update().get_or_create(
            name=name, defaults={**waiting, **columns, "created_at": now}
        )
        previous: str = Status.AI_HANDLING
        if not created:
            if session.status == Status.WAITING_AGENT:
                return
            if session.status == Status.AGENT_HANDLING:
                raise Conflict(f"session {name} is with an agent")
            previous = session.status
            for field, value in waiting.items():
                setattr(session, field, value)
            session.version += 1
            session.save(update_fields=[*waiting, "version"])
        transfer = {
            "session_name": name,
            "status": Status.WAITING_AGENT,
            "data": {"customer": customer, "reason": reason} if customer else {"reason": reason},
        }
        change = {
            "session_name": name,
            "status": Status.WAITING_AGENT,
            "data": {"previous": previous, "agent": None},
        }
        stamp = time.time()
        envelopes = [
            envelope(channel, kind, payload, SOURCE, stamp)
            for kind, payload in (("transfer_request", transfer), ("status_change", change))
            for channel in (SESSION_PREFIX + name, BROADCAST)
        ]
        SessionEvent.objects.bulk_create(record_rows(session, envelopes))
    send(envelopes)  # after the commit


def say(name: str, channels: list[str], payload: dict[str, Any]) -> None:
    # The message's time is when the bot says it: its latency includes the row's write.
    stamp = time.time()
    envelopes = [envelope(channel, "new_message", payload, SOURCE, stamp) for channel in channels]
    if SESSION_PREFIX + name in channels:
        with transaction.atomic():
            session, _ = ChatSession.objects.select_for_update().get_or_create(
                name=name, defaults={"status": Status.AI_HANDLING}
            )
            rows = record_rows(session, envelopes)
            SessionEvent.objects.bulk_create(rows)
            now = timezone.now()
            changes: dict[str, Any] = {
                "last_message_text": rows[0].text[:200],
                "last_message_sender": rows[0].sender,
                "last_message_at": now,
            }
            if rows[0].sender == "customer" and session.status == Status.AGENT_HANDLING:
                # The customer waits for an answer from their first unanswered message on.
                changes["awaiting_reply_since"] = session.awaiting_reply_since or now
            ChatSession.objects.filter(pk=session.pk).update(**changes)
    send(envelopes)  # after the commit
