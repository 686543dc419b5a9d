"""The naive contact centre's command routes: the product's paths (sse_project/urls.py)."""

from django.urls import path

from bench.naive import centre_views

urlpatterns = [
    path("api/sessions/<str:name>/accept", centre_views.accept),
    path("api/sessions/<str:name>/messages", centre_views.messages),
    path("api/sessions/<str:name>/leave", centre_views.leave),
    path("api/sessions/<str:name>/close", centre_views.close),
]
