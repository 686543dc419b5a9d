"""GET /healthz: the layer in use and whether Redis can be reached; always 200."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.procs import Daphne, RedisServer, request, wait_until


@pytest.mark.django_db
def test_on_the_embedded_default_it_reports_the_memory_layer(client) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["layer"] == "memory" and body["redis"] == {"configured": False, "reachable": None, "target": None}
    assert body["status"] == "ok" and body["reason"] is None and body["outbox_pending"] == 0
    assert body["history_size"] == 1000


def test_it_needs_no_credentials_and_reports_redis_reachable(daphne_pair) -> None:
    a, _ = daphne_pair
    status, body = request("GET", a.url + "/healthz", token=None)
    assert status == 200
    assert body["status"] == "ok" and body["layer"] == "redis" and body["redis"]["reachable"] is True


def test_with_redis_down_it_still_answers_200_and_says_redis_is_unreachable(redis_env, tmp_path: Path) -> None:
    redis = RedisServer().start()
    daphne = Daphne({**redis_env, "REDIS_URL": redis.url}, log_path=tmp_path / "d.log").start()
    try:
        redis.stop()
        status, body = request("GET", daphne.url + "/healthz", token=None)
        assert status == 200
        assert body["status"] == "degraded" and body["redis"]["reachable"] is False
        redis.start()
        wait_until(
            lambda: request("GET", daphne.url + "/healthz", token=None)[1]["redis"]["reachable"],
            timeout=5,
            what="Redis reachable again",
        )
    finally:
        daphne.stop()
        redis.stop()


def test_it_only_answers_get(client) -> None:
    response = client.post("/healthz")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"
