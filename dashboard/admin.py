"""The supervisors' admin: sessions with filters, search, waiting time and event timeline.

The admin never edits a session's fields: a state change written here would skip the events
and the Redis keys. Supervisors change state with the actions, which call the same service
functions as the API and so publish the same events.

It speaks the pages' language: the pages' status labels (`Status`), times in the viewer's own
time zone (each is a `<time>` that static/js/admin-local-times.js rewrites in the browser) and
one readable line per event ("ana joined", "Status: Waiting → With an agent").
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
from django.urls import reverse
from django.utils.html import format_html

from dashboard import services
from dashboard.models import CannedReply, ChatSession, Status
from realtime.auth import AGENT_SOURCE, Principal

logger = logging.getLogger(__name__)

# The timeline shows the latest events of the session from the record: a page of them is
# what a supervisor reads; the whole conversation stays in the database.
TIMELINE_EVENTS = 200
# Long messages are cut in the timeline's summary column; the full payload is one click away.
SUMMARY_CHARS = 120
# A name, a reason or an agent id from a payload is shown at most this long (payloads may come
# from any service that can publish on the session's channel).
NAME_CHARS = 64

STATUS_LABELS: dict[str, str] = {value: str(label) for value, label in Status.choices}


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


def local_time(value: datetime | None, *, seconds: bool = False) -> str:
    """A `<time>` the viewer's browser shows in their own zone; UTC, and said so, without script."""
    if value is None:
        return "-"
    utc = value.astimezone(UTC)
    shown = utc.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    precision = "seconds" if seconds else "minutes"
    return format_html(
        '<time class="local-time" datetime="{}" data-precision="{}">{} UTC</time>',
        utc.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        precision,
        shown,
    )


def status_label(value: object) -> str:
    """`waiting_agent` -> `Waiting`, as the pages say it; anything unknown as it came."""
    return STATUS_LABELS.get(value, "?") if isinstance(value, str) else "?"


def _text(value: object, limit: int = NAME_CHARS) -> str:
    """A string or number from a payload, cut to `limit`; "" for anything else."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return ""
    text = str(value)
    return text[:limit] + ("..." if len(text) > limit else "")


def _by(data: dict[str, Any], *not_if: str) -> str:
    """` by sam` when `data.by` names someone other than the people already named."""
    by = _text(data.get("by"))
    return f" by {by}" if by and by not in not_if else ""


def summarise(envelope: dict[str, Any]) -> str:
    """One line saying what an event did, in the pages' words, for the timeline."""
    payload = envelope.get("payload")
    payload = payload if isinstance(payload, dict) else {}
    data = payload.get("data")
    data = data if isinstance(data, dict) else {}
    kind = envelope.get("type")
    if kind == "new_message":
        # Who said it comes from `source` (stamped by the server), never from the payload alone.
        if envelope.get("source") == AGENT_SOURCE:
            who = _text(data.get("agent")) or "An agent"
        else:
            who = "Customer" if data.get("sender") == "customer" else "Bot"
        text = str(data.get("text", ""))
        return f"{who}: {text[:SUMMARY_CHARS]}{'...' if len(text) > SUMMARY_CHARS else ''}"
    if kind == "status_change":
        previous, now = data.get("previous"), payload.get("status")
        agent = _text(data.get("agent"))
        if previous == now:  # a transfer: still with an agent, another one
            return f"Status: {status_label(now)}" + (f" (now {agent})" if agent else "")
        with_agent = f" ({agent})" if agent and now == Status.AGENT_HANDLING else ""
        return f"Status: {status_label(previous)} → {status_label(now)}{with_agent}"
    if kind == "transfer_request":
        reason = _text(data.get("reason"), SUMMARY_CHARS)
        return f"The bot asked for an agent: {reason}" if reason else "The bot asked for an agent (no reason given)"
    if kind == "agent_joined":
        return _joined_line(data)
    if kind == "agent_left":
        return _left_line(data, payload.get("status"))
    return str(kind or "event").replace("_", " ").capitalize()


def _joined_line(data: dict[str, Any]) -> str:
    """agent_joined: an accept, a transfer's new agent (`data.from`) or a supervisor joining."""
    agent, old = _text(data.get("agent")) or "Someone", _text(data.get("from"))
    if old:
        return f"Transferred from {old} to {agent}{_by(data, old)}"
    if data.get("by"):
        return f"Transferred to {agent}{_by(data, agent)}"
    if data.get("role") == "supervisor":
        return f"{agent} joined as a supervisor"
    return f"{agent} joined"


def _left_line(data: dict[str, Any], status: object) -> str:
    """agent_left: a transfer's old agent (`data.to`), a leave or return to the queue, or a
    supervisor parting."""
    agent, new = _text(data.get("agent")) or "Someone", _text(data.get("to"))
    if new:
        return f"{agent} left: transferred to {new}{_by(data, agent, new)}"
    if data.get("role") == "supervisor":
        return f"{agent} (supervisor) left"
    if status == Status.WAITING_AGENT:
        return f"{agent} left; back in the queue{_by(data, agent)}"
    return f"{agent} left{_by(data, agent)}"


def _when(stamp: object) -> str:
    """An event's Unix time as a `<time>`; "-" for one no date can hold (the recorder keeps what
    services sent)."""
    if isinstance(stamp, bool) or not isinstance(stamp, (int, float)) or not 0 <= stamp < 253402300800:
        return "-"
    return local_time(datetime.fromtimestamp(stamp, tz=UTC), seconds=True)


def timeline(session: ChatSession) -> list[dict[str, Any]]:
    """The session's recorded events as rows for the admin page, oldest first.

    The resolution note is kept on the session, not in an event: it goes with the last close,
    while the session is closed (a reopened session has no note)."""
    rows: list[dict[str, Any]] = []
    last_close = None
    for envelope in services.session_history(session.name, limit=TIMELINE_EVENTS, waiting=True):
        payload = envelope.get("payload")
        if envelope.get("type") == "status_change" and isinstance(payload, dict) and payload.get("status") == "closed":
            last_close = len(rows)
        rows.append(
            {
                "id": envelope.get("id"),
                "waiting": envelope.get("waiting", False),
                "when": _when(envelope.get("timestamp")),
                "type": envelope.get("type"),
                "source": envelope.get("source"),
                "summary": summarise(envelope),
                "note": "",
                "payload": json.dumps(payload, indent=2, ensure_ascii=False),
            }
        )
    if session.status == Status.CLOSED and session.resolution_note and last_close is not None:
        rows[last_close]["note"] = session.resolution_note
    return rows


Command = Callable[..., services.Outcome]

# The product's name, not Django's, at the top of every admin page and in the tab's title.
admin.site.site_header = "Helpdesk admin"
admin.site.site_title = "Helpdesk admin"
admin.site.index_title = "Sessions, canned replies and sign-ins"


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    """The team's prepared answers; agents insert them with "/" in the composer."""

    list_display = ("shortcut", "title", "updated")
    search_fields = ("shortcut", "title", "text")
    fields = ("shortcut", "title", "text")

    @admin.display(description="updated", ordering="updated_at")
    def updated(self, reply: CannedReply) -> str:
        return local_time(reply.updated_at)


# What a session's page in the admin shows, in this order (all read-only: see the module doc).
SESSION_FIELDS = (
    "name",
    "customer_display",
    "status",
    "agent_name",
    "supervisor_name",
    "reason",
    "waiting",
    "created",
    "escalated",
    "accepted",
    "closed",
    "resolution_note",
)


@admin.register(ChatSession)
class ChatSessionAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "customer_display",
        "status",
        "agent",
        "waiting",
        "reason",
        "escalated",
        "closed",
    )
    list_filter = ("status", ("agent", admin.RelatedOnlyFieldListFilter))
    search_fields = ("name", "customer_name", "customer_ref")
    list_select_related = ("agent",)
    date_hierarchy = "created_at"
    fieldsets = (
        (None, {"fields": SESSION_FIELDS}),
        # For whoever follows an event through the bus (docs/bus.md); <details>, closed at first.
        ("On the bus", {"classes": ("collapse",), "fields": ("last_event_id",)}),
    )
    readonly_fields = (*SESSION_FIELDS, "last_event_id")
    actions = ("close_sessions", "return_to_queue")

    @admin.display(description="time in queue", ordering="escalated_at")
    def waiting(self, session: ChatSession) -> str:
        return format_duration(session.waiting_seconds())

    # The customer's name and id as the bot gave them (not `customer`: the admin would show the
    # model field of that name, the raw JSON, before looking for a method).
    @admin.display(description="customer", ordering="customer_name")
    def customer_display(self, session: ChatSession) -> str:
        name, ref = session.customer_name, session.customer_ref
        if name and ref:
            return f"{name} ({ref})"
        return name or ref or "-"

    # Names, not links: a supervisor cannot open the accounts (dashboard/accounts.py), and the
    # admin would link a read-only foreign key to a page that refuses them.
    @admin.display(description="agent")
    def agent_name(self, session: ChatSession) -> str:
        return session.agent_name or "-"

    @admin.display(description="supervisor who joined")
    def supervisor_name(self, session: ChatSession) -> str:
        return session.supervisor_name or "-"

    @admin.display(description="created", ordering="created_at")
    def created(self, session: ChatSession) -> str:
        return local_time(session.created_at)

    @admin.display(description="asked for an agent", ordering="escalated_at")
    def escalated(self, session: ChatSession) -> str:
        return local_time(session.escalated_at)

    @admin.display(description="accepted", ordering="accepted_at")
    def accepted(self, session: ChatSession) -> str:
        return local_time(session.accepted_at)

    @admin.display(description="closed", ordering="closed_at")
    def closed(self, session: ChatSession) -> str:
        return local_time(session.closed_at)

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
            context["timeline"] = timeline(session)
            context["timeline_limit"] = TIMELINE_EVENTS
            context["session_page_url"] = reverse("session_page", args=[session.name])
        return super().change_view(request, object_id, form_url, context)

    # "End", not "Close": on the session's admin page "Close" was the stock link back to the
    # list, and a supervisor must never wonder which of the two ends a customer's chat.
    @admin.action(description="End the selected sessions", permissions=["supervise"])
    def close_sessions(self, request: HttpRequest, queryset: QuerySet[ChatSession]) -> None:
        self._apply(request, queryset, services.close, "ended")

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
