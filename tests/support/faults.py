"""What the fault tests share: publishers posting numbered events to real daphne processes and
recording every answer, streams that reconnect as EventSource does, a /healthz watcher, and
`check`, the contract's accounting: per stream, every id a publisher got back exactly once
unless a `reset` came after that publish began, nothing doubled, live-only events only on
their own process.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.procs import Daphne, SSEClient, SSEEvent, request, wait_until

# Two publishers (one per process) at 25/s each: ~50 events/s in all, alternating A and B.
PUBLISH_INTERVAL = 0.04
# Short enough that one stuck request cannot stall a publisher past the test's budget; far longer
# than a publish takes, and longer than the product's own Redis timeouts.
REQUEST_TIMEOUT = 5.0


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
    return request("POST", url, body, timeout=REQUEST_TIMEOUT)


class Publisher:
    """Posts numbered events to one process at a steady pace, recording every answer."""

    def __init__(
        self,
        daphne: Daphne,
        process: str,
        channel: str,
        parity: int,
        sent: list[Sent],
        interval: float = PUBLISH_INTERVAL,
    ) -> None:
        self.daphne, self.process, self.channel, self.parity, self.sent = daphne, process, channel, parity, sent
        self.interval = interval
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
            due += self.interval
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
