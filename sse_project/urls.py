from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path, re_path

from realtime import views as realtime_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/publish", realtime_views.publish, name="publish"),
    path("healthz", realtime_views.healthz, name="healthz"),
    path("api/presence", realtime_views.presence, name="presence"),
    path("", include("dashboard.urls")),
    path("", include("dashboard.page_urls")),
    # Anything else under /api/ gets the contract's JSON 404, not an HTML page.
    re_path(r"^api/", realtime_views.api_not_found),
]
