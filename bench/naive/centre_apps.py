"""The product's apps as the naive contact centre installs them: their models, nothing else.

The naive way shares the product's tables (same database, same migrations), but none of its
machinery: the product's `ready()` hooks connect the record's signal receivers and register
metrics collectors, so these configs name the same apps (same labels, same models) without
them.
"""

from django.apps import AppConfig


class RealtimeModels(AppConfig):
    """`realtime`: only for `OutboxEvent`, which `SessionEvent` refers to (the naive way writes none)."""

    name = "realtime"
    label = "realtime"
    default_auto_field = "django.db.models.BigAutoField"


class DashboardModels(AppConfig):
    """`dashboard`: `ChatSession` and `SessionEvent`, without the record's receivers or metrics."""

    name = "dashboard"
    label = "dashboard"
    default_auto_field = "django.db.models.BigAutoField"
