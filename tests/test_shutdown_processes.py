"""Shutting a daphne process down while it holds streams, and the jittered `retry:`.

Real processes: a private redis-server, two daphne processes A and B on one SQLite file,
events published steadily through B. A is stopped (SIGTERM: every stream ends with the
chunked terminator and A exits in time; SIGKILL: streams just break), each client then
resumes on B from the last id it got, and no published event may be missing or doubled.
"""

from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from realtime import sse
from realtime.under_daphne import shutdown
from tests.support.procs import (
    ROOT,
    Daphne,
    RedisServer,
    SSEClient,
    base_env,
    migrate,
    publish,
    run_python,
    wait_until,
)

SHUTDOWN_SECONDS = 6
# Python start-up is not in the budget the process controls; interpreter exit is.
EXIT_MARGIN = 2.0
RETRY_MS = 2000


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def id_key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq)


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Daphne, Daphne]]:
    """A private Redis and two daphne processes A and B on it, sharing one SQLite file."""
    redis = RedisServer().start()
    env = base_env(
        REDIS_URL=redis.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        SSE_HEARTBEAT_SECONDS="2",
        SSE_SHUTDOWN_SECONDS=str(SHUTDOWN_SECONDS),
        SSE_RETRY_MS=str(RETRY_MS),
    )
    migrate(env)
    a = b = None
    try:
        a = Daphne(env, log_path=tmp_path / "a.log").start()
        b = Daphne(env, log_path=tmp_path / "b.log").start()
        yield a, b
    finally:
        for daphne in (a, b):
            if daphne is not None:
                daphne.stop(signal.SIGKILL)
        redis.stop()


class Publisher(threading.Thread):
    """POST /api/publish to `daphne`, ~50 events a second, round-robin over `channels`."""

    def __init__(self, daphne: Daphne, channels: list[str]) -> None:
        super().__init__(daemon=True)
        self.daphne = daphne
        self.channels = channels
        self.published: list[tuple[str, str]] = []  # (channel, id), in publish order
        self.errors: list[BaseException] = []
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.is_set():
            channel = self.channels[n % len(self.channels)]
            try:
                self.published.append((channel, publish(self.daphne, channel, n)))
            except BaseException as exc:
                self.errors.append(exc)
                return
            n += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self.halt.set()
        self.join(15)
        assert not self.is_alive(), "the publisher did not stop"
        assert not self.errors, f"publishing failed: {self.errors!r}"

    def ids_on(self, channels: tuple[str, ...]) -> list[str]:
        return [event_id for channel, event_id in self.published if channel in channels]


@dataclass
class Listener:
    """One client: its path and channels, its stream on A, then its stream resumed on B."""

    path: str
    channels: tuple[str, ...]
    first: SSEClient
    second: SSEClient | None = None
    ids: list[str] = field(default_factory=list)


def payload_ids(client: SSEClient) -> list[str]:
    return [e.id for e in client.payload_events() if e.id is not None]


def stop_a_and_resume_on_b(pair: tuple[Daphne, Daphne], sig: signal.Signals) -> tuple[list[Listener], float, str]:
    """Streams on A, events through B, A stopped with `sig`, every client resumed on B.

    Returns the listeners (each with every id it got across both connections), how long A
    took to exit, and A's log.
    """
    a, b = pair
    one, two = "sse:session:" + unique("shut"), "sse:session:" + unique("shut")
    routes = [
        *[(f"/api/sessions/{one.removeprefix('sse:session:')}/events", (one,))] * 3,
        *[(f"/api/sessions/{two.removeprefix('sse:session:')}/events", (two,))] * 2,
        (f"/api/events?channel={one}&channel={two}", (one, two)),
    ]
    listeners = [Listener(path, channels, SSEClient(a.url, path).wait_open()) for path, channels in routes]
    publisher = Publisher(b, [one, two])
    publisher.start()
    try:
        for listener in listeners:
            listener.first.wait_for(lambda e: e.event == "new_message", timeout=10, count=3)
        assert a.proc is not None
        started = time.monotonic()
        a.proc.send_signal(sig)
        code = a.proc.wait(SHUTDOWN_SECONDS + EXIT_MARGIN)
        took = time.monotonic() - started
        if sig == signal.SIGTERM:
            assert code == 0, f"A exited with {code}; log: {a.log_text()[-3000:]}"
        for listener in listeners:
            assert listener.first.closed.wait(5), f"the stream {listener.path} on A did not end"
            last = payload_ids(listener.first)[-1]
            listener.second = SSEClient(b.url, listener.path, last_event_id=last).wait_open()
        time.sleep(1.0)  # events keep coming while the clients are on B
    finally:
        publisher.stop()
    for listener in listeners:
        assert listener.second is not None
        wanted = publisher.ids_on(listener.channels)
        second = listener.second
        wait_until(
            lambda second=second, final=wanted[-1]: final in payload_ids(second),  # type: ignore[misc]
            timeout=10,
            what=f"the last event on {listener.channels} at B",
        )
        for client in (listener.first, second):
            assert "reset" not in client.types(), f"{listener.path} got a reset on {client is second and 'B' or 'A'}"
        listener.ids = payload_ids(listener.first) + payload_ids(second)
        counted = Counter(listener.ids)
        missing = [i for i in wanted if i not in counted]
        doubled = sorted(i for i, n in counted.items() if n > 1)
        foreign = sorted(set(counted) - set(wanted))
        assert not missing, f"{listener.path}: {len(missing)} of {len(wanted)} events missing: {missing[:10]}"
        assert not doubled, f"{listener.path}: doubled events {doubled[:10]}"
        assert not foreign, f"{listener.path}: events it never asked for {foreign[:10]}"
        assert [id_key(i) for i in listener.ids] == sorted(id_key(i) for i in listener.ids), "out of order"
        assert len(payload_ids(listener.first)) >= 3 and payload_ids(second), "both connections carried events"
        second.close()
    return listeners, took, a.log_text()


def test_sigterm_ends_every_stream_with_the_terminator_and_clients_resume_on_b_exactly(
    pair: tuple[Daphne, Daphne],
) -> None:
    listeners, took, log = stop_a_and_resume_on_b(pair, signal.SIGTERM)
    for listener in listeners:
        assert listener.first.ended_cleanly, f"{listener.path}: the stream on A was cut, not ended"
        assert listener.first.status == 200
    assert took < SHUTDOWN_SECONDS + EXIT_MARGIN
    assert f"shutdown: ended {len(listeners)} SSE stream(s) cleanly" in log, log[-3000:]


def test_sigkill_cuts_the_streams_and_clients_still_resume_on_b_exactly(pair: tuple[Daphne, Daphne]) -> None:
    listeners, took, log = stop_a_and_resume_on_b(pair, signal.SIGKILL)
    for listener in listeners:
        assert not listener.first.ended_cleanly, f"{listener.path}: a killed process cannot end a stream"
    assert took < 2
    assert "shutdown: ended" not in log


def test_sigterm_with_no_stream_open_exits_at_once(pair: tuple[Daphne, Daphne]) -> None:
    a, _ = pair
    assert a.proc is not None
    started = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    assert a.proc.wait(SHUTDOWN_SECONDS + EXIT_MARGIN) == 0
    assert time.monotonic() - started < EXIT_MARGIN


# --- the jittered retry ------------------------------------------------------------------------


def test_jittered_retry_stays_in_base_to_twice_base_and_spreads() -> None:
    assert sse.jittered_retry_ms(2000, lambda: 0.0) == 2000
    assert sse.jittered_retry_ms(2000, lambda: 0.5) == 3000
    assert sse.jittered_retry_ms(2000, lambda: 0.9999999) == 3999
    assert sse.jittered_retry_ms(2000, lambda: 1.0) == 3999  # a source that may return 1.0
    assert sse.jittered_retry_ms(1, lambda: 0.7) == 1
    source = random.Random(1234)
    values = [sse.jittered_retry_ms(2000, source.random) for _ in range(5000)]
    assert all(2000 <= v < 4000 for v in values)
    assert len(set(values)) > 1500, "spread over the range, not a few values"
    assert min(values) < 2100 and max(values) > 3900
    assert 2900 < sum(values) / len(values) < 3100, "uniform: the mean sits in the middle"
    quarters = Counter((v - 2000) // 500 for v in values)
    assert all(1100 < quarters[q] < 1400 for q in range(4)), quarters


def test_real_streams_each_get_their_own_retry_within_bounds(pair: tuple[Daphne, Daphne]) -> None:
    a, b = pair
    channel = "sse:session:" + unique("retry")
    path = f"/api/sessions/{channel.removeprefix('sse:session:')}/events"
    clients = [SSEClient(server.url, path).wait_open() for server in (a, b, a, b)]
    try:
        retries = [client.retry for client in clients]
        assert all(r is not None and RETRY_MS <= r < 2 * RETRY_MS for r in retries), retries
        assert len(set(retries)) > 1, f"every stream got the same retry: {retries}"
    finally:
        for client in clients:
            client.close()


# --- the shutdown module, without daphne -----------------------------------------------------


def test_install_outside_daphne_hooks_nothing_and_importing_it_loads_no_reactor(tmp_path: Path) -> None:
    env = base_env(DATABASE_URL=f"sqlite:///{tmp_path / 'x.sqlite3'}")
    # Django's `daphne` app imports daphne.server, which installs (not runs) Twisted's reactor
    # in every Django process: install() must see that it is not running and add nothing.
    out = run_python(
        "import asyncio, sys\n"
        "from realtime.under_daphne import shutdown\n"
        "reactor = sys.modules['twisted.internet.reactor']\n"
        "async def main():\n"
        "    return [shutdown.install(), shutdown.install()]\n"
        "before = reactor._eventTriggers.get('shutdown').before\n"
        "print(asyncio.run(main()), shutdown.installed, any(c is shutdown._before_shutdown for c, _, _ in before))\n",
        env,
    )
    assert out.split() == ["[False,", "False]", "True", "False"]
    # The module itself loads no Twisted at all (a process without the daphne app has none).
    done = subprocess.run(
        [sys.executable, "-c", "import sys, realtime.under_daphne.shutdown; print('twisted' in sys.modules)"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["False"]


class FakeConnection:
    def __init__(self, hub: FakeHub, leaves: bool) -> None:
        self.hub = hub
        self.leaves = leaves

    def close(self) -> None:
        if self.leaves:
            # As the consumer does: the task wakes on a later tick, ends, leaves the hub.
            self.hub.loop.call_soon(self.hub.members.discard, self)


class FakeHub:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.members: set[FakeConnection] = set()
        self.closes = 0

    def close_all(self) -> int:
        self.closes += 1
        for member in list(self.members):
            member.close()
        return len(self.members)

    def connection_count(self) -> int:
        return len(self.members)


class FakeTransport:
    connected = True
    _writeDisconnected = False
    offset = 0
    _tempDataLen = 0

    def __init__(self) -> None:
        self.dataBuffer = b"0\r\n\r\n"


class FakeServer:
    def __init__(self, transport: FakeTransport) -> None:
        channel = type("Channel", (), {"transport": transport})()
        self.connections = {type("Request", (), {"channel": channel})(): {}}


def test_end_streams_returns_once_every_stream_left() -> None:
    async def main() -> tuple[tuple[int, int], float, int]:
        hub = FakeHub(asyncio.get_running_loop())
        hub.members = {FakeConnection(hub, leaves=True) for _ in range(5)}
        started = time.monotonic()
        result = await shutdown.end_streams([hub], started + 5)  # type: ignore[list-item]
        return result, time.monotonic() - started, hub.closes

    (ended, left), took, closes = asyncio.run(main())
    assert (ended, left) == (5, 0)
    assert took < 0.5 and closes >= 2


def test_end_streams_gives_up_at_the_deadline_on_a_stream_that_stays() -> None:
    async def main() -> tuple[tuple[int, int], float]:
        hub = FakeHub(asyncio.get_running_loop())
        hub.members = {FakeConnection(hub, leaves=True), FakeConnection(hub, leaves=False)}
        started = time.monotonic()
        result = await shutdown.end_streams([hub], started + 0.5)  # type: ignore[list-item]
        return result, time.monotonic() - started

    (ended, left), took = asyncio.run(main())
    assert left == 1 and ended >= 2
    assert 0.45 < took < 0.8


def test_end_streams_waits_for_unflushed_bytes_then_goes_on() -> None:
    async def main() -> tuple[tuple[int, int], float]:
        loop = asyncio.get_running_loop()
        hub = FakeHub(loop)
        transport = FakeTransport()
        loop.call_later(0.3, setattr, transport, "dataBuffer", b"")  # Twisted wrote it
        started = time.monotonic()
        result = await shutdown.end_streams([hub], started + 5, [FakeServer(transport)])  # type: ignore[list-item]
        return result, time.monotonic() - started

    (ended, left), took = asyncio.run(main())
    assert (ended, left) == (0, 0)
    assert 0.25 < took < 1.0
