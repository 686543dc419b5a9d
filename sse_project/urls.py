"""Every HTTP route of the site, in one place.

The SSE streams (`/api/sessions/{name}/events`, `/api/agents/{id}/events`,
`/api/broadcast/events`, `/api/events`) are not here: they are ASGI routes served before
Django, in realtime/routing.py.
"""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path, re_path

from dashboard import api, pages
from realtime import metrics as realtime_metrics
from realtime import views as realtime_views

urlpatterns = [
    # Pages
    path("", pages.home, name="home"),
    path("workbench/", pages.workbench, name="workbench"),
    path("history/", pages.history_page, name="history"),
    path("dashboard/", pages.supervisor_dashboard, name="supervisor_dashboard"),
    path("dashboard/feed.json", pages.feed, name="dashboard_feed"),
    path("dashboard/reports/", pages.reports_page, name="reports"),
    path("dashboard/sessions/<str:name>/", pages.session_page, name="session_page"),
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    # The bus (docs/bus.md)
    path("api/publish", realtime_views.publish, name="publish"),
    path("api/presence", api.presence, name="presence"),
    path("healthz", realtime_views.healthz, name="healthz"),
    # Prometheus, one scrape per process (docs/operations.md "Metrics")
    path("metrics", realtime_metrics.metrics, name="metrics"),
    # Sessions and the handoff (docs/sessions.md)
    path("api/manual/escalate", api.escalate, name="session-escalate"),
    path("api/sessions", api.session_list, name="session-list"),
    path("api/sessions/<str:name>", api.session_detail, name="session-detail"),
    path("api/sessions/<str:name>/accept", api.accept, name="session-accept"),
    path("api/sessions/<str:name>/messages", api.messages, name="session-messages"),
    path("api/sessions/<str:name>/leave", api.leave, name="session-leave"),
    path("api/sessions/<str:name>/close", api.close, name="session-close"),
    path("api/sessions/<str:name>/read", api.read, name="session-read"),
    path("api/sessions/<str:name>/viewers", api.session_viewers, name="session-viewers"),
    path("api/sessions/<str:name>/transfer", api.transfer, name="session-transfer"),
    path("api/sessions/<str:name>/join", api.join, name="session-join"),
    path("api/sessions/<str:name>/part", api.part, name="session-part"),
    path("api/agents/<str:agent_id>/availability", api.set_availability, name="agent-availability"),
    path("api/canned-replies", api.canned_replies, name="canned-replies"),
    # Anything else under /api/ gets the contract's JSON 404, not an HTML page.
    re_path(r"^api/", realtime_views.api_not_found),
]
