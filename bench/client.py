"""The load client: one process holding N SSE connections over raw asyncio sockets.

Driven by the run over stdin/stdout, one JSON object per line each way:

    {"cmd": "connect", "ports": [p1, p2], "mode": "broadcast"|"session", "n": 1000, ...}
    {"cmd": "window", "lo": 120}        count and time events with seq >= lo from now on
    {"cmd": "count"}                    events received in the window (cheap, for draining)
    {"cmd": "stats", "hi": 180}         latency percentiles and losses for seqs [lo, hi)
    {"cmd": "close"} / {"cmd": "quit"}

Latency is the time the bytes arrived minus the envelope's `timestamp`, which the publisher
set just before publishing (same machine, same clock). The arrival time is the kernel's
receive timestamp of the socket (SO_TIMESTAMPNS, `--clock kernel`, the default), so the
client's own delays in getting round to 5000 sockets are not counted as the server's;
`--clock user` takes `time.time()` when the client reads the bytes instead. Only what is needed is
parsed: the `"seq":` the publisher put in the payload and the `"timestamp":` after it.

With `"tls": true` in `connect` (the `nginx` part, bench/nginx.py) the streams go over TLS to
a proxy: the raw bytes are still read (and stamped by the kernel) as they arrive, then
decrypted through an in-memory `ssl.SSLObject` and their chunked framing undone, since a
proxy's chunks need not line up with SSE frames as daphne's do.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import math
import socket
import ssl
import time
from array import array
from typing import Any

from bench.wire import VIEW, control, prepare, receive, stamp_arrivals

SEQ = b'"seq":'
STAMP = b'"timestamp":'


class Stats:
    """Shared by all connections: the current window and the latencies measured in it."""

    def __init__(self) -> None:
        self.lo = 1 << 62  # nothing counts until the first window
        self.latencies = array("d")
        self.seqs = array("q")
        self.stamps: dict[int, float] = {}  # seq -> the publisher's timestamp
        self.received = 0


class Conn:
    """One SSE stream on a non-blocking socket, read by a reader callback of the loop."""

    __slots__ = (
        "stats",
        "index",
        "sock",
        "head",
        "rest",
        "opened",
        "count",
        "closed",
        "clock",
        "tls",
        "incoming",
        "chunked",
        "left",
        "pending",
    )

    def __init__(self, stats: Stats, index: int, sock: socket.socket, opened: asyncio.Future[bool], clock: str) -> None:
        self.stats = stats
        self.index = index
        self.sock = sock
        self.head = True
        self.rest = b""
        self.opened = opened
        self.count = 0
        self.closed = False
        self.clock = clock
        # Over TLS: the session and the buffer its raw bytes go into; the chunked framing's state.
        self.tls: ssl.SSLObject | None = None
        self.incoming: ssl.MemoryBIO | None = None
        self.chunked = False
        self.left = 0
        self.pending = b""

    def readable(self) -> None:
        got = receive(self.sock, self.clock == "kernel")
        if got is None:
            return
        size, now = got
        data = VIEW[:size].tobytes()
        if not data:
            self.lost()
            return
        if self.tls is not None:
            data = self.decrypt(data)
            if not data:
                return
        if self.head:
            data = self.rest + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.rest = data
                return
            ok = data[9:12] == b"200"
            self.chunked = self.tls is not None and b"transfer-encoding: chunked" in data[:end].lower()
            self.head = False
            self.rest = b""
            if not self.opened.done():
                self.opened.set_result(ok)
            data = data[end + 4 :]
        if self.chunked:
            data = self.unchunk(data)
        if self.rest:
            data = self.rest + data
        cut = data.rfind(b"\n\n")
        if cut < 0:
            self.rest = data
            return
        self.rest = data[cut + 2 :]
        stats = self.stats
        pos = data.find(SEQ, 0, cut)
        while pos >= 0:
            end = data.find(b"}", pos)
            more = data.find(b",", pos, end)  # the seq may be followed by more fields (a command's data)
            if more >= 0:
                end = more
            seq = int(data[pos + 6 : end])
            at = data.find(STAMP, end)
            comma = data.find(b",", at)
            if seq >= stats.lo:
                stamp = float(data[at + 12 : comma])
                stats.latencies.append(now - stamp)
                stats.seqs.append(seq)
                if seq not in stats.stamps:
                    stats.stamps[seq] = stamp
                self.count += 1
                stats.received += 1
            pos = data.find(SEQ, comma, cut)

    def decrypt(self, raw: bytes) -> bytes:
        """The plain bytes of what arrived over TLS (b"" until a whole record is in)."""
        assert self.tls is not None and self.incoming is not None
        self.incoming.write(raw)
        plain = []
        while True:
            try:
                piece = self.tls.read(len(VIEW))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError:
                self.lost()
                return b""
            if not piece:
                break
            plain.append(piece)
        return b"".join(plain)

    def unchunk(self, data: bytes) -> bytes:
        """A chunked body's content, across reads: chunk sizes and their line ends dropped."""
        data = self.pending + data
        out = []
        pos = 0
        while pos < len(data):
            if self.left:
                take = min(self.left, len(data) - pos)
                out.append(data[pos : pos + take])
                pos += take
                self.left -= take
                continue
            end = data.find(b"\r\n", pos)
            if end < 0:
                break
            line = data[pos:end]
            pos = end + 2
            if line:  # an empty line ends a chunk's data; the next one is a size
                self.left = int(line.split(b";")[0], 16)
        self.pending = data[pos:]
        return b"".join(out)

    def lost(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
        if not self.opened.done():
            self.opened.set_result(False)

    def close(self) -> None:
        self.lost()


def request_for(path: str, port: int, token: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: text/event-stream\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One client context for every stream (making one loads the system's CA store: ~20 ms).

    The test certificate is self-signed: nothing is verified (the bench measures, it trusts).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


async def tls_handshake(
    loop: asyncio.AbstractEventLoop, sock: socket.socket, host: str
) -> tuple[ssl.SSLObject, ssl.MemoryBIO, ssl.MemoryBIO]:
    """A TLS client session over `sock` through memory buffers: (SSLObject, incoming, outgoing)."""
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    session = tls_context().wrap_bio(incoming, outgoing, server_hostname=host)
    while True:
        try:
            session.do_handshake()
        except ssl.SSLWantReadError:
            if outgoing.pending:
                await loop.sock_sendall(sock, outgoing.read())
            data = await loop.sock_recv(sock, 65536)
            if not data:
                raise ConnectionError("closed during the TLS handshake") from None
            incoming.write(data)
            continue
        if outgoing.pending:
            await loop.sock_sendall(sock, outgoing.read())
        return session, incoming, outgoing


def path_for(mode: str, index: int) -> str:
    return "/api/broadcast/events" if mode == "broadcast" else f"/api/sessions/bench_{index}/events"


def percentile(ordered: array, q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


class Client:
    def __init__(self) -> None:
        self.stats = Stats()
        self.conns: list[Conn] = []
        self.mode = "broadcast"
        self.sessions = 1

    async def connect(
        self, ports: list[int], mode: str, n: int, token: str, concurrency: int, clock: str, tls: bool = False
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        self.mode = mode
        self.sessions = n
        gate = asyncio.Semaphore(concurrency)
        failures: list[str] = []

        async def one(index: int) -> None:
            port = ports[index % len(ports)]
            opened: asyncio.Future[bool] = loop.create_future()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setblocking(False)
            conn = Conn(self.stats, index, sock, opened, clock)
            async with gate:
                try:
                    await loop.sock_connect(sock, ("127.0.0.1", port))
                    stamp_arrivals(sock)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    request = request_for(path_for(mode, index), port, token)
                    if tls:
                        conn.tls, conn.incoming, outgoing = await tls_handshake(loop, sock, "localhost")
                        conn.tls.write(request)
                        request = outgoing.read()
                    await loop.sock_sendall(sock, request)
                    loop.add_reader(sock.fileno(), conn.readable)
                    ok = await asyncio.wait_for(opened, 15)
                except (OSError, TimeoutError, ssl.SSLError) as exc:
                    failures.append(repr(exc))
                    conn.close()
                    return
            if ok:
                self.conns.append(conn)
            else:
                failures.append("refused or closed before the stream opened")
                conn.close()

        started = time.perf_counter()
        await asyncio.gather(*(one(len(self.conns) + i) for i in range(n)))
        seconds = time.perf_counter() - started
        return {"opened": len(self.conns), "failed": len(failures), "errors": failures[:5], "seconds": seconds}

    def window(self, lo: int) -> dict[str, Any]:
        self.stats.lo = lo
        self.stats.latencies = array("d")
        self.stats.seqs = array("q")
        self.stats.stamps = {}
        self.stats.received = 0
        for conn in self.conns:
            conn.count = 0
        return {"lo": lo}

    def count(self) -> dict[str, Any]:
        return {"received": self.stats.received, "closed": sum(1 for c in self.conns if c.closed)}

    def expected(self, conn: Conn, lo: int, hi: int) -> int:
        if self.mode == "broadcast":
            return hi - lo
        sessions = self.sessions

        def upto(x: int) -> int:  # seqs k < x with k % sessions == conn.index
            return max(0, (x - conn.index + sessions - 1) // sessions)

        return upto(hi) - upto(lo)

    def result(self, hi: int) -> dict[str, Any]:
        lo = self.stats.lo
        expected = lost = extra = 0
        for conn in self.conns:
            want = self.expected(conn, lo, hi)
            expected += want
            if conn.count < want:
                lost += want - conn.count
            else:
                extra += conn.count - want
        ordered = array("d", sorted(self.stats.latencies))
        ms = 1000.0
        # Per event: when its first and its last copy arrived (the fan-out's spread).
        first: dict[int, float] = {}
        last: dict[int, float] = {}
        for seq, latency in zip(self.stats.seqs, self.stats.latencies, strict=True):
            if latency < first.get(seq, math.inf):
                first[seq] = latency
            if latency > last.get(seq, -math.inf):
                last[seq] = latency
        firsts = array("d", sorted(first.values()))
        spreads = array("d", sorted(last[s] - first[s] for s in first))
        return {
            "samples": len(ordered),
            "expected": expected,
            "lost": lost,
            "duplicates": extra,
            "closed": sum(1 for c in self.conns if c.closed),
            "p50_ms": percentile(ordered, 0.50) * ms,
            "p90_ms": percentile(ordered, 0.90) * ms,
            "p99_ms": percentile(ordered, 0.99) * ms,
            "max_ms": (ordered[-1] * ms) if ordered else float("nan"),
            "mean_ms": (sum(ordered) / len(ordered) * ms) if ordered else float("nan"),
            "first_copy_p50_ms": percentile(firsts, 0.5) * ms,
            "first_copy_p99_ms": percentile(firsts, 0.99) * ms,
            "spread_p50_ms": percentile(spreads, 0.5) * ms,
            "spread_p99_ms": percentile(spreads, 0.99) * ms,
            "spread_max_ms": (spreads[-1] * ms) if spreads else float("nan"),
            # The slowest events: when they were published, and when their first and last copy arrived.
            "slowest": [
                {"seq": s, "published": self.stats.stamps.get(s), "first_ms": first[s] * ms, "last_ms": last[s] * ms}
                for s in sorted(last, key=lambda s: last[s], reverse=True)[:5]
            ],
        }

    async def close(self) -> dict[str, Any]:
        for conn in self.conns:
            conn.close()
        closed = len(self.conns)
        self.conns = []
        await asyncio.sleep(0.2)
        return {"closed": closed}


async def serve() -> None:
    client = Client()
    await control(
        {
            "connect": lambda c: client.connect(
                c["ports"],
                c["mode"],
                c["n"],
                c["token"],
                c.get("concurrency", 64),
                c.get("clock", "kernel"),
                c.get("tls", False),
            ),
            "window": lambda c: client.window(c["lo"]),
            "count": lambda c: client.count(),
            "stats": lambda c: client.result(c["hi"]),
            "close": lambda c: client.close(),
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--loop", choices=["asyncio", "uvloop"], default="uvloop")
    parser.add_argument("--sched", choices=["idle", "batch", "normal"], default="batch")
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args()
    prepare(args.loop, args.sched, args.nice, files=6000)
    asyncio.run(serve())


if __name__ == "__main__":
    main()
