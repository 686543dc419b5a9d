"""Routes of the HTML pages (workbench, supervisor dashboard, one session) and the dashboard's snapshot."""

from django.urls import path

from dashboard import pages

urlpatterns = [
    path("workbench/", pages.workbench, name="workbench"),
    path("dashboard/", pages.supervisor_dashboard, name="supervisor_dashboard"),
    path("dashboard/feed.json", pages.feed, name="dashboard_feed"),
    path("dashboard/sessions/<str:name>/", pages.session_page, name="session_page"),
]
