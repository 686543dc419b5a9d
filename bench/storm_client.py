"""The reconnect storm's load client: SSE streams that reconnect as a browser's EventSource does.

One process, raw non-blocking sockets on one asyncio loop (uvloop when installed), driven by
bench/storm.py over stdin/stdout with one JSON object per line each way:

    {"cmd": "open", "ports": [a, b], "counts": [2500, 2500], "token": ..., "lo": 120, "size": 300}
    {"cmd": "arm", "port": b, "delay": "retry"|"base", "base_ms": 500}
    {"cmd": "status", "hi": 420}        cheap counts, for polling during the storm
    {"cmd": "result", "t_kill": ..., "hi": 420}
    {"cmd": "close"} / {"cmd": "quit"}

Once armed, a stream that ends (EOF or reset by the peer) waits its delay and reopens on
`port` (where a proxy would route it once its server is gone) with `Last-Event-ID` set to
the last `id:` it received, as EventSource does. The delay is the `retry:` value its server
sent it (`"delay": "retry"`), or the base delay for every stream (`"base"`: what every client
would wait if the server sent one fixed `retry:`). A failed attempt (refused, 429/503, closed,
no first frame within FIRST_FRAME_TIMEOUT) is retried after the same delay, at most
MAX_ATTEMPTS times; a browser's EventSource gives up on a non-200 answer instead, so such
answers are counted, not hidden.

Per frame only bytes are scanned: the last `id:` line, the `"seq":` of each event (counted
per stream in a bytearray over the window [lo, lo + size), so "every seq exactly once" is a
scan at the end) and, once per connection, the `retry:` line. Times are wall-clock; a read's
time is the kernel's receive timestamp of the socket (SO_TIMESTAMPNS), so this process's own
lateness in getting round to 5,000 sockets is not counted against the server.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import time
from array import array
from collections import Counter
from typing import Any

from bench.wire import VIEW, control, prepare, receive, stamp_arrivals

SEQ = b'"seq":'
ID = b"\nid: "
RETRY = b"retry: "
RESET = b"event: reset"
STATUS = b"event: bus_status"
# An attempt that has not shown its first frame by then is given up and retried. A browser's
# EventSource has no such timeout (only TCP's own, minutes): longer than any storm is waited for,
# so that a server slow to answer is measured as slow, not sent a second request on top.
FIRST_FRAME_TIMEOUT = 60.0
MAX_ATTEMPTS = 20
MAX_HEAD = 64 * 1024
PATH = "/api/broadcast/events"


SETUP_EDGES = (0.1, 0.5, 1.0, 2.0, 3.0, 4.0, 7.0, 8.0, 15.0, 16.0)


def histogram(values: list[float], edges: tuple[float, ...]) -> dict[str, int]:
    """How many of `values` fall below each edge and above the last ("<0.1", "<0.5", ..., ">=16")."""
    out = {f"<{edge:g}": 0 for edge in edges}
    out[f">={edges[-1]:g}"] = 0
    for value in values:
        for edge in edges:
            if value < edge:
                out[f"<{edge:g}"] += 1
                break
        else:
            out[f">={edges[-1]:g}"] += 1
    return out


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50, p99 and max of `values` in milliseconds (None when there are none)."""
    if not values:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "n": 0}
    ordered = sorted(values)
    at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return {"p50_ms": at(0.5), "p99_ms": at(0.99), "max_ms": ordered[-1] * 1000, "n": len(ordered)}


class Storm:
    """Every stream of the client, the window they count in, and what the reconnects did."""

    def __init__(self) -> None:
        self.streams: list[Stream] = []
        self.lo = 0
        self.size = 0
        self.token = ""
        self.global_hi = -1  # the newest seq any stream has received
        self.armed = False
        self.port = 0  # where streams reopen
        self.delay_mode = "retry"
        self.base_ms = 0
        self.setups = array("d")  # connect -> first frame, per successful reopen
        self.failures: Counter[str] = Counter()
        self.errors: list[str] = []
        self.clock = "kernel"

    def request(self, port: int, last_id: bytes | None) -> bytes:
        head = (
            f"GET {PATH} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
            f"Cache-Control: no-cache\r\nAuthorization: Bearer {self.token}\r\n"
        ).encode()
        if last_id is not None:
            head += b"Last-Event-ID: " + last_id + b"\r\n"
        return head + b"\r\n"


class Stream:
    """One SSE stream over its successive connections."""

    __slots__ = (
        "storm",
        "index",
        "victim",
        "sock",
        "head",
        "rest",
        "last_id",
        "retry_ms",
        "counts",
        "next",
        "max_seq",
        "disorder",
        "resets",
        "statuses",
        "opened",
        "connect_at",
        "first_at",
        "lost_at",
        "due_at",
        "delay",
        "resumed_at",
        "target",
        "caught_at",
        "attempts",
        "lateness",
        "drops",
        "gave_up",
        "timer",
    )

    def __init__(self, storm: Storm, index: int, victim: bool, last_id: bytes | None) -> None:
        self.storm = storm
        self.index = index
        self.victim = victim
        self.sock: socket.socket | None = None
        self.head = True
        self.rest = b""
        self.last_id = last_id
        self.retry_ms: int | None = None
        self.counts = bytearray(storm.size)
        self.next = 0  # counts[:next] are all non-zero: the seqs received with no gap
        self.max_seq = -1
        self.disorder = 0
        self.resets = 0
        self.statuses = 0
        self.opened: asyncio.Future[bool] | None = None
        self.connect_at = 0.0
        self.first_at: float | None = None  # the current connection's first frame
        self.lost_at: float | None = None  # when the first connection ended
        self.due_at = 0.0
        self.delay = 0.0
        self.resumed_at: float | None = None  # first frame after the first reopen that worked
        self.target = -1
        self.caught_at: float | None = None
        self.attempts = 0  # reopen attempts
        self.lateness = 0.0  # the most this client started an attempt after it was due
        self.drops = 0  # connections that ended after their first frame
        self.gave_up = False
        self.timer: asyncio.TimerHandle | None = None

    # --- connecting ------------------------------------------------------------------

    async def connect(self, port: int) -> None:
        """Open a connection and send the request; the reader takes it from there."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        self.connect_at = time.time()
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), FIRST_FRAME_TIMEOUT)
            stamp_arrivals(sock)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            await loop.sock_sendall(sock, self.storm.request(port, self.last_id))
        except (OSError, TimeoutError) as exc:
            sock.close()
            self.failed(f"connect: {type(exc).__name__}", repr(exc))
            return
        self.sock, self.head, self.rest, self.first_at = sock, True, b"", None
        loop.add_reader(sock.fileno(), self.readable)
        left = FIRST_FRAME_TIMEOUT - (time.time() - self.connect_at)
        self.timer = loop.call_later(max(0.0, left), self.timed_out)

    def timed_out(self) -> None:
        self.timer = None
        if self.first_at is None and self.sock is not None:
            self.drop()
            self.failed("no first frame", f"no first frame within {FIRST_FRAME_TIMEOUT:g}s")

    def drop(self) -> None:
        """Close the current connection (no reconnect decided here)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.sock is not None:
            try:
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            except (ValueError, OSError):
                pass
            self.sock.close()
            self.sock = None

    def failed(self, kind: str, detail: str) -> None:
        """An attempt that did not give a stream: counted, then tried again after the delay."""
        storm = self.storm
        storm.failures[kind] += 1
        if len(storm.errors) < 10:
            storm.errors.append(detail)
        if self.opened is not None and not self.opened.done():
            self.opened.set_result(False)  # the initial open: no reconnect
            return
        self.schedule()

    def schedule(self) -> None:
        if not self.storm.armed:
            return
        if self.attempts >= MAX_ATTEMPTS:
            self.gave_up = True
            return
        loop = asyncio.get_running_loop()
        now = time.time()
        self.due_at = now + self.delay
        loop.call_later(self.delay, self.reopen)

    def reopen(self) -> None:
        self.attempts += 1
        self.lateness = max(self.lateness, time.time() - self.due_at)
        asyncio.ensure_future(self.connect(self.storm.port))

    def ended(self, now: float) -> None:
        """The connection ended (EOF, reset): as EventSource, wait the delay and reopen."""
        had_stream = self.first_at is not None
        self.drop()
        if self.opened is not None and not self.opened.done():
            self.opened.set_result(False)
            return
        if not had_stream:
            self.failed("closed before the first frame", "closed before the first frame")
            return
        self.drops += 1
        if self.lost_at is None:
            self.lost_at = now
        storm = self.storm
        if storm.delay_mode == "retry" and self.retry_ms is not None:
            self.delay = self.retry_ms / 1000
        else:
            self.delay = storm.base_ms / 1000
        self.schedule()

    # --- reading ---------------------------------------------------------------------

    def readable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        got = receive(sock, self.storm.clock == "kernel")
        if got is None:
            return
        size, now = got
        if not size:
            self.ended(now)
            return
        data = VIEW[:size].tobytes()
        if self.head:
            data = self.rest + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.rest = data
                if len(data) > MAX_HEAD:
                    self.drop()
                    self.failed("bad response", "no end of the response head")
                return
            status = data[9:12].decode("latin-1")
            if status != "200":
                self.drop()
                self.failed(f"HTTP {status}", data[:200].decode("latin-1"))
                return
            self.head = False
            data = data[end + 4 :]
        elif self.rest:
            data = self.rest + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.rest = data
            return
        self.rest = data[cut + 2 :]
        storm = self.storm
        if self.first_at is None:
            self.first(now, data, cut)
        pos = data.rfind(ID, 0, cut)
        if pos >= 0:
            self.last_id = data[pos + 5 : data.find(b"\n", pos + 5)]
        if data.find(b"event: ", 0, cut) >= 0:  # only system events and ours have one
            self.resets += data.count(RESET, 0, cut)
            self.statuses += data.count(STATUS, 0, cut)
        counts = self.counts
        lo, size = storm.lo, len(counts)
        pos = data.find(SEQ, 0, cut)
        while pos >= 0:
            end = data.find(b"}", pos)
            more = data.find(b",", pos, end)
            if more >= 0:
                end = more
            seq = int(data[pos + 6 : end])
            at = seq - lo
            if 0 <= at < size:
                seen = counts[at]
                if seen < 255:
                    counts[at] = seen + 1
                if seq > self.max_seq:
                    self.max_seq = seq
                elif not seen:
                    self.disorder += 1
            pos = data.find(SEQ, end, cut)
        nxt = self.next
        while nxt < size and counts[nxt]:
            nxt += 1
        self.next = nxt
        if self.max_seq > storm.global_hi:
            storm.global_hi = self.max_seq
        if self.caught_at is None and self.resumed_at is not None and nxt + lo > self.target:
            self.caught_at = now

    def first(self, now: float, data: bytes, cut: int) -> None:
        """The first frame of a connection: its `retry:`, and for a reopen, the resume."""
        self.first_at = now
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        pos = data.find(RETRY, 0, cut)
        if pos >= 0:
            end = data.find(b"\n", pos)
            self.retry_ms = int(data[pos + 7 : end])
        if self.opened is not None and not self.opened.done():
            self.opened.set_result(True)
        elif self.lost_at is not None and self.resumed_at is None:
            self.resumed_at = now
            self.storm.setups.append(now - self.connect_at)
            # Caught up once it holds, with no gap, every event any stream had by now.
            self.target = self.storm.global_hi


class Client:
    def __init__(self) -> None:
        self.storm = Storm()

    async def open(self, command: dict[str, Any]) -> dict[str, Any]:
        """Open the streams: counts[i] of them on ports[i]; the first port's are the victims."""
        storm = self.storm
        storm.lo, storm.size, storm.token = command["lo"], command["size"], command["token"]
        storm.clock = command.get("clock", "kernel")
        last_id = command.get("last_id")
        gate = asyncio.Semaphore(command.get("concurrency", 64))
        loop = asyncio.get_running_loop()
        made: list[Stream] = []

        async def one(port: int, victim: bool) -> None:
            stream = Stream(storm, len(storm.streams) + len(made), victim, last_id.encode() if last_id else None)
            made.append(stream)
            stream.opened = loop.create_future()
            async with gate:
                await stream.connect(port)
                try:
                    await asyncio.wait_for(asyncio.shield(stream.opened), FIRST_FRAME_TIMEOUT)
                except TimeoutError:
                    stream.drop()
                    storm.failures["open timed out"] += 1

        started = time.perf_counter()
        jobs = []
        for number, (port, count) in enumerate(zip(command["ports"], command["counts"], strict=True)):
            jobs += [one(port, number == 0) for _ in range(count)]
        await asyncio.gather(*jobs)
        seconds = time.perf_counter() - started
        good = [s for s in made if s.opened is not None and s.opened.done() and s.opened.result()]
        for stream in made:
            stream.opened = None
            if stream not in good:
                stream.drop()
        storm.streams += good
        retries = [s.retry_ms for s in good if s.retry_ms is not None]
        return {
            "opened": len(good),
            "failed": len(made) - len(good),
            "errors": storm.errors[:5],
            "seconds": seconds,
            "retry_ms_min": min(retries, default=None),
            "retry_ms_max": max(retries, default=None),
            "retry_ms_mean": sum(retries) / len(retries) if retries else None,
        }

    def arm(self, command: dict[str, Any]) -> dict[str, Any]:
        storm = self.storm
        storm.armed = True
        storm.port = command["port"]
        storm.delay_mode = command["delay"]
        storm.base_ms = command["base_ms"]
        storm.failures.clear()
        storm.errors.clear()
        return {"armed": True}

    def status(self, hi: int) -> dict[str, Any]:
        streams = self.storm.streams
        victims = [s for s in streams if s.victim]
        want = hi - self.storm.lo
        return {
            "victims": len(victims),
            "lost": sum(1 for s in victims if s.lost_at is not None),
            "resumed": sum(1 for s in victims if s.resumed_at is not None),
            "caught": sum(1 for s in victims if s.caught_at is not None),
            # Nothing more to wait for: caught up, given up, or told to reset (its gap stays).
            "settled": sum(1 for s in victims if s.caught_at is not None or s.gave_up or s.resets),
            "gave_up": sum(1 for s in streams if s.gave_up),
            "complete": sum(1 for s in streams if s.next >= want),
            "streams": len(streams),
            "global_hi": self.storm.global_hi,
        }

    def result(self, t_kill: float, hi: int) -> dict[str, Any]:
        storm = self.storm
        want = hi - storm.lo
        victims = [s for s in storm.streams if s.victim]
        kept = [s for s in storm.streams if not s.victim]

        def exactness(group: list[Stream]) -> dict[str, int]:
            missing = doubled = with_missing = with_doubled = 0
            for stream in group:
                window = stream.counts[:want]
                gone = window.count(0)
                extra = sum(c - 1 for c in window if c > 1)
                missing += gone
                doubled += extra
                with_missing += gone > 0
                with_doubled += extra > 0
            return {
                "missing": missing,
                "doubled": doubled,
                "streams_missing": with_missing,
                "streams_doubled": with_doubled,
                "disorder": sum(s.disorder for s in group),
                "resets": sum(s.resets for s in group),
                "streams_reset": sum(1 for s in group if s.resets),
                "bus_status": sum(s.statuses for s in group),
            }

        resumed = [s.resumed_at - t_kill for s in victims if s.resumed_at is not None]
        caught = [s.caught_at - t_kill for s in victims if s.caught_at is not None]
        lost = [s.lost_at - t_kill for s in victims if s.lost_at is not None]
        # From the end of each stream's own wait (its last attempt's due time) to its first frame:
        # what the server and the network took, the client's wait left out.
        after_delay = [s.resumed_at - s.due_at for s in victims if s.resumed_at is not None]
        delays = [s.delay for s in victims if s.lost_at is not None]
        everyone = len(victims)
        return {
            "events_expected_per_stream": want,
            "victims": everyone,
            "kept": len(kept),
            "lost": len(lost),
            "resumed": len(resumed),
            "caught_up": len(caught),
            "gave_up": sum(1 for s in storm.streams if s.gave_up),
            "eof_after_kill_max_ms": max(lost) * 1000 if lost else None,
            "all_resumed_s": max(resumed) if len(resumed) == everyone and everyone else None,
            "all_caught_up_s": max(caught) if len(caught) == everyone and everyone else None,
            "kill_to_resumed": percentiles(resumed),
            "kill_to_caught_up": percentiles(caught),
            "reopen": percentiles(list(storm.setups)),
            # Where the set-up times fall: a SYN dropped at a full listen queue is sent again
            # after 1 s, then 2 s, 4 s, 8 s later (Linux), which shows as bands at 1, 3, 7, 15 s.
            "reopen_histogram_s": histogram(list(storm.setups), SETUP_EDGES),
            "after_own_delay": percentiles(after_delay),
            "delay_ms_min": min(delays) * 1000 if delays else None,
            "delay_ms_max": max(delays) * 1000 if delays else None,
            "client_lateness_max_ms": max((s.lateness for s in victims), default=0.0) * 1000,
            "attempts": sum(s.attempts for s in storm.streams),
            "retries": sum(max(0, s.attempts - 1) for s in storm.streams),
            "failures": dict(storm.failures),
            "errors": storm.errors[:5],
            "unexpected_drops": sum(s.drops for s in kept),
            "resumed_within": {
                f"{limit:g}": sum(1 for r in resumed if r <= limit) for limit in (0.5, 1.0, 1.5, 2.0, 3.0, 5.0)
            },
            "victim_streams": exactness(victims),
            "kept_streams": exactness(kept),
        }

    async def close(self) -> dict[str, Any]:
        storm = self.storm
        storm.armed = False
        for stream in storm.streams:
            stream.drop()
        closed = len(storm.streams)
        self.storm = Storm()
        await asyncio.sleep(0.2)
        return {"closed": closed}


async def serve() -> None:
    client = Client()
    await control(
        {
            "open": client.open,
            "arm": client.arm,
            "status": lambda c: client.status(c["hi"]),
            "result": lambda c: client.result(c["t_kill"], c["hi"]),
            "close": lambda c: client.close(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--sched", choices=["idle", "batch", "normal"], default="batch")
    args = parser.parse_args()
    prepare(args.loop, args.sched, files=6000)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
