"""The supervisors' admin: sessions with filters, search, waiting time and event timeline.

The admin never edits a session's fields: a state change written here would skip the events
and the Redis keys. Supervisors change state with the actions, which call the same service
functions as the API and so publish the same events.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from dashboard import services
from dashboard.models import CannedReply, ChatSession
from realtime.auth import Principal

logger = logging.getLogger(__name__)

# The timeline shows the latest events of the session from the record: a page of them is
# what a supervisor reads; the whole conversation stays in the database.
TIMELINE_EVENTS = 200
# Long messages are cut in the timeline's summary column; the full payload is one click away.
SUMMARY_CHARS = 120


def format_duration(seconds: float | None) -> str:
    """`75.2` -> `1m 15s`; `None` -> `-`."""
    if seconds is None:
        return "-"
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def summarise(envelope: dict[str, Any]) -> str:
    """One line saying what an event did, for the timeline."""
    payload = envelope.get("payload") or {}
    data = payload.get("data") or {}
    kind = envelope.get("type")
    if kind == "new_message":
        # Who said it comes from `source` (stamped by the server), never from the payload alone.
        if envelope.get("source") == "agent_workbench":
            who = data.get("agent") or "agent"
        else:
            who = data.get("sender") if data.get("sender") in ("customer", "bot") else "bot"
        text = str(data.get("text", ""))
        return f"{who}: {text[:SUMMARY_CHARS]}{'...' if len(text) > SUMMARY_CHARS else ''}"
    if kind == "status_change":
        agent = f" (agent {data['agent']})" if data.get("agent") else ""
        return f"{data.get('previous', '?')} -> {payload.get('status', '?')}{agent}"
    if kind == "transfer_request":
        return f"asks for an agent: {data.get('reason') or 'no reason given'}"
    if kind in ("agent_joined", "agent_left"):
        return f"{data.get('agent', '?')} {'joined' if kind == 'agent_joined' else 'left'}"
    return ""


def timeline(name: str) -> list[dict[str, Any]]:
    """The session's recorded events as rows for the admin page, oldest first."""
    rows = []
    for envelope in services.session_history(name, limit=TIMELINE_EVENTS, waiting=True):
        stamp = envelope.get("timestamp")
        rows.append(
            {
                "id": envelope.get("id"),
                "waiting": envelope.get("waiting", False),
                "when": datetime.fromtimestamp(stamp, tz=UTC) if isinstance(stamp, (int, float)) else None,
                "type": envelope.get("type"),
                "source": envelope.get("source"),
                "summary": summarise(envelope),
                "payload": json.dumps(envelope.get("payload"), indent=2, ensure_ascii=False),
            }
        )
    return rows


Command = Callable[..., services.Outcome]


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    """The team's prepared answers; agents insert them with "/" in the composer."""

    list_display = ("shortcut", "title", "updated_at")
    search_fields = ("shortcut", "title", "text")
    fields = ("shortcut", "title", "text")


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = ("name", "status", "agent", "waiting", "reason", "created_at", "escalated_at", "closed_at")
    list_filter = ("status", ("agent", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "customer_name", "customer_ref")
    list_select_related = ("agent",)
    date_hierarchy = "created_at"
    fields = (
        "name",
        "status",
        "agent",
        "reason",
        "customer_name",
        "customer_ref",
        "waiting",
        "created_at",
        "escalated_at",
        "accepted_at",
        "closed_at",
        "resolution_note",
        "last_event_id",
    )
    readonly_fields = fields
    actions = ("close_sessions", "return_to_queue")

    @admin.display(description="waiting", ordering="escalated_at")
    def waiting(self, session: ChatSession) -> str:
        return format_duration(session.waiting_seconds())

    # Read-only: sessions are created by escalation and changed by the actions below.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ChatSession | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: ChatSession | None = None) -> bool:
        return False

    def has_supervise_permission(self, request: HttpRequest) -> bool:
        """Who may run the actions: staff with the model's change permission (supervisors)."""
        user = request.user
        return bool(user.is_active and user.is_staff and user.has_perm("dashboard.change_chatsession"))

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        session = self.get_object(request, unquote(object_id))
        if session is not None:
            context["timeline"] = timeline(session.name)
            context["timeline_limit"] = TIMELINE_EVENTS
        return super().change_view(request, object_id, form_url, context)

    @admin.action(description="Close the selected sessions", permissions=["supervise"])
    def close_sessions(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        self._apply(request, queryset, services.close, "closed")

    @admin.action(description="Return the selected sessions to the queue", permissions=["supervise"])
    def return_to_queue(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        self._apply(request, queryset, services.requeue, "returned to the queue")

    def _apply(self, request: HttpRequest, queryset: QuerySet[ChatSession], command: Command, done: str) -> None:
        """Run `command` on each selected session; a refused one is reported, not fatal."""
        by = Principal("supervisor", request.user.get_username())
        changed: list[str] = []
        refused: list[str] = []
        for name in queryset.order_by("pk").values_list("name", flat=True):
            try:
                command(name, by=by)
            except services.SessionError as exc:
                refused.append(f"Session {name} was not {done}: {exc}")
            else:
                changed.append(name)
        logger.info("%s %s: %s", request.user.get_username(), done, ", ".join(changed) or "none")
        if changed:
            self.message_user(request, f"{len(changed)} session(s) {done}: {', '.join(changed)}", messages.SUCCESS)
        for reason in refused:
            self.message_user(request, reason, messages.WARNING)
