"""Routes of the HTML pages (workbench, supervisor dashboard)."""

from django.urls import path

from dashboard import pages

urlpatterns: list = []
