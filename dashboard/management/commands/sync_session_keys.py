"""`manage.py sync_session_keys`: rewrite the session keys in Redis of every session from the database.

The keys are kept current after every change; this repairs them after Redis lost its data
(a restart of a Redis that keeps nothing on disk) or was down during changes.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from dashboard.services import sync_all_to_redis
from realtime.bus import redis_client


class Command(BaseCommand):
    help = "Rewrite session:{name} and status:{status} in Redis from the database."

    def handle(self, *args: Any, **options: Any) -> None:
        if redis_client() is None:
            raise CommandError("Redis is not configured (REDIS_URL unset or USE_REDIS_SSE=false): nothing to sync")
        written = sync_all_to_redis()
        self.stdout.write(f"wrote the Redis keys of {written} session(s)")
