"""What both channel layers of the bus share: `group_send` to an SSE group through the publish
path, and small helpers. The layers themselves: realtime/redis_layer.py and
realtime/memory_layer.py (realtime/layers.py names both for CHANNEL_LAYERS)."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from realtime.channels import group_to_channel
from realtime.envelope import Draft, InvalidEvent, draft, with_message_id
from realtime.hub import Hub
from realtime.presence import online_from_memory


def _draft_from_group_message(channel: str, message: dict[str, Any]) -> Draft:
    """A stock `group_send` to an SSE group: `{"type": "sse.event", "event": {type, payload, source}}`."""
    event = message.get("event")
    if message.get("type") != "sse.event" or not isinstance(event, dict):
        raise InvalidEvent('group_send to an SSE group takes {"type": "sse.event", "event": {...}}')
    payload = with_message_id(event.get("type"), event.get("payload"))
    return draft(channel, event.get("type"), payload, event.get("source"))  # type: ignore[arg-type]


class SSEGroupSend:
    """`group_send` to an SSE channel's group (`sse.session.x`) goes through the bus's publish
    path (validated, given an id, kept in history); other groups behave as stock Channels."""

    async def publish_event(self, item: Draft) -> str:
        raise NotImplementedError

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        channel = group_to_channel(group)
        if channel is None:
            await super().group_send(group, message)  # type: ignore[misc]
        else:
            await self.publish_event(_draft_from_group_message(channel, message))


def _history_size(value: int | None) -> int:
    return settings.SSE_HISTORY_SIZE if value is None else value


def _history_ttl() -> int:
    return int(settings.SSE_HISTORY_TTL_SECONDS)


def merged_presence(hubs: list[Hub]) -> list[dict[str, Any]]:
    """Who is online according to this process's own hubs, one row per agent."""
    merged: dict[str, dict[str, Any]] = {}
    for hub in hubs:
        for row in online_from_memory(hub.presence):
            merged.setdefault(row["agent"], row)
    return sorted(merged.values(), key=lambda row: row["agent"])
