"""`make run` on the in-memory layer: the simulator starts inside the server on its first request."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from dashboard.simulator_inprocess import SimulatorStarter, with_simulator


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["served"] = True


def test_without_simulate_chatbot_the_application_is_left_as_it_is(settings: Any) -> None:
    settings.SIMULATE_CHATBOT = False
    assert with_simulator(app) is app


def test_with_redis_the_server_starts_no_simulator_and_says_how_to_run_one(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.SIMULATE_CHATBOT = True
    settings.BUS_ON_REDIS = True
    with caplog.at_level(logging.WARNING, logger="dashboard.simulator_inprocess"):
        assert with_simulator(app) is app
    assert "manage.py simulate_chatbot" in caplog.text


def test_on_the_memory_layer_the_first_request_starts_exactly_one_simulator(settings: Any) -> None:
    settings.SIMULATE_CHATBOT = True
    settings.BUS_ON_REDIS = False
    started: list[str] = []

    class FakeSimulator:
        async def run(self) -> None:
            started.append("run")
            await asyncio.sleep(3600)

    async def scenario() -> list[dict[str, Any]]:
        wrapped = with_simulator(app)
        assert isinstance(wrapped, SimulatorStarter)
        wrapped.factory = FakeSimulator  # type: ignore[assignment]
        scopes: list[dict[str, Any]] = [{"type": "http"}, {"type": "http"}, {"type": "http"}]
        for scope in scopes:
            await wrapped(scope, None, None)
        await asyncio.sleep(0)
        assert wrapped.task is not None and not wrapped.task.done()
        wrapped.task.cancel()
        return scopes

    scopes = asyncio.run(scenario())
    assert started == ["run"]
    assert all(scope["served"] for scope in scopes)
