"""ASGI app of the naive contact centre, served by daphne like the product.

`/api/events` is the stock consumer behind Channels' stock `AuthMiddlewareStack`; everything
else is Django's own ASGI handler (the command views, bench/naive/centre_views.py).
"""

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.naive.centre_settings")
django.setup()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.core.asgi import get_asgi_application  # noqa: E402
from django.urls import re_path  # noqa: E402

from bench.naive.centre_consumers import CentreStreamConsumer  # noqa: E402

django_app = get_asgi_application()

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                re_path(r"^api/events$", AuthMiddlewareStack(CentreStreamConsumer.as_asgi())),
                re_path(r"", django_app),  # type: ignore[arg-type]  # Channels routes ASGI apps too
            ]
        )
    }
)
