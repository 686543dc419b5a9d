"""The per-event cost of the hub's fan-out in one tree, without sockets: what counting adds.

    PYTHONPATH=. .venv/bin/python bench/hub_counting.py 500    # this tree: 500 no-op subscribers
    git archive <ref> | tar -x -C /tmp/before && PYTHONPATH=/tmp/before .venv/bin/python bench/hub_counting.py 500

Every event goes through `Hub.deliver` (validation, one JSON decode and encode, the counters and
the latency histogram of /metrics) to subscribers whose `push` does nothing, so the figure is
the per-event work alone; run it with 1 and 500 subscribers in both trees: the difference is
what the counting costs, and it must not grow with the subscribers (bench/README.md "Metrics").
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sse_project.settings")
os.environ.setdefault("DJANGO_DEBUG", "true")
os.environ.setdefault("LOG_LEVEL", "WARNING")

CHANNEL = "sse:broadcast"


class NoBackend:
    async def subscribe_channel(self, channel: str) -> None:
        pass

    async def unsubscribe_channel(self, channel: str) -> None:
        pass


class Sink:
    channels = (CHANNEL,)

    def push(self, frame: bytes, event: dict[str, Any]) -> None:
        pass

    def push_many(self, frames: list[bytes], events: list[dict[str, Any]]) -> None:
        pass


async def measure(subscribers: int, events: int, rounds: int) -> list[float]:
    """Microseconds per event, one figure per round."""
    from realtime.hub import Hub

    hub = Hub(NoBackend(), asyncio.get_running_loop())
    for _ in range(subscribers):
        await hub.add(Sink())
    payload = {"data": {"text": "hello there", "sender": "customer"}}
    raw = [
        json.dumps(
            {
                "id": f"1732410000000-{n}",
                "channel": CHANNEL,
                "type": "new_message",
                "payload": {"n": n, **payload},
                "timestamp": time.time(),
                "source": "ai_chatbot",
            },
            separators=(",", ":"),
        ).encode()
        for n in range(events)
    ]
    figures = []
    for _ in range(rounds):
        start = time.perf_counter()
        for message in raw:
            hub.deliver(CHANNEL, message)
        figures.append((time.perf_counter() - start) / events * 1e6)
    return sorted(figures)


def main() -> None:
    import django

    django.setup()
    subscribers = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    figures = asyncio.run(measure(subscribers, events=20_000, rounds=15))
    print(f"{subscribers} subscriber(s): best {figures[0]:.2f} us per event, median {figures[len(figures) // 2]:.2f}")


if __name__ == "__main__":
    main()
