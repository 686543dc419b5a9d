"""The contact centre's chatbot: a process of its own, as the real ai_chatbot would be.

Driven by the run over stdin/stdout, one JSON object per line each way (bench/centre.py):

    {"cmd": "start", "port": p, "auth": "<header line>", "sessions": 2000, ...}
    {"cmd": "rate", "messages": 100.0, "escalations": 5.0, "chatter": 33.0}   per second
    {"cmd": "log"}    the customer messages sent: seq -> [session, agent, publish time]
    {"cmd": "quit"}

It keeps `sessions` customers talking to the bot. Their chatter (a bot or customer line every
so often) is published on each session's own channel only, through the publish path, so the
record stores it; nobody's stream carries it. It escalates them at a set rate
(`dashboard.services.escalate`, as `manage.py simulate_chatbot` does; each escalated customer
is replaced by a new one) and, for the sessions it has seen an agent join on `sse:broadcast`,
posts the customer's messages at a set rate, each through the publish path on the session's
channel, `sse:broadcast` and the agent's channel, as the shipped simulator does. The K-th
message of a handled session ends with `!`: the customer's last word, after which the agent
answers and closes. Every customer message carries the marker `#qc<seq>` the load process
counts.

Systems: `product` publishes with `realtime.bus.enqueue_sse_message` (source `ai_chatbot`)
and escalates through the product's service; `naive` calls `bench.naive.centre_bot` (a row
saved, then one stock `group_send` per channel).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from bench.wire import control, prepare

LINES = (
    "I ordered a kettle last week and it still has not arrived",
    "The tracking page says delivered but there is nothing here",
    "Can you check the address on my account please",
    "I would like a refund if it cannot be found",
)
AGENT_JOINED = b'"type":"agent_joined"'
ENDED = (b'"type":"agent_left"', b'"status":"closed"')
SESSION = b'"session_name":"'
AGENT = b'"agent":"'


class Bot:
    def __init__(self, spec: dict[str, Any], publish: Publish, escalate: Escalate) -> None:
        self.rng = random.Random(spec.get("seed", 2))
        self.publish = publish
        self.escalate_one = escalate
        self.prefix = spec.get("prefix", "cc")
        self.per_session = int(spec.get("messages_per_session", 6))
        self.live: list[str] = [self.new_name() for _ in range(int(spec.get("sessions", 2000)))]
        self.handled: dict[str, tuple[str, int]] = {}  # session -> (agent, messages sent)
        self.handled_names: list[str] = []
        self.rates = {"messages": 0.0, "escalations": 0.0, "chatter": 0.0}
        self.due = {"messages": 0.0, "escalations": 0.0, "chatter": 0.0}
        self.seq = 0
        self.log: dict[int, tuple[str, str, float]] = {}
        self.errors: dict[str, int] = {}
        self.done = {"messages": 0, "escalations": 0, "chatter": 0}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.counter = 0

    def new_name(self) -> str:
        self.counter = getattr(self, "counter", 0) + 1
        return f"{self.prefix}_{self.counter:06d}_{uuid.uuid4().hex[:6]}"

    # --- what the broadcast says -------------------------------------------------------

    def heard(self, data: bytes) -> None:
        """Frames from `sse:broadcast`: who took which session, and which ones ended."""
        for frame in data.split(b"\n\n"):
            if AGENT_JOINED in frame:
                name = between(frame, SESSION)
                agent = between(frame, AGENT)
                if name and agent and name not in self.handled:
                    self.handled[name] = (agent, 0)
                    self.handled_names.append(name)
            elif ENDED[0] in frame or (ENDED[1] in frame and b'"type":"status_change"' in frame):
                name = between(frame, SESSION)
                if name in self.handled:
                    self.drop(name)

    def drop(self, name: str) -> None:
        self.handled.pop(name, None)
        try:
            self.handled_names.remove(name)
        except ValueError:
            pass

    # --- the schedule: each kind at its rate, open loop ---------------------------------

    def tick(self, seconds: float) -> None:
        for kind, rate in self.rates.items():
            self.due[kind] += rate * seconds
            while self.due[kind] >= 1:
                self.due[kind] -= 1
                action = {"messages": self.customer_says, "escalations": self.escalate, "chatter": self.chatter}[kind]
                self.spawn(action())

    def spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def failed(self, what: str, exc: BaseException) -> None:
        key = f"{what}: {type(exc).__name__}"
        self.errors[key] = self.errors.get(key, 0) + 1

    async def customer_says(self) -> None:
        if not self.handled_names:
            self.errors["no handled session"] = self.errors.get("no handled session", 0) + 1
            return
        name = self.rng.choice(self.handled_names)
        agent, sent = self.handled[name]
        sent += 1
        last = sent >= self.per_session
        self.handled[name] = (agent, sent)
        if last:
            self.drop(name)
        self.seq += 1
        seq = self.seq
        text = f"{self.rng.choice(LINES)} #qc{seq}{'!' if last else '.'}"
        payload = {"session_name": name, "message_id": uuid.uuid4().hex, "data": {"text": text, "sender": "customer"}}
        self.log[seq] = (name, agent, time.time())
        try:
            await self.publish([f"sse:session:{name}", "sse:broadcast", f"sse:agent:{agent}"], payload)
            self.done["messages"] += 1
        except Exception as exc:  # counted and reported: a bench must not die of one
            self.failed("message", exc)

    async def chatter(self) -> None:
        name = self.rng.choice(self.live)
        sender = self.rng.choice(("bot", "customer"))
        payload = {
            "session_name": name,
            "message_id": uuid.uuid4().hex,
            "data": {"text": self.rng.choice(LINES), "sender": sender},
        }
        try:
            await self.publish([f"sse:session:{name}"], payload)
            self.done["chatter"] += 1
        except Exception as exc:
            self.failed("chatter", exc)

    async def escalate(self) -> None:
        index = self.rng.randrange(len(self.live))
        name = self.live[index]
        self.live[index] = self.new_name()
        customer = {"id": f"c{self.rng.randrange(100_000)}", "name": "Bench Customer"}
        try:
            await self.escalate_one(name, "the customer asked for a person", {"customer": customer})
            self.done["escalations"] += 1
        except Exception as exc:
            self.failed("escalation", exc)


Publish = Callable[[list[str], dict[str, Any]], Awaitable[Any]]
Escalate = Callable[[str, str, dict[str, Any]], Awaitable[Any]]


def between(frame: bytes, key: bytes) -> str:
    at = frame.find(key)
    if at < 0:
        return ""
    start = at + len(key)
    return frame[start : frame.find(b'"', start)].decode()


def system_calls(system: str) -> tuple[Publish, Escalate]:
    """How this system's bot publishes and escalates (Django is set up by the caller's env)."""
    import django

    django.setup()
    from asgiref.sync import sync_to_async

    if system == "naive":
        from bench.naive import centre_bot as naive

        async def publish_naive(channels: list[str], payload: dict[str, Any]) -> None:
            await sync_to_async(naive.say, thread_sensitive=False)(payload["session_name"], channels, payload)

        async def escalate_naive(name: str, reason: str, data: dict[str, Any]) -> None:
            await sync_to_async(naive.escalate, thread_sensitive=False)(name, reason, data.get("customer", {}))

        return publish_naive, escalate_naive

    from dashboard.simulator import escalate_with_service
    from realtime.bus import enqueue_sse_message

    async def publish(channels: list[str], payload: dict[str, Any]) -> None:
        # One publish per channel, as the shipped simulator does (dashboard/simulator.py `say`).
        for channel in channels:
            await enqueue_sse_message(channel, "new_message", payload, source="ai_chatbot")

    return publish, escalate_with_service


async def listen(port: int, auth: str, bot: Bot) -> None:
    """The bot's own stream on `sse:broadcast`, reconnecting (without resume) if it drops."""
    loop = asyncio.get_running_loop()
    while True:
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            request = (
                f"GET /api/events?channel=sse:broadcast HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Accept: text/event-stream\r\n{auth}\r\n\r\n"
            )
            await loop.sock_sendall(sock, request.encode())
            rest = b""
            while True:
                data = await loop.sock_recv(sock, 262144)
                if not data:
                    break
                data = rest + data
                cut = data.rfind(b"\n\n")
                if cut < 0:
                    rest = data
                    continue
                rest = data[cut + 2 :]
                bot.heard(data[:cut])
        except OSError as exc:
            bot.failed("stream", exc)
        finally:
            sock.close()
        await asyncio.sleep(0.5)


async def serve(system: str) -> None:
    publish, escalate = system_calls(system)
    state: dict[str, Any] = {}

    async def start(command: dict[str, Any]) -> dict[str, Any]:
        bot = state["bot"] = Bot(command, publish, escalate)
        listener = asyncio.ensure_future(listen(int(command["port"]), command["auth"], bot))
        state["tasks"] = [listener, asyncio.ensure_future(run(bot))]
        await asyncio.sleep(0.5)  # the stream is open before anything is escalated
        return {"ok": not listener.done(), "sessions": len(bot.live)}

    def rate(command: dict[str, Any]) -> dict[str, Any]:
        bot = state["bot"]
        bot.rates.update({k: float(v) for k, v in command.items() if k in bot.rates})
        return {"ok": True, "handled": len(bot.handled), "done": bot.done, "errors": bot.errors}

    def log(command: dict[str, Any]) -> dict[str, Any]:
        bot = state["bot"]
        return {"customer": {str(k): v for k, v in bot.log.items()}, "done": bot.done, "errors": bot.errors}

    def quit_(command: dict[str, Any]) -> None:
        for task in state.get("tasks", []):
            task.cancel()

    await control({"start": start, "rate": rate, "log": log, "quit": quit_})


async def run(bot: Bot) -> None:
    """The schedule's clock: every 5 ms, what is due at each rate."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(0.005)
        now = time.monotonic()
        bot.tick(now - last)
        last = now


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--system", choices=["product", "naive"], default="product")
    args = parser.parse_args()
    prepare()
    asyncio.run(serve(args.system))


if __name__ == "__main__":
    main()
