import logging

from django.apps import AppConfig
from django.conf import settings

logger = logging.getLogger("realtime")


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Realtime bus"

    def ready(self) -> None:
        if not settings.BUS_ON_REDIS:
            logger.warning(
                "REDIS_URL is %s: the realtime bus runs on the in-memory layer, one process only",
                "set but USE_REDIS_SSE=false" if settings.REDIS_URL else "unset",
            )
