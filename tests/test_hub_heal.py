"""Hub.heal and RedisLink's seam: the replay after a lost link, one step at a time, without Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from realtime.history import Resume, StoredEvent
from realtime.hub import Hub
from realtime.link import RedisLink
from realtime.redis_conn import RedisTarget
from tests.support.hubs import Collect, NoBackend

CHANNEL = "sse:session:heal"


def envelope(event_id: str, n: int) -> str:
    return json.dumps(
        {
            "id": event_id,
            "channel": CHANNEL,
            "type": "new_message",
            "payload": {"n": n},
            "timestamp": 1.0,
            "source": "ai_chatbot",
        },
        separators=(",", ":"),  # as the publish script writes it: the id first, compact
    )


def run(scenario: Any) -> Any:
    return asyncio.run(scenario())


def test_what_was_published_after_the_loss_point_is_replayed_and_the_last_replayed_id_returned() -> None:
    async def scenario() -> tuple[list[Any], str | None]:
        hub = Hub(NoBackend(), asyncio.get_running_loop())
        recorder = Collect(CHANNEL)
        await hub.add(recorder)
        hub.deliver(CHANNEL, envelope("100-0", 0))

        async def read(channels: list[str], after: str) -> Resume:
            assert (channels, after) == ([CHANNEL], "100-0")
            return Resume(
                events=[
                    StoredEvent("101-0", CHANNEL, envelope("101-0", 1)),
                    StoredEvent("102-0", CHANNEL, envelope("102-0", 2)),
                ]
            )

        cut = await hub.heal("100-0", read, "the connection to Redis was lost")
        return [e["payload"]["n"] for e in recorder.events], cut

    assert run(scenario) == ([0, 1, 2], "102-0")


def test_a_gap_that_cannot_be_closed_sends_one_reset_per_stream_and_the_stream_goes_on() -> None:
    async def scenario() -> list[str]:
        hub = Hub(NoBackend(), asyncio.get_running_loop())
        recorder = Collect(CHANNEL, "sse:broadcast")
        await hub.add(recorder)
        hub.deliver(CHANNEL, envelope("100-0", 0))

        async def read(channels: list[str], after: str) -> Resume:
            return Resume(reset=True, reason="Redis restarted")

        assert await hub.heal("100-0", read, "lost") is None
        hub.deliver(CHANNEL, envelope("200-0", 1))
        return [e["type"] for e in recorder.events]

    assert run(scenario) == ["new_message", "reset", "new_message"]


def test_without_a_known_position_the_streams_are_reset_with_the_given_reason() -> None:
    async def scenario() -> list[Any]:
        hub = Hub(NoBackend(), asyncio.get_running_loop())
        recorder = Collect(CHANNEL)
        await hub.add(recorder)

        async def read(channels: list[str], after: str) -> Resume:
            raise AssertionError("nothing to resume from")

        await hub.heal(None, read, "Redis was restarted without its data")
        return [(e["type"], e["payload"]["reason"]) for e in recorder.events]

    assert run(scenario) == [("reset", "Redis was restarted without its data")]


def test_a_failed_history_read_resets_instead_of_hiding_the_gap() -> None:
    async def scenario() -> list[str]:
        hub = Hub(NoBackend(), asyncio.get_running_loop())
        recorder = Collect(CHANNEL)
        await hub.add(recorder)
        hub.deliver(CHANNEL, envelope("100-0", 0))

        async def read(channels: list[str], after: str) -> Resume:
            raise ConnectionError("Redis went away again")

        await hub.heal("100-0", read, "lost")
        return [e["type"] for e in recorder.events]

    assert run(scenario) == ["new_message", "reset"]


def test_a_stream_that_opened_while_the_link_was_down_is_healed_too() -> None:
    """It opened on a channel the process already listened to: it cannot know what it missed."""

    async def scenario() -> tuple[list[int], list[int]]:
        hub = Hub(NoBackend(), asyncio.get_running_loop())
        old, new = Collect(CHANNEL), Collect(CHANNEL)
        await hub.add(old)
        hub.deliver(CHANNEL, envelope("100-0", 0))
        await hub.add(new)  # opened during the outage

        async def read(channels: list[str], after: str) -> Resume:
            return Resume(events=[StoredEvent("101-0", CHANNEL, envelope("101-0", 1))])

        await hub.heal("100-0", read, "lost")
        return [e["payload"]["n"] for e in old.events], [e["payload"]["n"] for e in new.events]

    assert run(scenario) == ([0, 1], [1])


def test_after_a_replay_the_link_skips_live_copies_up_to_the_seam_and_nothing_after() -> None:
    async def scenario() -> list[Any]:
        hub = Hub(NoBackend(), asyncio.get_running_loop())
        recorder = Collect(CHANNEL)
        await hub.add(recorder)
        link = RedisLink(RedisTarget(url="redis://127.0.0.1:1/0"), 100)
        link.hub = hub

        async def read(channels: list[str], after: str) -> Resume:
            return Resume(events=[StoredEvent(f"10{n}-0", CHANNEL, envelope(f"10{n}-0", n)) for n in (1, 2)])

        link.read_resume = read  # type: ignore[method-assign]
        link._since, link._lost_at = "100-0", 1.0
        # Held while reconnecting: copies of what the replay brings, then new ones, and a raw
        # message without an id (a service's PUBLISH) that history never holds.
        held = [(CHANNEL, envelope("101-0", 1)), (CHANNEL, envelope("102-0", 2)), (CHANNEL, envelope("103-0", 3))]
        await link._heal(held, empty=False)
        raw = json.dumps(
            {"channel": CHANNEL, "type": "new_message", "payload": {"n": 4}, "timestamp": 1.0, "source": "ai_chatbot"}
        )
        link._deliver([(CHANNEL, raw), (CHANNEL, envelope("104-0", 5))])
        await link.close()
        return [e["payload"]["n"] for e in recorder.events]

    assert run(scenario) == [1, 2, 3, 4, 5]


def test_resumes_wait_their_turn_instead_of_taking_every_connection(monkeypatch: Any) -> None:
    # A process that died sends thousands of streams to the others at once, each with a resume:
    # at most RESUME_READS_AT_ONCE read at a time, the rest wait (none fails for want of a
    # connection and becomes a reset).
    import realtime.link as link_module

    async def scenario() -> tuple[int, int]:
        link = RedisLink(RedisTarget(url="redis://127.0.0.1:1/0"), 100)
        busy = peak = 0

        async def slow_read(client: Any, channels: list[str], after: str, size: int) -> Resume:
            nonlocal busy, peak
            busy += 1
            peak = max(peak, busy)
            await asyncio.sleep(0.01)
            busy -= 1
            return Resume(events=[])

        monkeypatch.setattr(link_module, "read_resume", slow_read)
        done = await asyncio.gather(*(link.read_resume([CHANNEL], "100-0") for _ in range(200)))
        await link.close()
        return peak, sum(1 for resume in done if not resume.reset)

    assert run(scenario) == (link_module.RESUME_READS_AT_ONCE, 200)
