"""`manage.py simulate_chatbot`: play the ai_chatbot so the workbench and dashboard have work.

With Redis (REDIS_URL) run it as its own process next to any number of daphne processes.
On the in-memory layer it must run inside the server process instead (SIMULATE_CHATBOT=true,
as `make run` does): a separate process would talk to nobody.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from dashboard.simulator import ChatbotSimulator, Options


class Command(BaseCommand):
    help = "Simulate the ai_chatbot: open customer sessions, escalate some, answer agents as the customer."

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = Options()
        parser.add_argument("--every", type=float, default=defaults.every, help="seconds between new customers")
        parser.add_argument(
            "--max-waiting", type=int, default=defaults.max_waiting, help="no new customers while this many wait"
        )
        parser.add_argument(
            "--sessions", type=int, default=None, help="open at most this many sessions (0: only answer agents)"
        )
        parser.add_argument(
            "--escalate-share", type=float, default=defaults.escalate_share, help="share of chats handed to agents"
        )
        parser.add_argument("--speed", type=float, default=1.0, help="time factor: 0.2 runs five times faster")
        parser.add_argument("--seed", type=int, default=None, help="random seed, for a repeatable run")
        parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.BUS_ON_REDIS:
            raise CommandError(
                "REDIS_URL is not set: on the in-memory layer a separate simulator reaches no server. "
                "Set REDIS_URL (the same as the daphne processes), or run `make run`, which simulates "
                "the chatbot inside the server process."
            )
        if options["speed"] <= 0 or not 0 <= options["escalate_share"] <= 1 or options["every"] <= 0:
            raise CommandError("--speed and --every must be positive; --escalate-share between 0 and 1")
        logging.getLogger("dashboard.simulator").setLevel(logging.INFO)
        sim_options = Options(
            every=options["every"],
            max_waiting=options["max_waiting"],
            max_sessions=options["sessions"],
            escalate_share=options["escalate_share"],
            speed=options["speed"],
        )
        simulator = ChatbotSimulator(sim_options, rng=random.Random(options["seed"]))
        try:
            asyncio.run(_run(simulator, options["duration"]))
        except KeyboardInterrupt:
            self.stdout.write("simulator stopped")


async def _run(simulator: ChatbotSimulator, duration: float | None) -> None:
    stop = asyncio.Event()
    if duration is not None:
        asyncio.get_running_loop().call_later(duration, stop.set)
    await simulator.run(stop)
