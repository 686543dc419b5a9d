"""Channel names: validation and the channel <-> Channels group mapping.

A channel is `sse:session:{name}`, `sse:agent:{id}` or `sse:broadcast`. Names are checked
against a strict whitelist before anything reaches Redis, so a `*` can never become a
pattern and a newline can never split a protocol line (the defence against channel injection).
"""

from __future__ import annotations

import re

BROADCAST = "sse:broadcast"
SESSION_PREFIX = "sse:session:"
AGENT_PREFIX = "sse:agent:"

# The name rule, for session names and agent ids (and so usernames), everywhere: the database
# validator, the pages (their config carries it) and this module use these two.
# `\Z` rather than `$`: `$` would accept a trailing newline.
NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}\Z"
NAME_RULE = "1 to 64 characters of A-Z a-z 0-9 _ -"
_NAME = re.compile(NAME_PATTERN)


class InvalidChannel(ValueError):
    """A channel, session name or agent id that the contract does not allow."""


def validate_name(value: object, what: str = "session_name") -> str:
    if not isinstance(value, str):
        raise InvalidChannel(f"{what} must be a string")
    if not _NAME.match(value):
        raise InvalidChannel(f"{what} must be {NAME_RULE} (got {value[:80]!r})")
    return value


def session_channel(session_name: str) -> str:
    return SESSION_PREFIX + validate_name(session_name, "session_name")


def agent_channel(agent_id: str) -> str:
    return AGENT_PREFIX + validate_name(agent_id, "agent_id")


def validate_channel(channel: object) -> str:
    """Return `channel` if it is one of the contract's channels, else raise InvalidChannel."""
    if not isinstance(channel, str):
        raise InvalidChannel("channel must be a string")
    if channel == BROADCAST:
        return channel
    if channel.startswith(SESSION_PREFIX):
        validate_name(channel[len(SESSION_PREFIX) :], "session_name")
        return channel
    if channel.startswith(AGENT_PREFIX):
        validate_name(channel[len(AGENT_PREFIX) :], "agent_id")
        return channel
    raise InvalidChannel(
        f"unknown channel {channel[:80]!r}: expected sse:session:<name>, sse:agent:<id> or sse:broadcast"
    )


def is_sse_channel(channel: str) -> bool:
    try:
        validate_channel(channel)
    except InvalidChannel:
        return False
    return True


def channel_to_group(channel: str) -> str:
    """`sse:session:x` -> `sse.session.x` (Channels group names cannot hold `:`)."""
    return validate_channel(channel).replace(":", ".")


def group_to_channel(group: str) -> str | None:
    """`sse.session.x` -> `sse:session:x`, or None if the group is not an SSE channel's."""
    if not group.startswith("sse."):
        return None
    if group == "sse.broadcast":
        return BROADCAST
    kind, _, name = group[4:].partition(".")
    if kind not in ("session", "agent"):
        return None
    channel = f"sse:{kind}:{name}"
    return channel if is_sse_channel(channel) else None


def channel_kind(channel: str) -> tuple[str, str]:
    """('session', name), ('agent', id) or ('broadcast', '') for a valid channel."""
    validate_channel(channel)
    if channel == BROADCAST:
        return "broadcast", ""
    if channel.startswith(SESSION_PREFIX):
        return "session", channel[len(SESSION_PREFIX) :]
    return "agent", channel[len(AGENT_PREFIX) :]
