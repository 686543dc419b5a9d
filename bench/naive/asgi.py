"""ASGI app of baseline (b), served by daphne like the product."""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.naive.settings")
django.setup()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.urls import re_path  # noqa: E402

from bench.naive.consumers import NaiveSSEConsumer  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                re_path(r"^api/sessions/(?P<session_name>[^/]*)/events/?$", NaiveSSEConsumer.as_asgi()),
                re_path(r"^api/broadcast/events/?$", NaiveSSEConsumer.as_asgi()),
            ]
        )
    }
)
