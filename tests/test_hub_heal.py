"""Hub.heal: the replay after a lost bus connection, one step at a time, without Redis."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from realtime.history import Resume, StoredEvent
from realtime.hub import Hub


class Backend:
    async def subscribe_channel(self, channel: str) -> None:
        pass

    async def unsubscribe_channel(self, channel: str) -> None:
        pass


class Recorder:
    def __init__(self, *channels: str) -> None:
        self.channels = channels
        self.events: list[dict[str, Any]] = []

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        self.events.append(event)

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        self.events.extend(events)


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
        }
    )


def run(scenario: Any) -> Any:
    return asyncio.run(scenario())


def test_missed_events_are_replayed_and_live_ones_that_arrive_meanwhile_follow_without_duplicates() -> None:
    async def scenario() -> list[Any]:
        hub = Hub(Backend(), asyncio.get_running_loop())
        recorder = Recorder(CHANNEL)
        await hub.add(recorder)
        hub.deliver(CHANNEL, envelope("100-0", 0))
        hub.mark_lost()
        release = asyncio.Event()

        async def read(channels: list[str], after: str) -> Resume:
            assert after == "100-0"
            await release.wait()
            return Resume(
                events=[
                    StoredEvent("101-0", CHANNEL, envelope("101-0", 1)),
                    StoredEvent("102-0", CHANNEL, envelope("102-0", 2)),
                ]
            )

        healing = asyncio.ensure_future(hub.heal([CHANNEL], read))
        await asyncio.sleep(0)
        # While history is read, the live stream goes on: one copy of a replayed event, one new.
        hub.deliver(CHANNEL, envelope("102-0", 2))
        hub.deliver(CHANNEL, envelope("103-0", 3))
        assert [e["payload"]["n"] for e in recorder.events] == [0]
        release.set()
        await healing
        return [e["payload"]["n"] for e in recorder.events]

    assert run(scenario) == [0, 1, 2, 3]


def test_a_gap_that_cannot_be_closed_sends_one_reset_and_the_stream_goes_on() -> None:
    async def scenario() -> list[str]:
        hub = Hub(Backend(), asyncio.get_running_loop())
        recorder = Recorder(CHANNEL, "sse:broadcast")
        await hub.add(recorder)
        hub.deliver(CHANNEL, envelope("100-0", 0))
        hub.mark_lost()

        async def read(channels: list[str], after: str) -> Resume:
            return Resume(reset=True, reason="Redis restarted")

        await hub.heal([CHANNEL, "sse:broadcast"], read)
        hub.deliver(CHANNEL, envelope("200-0", 1))
        return [e["type"] for e in recorder.events]

    assert run(scenario) == ["new_message", "reset", "new_message"]


def test_without_a_known_position_the_subscribers_are_reset() -> None:
    async def scenario() -> list[str]:
        hub = Hub(Backend(), asyncio.get_running_loop())
        recorder = Recorder(CHANNEL)
        await hub.add(recorder)
        hub.mark_lost()

        async def read(channels: list[str], after: str) -> Resume:
            raise AssertionError("nothing to resume from")

        await hub.heal([CHANNEL], read)
        return [e["type"] for e in recorder.events]

    assert run(scenario) == ["reset"]


def test_a_failed_history_read_resets_instead_of_hiding_the_gap() -> None:
    async def scenario() -> list[str]:
        hub = Hub(Backend(), asyncio.get_running_loop())
        recorder = Recorder(CHANNEL)
        await hub.add(recorder)
        hub.deliver(CHANNEL, envelope("100-0", 0))
        hub.mark_lost()

        async def read(channels: list[str], after: str) -> Resume:
            raise ConnectionError("Redis went away again")

        await hub.heal([CHANNEL], read)
        return [e["type"] for e in recorder.events]

    assert run(scenario) == ["new_message", "reset"]


def test_a_stream_that_opened_after_the_loss_gets_no_replay_and_no_reset() -> None:
    async def scenario() -> tuple[list[str], list[str]]:
        hub = Hub(Backend(), asyncio.get_running_loop())
        old, new = Recorder(CHANNEL), Recorder(CHANNEL)
        await hub.add(old)
        hub.deliver(CHANNEL, envelope("100-0", 0))
        hub.mark_lost()
        await hub.add(new)  # opened after the loss: it resumed on its own

        async def read(channels: list[str], after: str) -> Resume:
            return Resume(reset=True, reason="Redis restarted")

        await hub.heal([CHANNEL], read)
        hub.deliver(CHANNEL, envelope("200-0", 1))
        return [e["type"] for e in old.events], [e["type"] for e in new.events]

    assert run(scenario) == (["new_message", "reset", "new_message"], ["new_message"])
