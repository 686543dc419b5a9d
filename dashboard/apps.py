from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "dashboard"
    verbose_name = "Customer service"

    def ready(self) -> None:
        # The bus tells the product what to record through signals (realtime never imports
        # dashboard); the record of a conversation lives here.
        from dashboard import record
        from realtime import signals

        signals.events_to_record.connect(record.on_events_to_record, dispatch_uid="dashboard.record")
        signals.outbox_published.connect(record.on_outbox_published, dispatch_uid="dashboard.last_event")
        signals.redis_reconnected.connect(record.on_redis_reconnected, dispatch_uid="dashboard.session_keys")
        # The queue's length and longest wait, in /metrics (realtime.metrics).
        from dashboard.metrics import QueueCollector
        from realtime.metrics import registry

        registry.register(QueueCollector())
