"""ASGI entry point: SSE streams go to the realtime consumer, everything else to Django."""

import os
from typing import Any

from django.conf import settings
from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "sse_project.settings")
django_asgi_app: Any = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - needs Django set up first
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from dashboard.availability import start_assigner  # noqa: E402
from dashboard.simulator_inprocess import with_simulator  # noqa: E402
from realtime import background  # noqa: E402
from realtime.hub import freeze_startup_objects  # noqa: E402
from realtime.middleware import MAX_BODY_BYTES, BodyLimitMiddleware  # noqa: E402
from realtime.routing import sse_urlpatterns  # noqa: E402
from realtime.under_daphne import requests as daphne_requests  # noqa: E402

# The pages' CSS and JavaScript are served by the process itself (no CDN, no separate web server needed).
django_and_static: Any = ASGIStaticFilesHandler(django_asgi_app)
routes = [*sse_urlpatterns, re_path(r"", django_and_static)]
# with_simulator: SIMULATE_CHATBOT on the in-memory layer plays the chatbot in this process (docs/pages.md "The demo").
application = with_simulator(ProtocolTypeRouter({"http": BodyLimitMiddleware(URLRouter(routes))}))

# Under daphne, bodies over the limit are refused before they are read, and a request must
# arrive whole within HTTP_REQUEST_SECONDS (BodyLimitMiddleware stays for other servers).
daphne_requests.install(MAX_BODY_BYTES, settings.HTTP_REQUEST_SECONDS)

# The outbox relay and the recorder: every server process runs them (no extra process).
if settings.SSE_BACKGROUND:
    background.start()
    # ASSIGNMENT=round_robin: this process also gives waiting sessions to available agents.
    start_assigner()

# Last: everything made so far lives as long as the process; keep it out of the GC's scans
# (realtime.hub.freeze_startup_objects says what that saves).
freeze_startup_objects()
