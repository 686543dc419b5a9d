"""ASGI entry point: SSE streams go to the realtime consumer, everything else to Django."""

import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sse_project.settings")
django_asgi_app: Any = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up first
from django.urls import re_path  # noqa: E402

from realtime.middleware import BodyLimitMiddleware  # noqa: E402
from realtime.routing import sse_urlpatterns  # noqa: E402

routes = [*sse_urlpatterns, re_path(r"", django_asgi_app)]
application = ProtocolTypeRouter({"http": BodyLimitMiddleware(URLRouter(routes))})
