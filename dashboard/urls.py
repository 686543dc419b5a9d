"""The sessions API (README "Sessions and the handoff") and the home redirect.

The SSE streams under /api/sessions/{name}/events are routed before Django (realtime.routing).
"""

from django.urls import path

from dashboard import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("api/manual/escalate", api.escalate, name="session-escalate"),
    path("api/sessions", api.session_list, name="session-list"),
    path("api/sessions/<str:name>", api.session_detail, name="session-detail"),
    path("api/sessions/<str:name>/accept", api.accept, name="session-accept"),
    path("api/sessions/<str:name>/messages", api.messages, name="session-messages"),
    path("api/sessions/<str:name>/leave", api.leave, name="session-leave"),
    path("api/sessions/<str:name>/close", api.close, name="session-close"),
]
