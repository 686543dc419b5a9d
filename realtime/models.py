"""The outbox: events written in the same transaction as the change that caused them.

`realtime.outbox` publishes them after the commit, in order, batch by batch, each batch
once (a key in Redis remembers it), and retries while Redis is unreachable. A committed
change therefore never loses its events, and a rolled-back one never sends any.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone


class OutboxEvent(models.Model):
    # The events of one transaction share a batch: they are published together, once.
    batch = models.CharField(max_length=32)
    channel = models.CharField(max_length=80)
    type = models.CharField(max_length=32)
    # The envelope JSON without its id (realtime.envelope.Draft.body), validated when written.
    body = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    # Set when published: the id the bus gave it.
    event_id = models.CharField(max_length=41, blank=True, default="")
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["pk"]
        indexes = [
            # The relay's question, "what is left to publish, oldest first", reads only these rows.
            models.Index(fields=["id"], condition=models.Q(published_at__isnull=True), name="outbox_pending"),
            models.Index(fields=["batch"], name="outbox_batch"),
        ]

    def __str__(self) -> str:
        return f"{self.type} on {self.channel} ({self.event_id or 'pending'})"
