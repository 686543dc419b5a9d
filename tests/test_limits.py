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


def test_stream_slots_per_person_and_per_process_share(settings: Any) -> None:
    settings.SSE_MAX_STREAMS_PER_USER = 2
    settings.SSE_MAX_CONNECTIONS = 6

    async def scenario() -> None:
        slots = StreamSlots()
        first = await slots.take("user:ana", person=True)
        await slots.take("user:ana", person=True)
        with pytest.raises(TooManyStreams):
            await slots.take("user:ana", person=True)
        await slots.take("user:bea", person=True)
        await slots.give_back("user:ana", first)
        await slots.take("user:ana", person=True)
        # A service is not a person, but holds at most half of the process.
        for _ in range(3):
            await slots.take("service:crm", person=False)
        with pytest.raises(TooManyStreams, match="half of this server"):
            await slots.take("service:crm", person=False)

    asyncio.run(scenario())
