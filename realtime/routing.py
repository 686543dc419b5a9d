"""URL routes of the SSE endpoints (the rest of the site is plain Django views)."""

from django.urls import re_path

from realtime.consumers import stream_app

# One consumer serves all four endpoints; the session cookie is read by Channels' auth stack
# (skipped by requests that authenticate with a header, see stream_app).
stream = stream_app()

# Names are matched loosely here and validated by the consumer, so a bad name gets the
# contract's 400 with a reason instead of a bare 404.
sse_urlpatterns = [
    re_path(r"^api/sessions/(?P<session_name>[^/]*)/events/?$", stream),
    re_path(r"^api/agents/(?P<agent_id>[^/]*)/events/?$", stream),
    re_path(r"^api/broadcast/events/?$", stream, kwargs={"broadcast": True}),
    re_path(r"^api/events/?$", stream),
]
