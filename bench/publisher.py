"""The publisher: a separate process that publishes timestamped events at a given rate.

`--system product` (also used for baseline (a), which listens to the same Redis channels)
publishes through the product's own path, `realtime.bus.enqueue_sse_message` with
source="ai_chatbot": validation, the Lua script (id, XADD, PUBLISH). `--system naive`
publishes the naive Channels way: one stock `group_send` per event.

`--mode command` (product systems only) runs a command instead: `dashboard.services.escalate`
of a new session, whose events go through the outbox (or, in versions before it, are
published after the commit); its `transfer_request` on `sse:broadcast` carries the seq. Its
envelope's `timestamp` is taken when the event is written, inside the command's transaction,
so the latency measured includes the rest of the transaction and the commit.

Driven over stdin/stdout with one JSON object per line:

    {"cmd": "run", "mode": "broadcast"|"session"|"command", "sessions": N, "rate": 20, "seconds": 3, "seq0": 0}
    -> {"published": 60, "seq_hi": 60, "seconds": 3.0, "lag_ms_max": 0.4}

Run as a module from the project, or as a script with another version's tree first on
PYTHONPATH (the `before` system): it imports the product it finds there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

# Publishes in flight at once: enough for thousands of events/s over a few connections.
MAX_IN_FLIGHT = 32

Publish = Callable[[str, dict[str, Any], float, int], Awaitable[None]]


def product_publisher() -> Publish:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sse_project.settings")
    import django

    django.setup()
    from realtime.bus import enqueue_sse_message

    async def publish(channel: str, payload: dict[str, Any], stamp: float, seq: int) -> None:
        await enqueue_sse_message(channel, "new_message", payload, source="ai_chatbot", timestamp=stamp)

    return publish


def product_command() -> Publish:
    """Escalations, one at a time in a worker thread (a command is sync database work)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sse_project.settings")
    import django

    django.setup()
    from concurrent.futures import ThreadPoolExecutor

    from dashboard import services
    from realtime.auth import Principal

    bot = Principal("service", "ai_chatbot")
    run = os.urandom(4).hex()
    worker = ThreadPoolExecutor(1, thread_name_prefix="bench-command")

    def escalate(seq: int) -> None:
        services.escalate(f"bench_{run}_{seq}", by=bot, data={"seq": seq})

    async def publish(channel: str, payload: dict[str, Any], stamp: float, seq: int) -> None:
        await asyncio.get_running_loop().run_in_executor(worker, escalate, seq)

    return publish


def naive_publisher() -> Publish:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.naive.settings")
    import django

    django.setup()
    from channels.layers import get_channel_layer

    from bench.naive.consumers import group_for

    layer = get_channel_layer()
    assert layer is not None
    base = int(time.time() * 1000)

    async def publish(channel: str, payload: dict[str, Any], stamp: float, seq: int) -> None:
        event = {
            "id": f"{base}-{seq}",
            "channel": channel,
            "type": "new_message",
            "payload": payload,
            "timestamp": stamp,
            "source": "ai_chatbot",
        }
        await layer.group_send(group_for(channel), {"type": "sse.event", "event": event})

    return publish


def event_for(mode: str, sessions: int, seq: int) -> tuple[str, dict[str, Any]]:
    if mode in ("broadcast", "command"):
        return "sse:broadcast", {"data": {"seq": seq}}
    name = f"bench_{seq % sessions}"
    return f"sse:session:{name}", {"session_name": name, "data": {"seq": seq}}


async def run(publish: Publish, mode: str, sessions: int, rate: float, seconds: float, seq0: int) -> dict[str, Any]:
    total = max(1, round(rate * seconds))
    gate = asyncio.Semaphore(MAX_IN_FLIGHT)
    errors: list[str] = []
    lag_max = 0.0

    async def one(seq: int) -> None:
        channel, payload = event_for(mode, sessions, seq)
        try:
            await publish(channel, payload, time.time(), seq)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            gate.release()

    tasks = []
    started = time.monotonic()
    for i in range(total):
        due = started + i / rate
        now = time.monotonic()
        if due > now:
            await asyncio.sleep(due - now)
        await gate.acquire()
        lag_max = max(lag_max, time.monotonic() - due)
        tasks.append(asyncio.ensure_future(one(seq0 + i)))
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    return {
        "published": total - len(errors),
        "seq_hi": seq0 + total,
        "seconds": elapsed,
        "achieved_rate": total / max(elapsed, 1e-9),
        "lag_ms_max": lag_max * 1000,
        "errors": errors[:5],
    }


async def serve(publishers: dict[str, Publish]) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
        if command["cmd"] == "quit":
            return
        mode = command["mode"]
        result = await run(
            publishers[mode], mode, command["sessions"], command["rate"], command["seconds"], command["seq0"]
        )
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--system", choices=["product", "naive"], required=True)
    args = parser.parse_args()
    if args.system == "product":
        publish = product_publisher()
        publishers = {"broadcast": publish, "session": publish, "command": product_command()}
    else:
        publish = naive_publisher()
        publishers = {"broadcast": publish, "session": publish}
    asyncio.run(serve(publishers))


if __name__ == "__main__":
    main()
