"""`manage.py run_background`: the outbox relay and the recorder as a process of their own.

Every daphne process runs them as threads by default, which is all a deployment needs. One
that wants the streaming processes to do nothing but stream starts them with
`SSE_BACKGROUND=false` and runs this command instead (one or more: they share the work
through the database and Redis). Stops on SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import signal
import threading
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from realtime import background


class Command(BaseCommand):
    help = "Run the outbox relay and the recorder (what each daphne process runs unless SSE_BACKGROUND=false)."

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        background.start()
        layer = "Redis" if settings.BUS_ON_REDIS else "the in-memory layer (this process only)"
        self.stdout.write(f"outbox relay and recorder running on {layer}; SIGTERM or Ctrl-C stops them")
        stop.wait()
