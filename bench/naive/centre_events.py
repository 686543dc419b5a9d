"""Events the naive way: an envelope per channel, a row for the record, one `group_send` each.

Shared by the naive views (bench/naive/centre_views.py) and the naive bot
(bench/naive/centre_bot.py). The envelope has the product's shape and key order
(`{"id","channel","type","payload","timestamp","source"}`), so one load client reads both.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Iterable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from dashboard.models import ChatSession, SessionEvent

BROADCAST = "sse:broadcast"
SESSION_PREFIX = "sse:session:"
AGENT_PREFIX = "sse:agent:"
# Stamped on a customer's message as the product's record does for a service's `new_message`.
SERVICE_SENDERS = {"customer": "customer", "bot": "bot", "agent": "bot"}

_counter = itertools.count(1)


def group_for(channel: str) -> str:
    """Channels' group names allow no `:`."""
    return channel.replace(":", ".")


def new_id() -> str:
    """`<ms>-<n>`, unique across processes (the pid is part of n): the naive way has no bus
    ids and no resume, so an id only has to tell frames apart."""
    return f"{int(time.time() * 1000)}-{os.getpid() * 1_000_000_000 + next(_counter)}"


def envelope(channel: str, event_type: str, payload: dict[str, Any], source: str, stamp: float) -> dict[str, Any]:
    return {
        "id": new_id(),
        "channel": channel,
        "type": event_type,
        "payload": payload,
        "timestamp": stamp,
        "source": source,
    }


def channels_of(name: str, *agents: str | None) -> list[str]:
    """Where the product's `_announce` publishes a command's events: the session's channel,
    sse:broadcast, and each named agent's channel once."""
    channels = [SESSION_PREFIX + name, BROADCAST]
    channels += [AGENT_PREFIX + agent for agent in dict.fromkeys(agents) if agent]
    return channels


def fan_out(
    name: str, events: list[tuple[str, dict[str, Any]]], channels: list[str], source: str
) -> list[dict[str, Any]]:
    """Every event on every channel, as envelopes (event by event, as the product orders them)."""
    stamp = time.time()
    return [envelope(channel, kind, payload, source, stamp) for kind, payload in events for channel in channels]


def record_rows(session: ChatSession, envelopes: Iterable[dict[str, Any]]) -> list[SessionEvent]:
    """The record of the envelopes on the session's own channel, as the product stores them."""
    own = SESSION_PREFIX + session.name
    rows = []
    for item in envelopes:
        if item["channel"] != own:
            continue
        payload = item["payload"]
        message = item["type"] == "new_message"
        data = payload.get("data") if isinstance(payload.get("data"), dict) else {}
        if not message:
            sender = ""
        elif item["source"] == "agent_workbench" and data.get("sender") == "agent":
            sender = "agent"
        else:
            sender = SERVICE_SENDERS.get(str(data.get("sender")), "customer")
        rows.append(
            SessionEvent(
                session=session,
                type=item["type"],
                source=item["source"],
                payload=payload,
                timestamp=item["timestamp"],
                event_id=item["id"],
                message_id=payload.get("message_id") if message else None,
                sender=sender,
                text=str(data.get("text", "")) if message else "",
            )
        )
    return rows


def send(envelopes: Iterable[dict[str, Any]]) -> None:
    """One stock `group_send` per envelope, from sync code (a view, the bot's thread)."""
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    group_send = async_to_sync(layer.group_send)
    for item in envelopes:
        group_send(group_for(item["channel"]), {"type": "sse.event", "event": item})
