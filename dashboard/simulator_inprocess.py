"""The simulated chatbot inside the server process, for `make run` on the in-memory layer:
there events never leave a process, so the simulator must run in daphne's own event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from django.conf import settings

from dashboard.simulator import ChatbotSimulator

logger = logging.getLogger(__name__)


class SimulatorStarter:
    """ASGI wrapper: starts one simulator as a task of the server's event loop on the first request.

    Daphne has no start-up hook; the first request (the login page, typically) runs on the
    loop that serves every stream, which is what the in-memory layer needs.
    """

    def __init__(self, app: Any, factory: Callable[[], ChatbotSimulator] = ChatbotSimulator) -> None:
        self.app = app
        self.factory = factory
        self.task: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if self.task is None and scope.get("type") == "http":
            self.task = asyncio.get_running_loop().create_task(self.factory().run())
            self.task.add_done_callback(_report_exit)
        await self.app(scope, receive, send)


def _report_exit(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("the in-process chatbot simulator stopped", exc_info=task.exception())


def with_simulator(app: Any) -> Any:
    """`app`, plus the in-process simulator when SIMULATE_CHATBOT is on and Redis is not."""
    if not settings.SIMULATE_CHATBOT:
        return app
    if settings.BUS_ON_REDIS:
        logger.warning(
            "SIMULATE_CHATBOT is on and Redis is configured: the simulator is its own process there. "
            "Start it in another terminal, with the same REDIS_URL: .venv/bin/python manage.py simulate_chatbot"
        )
        return app
    logger.info("SIMULATE_CHATBOT: the chatbot simulator starts in this process with the first request")
    return SimulatorStarter(app)
