"""The Sentinel test harness itself (tests/support/sentinel.py), without the product."""

from __future__ import annotations

import pytest

from tests.support import sentinel as harness
from tests.support.procs import wait_until
from tests.support.sentinel import Sentinels


def test_it_starts_a_master_a_replica_in_sync_and_three_sentinels_then_fails_over_to_the_replica() -> None:
    deployment = Sentinels.start()
    try:
        master, replica = deployment.nodes
        ports = [master.port, replica.port, *(s.port for s in deployment.sentinels)]
        assert harness.SHARED_REDIS_PORT not in ports and len(set(ports)) == 5
        assert deployment.env() == {
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{s.port}" for s in deployment.sentinels),
            "REDIS_SENTINEL_MASTER": "helpdesk",
        }
        assert deployment.master_port() == master.port
        with replica.client() as client:
            role = client.execute_command("ROLE")
            assert (role[0], role[2]) == (b"slave", master.port)
        with deployment.client() as client:
            client.set("before", "kept")
            assert client.wait(1, 1000) == 1  # the replica acknowledged it
        with replica.client() as client:
            assert client.get("before") == b"kept"

        old = deployment.kill_master()
        assert old == master.port and not master.alive()
        new = deployment.wait_for_failover(old, timeout=15)
        assert new == replica.port
        assert deployment.failover_seconds is not None and deployment.failover_seconds < 10
        assert all(deployment._ask(s) == new for s in deployment.sentinels)
        with deployment.client() as client:
            assert client.get("before") == b"kept"
            assert client.set("after", "written") is True  # a master that takes writes
        # Nothing on disk but the config files and logs.
        assert {p.suffix for p in deployment.directory.iterdir()} <= {".conf", ".log"}
    finally:
        deployment.stop()
    assert not deployment.directory.exists()
    wait_until(lambda: not any(p.alive() for p in [*deployment.nodes, *deployment.sentinels]), what="all stopped")


def test_it_says_plainly_when_redis_server_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="redis-server is not on the PATH"):
        Sentinels.start()


def test_it_never_starts_a_redis_on_the_machines_shared_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(harness, "free_port", lambda: harness.SHARED_REDIS_PORT)
    with pytest.raises(RuntimeError, match="refusing to start a test Redis on 6379"):
        Sentinels.start()
