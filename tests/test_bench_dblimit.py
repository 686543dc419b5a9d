"""bench/dblimit.py: one agent message's writes, timed in a child process on a migrated SQLite file."""

from __future__ import annotations

import pytest

from bench import dblimit

pytestmark = pytest.mark.timeout(120)


def test_measure_on_sqlite_times_both_variants() -> None:
    result = dblimit.measure("sqlite", seconds=0.3)
    assert result["vendor"] == "sqlite"
    # Every message's session UPDATE matched its one row (the child fails otherwise).
    assert result["transactions"] > 10 and result["tx_per_s"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    marks = result["with_publish_marks"]
    assert marks["messages"] > 10 and 0 < marks["p50_ms"] <= marks["p99_ms"] <= marks["max_ms"]
