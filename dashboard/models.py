"""Chat sessions: the database is the record of who handles which customer.

State changes never happen here or in views: they go through `dashboard.services`, which
moves a session with one conditional UPDATE and publishes the contract's events after the
commit. This module holds the data, the queue orderings and the JSON shape.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils import timezone

from realtime.channels import NAME_PATTERN, NAME_RULE

# The channel-name rule of the contract (realtime.channels): a session name becomes part of
# `sse:session:{name}`, so the database refuses what the bus would refuse.
NAME_VALIDATOR = RegexValidator(NAME_PATTERN, NAME_RULE)


class Status(models.TextChoices):
    # The labels are the pages' own (Live.STATUS_LABELS in static/js/live.js): the admin and
    # the pages call each state by one name.
    AI_HANDLING = "ai_handling", "With the bot"
    WAITING_AGENT = "waiting_agent", "Waiting"
    AGENT_HANDLING = "agent_handling", "With an agent"
    CLOSED = "closed", "Closed"


class ChatSessionQuerySet(models.QuerySet["ChatSession"]):
    def queue(self) -> ChatSessionQuerySet:
        """Waiting sessions, the one waiting longest first."""
        return self.filter(status=Status.WAITING_AGENT).order_by("escalated_at", "pk")

    def ordered_for(self, status: str | None, limit: int) -> list[ChatSession]:
        """The listing of GET /api/sessions, at most `limit` rows, limited in SQL: see
        docs/sessions.md for the orders."""
        base = self.select_related("agent", "supervisor")
        if status == Status.WAITING_AGENT:
            return list(base.queue()[:limit])
        if status == Status.CLOSED:
            return list(base.filter(status=status).order_by("-closed_at", "-pk")[:limit])
        if status is not None:
            return list(base.filter(status=status).order_by("-created_at", "-pk")[:limit])
        queue = list(base.queue()[:limit])
        if len(queue) == limit:
            return queue
        rest = base.filter(status__in=(Status.AI_HANDLING, Status.AGENT_HANDLING)).order_by("-created_at", "-pk")
        return [*queue, *rest[: limit - len(queue)]]


class ChatSession(models.Model):
    name = models.CharField(max_length=64, unique=True, validators=[NAME_VALIDATOR])
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.AI_HANDLING)
    # SET_NULL: deleting an agent account must not delete the history of the sessions it had.
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="chat_sessions",
    )
    # A supervisor who joined the agent's conversation as a second participant (docs/sessions.md).
    supervisor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="joined_sessions",
    )
    reason = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    escalated_at = models.DateTimeField(null=True, blank=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    # What the person who closed it wrote about how it ended (optional, docs/sessions.md).
    resolution_note = models.TextField(blank=True, default="", max_length=2000)
    # Who the customer is, as the bot said when it escalated (`data.customer`, docs/sessions.md):
    # {"id", "name", "email", "fields": {...}}. `customer_ref` and `customer_name` copy the id
    # and name into indexed columns for the earlier-sessions panel and the history search.
    customer = models.JSONField(default=dict, blank=True)
    customer_ref = models.CharField(max_length=64, blank=True, default="", db_index=True)
    customer_name = models.CharField(max_length=200, blank=True, default="")
    # The latest chat message (either side), for "My sessions" previews.
    last_message_text = models.CharField(max_length=200, blank=True, default="")
    last_message_sender = models.CharField(max_length=16, blank=True, default="")
    last_message_at = models.DateTimeField(null=True, blank=True)
    # Since when the customer waits for the agent's reply (their first unanswered message, or
    # the accept); None while the agent has the last word or nobody handles the session.
    awaiting_reply_since = models.DateTimeField(null=True, blank=True)
    # The id of the last event the dashboard published on sse:session:{name} ("" = none yet).
    last_event_id = models.CharField(max_length=41, blank=True, default="")
    # The same id zero-padded, so SQL can compare ids and a slow writer never moves it back.
    last_event_key = models.CharField(max_length=40, blank=True, default="", editable=False)
    # Bumped by every UPDATE; the Redis copy is only overwritten by a newer version.
    version = models.PositiveBigIntegerField(default=0, editable=False)

    objects = ChatSessionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            models.Index(fields=["status", "escalated_at"], name="chatsession_queue"),
            models.Index(fields=["status", "closed_at"], name="chatsession_history"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=Status.values), name="chatsession_status_valid"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def agent_name(self) -> str | None:
        return self.agent.get_username() if self.agent is not None else None

    @property
    def supervisor_name(self) -> str | None:
        return self.supervisor.get_username() if self.supervisor is not None else None

    @property
    def display_name(self) -> str:
        """The customer's name when the bot gave one, else the session's name."""
        return self.customer_name or self.name

    def waiting_seconds(self, now: datetime | None = None) -> float | None:
        """Seconds in the queue so far, for a waiting session; None otherwise."""
        if self.status != Status.WAITING_AGENT or self.escalated_at is None:
            return None
        return max(0.0, ((now or timezone.now()) - self.escalated_at).total_seconds())

    def to_json(self, now: datetime | None = None) -> dict[str, Any]:
        """The session object of the API (docs/sessions.md)."""
        return {
            **self.state_json(),
            "waiting_seconds": self.waiting_seconds(now),
        }

    def state_json(self) -> dict[str, Any]:
        """The session object without the clock-dependent `waiting_seconds` (the Redis copy)."""

        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "name": self.name,
            "status": self.status,
            "agent": self.agent_name,
            "supervisor": self.supervisor_name,
            "reason": self.reason,
            "created_at": iso(self.created_at),
            "escalated_at": iso(self.escalated_at),
            "accepted_at": iso(self.accepted_at),
            "closed_at": iso(self.closed_at),
            "resolution_note": self.resolution_note,
            "customer": self.customer or None,
            "last_message": (
                {"text": self.last_message_text, "sender": self.last_message_sender, "at": iso(self.last_message_at)}
                if self.last_message_at is not None
                else None
            ),
            "awaiting_reply_since": iso(self.awaiting_reply_since),
            "last_event_id": self.last_event_id or None,
        }


class SessionEventQuerySet(models.QuerySet["SessionEvent"]):
    def of_session(self, name: str) -> SessionEventQuerySet:
        return self.filter(session__name=name).select_related("outbox")

    def in_order(self) -> SessionEventQuerySet:
        return self.order_by("timestamp", "pk")


class SessionEvent(models.Model):
    """The record of a conversation: every event of a session, its chat messages included.

    Written with the command that caused it (in its transaction), or by the recorder for
    events other services published on the session's channel. Kept after the bus's history
    is trimmed, expired or lost: transcripts, the admin timeline and the snapshots read it.
    """

    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="events")
    type = models.CharField(max_length=32)
    source = models.CharField(max_length=64)
    payload = models.JSONField()
    timestamp = models.FloatField()  # the envelope's: Unix time in seconds
    # The outbox row of a command's event, while it is kept (`realtime.outbox.prune`).
    outbox = models.OneToOneField(
        "realtime.OutboxEvent", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The event's id on the bus: a command's once published, a service's as recorded; ""
    # while a command's event waits in the outbox, and for ever for a raw PUBLISH.
    event_id = models.CharField(max_length=41, blank=True, default="")
    # Chat messages only: the stable id carried in the payload, so each is stored once.
    message_id = models.CharField(max_length=64, null=True, blank=True, unique=True)
    # Chat messages only: who wrote it ("customer", "agent", "bot", ...) and what, copied out of
    # the payload for unread counts and the history search (PostgreSQL indexes it for full text).
    sender = models.CharField(max_length=16, blank=True, default="")
    text = models.TextField(blank=True, default="")

    objects = SessionEventQuerySet.as_manager()

    class Meta:
        indexes = [models.Index(fields=["session", "timestamp", "id"], name="sessionevent_transcript")]
        constraints = [
            models.UniqueConstraint(
                fields=["event_id"], condition=~models.Q(event_id=""), name="sessionevent_event_id_once"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.type} in {self.session_id}"

    @property
    def bus_id(self) -> str | None:
        """The event's id on the bus, or None while it waits to be published (or came raw)."""
        if not self.event_id and self.outbox is not None:
            return self.outbox.event_id or None  # published, the record not yet told
        return self.event_id or None

    @property
    def waits_for_the_bus(self) -> bool:
        """A command's event not published yet (Redis unreachable since its commit)."""
        return self.outbox_id is not None and self.bus_id is None

    def envelope(self, session_name: str) -> dict[str, Any]:
        """As it went out on `sse:session:{name}` (the `id` is None until it is published)."""
        return {
            "id": self.bus_id,
            "channel": f"sse:session:{session_name}",
            "type": self.type,
            "payload": self.payload,
            "timestamp": self.timestamp,
            "source": self.source,
        }


class ReadMarker(models.Model):
    """How far one agent has read one session: unread counts survive reloads and other devices."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    session = models.ForeignKey(ChatSession, on_delete=models.CASCADE, related_name="read_markers")
    # The last message read, and its timestamp: messages after it are unread.
    message_id = models.CharField(max_length=64)
    timestamp = models.FloatField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "session"], name="readmarker_once")]

    def __str__(self) -> str:
        return f"{self.user_id} read {self.session_id} up to {self.message_id}"


class CannedReply(models.Model):
    """A prepared answer an agent inserts with "/" in the composer (managed in the admin).

    `text` may hold {customer_name}, {agent_name} and {session_name}, filled in on insert.
    """

    shortcut = models.SlugField(max_length=32, unique=True, help_text="Typed after / in the composer, e.g. refund")
    title = models.CharField(max_length=120)
    text = models.TextField(
        max_length=4000,
        help_text="May use {customer_name}, {agent_name} and {session_name}; they are filled in when inserted.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["shortcut"]
        verbose_name_plural = "canned replies"

    def __str__(self) -> str:
        return f"/{self.shortcut}"

    def to_json(self) -> dict[str, str]:
        return {"shortcut": self.shortcut, "title": self.title, "text": self.text}


class Availability(models.TextChoices):
    AVAILABLE = "available", "Available"
    AWAY = "away", "Away"


class AgentState(models.Model):
    """An agent's own Available / Away (remembered), and when they were last given a session.

    No row: the default, available for agents and away for supervisors (a supervisor takes
    sessions only after making themselves available). Presence (realtime.presence) says
    separately whether a workbench of theirs is open.
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_state")
    state = models.CharField(max_length=16, choices=Availability.choices, default=Availability.AVAILABLE)
    changed_at = models.DateTimeField(default=timezone.now)
    # Round-robin assignment gives the next session to whoever waited longest for one.
    last_assigned_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(state__in=Availability.values), name="agentstate_state_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.user_id}: {self.state}"
