"""Channel names: the whitelist, the refusals, and the channel <-> group mapping (docs/bus.md section 1)."""

from __future__ import annotations

import asyncio
import re

import pytest
from channels.layers import BaseChannelLayer
from hypothesis import given
from hypothesis import strategies as st

from realtime import bus
from realtime.channels import (
    BROADCAST,
    InvalidChannel,
    agent_channel,
    channel_to_group,
    group_to_channel,
    session_channel,
    validate_channel,
    validate_name,
)

# Every kind of bad name the contract lists, each named so a failure says which one.
BAD_NAMES = {
    "star": "user*",
    "lone star": "*",
    "question mark": "user?",
    "bracket": "user[1]",
    "colon": "user:1",
    "slash": "user/1",
    "dot": "user.1",
    "space": "user 1",
    "leading space": " user",
    "newline": "user\n1",
    "trailing newline": "user_1\n",
    "carriage return": "user\r1",
    "tab": "user\t1",
    "NUL": "user\x001",
    "non-ASCII letter": "usér",
    "non-ASCII digit": "user\u0661",
    "fullwidth letter": "\uff55ser",
    "empty": "",
    "65 characters": "a" * 65,
    "pattern": "sse:*",
}
BAD = pytest.mark.parametrize("name", list(BAD_NAMES.values()), ids=list(BAD_NAMES))

VALID_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
valid_names = st.from_regex(r"\A[A-Za-z0-9_-]{1,64}\Z")
invalid_names = st.text(max_size=80).filter(lambda s: VALID_NAME.fullmatch(s) is None)


@BAD
def test_it_refuses_a_bad_session_name(name: str) -> None:
    with pytest.raises(InvalidChannel, match="session_name"):
        validate_name(name)
    with pytest.raises(InvalidChannel):
        session_channel(name)
    with pytest.raises(InvalidChannel):
        validate_channel("sse:session:" + name)


@BAD
def test_it_refuses_a_bad_agent_id(name: str) -> None:
    with pytest.raises(InvalidChannel, match="agent_id"):
        agent_channel(name)
    with pytest.raises(InvalidChannel):
        validate_channel("sse:agent:" + name)


@pytest.mark.parametrize("value", [None, 5, b"user_1", ["user_1"]], ids=["None", "int", "bytes", "list"])
def test_it_refuses_a_name_that_is_not_a_string(value: object) -> None:
    with pytest.raises(InvalidChannel, match="must be a string"):
        validate_name(value)
    with pytest.raises(InvalidChannel, match="must be a string"):
        validate_channel(value)


@pytest.mark.parametrize(
    "channel",
    ["sse:broadcast:x", "sse:broadcast ", "sse:session", "sse:session:", "sse:other:x", "SSE:session:x", "sse:*", "*"],
)
def test_it_refuses_a_channel_outside_the_three_kinds(channel: str) -> None:
    with pytest.raises(InvalidChannel):
        validate_channel(channel)


def test_it_accepts_the_longest_and_shortest_names() -> None:
    assert session_channel("a" * 64) == "sse:session:" + "a" * 64
    assert agent_channel("A") == "sse:agent:A"
    assert validate_channel(BROADCAST) == "sse:broadcast"


def test_a_refusal_is_a_value_error_with_a_reason_a_person_can_read() -> None:
    with pytest.raises(ValueError, match=r"1 to 64 characters of A-Z a-z 0-9 _ -.*'user\*'"):
        session_channel("user*")


@pytest.mark.usefixtures("fresh_layer")
@BAD
def test_the_sync_publisher_refuses_a_bad_name_and_publishes_nothing(name: str) -> None:
    layer = bus.get_layer()
    before = layer.cursor_sync()
    for channel in ("sse:session:" + name, "sse:agent:" + name):
        with pytest.raises(ValueError) as caught:
            bus.enqueue_sse_message_sync(channel, "status_change", {"status": "closed"}, source="ai_chatbot")
        assert isinstance(caught.value, InvalidChannel)
        assert layer.history_sync(channel) == []
    assert layer.cursor_sync() == before


@pytest.mark.usefixtures("fresh_layer")
@BAD
def test_the_async_publisher_refuses_a_bad_name_and_publishes_nothing(name: str) -> None:
    layer = bus.get_layer()
    before = layer.cursor_sync()
    with pytest.raises(InvalidChannel):
        asyncio.run(bus.enqueue_sse_message("sse:session:" + name, "new_message", {}, source="ai_chatbot"))
    assert layer.cursor_sync() == before


@pytest.mark.usefixtures("fresh_layer")
@BAD
def test_a_bad_session_name_inside_the_payload_is_refused_too(name: str) -> None:
    layer = bus.get_layer()
    before = layer.cursor_sync()
    with pytest.raises(InvalidChannel, match="payload.session_name"):
        bus.group_send(BROADCAST, "status_change", {"session_name": name}, source="ai_chatbot")
    assert layer.history_sync(BROADCAST) == []
    assert layer.cursor_sync() == before


@given(invalid_names)
def test_any_string_outside_the_whitelist_is_refused(name: str) -> None:
    with pytest.raises(InvalidChannel):
        validate_name(name)
    with pytest.raises(InvalidChannel):
        agent_channel(name)
    with pytest.raises(InvalidChannel):
        validate_channel("sse:session:" + name)


@given(valid_names)
def test_any_valid_name_round_trips_between_channel_and_group(name: str) -> None:
    for channel, group in (
        (session_channel(name), "sse.session." + name),
        (agent_channel(name), "sse.agent." + name),
    ):
        assert channel_to_group(channel) == group
        assert group_to_channel(group) == channel
        # The group is one that Channels itself accepts.
        assert BaseChannelLayer().require_valid_group_name(group)


def test_broadcast_round_trips_between_channel_and_group() -> None:
    assert channel_to_group(BROADCAST) == "sse.broadcast"
    assert group_to_channel("sse.broadcast") == BROADCAST


@pytest.mark.parametrize(
    "group", ["asgi__group__x", "sse.other.x", "sse.session.", "sse.session.a.b", "sse.agent.a*", "sse.broadcast.x"]
)
def test_a_group_that_is_no_sse_channel_maps_to_none(group: str) -> None:
    assert group_to_channel(group) is None
