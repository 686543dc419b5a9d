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

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.faults import (
    PUBLISH_INTERVAL,
    REQUEST_TIMEOUT,
    Browser,
    HealthWatch,
    Publisher,
    Sent,
    becomes_ok,
    check,
    logs_of,
    start_both,
)
from tests.support.procs import base_env, migrate, wait_until
from tests.support.sentinel import Sentinels

# Publishing runs this long before the master is killed: history and live streams in full flow.
BEFORE_FAILOVER_SECONDS = 1.5
# The contract: within 5 s of Redis being back, delivery across processes resumes.
RECOVERY_SECONDS = 5.0
# Publishing goes on this long after the first ids come back from both processes.
AFTER_RECOVERY_SECONDS = 3.0


@pytest.fixture
def sentinels() -> Iterator[Sentinels]:
    deployment = Sentinels.start()
    yield deployment
    deployment.stop()


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
