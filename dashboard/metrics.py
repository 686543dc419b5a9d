"""The sessions' queue in the metrics (docs/operations.md "Metrics"): how many wait for an
agent and for how long the longest has waited, in one query when Prometheus scrapes.

dashboard.apps adds this collector to realtime.metrics' registry (realtime never imports the
dashboard).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from django.db import DatabaseError
from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dashboard.models import ChatSession

logger = logging.getLogger(__name__)


class QueueCollector(Collector):
    """`helpdesk_queue_length` and `helpdesk_queue_longest_wait_seconds`."""

    def collect(self) -> Iterator[Metric]:
        try:
            # The queue's index (status, escalated_at) answers both from one query.
            row = ChatSession.objects.queue().aggregate(waiting=Count("pk"), oldest=Min("escalated_at"))
        except DatabaseError as exc:
            # The scrape still answers, without these figures (an alert on absent() catches it).
            logger.warning("metrics without the queue: the database did not answer: %s", exc)
            return
        oldest = row["oldest"]
        wait = max(0.0, (timezone.now() - oldest).total_seconds()) if oldest is not None else 0.0
        yield GaugeMetricFamily("helpdesk_queue_length", "Sessions waiting for an agent", value=int(row["waiting"]))
        yield GaugeMetricFamily(
            "helpdesk_queue_longest_wait_seconds",
            "How long the session waiting longest has waited for an agent (0 with none waiting)",
            value=wait,
        )
