"""A Redis Sentinel failover under load, across two real daphne processes of the product.

A master, a replica and three sentinels (tests/support/sentinel.py); daphne A and B configured
with REDIS_SENTINELS/REDIS_SENTINEL_MASTER only (no REDIS_URL); an SSE stream on each process on
one session channel; publishers posting ~50 events/s through POST /api/publish, alternating A and
B. The master is SIGKILLed mid-stream and the test keeps publishing until a few seconds after the
sentinels have promoted the replica. Then, per the contract (section 7, "a failover behaves as a
Redis restart"):

- every publish answered 202: with an id, or, while Redis was unreachable, `"delivery": "local"`
  and `id: null` (live only, to that process's own streams);
- each stream got every id a publisher got back exactly once, unless it got a `reset` after that
  publish began (a gap is never silent); nothing was doubled, by id or by payload;
- publishing returns ids again soon after the failover, with no daphne restart;
- /healthz answered 200 on both processes throughout ("ok" or "degraded"), and "ok" at the end.

The streams reconnect as a browser's EventSource would (same URL, `Last-Event-ID`) if the server
closes them; that is allowed, and counted.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import SERVICE_TOKEN, Daphne, SSEClient, SSEEvent, base_env, migrate, wait_until
from tests.support.sentinel import Sentinels

# Two publishers (one per process) at 25/s each: ~50 events/s in all, alternating A and B.
PUBLISH_INTERVAL = 0.04
# Short enough that one stuck request cannot stall a publisher past the test's budget; far longer
# than a publish takes, and longer than the product's own Redis timeouts.
REQUEST_TIMEOUT = 5.0
# Publishing runs this long before the master is killed: history and live streams in full flow.
BEFORE_FAILOVER_SECONDS = 1.5
# The contract: within 5 s of Redis being back, delivery across processes resumes.
RECOVERY_SECONDS = 5.0
# Publishing goes on this long after the first ids come back from both processes.
AFTER_RECOVERY_SECONDS = 3.0


def ident(number: int) -> str:
    return f"{'A' if number % 2 else 'B'}{number}"


@dataclass
class Sent:
    """One POST /api/publish and what it answered."""

    n: int
    process: str
    started: float
    finished: float = 0.0
    status: int | None = None
    body: Any = None
    error: str | None = None

    @property
    def id(self) -> str | None:
        return self.body.get("id") if isinstance(self.body, dict) else None

    @property
    def local(self) -> bool:
        return self.status == 202 and isinstance(self.body, dict) and self.body.get("delivery") == "local"


def post(url: str, body: dict[str, Any]) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST")
    req.add_header("Content-Type", "application/json")
    req.add_header("Authorization", f"Bearer {SERVICE_TOKEN}")
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")[:300]


class Publisher:
    """Posts numbered events to one process at a steady pace, recording every answer."""

    def __init__(self, daphne: Daphne, process: str, channel: str, parity: int, sent: list[Sent]) -> None:
        self.daphne, self.process, self.channel, self.parity, self.sent = daphne, process, channel, parity, sent
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        n, due = self.parity, time.monotonic()
        while not self.stop.is_set():
            n += 2
            record = Sent(n, self.process, time.monotonic())
            body = {"channel": self.channel, "type": "new_message", "payload": {"n": n}}
            try:
                record.status, record.body = post(self.daphne.url + "/api/publish", body)
            except Exception as exc:
                record.error = repr(exc)
            record.finished = time.monotonic()
            self.sent.append(record)
            due += PUBLISH_INTERVAL
            self.stop.wait(max(0.0, due - time.monotonic()))


class HealthWatch:
    """GET /healthz on every process every 100 ms: (time, process, HTTP status or error, JSON status)."""

    def __init__(self, processes: dict[str, Daphne]) -> None:
        self.processes = processes
        self.seen: list[tuple[float, str, int | str, str | None]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set():
            for name, daphne in self.processes.items():
                self.seen.append((time.monotonic(), name, *self.once(daphne)))
            self.stop.wait(0.1)

    @staticmethod
    def once(daphne: Daphne) -> tuple[int | str, str | None]:
        try:
            with urllib.request.urlopen(daphne.url + "/healthz", timeout=REQUEST_TIMEOUT) as response:
                return response.status, json.loads(response.read()).get("status")
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except Exception as exc:
            return repr(exc), None


@dataclass
class Browser:
    """An SSE stream that reconnects as EventSource does: same URL, `Last-Event-ID`, after a pause."""

    daphne: Daphne
    path: str
    segments: list[SSEClient] = field(default_factory=list)
    reconnects: list[float] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # statuses/errors of reconnects that failed
    stop: threading.Event = field(default_factory=threading.Event)

    def open(self) -> Browser:
        self.segments.append(SSEClient(self.daphne.url, self.path).wait_open())
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    @property
    def events(self) -> list[SSEEvent]:
        return [e for segment in list(self.segments) for e in list(segment.events)]

    def _last_id(self) -> str | None:
        ids = [e.id for e in self.events if e.id]
        return ids[-1] if ids else None

    def _watch(self) -> None:
        while not self.stop.is_set():
            if not self.segments[-1].closed.wait(0.05):
                continue
            if self.stop.is_set():
                return
            self.stop.wait(0.2)  # as a short `retry:` would
            self.reconnects.append(time.monotonic())
            try:
                client = SSEClient(self.daphne.url, self.path, last_event_id=self._last_id())
                status = client.wait_status(REQUEST_TIMEOUT)
            except Exception as exc:
                self.refused.append(repr(exc))
                continue
            if status == 200 and client.opened.wait(REQUEST_TIMEOUT):
                self.segments.append(client)
            else:
                self.refused.append(f"{status} {client.body[:200]!r}")
                client.close()

    def close(self) -> None:
        self.stop.set()
        for segment in self.segments:
            segment.close()


@pytest.fixture
def sentinels() -> Iterator[Sentinels]:
    deployment = Sentinels.start()
    yield deployment
    deployment.stop()


def start_both(env: dict[str, str], logs: Path) -> tuple[Daphne, Daphne]:
    a, b = Daphne(env, log_path=logs / "a.log"), Daphne(env, log_path=logs / "b.log")
    errors: list[BaseException] = []

    def start(daphne: Daphne) -> None:
        try:
            daphne.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(d,)) for d in (a, b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        a.stop()
        b.stop()
        raise AssertionError(f"daphne did not start on Sentinel settings: {errors[0]}")
    return a, b


def logs_of(processes: dict[str, Daphne]) -> str:
    """The end of each process's log, without the access log lines."""
    parts = []
    for name, daphne in processes.items():
        lines = [line for line in daphne.log_text().splitlines() if '] "' not in line]
        parts.append(f"--- daphne {name} log (tail, access lines left out)\n" + "\n".join(lines)[-2500:])
    return "\n".join(parts)


def becomes_ok(daphne: Daphne, timeout: float) -> bool:
    try:
        return bool(wait_until(lambda: HealthWatch.once(daphne)[1] == "ok", timeout=timeout, what="/healthz ok"))
    except AssertionError:
        return False


def test_a_sentinel_failover_under_load_loses_nothing_silently_and_publishing_resumes(
    sentinels: Sentinels, tmp_path: Path
) -> None:
    env = base_env(
        **sentinels.env(), DATABASE_URL=f"sqlite:///{tmp_path / 'failover.sqlite3'}", SSE_HEARTBEAT_SECONDS="1"
    )
    assert "REDIS_URL" not in env
    migrate(env)
    a, b = start_both(env, tmp_path)
    processes = {"A": a, "B": b}
    pids = {name: d.proc.pid for name, d in processes.items() if d.proc}
    channel = "sse:session:failover_" + uuid.uuid4().hex[:10]
    browsers = {name: Browser(d, f"/api/events?channel={channel}") for name, d in processes.items()}
    sent: list[Sent] = []
    publishers = [Publisher(a, "A", channel, 1, sent), Publisher(b, "B", channel, 0, sent)]
    health = HealthWatch(processes)
    timings: dict[str, float] = {}
    try:
        try:
            for browser in browsers.values():
                browser.open()
            health.thread.start()
            t0 = time.monotonic()
            publishers[0].thread.start()
            time.sleep(PUBLISH_INTERVAL / 2)
            publishers[1].thread.start()

            # Before any failover: both streams get events from both processes.
            def flowing() -> bool:
                ids = [s.id for s in list(sent) if s.id]
                got = [{e.id for e in br.events} for br in browsers.values()]
                return len(ids) >= 20 and all(set(ids[:20]) <= g for g in got)

            wait_until(flowing, timeout=5, what=f"events on both streams before the failover; sent {sent[:4]}")
            time.sleep(max(0.0, t0 + BEFORE_FAILOVER_SECONDS - time.monotonic()))

            old = sentinels.kill_master()
            killed = time.monotonic()
            new = sentinels.wait_for_failover(old, timeout=15)
            promoted = time.monotonic()
            timings["failover (kill -> sentinels agree, new master has role master)"] = promoted - killed

            def ids_again() -> bool:
                return all(any(s.id and s.started > promoted for s in list(sent) if s.process == p) for p in processes)

            try:
                wait_until(ids_again, timeout=10, what="publishes with ids from both processes after the failover")
            except AssertionError as exc:
                last = {p: [s for s in sent if s.process == p][-3:] for p in processes}
                raise AssertionError(f"{exc}; the last publishes: {last}") from None
            recovered = time.monotonic()
            timings["ids again (new master -> ids from both processes)"] = recovered - promoted
            time.sleep(AFTER_RECOVERY_SECONDS)
        finally:
            for publisher in publishers:
                publisher.stop.set()
            for publisher in publishers:
                if publisher.thread.is_alive():
                    publisher.thread.join(REQUEST_TIMEOUT + 1)

        final = {s.id for s in sent if s.started > recovered + 1 and s.id}
        try:
            wait_until(
                lambda: all(final <= {e.id for e in br.events} for br in browsers.values()),
                timeout=3,
                what="the last events on both streams",
            )
        except AssertionError:
            pass  # reported per stream below
        time.sleep(0.3)  # a duplicate, if any, would arrive right behind
        healthy_at_end = {name: becomes_ok(d, timeout=RECOVERY_SECONDS) for name, d in processes.items()}
        health.stop.set()
        health.thread.join(REQUEST_TIMEOUT * 2 + 1)

        problems = check(sent, browsers, health, t0, recovered)
        if recovered - promoted > RECOVERY_SECONDS:
            problems.add(f"publishing got ids again more than {RECOVERY_SECONDS} s after the new master")
        for name, ok in healthy_at_end.items():
            if not ok:
                problems.add(f"/healthz on {name} not 'ok' after the failover", repr(HealthWatch.once(processes[name])))
        for name, daphne in processes.items():
            if daphne.proc is None or daphne.proc.poll() is not None or daphne.proc.pid != pids[name]:
                problems.add(f"daphne {name} did not survive the failover (it must go on without a restart)")
        summary = summarize(sent, browsers, health, timings, t0, killed, old, new)
        print(summary)
        if problems:
            pytest.fail("\n".join([problems.report(), summary, logs_of(processes)]), pytrace=False)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{logs_of(processes)}") from None
    finally:
        health.stop.set()
        for publisher in publishers:
            publisher.stop.set()
        for browser in browsers.values():
            browser.close()
        a.stop()
        b.stop()


class Problems:
    """What went wrong, grouped by kind: a failover breaks things by the hundred, alike."""

    def __init__(self) -> None:
        self.kinds: dict[str, list[str]] = {}

    def add(self, kind: str, detail: str = "") -> None:
        self.kinds.setdefault(kind, []).append(detail)

    def __bool__(self) -> bool:
        return bool(self.kinds)

    def report(self) -> str:
        lines = [f"{sum(map(len, self.kinds.values()))} problem(s) of {len(self.kinds)} kind(s):"]
        for kind, details in self.kinds.items():
            shown = [d[:160] for d in details if d][:3]
            lines.append(f"- {kind}: {len(details)}" + (f", e.g. {'; '.join(shown)}" if shown else ""))
        return "\n".join(lines)


def check(sent: list[Sent], browsers: dict[str, Browser], health: HealthWatch, t0: float, recovered: float) -> Problems:
    problems = Problems()
    by_n = {s.n: s for s in sent}
    by_id = {s.id: s for s in sent if s.id}

    def at(moment: float) -> str:
        return f"+{moment - t0:.2f}s"

    # Every publish answered 202: an id, or "delivery": "local" with no id.
    for s in sent:
        what = f"{ident(s.n)}@{at(s.started)}"
        if s.error or s.status != 202:
            problems.add(f"publish on {s.process} failed", f"{what}: {s.status} {s.error or s.body!r}"[:300])
        elif s.id is None and not s.local:
            problems.add(f"publish on {s.process}: 202 without an id, not 'delivery': 'local'", f"{what}: {s.body!r}")
        elif s.id is not None and s.local:
            problems.add(f"publish on {s.process}: 'delivery': 'local' with an id", f"{what}: {s.body!r}")
        if s.started > recovered + 1 and s.id is None:
            problems.add(f"publish on {s.process} more than 1 s after the recovery got no id", what)

    for name, browser in browsers.items():
        events = browser.events
        resets = [e.received_at for e in events if e.event == "reset"]
        messages = [e for e in events if e.event == "new_message"]
        got_ids = Counter(e.id for e in messages if e.id)
        got_ns = Counter(e.json["payload"]["n"] for e in messages)
        for event_id, count in got_ids.items():
            if count > 1:
                problems.add(f"stream {name}: an id received more than once", f"{event_id} x{count}")
        for n, count in got_ns.items():
            if count > 1:
                problems.add(f"stream {name}: an event received more than once", f"{ident(n)} x{count}")
        ordered = [e.id for e in messages if e.id]
        for before, after in zip(ordered, ordered[1:], strict=False):
            if tuple(map(int, after.split("-"))) <= tuple(map(int, before.split("-"))):
                problems.add(f"stream {name}: ids out of order", f"{after} after {before}")
        for e in messages:
            n = e.json["payload"]["n"]
            s = by_n.get(n)
            if e.json.get("channel") != messages[0].json.get("channel"):
                problems.add(f"stream {name}: an event of another channel", e.data[:200])
            if s is None:
                problems.add(f"stream {name}: an event no publisher sent", e.data[:200])
            elif e.id is not None and s.id is not None and e.id != s.id:
                problems.add(
                    f"stream {name}: an event with another id than its publish got", f"{ident(n)}: {e.id} != {s.id}"
                )
            elif e.id is not None and s.id is None and not s.error and s.status == 202:
                problems.add(f"stream {name}: a live-only (local) publish arrived with an id", f"{ident(n)}: {e.id}")
            elif e.id is None and s.id is not None:
                problems.add(f"stream {name}: an event arrived without the id its publish got", f"{ident(n)}: {s.id}")
            elif e.id is None and s.process != name:
                problems.add(f"stream {name}: a live-only event of the other process arrived", ident(n))
        # Every id a publisher got back, exactly once, unless a reset came after the publish began.
        for s in by_id.values():
            if s.id not in got_ids and not any(r > s.started for r in resets):
                problems.add(
                    f"stream {name}: an id missing, no reset after it (resets at {[at(r) for r in resets]})",
                    f"{ident(s.n)}={s.id}@{at(s.started)}",
                )
        # A live-only event goes at once to the open streams of its own process.
        if not browser.reconnects:
            for s in sent:
                if s.local and s.process == name and s.n not in got_ns:
                    problems.add(
                        f"stream {name} (never reconnected) missed a live-only event of its process", ident(s.n)
                    )

    for moment, name, status, body_status in health.seen:
        if status != 200 or body_status not in ("ok", "degraded"):
            problems.add(
                f"/healthz on {name} not 200 with status ok/degraded", f"{at(moment)}: {status} {body_status!r}"
            )
    return problems


def summarize(
    sent: list[Sent],
    browsers: dict[str, Browser],
    health: HealthWatch,
    timings: dict[str, float],
    t0: float,
    killed: float,
    old: int,
    new: int,
) -> str:
    lines = [f"failover: master {old} killed at +{killed - t0:.2f}s, replica {new} promoted"]
    lines += [f"  {what}: {seconds:.2f}s" for what, seconds in timings.items()]
    for process in ("A", "B"):
        mine = [s for s in sent if s.process == process]
        local = [s for s in mine if s.local]
        failed = [s for s in mine if s.error or s.status != 202]
        slowest = max((s.finished - s.started for s in mine), default=0.0)
        window = f"+{local[0].started - t0:.2f}s..+{local[-1].started - t0:.2f}s" if local else "-"
        lines.append(
            f"  publishes on {process}: {len(mine)} sent, {len([s for s in mine if s.id])} with ids,"
            f" {len(local)} local ({window}), {len(failed)} failed, slowest {slowest:.2f}s"
        )
    for name, browser in browsers.items():
        events = browser.events
        lines.append(
            f"  stream {name}: {len([e for e in events if e.event == 'new_message'])} events,"
            f" {len([e for e in events if e.event == 'reset'])} resets, {len(browser.reconnects)} reconnects"
            f" ({len(browser.refused)} refused: {browser.refused[:3]}),"
            f" other types {sorted(Counter(e.event for e in events if e.event != 'new_message').items(), key=str)}"
        )
    degraded = Counter((name, s) for _, name, _, s in health.seen)
    lines.append(f"  /healthz answers: {sorted(degraded.items(), key=str)}")
    return "\n".join(lines)
