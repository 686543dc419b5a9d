"""The contact centre's people: one process holding every agent's and supervisor's stream and
sending the agents' commands, as their browsers would.

Driven by the run over stdin/stdout, one JSON object per line each way (bench/centre.py):

    {"cmd": "start", "ports": [...], "agents": [...], "supervisors": [...], ...}
    {"cmd": "window", "lo": <unix time>}   latencies of messages sent from then on
    {"cmd": "stats"}                       the window's latencies, commands and errors
    {"cmd": "audit", "customer": {...}}    per stream: every copy expected, once
    {"cmd": "quit"}

Each person is `{"name", "cookie", "csrf", "port"}`: a Django session minted for them, their
CSRF secret and the server their browser talks to (a sticky proxy's choice). An agent's stream
is the workbench's: `sse:broadcast`, their own `sse:agent:<name>` and the session they have
open; when they accept another session they reopen it with the new session's channel, from
the last id they saw (`last_event_id`), as `static/js/live.js` does. A supervisor's is
`sse:broadcast`. Agents handle one session at a time: a dispatcher in this process gives each
waiting session to a free agent, who accepts it after a think time, answers each customer
message after another, and after the customer's last one closes the session (or, for a
share of them, leaves it: back to the queue, for another agent).

What is parsed of each frame is only what is needed, by searching bytes: the message marker
`#q<kind><seq><end>` in a chat text (`a`: an agent's, `c`: a customer's; `!` ends the
customer's last message), the frame's channel (the letter after `sse:`) and, for customer
messages, the envelope's `timestamp` (the bot's publish time). An agent message's latency
runs from the moment this process sent its HTTP request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import sys
import time
from array import array
from collections import deque
from typing import Any
from urllib.parse import quote

from bench.wire import VIEW, control, prepare, receive, stamp_arrivals

MARK = b"#q"
CHANNEL = b'"channel":"sse:'
STAMP = b'"timestamp":'
SESSION = b'"session_name":"'
# The kinds of channel a copy came on, as the key's two low bits.
KINDS = {ord("b"): 0, ord("a"): 1, ord("s"): 2}
BROADCAST, AGENT, OWN_SESSION = 0, 1, 2
# A dispatcher sees a session waiting in these frames (their broadcast copies): an escalation
# and an agent's leave (the session goes back to the queue).
WAITING = (b'"type":"transfer_request"', b'"type":"agent_left"')


class Window:
    """The latencies measured since `lo` (seconds), by kind of message."""

    def __init__(self) -> None:
        self.lo = float("inf")
        # Pairs (when the message left, its latency): an agent's message, request sent ->
        # the others' streams; a customer's, the bot's publish -> the handling agent's stream.
        self.agent = array("d")
        self.customer = array("d")
        self.commands: dict[str, array] = {}  # command -> HTTP round trips (s)
        self.statuses: dict[str, int] = {}  # "accept 409" -> count
        self.lag = array("d")  # how late this process's loop woke from 10 ms sleeps (s)
        self.sent = array("d")  # when each agent's message was sent
        self.heard = array("d")  # when each customer's message heard by its agent was published


class Stream:
    """One person's SSE stream on a non-blocking socket, read by a reader callback."""

    def __init__(self, centre: Centre, person: dict[str, Any], agent: Agent | None) -> None:
        self.centre = centre
        self.person = person
        self.agent = agent
        self.sock: socket.socket | None = None
        self.head = True
        self.rest = b""
        self.last_id = ""
        self.opened: asyncio.Future[bool] | None = None
        self.counts: dict[int, int] = {}  # seq * 8 + customer * 4 + kind -> copies
        self.resets = 0
        self.reopens = 0
        self.reconnects = 0  # after the server ended the stream (as EventSource does)
        self.reconnecting = False
        self.channels: list[str] = []

    async def open(self, channels: list[str]) -> bool:
        loop = asyncio.get_running_loop()
        self.close()
        self.channels = channels
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        port = self.person["port"]
        query = "&".join(f"channel={quote(c)}" for c in channels)
        if self.last_id:
            query += f"&last_event_id={quote(self.last_id)}"
        request = (
            f"GET /api/events?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
            f"Cookie: sessionid={self.person['cookie']}\r\n{self.centre.auth_header(self.person)}\r\n"
        ).encode()
        self.opened = loop.create_future()
        self.head, self.rest = True, b""
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            stamp_arrivals(sock)
            await loop.sock_sendall(sock, request)
        except OSError:
            sock.close()
            return False
        self.sock = sock
        loop.add_reader(sock.fileno(), self.readable)
        try:
            return await asyncio.wait_for(self.opened, 30)
        except TimeoutError:
            return False

    def readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        got = receive(sock)
        if got is None:
            return
        size, now = got
        if not size:
            self.close()
            self.centre.spawn(self.reconnect())
            return
        data = VIEW[:size].tobytes()
        if self.head:
            data = self.rest + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.rest = data
                return
            ok = data[9:12] == b"200"
            self.head, self.rest = False, b""
            if self.opened is not None and not self.opened.done():
                self.opened.set_result(ok)
            if not ok:
                self.close()
                self.centre.spawn(self.reconnect())
                return
            data = data[end + 4 :]
        if self.rest:
            data = self.rest + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.rest = data
            return
        self.rest = data[cut + 2 :]
        at = data.rfind(b"\nid: ", 0, cut)
        if at >= 0:
            self.last_id = data[at + 5 : data.index(b"\n", at + 5)].decode()
        if b"event: reset" in data:
            self.resets += data.count(b"event: reset\n", 0, cut)
        centre = self.centre
        if self.agent is None and self.person is centre.dispatcher:
            centre.dispatch(data, cut)
        window = centre.window
        counts = self.counts
        pos = data.find(MARK, 0, cut)
        while pos >= 0:
            customer = data[pos + 2] == 99  # "c"
            end = pos + 3
            while 48 <= data[end] <= 57:
                end += 1
            seq = int(data[pos + 3 : end])
            c = data.rfind(CHANNEL, 0, pos)
            kind = KINDS.get(data[c + 15], 3)
            key = seq * 8 + (4 if customer else 0) + kind
            counts[key] = counts.get(key, 0) + 1
            centre.copies += 1
            if customer:
                if self.agent is not None and kind != BROADCAST:  # the handling agent's copies
                    s = data.find(STAMP, end)
                    stamp = float(data[s + 12 : data.find(b",", s)])
                    if stamp >= window.lo:
                        window.customer.append(stamp)
                        window.customer.append(now - stamp)
                        if kind == AGENT:
                            window.heard.append(stamp)
                    if kind == AGENT:
                        self.agent.heard(data, pos, seq, data[end] == 33)  # "!"
            else:
                sent = centre.sent.get(seq)
                if sent is not None and sent[1] is not self.agent and sent[0] >= window.lo:
                    window.agent.append(sent[0])
                    window.agent.append(now - sent[0])
            pos = data.find(MARK, end, cut)

    async def reconnect(self) -> None:
        """The server ended the stream: back after a second, from the last id seen."""
        if self.reconnecting:
            return
        self.reconnecting = True
        try:
            for _ in range(60):
                await asyncio.sleep(1.0)
                if self.sock is not None and self.opened is not None and self.opened.done() and self.opened.result():
                    return  # reopened meanwhile (an accept)
                self.reconnects += 1
                if await self.open(self.channels):
                    return
        finally:
            self.reconnecting = False

    def close(self) -> None:
        if self.sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            except (RuntimeError, ValueError):
                pass
            self.sock.close()
            self.sock = None
        if self.opened is not None and not self.opened.done():
            self.opened.set_result(False)


class Agent:
    """A simulated agent: one session at a time, answers each customer message, then closes."""

    def __init__(self, centre: Centre, person: dict[str, Any]) -> None:
        self.centre = centre
        self.person = person
        self.name: str = person["name"]
        self.stream = Stream(centre, person, self)
        self.session: str | None = None
        self.channels = ["sse:broadcast", f"sse:agent:{self.name}"]
        # session -> when this agent stopped handling it (its stream's session copies after
        # that are not expected); seq -> session for the customer messages it heard.
        self.handled: list[tuple[str, float, float]] = []  # (session, accepted at, done at)
        self.started = 0.0

    def heard(self, data: bytes, pos: int, seq: int, last: bool) -> None:
        at = data.rfind(SESSION, 0, pos)
        name = data[at + 16 : data.index(b'"', at + 16)].decode() if at >= 0 else ""
        if name and name == self.session:
            self.centre.spawn(self.answer(name, last))

    async def accept(self, name: str) -> bool:
        centre = self.centre
        await asyncio.sleep(centre.rng.uniform(*centre.accept_think))
        # Taken before the answer: the customer's first words can arrive before it.
        self.session = name
        self.started = float("inf")
        status = await centre.command(self, "accept", name)
        if status != 200:
            self.session = None
            return False
        # The workbench reopens its stream with the session's channel, from the last id it saw
        # (what came before on the session's channel is in the snapshot it loads, not resent):
        # copies on the session's channel are expected from this moment.
        self.started = time.time()
        self.stream.reopens += 1
        if not await self.stream.open([*self.channels, f"sse:session:{name}"]):
            centre.window.statuses["reopen failed"] = centre.window.statuses.get("reopen failed", 0) + 1
        return True

    async def answer(self, name: str, last: bool) -> None:
        centre = self.centre
        await asyncio.sleep(centre.rng.uniform(*centre.reply_think))
        if self.session != name:
            return
        await centre.command(self, "messages", name, text=True)
        if last and self.session == name:
            leave = centre.rng.random() < centre.leave_share
            self.handled.append((name, self.started, time.time()))
            self.session = None
            await centre.command(self, "leave" if leave else "close", name)
            centre.free(self)


class Centre:
    def __init__(self, spec: dict[str, Any]) -> None:
        self.rng = random.Random(spec.get("seed", 1))
        self.accept_think = tuple(spec.get("accept_think", (0.2, 0.6)))
        self.reply_think = tuple(spec.get("reply_think", (0.3, 1.0)))
        self.leave_share = float(spec.get("leave_share", 0.05))
        self.system = spec.get("system", "product")
        self.agents = [Agent(self, p) for p in spec["agents"]]
        self.supervisors = [Stream(self, p, None) for p in spec["supervisors"]]
        self.dispatcher = spec["supervisors"][0]
        self.free_agents: deque[Agent] = deque(self.agents)
        self.queue: deque[str] = deque()
        self.queued: set[str] = set()
        self.window = Window()
        self.sent: dict[int, tuple[float, Agent]] = {}
        self.sessions_of: dict[int, str] = {}  # agent seq -> session
        self.seq = 0
        self.copies = 0  # every marked copy received, on every stream: what a drain watches
        self.pools: dict[int, list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}
        self.tasks: set[asyncio.Task[Any]] = set()

    def auth_header(self, person: dict[str, Any]) -> str:
        return ""

    def spawn(self, coroutine: Any) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- the dispatcher: waiting sessions to free agents ------------------------------

    def dispatch(self, data: bytes, cut: int) -> None:
        for marker in WAITING:
            pos = data.find(marker, 0, cut)
            while pos >= 0:
                start = max(data.rfind(b"\n\n", 0, pos), 0)
                end = data.find(b"\n\n", pos, cut + 2)
                if data.find(CHANNEL + b"broadcast", start, pos) >= 0:
                    at = data.find(SESSION, start, end)
                    if at >= 0:
                        name = data[at + 16 : data.index(b'"', at + 16)].decode()
                        if name not in self.queued:
                            self.queued.add(name)
                            self.queue.append(name)
                pos = data.find(marker, pos + 1, cut)
        self.assign()

    def assign(self) -> None:
        while self.queue and self.free_agents:
            name = self.queue.popleft()
            agent = self.free_agents.popleft()
            self.spawn(self.take(agent, name))

    async def take(self, agent: Agent, name: str) -> None:
        self.queued.discard(name)
        if not await agent.accept(name):
            self.free(agent)

    def free(self, agent: Agent) -> None:
        self.free_agents.append(agent)
        self.assign()

    # --- commands over keep-alive HTTP/1.1 connections ---------------------------------

    async def command(self, agent: Agent, action: str, name: str, text: bool = False) -> int:
        person = agent.person
        body = b""
        seq = 0
        if text:
            self.seq += 1
            seq = self.seq
            body = json.dumps({"text": f"Thanks, let me check that for you. #qa{seq}."}).encode()
        request = (
            f"POST /api/sessions/{name}/{action} HTTP/1.1\r\nHost: 127.0.0.1:{person['port']}\r\n"
            f"Cookie: sessionid={person['cookie']}; csrftoken={person['csrf']}\r\nX-CSRFToken: {person['csrf']}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        pool = self.pools.setdefault(person["port"], [])
        began = time.time()
        if seq:
            self.sent[seq] = (began, agent)
            self.sessions_of[seq] = name
            if began >= self.window.lo:
                self.window.sent.append(began)
        status = 0
        for _attempt in range(2):
            pooled = bool(pool)
            try:
                reader, writer = pool.pop() if pooled else await asyncio.open_connection("127.0.0.1", person["port"])
                writer.write(request)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError) as exc:
                print(f"{action} {name}: {exc!r} (pooled {pooled})", file=sys.stderr)
                if pooled:
                    continue  # the server had closed this idle connection: once more on a new one
                break
            if pooled and head[9:12] == b"408":
                writer.close()  # the server timed this idle connection out as it was taken
                continue
            try:
                status = int(head[9:12])
                length = 0
                for line in head.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                elif b"transfer-encoding: chunked" in head.lower():
                    await read_chunked(reader)
                if b"connection: close" in head.lower():
                    writer.close()
                else:
                    pool.append((reader, writer))
            except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
                print(f"{action} {name}: {exc!r} after {head[:200]!r}", file=sys.stderr)
                status = 0
            break
        if seq and status != 200:
            # Refused (a 409: the customer's last word crossed a leave) or lost: no message
            # went out, none is expected on any stream.
            del self.sent[seq], self.sessions_of[seq]
        if began >= self.window.lo:
            self.window.commands.setdefault(action, array("d")).append(time.time() - began)
            if status != 200:
                key = f"{action} {status}"
                self.window.statuses[key] = self.window.statuses.get(key, 0) + 1
        return status

    # --- control --------------------------------------------------------------------

    async def watch_lag(self) -> None:
        """How late the loop wakes: when this process falls behind, its own figures suffer."""
        while True:
            asked = time.monotonic()
            await asyncio.sleep(0.01)
            self.window.lag.append(time.monotonic() - asked - 0.01)

    async def start(self) -> dict[str, Any]:
        self.spawn(self.watch_lag())
        began = time.monotonic()
        gate = asyncio.Semaphore(64)

        async def one(stream: Stream, channels: list[str]) -> bool:
            async with gate:
                return await stream.open(channels)

        opened = await asyncio.gather(
            *[one(s, ["sse:broadcast"]) for s in self.supervisors],
            *[one(a.stream, a.channels) for a in self.agents],
        )
        return {"opened": sum(opened), "failed": len(opened) - sum(opened), "seconds": time.monotonic() - began}

    def stats(self, hi: float) -> dict[str, Any]:
        """The window's figures for the messages that left before `hi`."""
        window = self.window
        busy = sum(1 for a in self.agents if a.session is not None)
        result = {
            "agent": summary(upto(window.agent, hi)),
            "customer": summary(upto(window.customer, hi)),
            "commands": {k: summary(v) for k, v in window.commands.items()},
            "statuses": window.statuses,
            "loop_lag": summary(window.lag),
            "sent": sum(1 for t in window.sent if t < hi),
            "heard": sum(1 for t in window.heard if t < hi),
            "busy_agents": busy,
            "queue": len(self.queue),
        }
        return result

    def audit(self, customer: dict[str, list[Any]]) -> dict[str, Any]:
        """Every copy each stream should have had, once: per stream, missing and doubled.

        Expected: every message (an agent's or a customer's) on `sse:broadcast`, on every
        stream; on the handling agent's stream also the copy on their own channel and, while
        they had the session open, the one on the session's channel."""
        owned: dict[str, list[tuple[int, str, float]]] = {}  # agent -> (key base, session, time)
        for seq, (at, agent) in self.sent.items():
            owned.setdefault(agent.name, []).append((seq * 8, self.sessions_of[seq], at))
        for seq_text, (session, agent_name, at) in customer.items():
            owned.setdefault(agent_name, []).append((int(seq_text) * 8 + 4, session, at))
        on_broadcast = {base + BROADCAST for mine in owned.values() for base, _, _ in mine}
        times = {base >> 2: at for mine in owned.values() for base, _, at in mine}
        examples: list[str] = []
        missing = doubled = lossy = doubling = resets = expected = 0
        everyone: list[tuple[Stream, Agent | None]] = [(s, None) for s in self.supervisors]
        everyone += [(a.stream, a) for a in self.agents]
        for stream, agent in everyone:
            counts = stream.counts
            want = set(on_broadcast)
            if agent is not None:
                spans = agent.handled + ([(agent.session, agent.started, 1e18)] if agent.session else [])
                for base, session, at in owned.get(agent.name, []):
                    want.add(base + AGENT)
                    if any(name == session and began <= at <= done for name, began, done in spans):
                        want.add(base + OWN_SESSION)
            gone = want - counts.keys()
            lost_here = len(gone)
            for key in sorted(gone)[: max(0, 5 - len(examples))]:
                examples.append(describe(key, stream, agent, times.get(key >> 2, 0.0)))
            doubled_here = sum(1 for v in counts.values() if v > 1)
            expected += len(want)
            missing += lost_here
            doubled += doubled_here
            lossy += lost_here > 0
            doubling += doubled_here > 0
            resets += stream.resets
        return {
            "streams": len(everyone),
            "messages": len(on_broadcast),
            "copies_expected": expected,
            "missing": missing,
            "doubled": doubled,
            "streams_with_loss": lossy,
            "streams_with_double": doubling,
            "resets": resets,
            "reopens": sum(a.stream.reopens for a in self.agents),
            "reconnects": sum(stream.reconnects for stream, _ in everyone),
            "missing_examples": examples,
        }


async def read_chunked(reader: asyncio.StreamReader) -> None:
    """Skip a chunked body (the naive server's Django answers have no Content-Length)."""
    for _ in range(10_000):
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        await reader.readexactly(size + 2)
        if size == 0:
            return


def describe(key: int, stream: Stream, agent: Agent | None, at: float) -> str:
    """A missing copy, for the report: whose stream, which message, which channel, when."""
    kind = ("broadcast", "agent", "session", "?")[key & 3]
    who = "customer" if key & 4 else "agent"
    spans = [(n, round(b, 3), round(d, 3)) for n, b, d in agent.handled[-3:]] if agent is not None else []
    return (
        f"{stream.person['name']} (port {stream.person['port']}, reopens {stream.reopens}): {who} message "
        f"{key >> 3} on {kind}, sent {at:.3f}; last spans {spans}"
    )


def upto(pairs: array, hi: float) -> array:
    """The latencies of the (time, latency) pairs whose time is before `hi`."""
    return array("d", (pairs[i + 1] for i in range(0, len(pairs), 2) if pairs[i] < hi))


def summary(values: array) -> dict[str, float]:
    if not values:
        return {"count": 0}
    ordered = sorted(values)
    n = len(ordered)
    return {
        "count": n,
        "p50_ms": ordered[n // 2] * 1000,
        "p99_ms": ordered[min(n - 1, int(0.99 * n))] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


async def serve() -> None:
    state: dict[str, Centre] = {}

    async def start(command: dict[str, Any]) -> dict[str, Any]:
        state["centre"] = Centre(command)
        return await state["centre"].start()

    def window(command: dict[str, Any]) -> dict[str, Any]:
        state["centre"].window = Window()
        state["centre"].window.lo = float(command["lo"])
        return {"ok": True}

    await control(
        {
            "start": start,
            "window": window,
            "stats": lambda c: state["centre"].stats(float(c["hi"])),
            "copies": lambda c: {"copies": state["centre"].copies},
            "audit": lambda c: state["centre"].audit(c["customer"]),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    prepare(parser.parse_args().loop)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
