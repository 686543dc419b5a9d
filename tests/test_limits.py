"""The limits on the in-memory layer (one process): publish rate and stream slots
(realtime/limits.py). Across processes on Redis: tests/test_limits_processes.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from realtime.limits import PublishRate, RateLimited, StreamSlots, TooManyStreams


def test_a_service_gets_a_burst_of_twice_its_rate_then_is_refused_with_a_wait(settings: Any) -> None:
    settings.SSE_PUBLISH_RATE = 10
    rate = PublishRate()
    for _ in range(20):
        rate.take("ai_chatbot")
    with pytest.raises(RateLimited) as refused:
        rate.take("ai_chatbot")
    assert refused.value.retry_after >= 1
    # Another identity has its own bucket; a cost of two takes two tokens.
    for _ in range(10):
        rate.take("crm", cost=2)
    with pytest.raises(RateLimited):
        rate.take("crm", cost=2)


def test_the_bucket_refills_at_the_rate(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import realtime.limits as limits

    settings.SSE_PUBLISH_RATE = 10
    now = [1000.0]
    monkeypatch.setattr(limits.time, "monotonic", lambda: now[0])
    rate = PublishRate()
    for _ in range(20):
        rate.take("ai_chatbot")
    with pytest.raises(RateLimited):
        rate.take("ai_chatbot")
    now[0] += 0.5  # five tokens
    for _ in range(5):
        rate.take("ai_chatbot")
    with pytest.raises(RateLimited):
        rate.take("ai_chatbot")


def test_stream_slots_per_person_per_identity_and_per_process(settings: Any) -> None:
    from realtime.limits import open_streams

    settings.SSE_MAX_STREAMS_PER_USER = 2
    settings.SSE_MAX_CONNECTIONS = 8
    before = open_streams()

    async def scenario() -> None:
        slots = StreamSlots()
        held: list[tuple[str, str]] = []

        async def take(identity: str, person: bool = True) -> None:
            held.append((identity, await slots.take(identity, person=person)))

        try:
            await take("user:ana")
            await take("user:ana")
            with pytest.raises(TooManyStreams, match="the most one person may"):
                await take("user:ana")
            await take("user:bea")
            await slots.give_back(*held.pop(0))
            await take("user:ana")
            # A service is not a person, but holds at most half of the process.
            for _ in range(4):
                await take("service:crm", person=False)
            with pytest.raises(TooManyStreams, match="half of this server"):
                await take("service:crm", person=False)
            assert open_streams() == before + 7
            await take("user:cat")
            with pytest.raises(TooManyStreams, match="its limit of 8 streams"):
                await take("user:dan")
        finally:
            for identity, member in held:
                await slots.give_back(identity, member)

    asyncio.run(scenario())
    assert open_streams() == before
