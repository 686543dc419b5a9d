"""The contact-centre benchmark's instrument (bench/centre.py), small: a handful of agents and one
short step on each system, over real daphne processes, a private redis-server and SQLite.

What it must get right to be believed: every message it sends is counted on every stream that
should carry it, once; latencies and the database's time per command are there; and when a
stream really misses a copy, the audit says so.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.centre_load import AGENT, BROADCAST, Agent, Centre, Stream
from tests.support.procs import ROOT, base_env

pytestmark = pytest.mark.timeout(300)


def test_a_small_centre_on_both_systems_counts_every_copy_once(tmp_path: Path) -> None:
    out = tmp_path / "results"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--modes", "centre", "--centre-databases", "sqlite"]
        + ["--centre-agents", "12", "--centre-supervisors", "2", "--centre-sessions", "60"]
        + ["--centre-rates", "8", "--centre-step-seconds", "3", "--out", str(out), "--tag", "test"],
        cwd=ROOT,
        env=base_env(),
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (result,) = out.glob("*-test.json")
    part = json.loads(result.read_text())["centre"]
    assert part["limits"]["sqlite"]["tx_per_s"] > 0
    runs = {run["system"]: run for run in part["runs"]}
    assert set(runs) == {"product", "naive"}
    for system, run in runs.items():
        audit = run["audit"]
        assert audit["messages"] > 10, (system, audit)
        assert (audit["missing"], audit["doubled"], audit["resets"]) == (0, 0, 0), (system, audit)
        (step,) = run["steps"]
        assert step["agent"]["count"] > 0 and step["customer"]["count"] > 0, (system, step)
        assert 0 < step["agent"]["p50_ms"] <= step["agent"]["p99_ms"] <= step["agent"]["max_ms"]
    # The product's own counters: the query time of its message commands.
    messages = runs["product"]["steps"][0]["database"]["messages"]
    assert messages["calls"] > 0 and messages["queries"] > 0 and messages["ms"] > 0
    assert "Contact centre" in (out / result.name.replace(".json", ".md")).read_text()


def test_the_audit_finds_a_copy_a_stream_never_got() -> None:
    supervisor = {"name": "sup", "cookie": "c", "csrf": "x", "port": 1}
    centre = Centre({"agents": [{"name": "a1", "cookie": "c", "csrf": "x", "port": 1}], "supervisors": [supervisor]})
    agent: Agent = centre.agents[0]
    watcher: Stream = centre.supervisors[0]
    agent.handled.append(("s1", 0.0, 100.0))
    # The customer's message 7 in s1 (agent a1): on broadcast for everyone, on a1's own channel,
    # and on the session's channel for a1 (who had it open).
    customer = {"7": ["s1", "a1", 50.0]}
    base = 7 * 8 + 4
    watcher.counts = {base + BROADCAST: 1}
    agent.stream.counts = {base + BROADCAST: 1, base + AGENT: 1}  # the session's copy never came
    audit = centre.audit(customer)
    assert (audit["missing"], audit["doubled"], audit["streams_with_loss"]) == (1, 0, 1)
    agent.stream.counts[base + 2] = 2  # ... and now twice
    audit = centre.audit(customer)
    assert (audit["missing"], audit["doubled"]) == (0, 1)
