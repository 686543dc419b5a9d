"""The agents' commands the naive way: plain synchronous Django views on the product's tables.

What a first version does: cookie session + CSRF from Django's stock middleware, the session
row read and locked with the ORM (`select_for_update`: on PostgreSQL a row lock; on SQLite
the product's database settings begin every transaction with BEGIN IMMEDIATE, which locks
the whole file), the change saved, the session-channel events stored as `SessionEvent` rows in
the same transaction, and then, AFTER the transaction has committed (the `with` block has
ended), one stock `async_to_sync(channel_layer.group_send)` per event per channel: the session
channel, sse:broadcast and the agent's channel, as the product's `_announce`. Nothing is sent
for a refused or rolled-back command; an event whose send fails is lost (no outbox).

Answers: the product's status codes for what the load does (200; 401 anonymous; 403 CSRF or
not yours; 404 no such session; 409 wrong state: of two accepts exactly one gets 200) and the
body `{"session", "event_ids", "events"[, "message_id"]}` as the product's.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Callable
from typing import Any

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.http import require_POST

from bench.naive.centre_events import SESSION_PREFIX, channels_of, fan_out, record_rows, send
from dashboard.models import ChatSession, SessionEvent, Status

SOURCE = "agent_workbench"  # the product's source for a signed-in person's events
MAX_TEXT = 4000


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def error(status: int, message: str) -> JsonResponse:
    return JsonResponse({"error": {"status": status, "message": message}}, status=status)


def command(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """POST only, signed in (401 otherwise, as the product), refusals as JSON errors."""

    @require_POST
    @functools.wraps(view)
    def wrapper(request: HttpRequest, name: str) -> HttpResponse:
        if not request.user.is_authenticated:
            return error(401, "log in first")
        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            return error(400, "the body must be JSON")
        if not isinstance(body, dict):
            return error(400, "the body must be a JSON object")
        try:
            return view(request, name, body)
        except Refused as exc:
            return error(exc.status, str(exc))

    return wrapper


def locked(name: str) -> ChatSession:
    """The session row, locked for this transaction (404 if there is none)."""
    session = (
        ChatSession.objects.select_for_update(of=("self",))
        .select_related("agent", "supervisor")
        .filter(name=name)
        .first()
    )
    if session is None:
        raise Refused(404, f"no session {name}")
    return session


def answer(session: ChatSession, envelopes: list[dict[str, Any]], message_id: str | None = None) -> JsonResponse:
    own = SESSION_PREFIX + session.name
    body: dict[str, Any] = {
        "session": session.to_json(),
        "event_ids": [item["id"] for item in envelopes],
        "events": [item for item in envelopes if item["channel"] == own],
    }
    if message_id is not None:
        body["message_id"] = message_id
    return JsonResponse(body)


def _announce(
    session: ChatSession, events: list[tuple[str, dict[str, Any]]], *agents: str | None
) -> list[dict[str, Any]]:
    """The envelopes of `events` on the product's channels; their record saved (in the transaction)."""
    envelopes = fan_out(session.name, events, channels_of(session.name, *agents), SOURCE)
    SessionEvent.objects.bulk_create(record_rows(session, envelopes))
    return envelopes


def _status_change(name: str, previous: str, new: str, agent: str | None) -> tuple[str, dict[str, Any]]:
    return "status_change", {"session_name": name, "status": new, "data": {"previous": previous, "agent": agent}}


@command
def accept(request: HttpRequest, name: str, body: dict[str, Any]) -> HttpResponse:
    user = request.user
    with transaction.atomic():
        session = locked(name)
        if session.status != Status.WAITING_AGENT:
            raise Refused(409, f"cannot accept: session {name} is {session.status}")
        now = timezone.now()
        session.status = Status.AGENT_HANDLING
        session.agent = user  # type: ignore[assignment]
        session.accepted_at = session.awaiting_reply_since = now
        session.version += 1
        session.save(update_fields=["status", "agent", "accepted_at", "awaiting_reply_since", "version"])
        me = user.get_username()
        joined = {"session_name": name, "status": Status.AGENT_HANDLING, "data": {"agent": me}}
        change = _status_change(name, Status.WAITING_AGENT, Status.AGENT_HANDLING, me)
        envelopes = _announce(session, [("agent_joined", joined), change], me)
    send(envelopes)  # after the commit
    return answer(session, envelopes)


@command
def messages(request: HttpRequest, name: str, body: dict[str, Any]) -> HttpResponse:
    text = body.get("text")
    if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEXT:
        return error(400, f"text must be a non-empty string of at most {MAX_TEXT} characters")
    me = request.user.get_username()
    with transaction.atomic():
        session = locked(name)
        if session.status != Status.AGENT_HANDLING:
            raise Refused(409, f"cannot send messages: session {name} is {session.status}")
        if request.user.pk not in (session.agent_id, session.supervisor_id):
            raise Refused(403, f"session {name} is handled by {session.agent_name}")
        session.last_message_text = text[:200]
        session.last_message_sender = "agent"
        session.last_message_at = timezone.now()
        session.awaiting_reply_since = None
        session.version += 1
        session.save(
            update_fields=[
                "last_message_text",
                "last_message_sender",
                "last_message_at",
                "awaiting_reply_since",
                "version",
            ]
        )
        message_id = uuid.uuid4().hex
        message = {
            "session_name": name,
            "message_id": message_id,
            "data": {"text": text, "sender": "agent", "agent": me},
        }
        envelopes = _announce(session, [("new_message", message)], session.agent_name, session.supervisor_name)
    send(envelopes)  # after the commit
    return answer(session, envelopes, message_id)


@command
def leave(request: HttpRequest, name: str, body: dict[str, Any]) -> HttpResponse:
    with transaction.atomic():
        session = locked(name)
        if session.status != Status.AGENT_HANDLING:
            raise Refused(409, f"cannot leave: session {name} is {session.status}")
        if session.agent_id != request.user.pk:
            raise Refused(403, f"session {name} is handled by {session.agent_name}")
        left, watcher = session.agent_name, session.supervisor_name
        session.status = Status.WAITING_AGENT
        session.agent = session.supervisor = None
        session.accepted_at = session.awaiting_reply_since = None
        session.version += 1
        session.save(update_fields=["status", "agent", "supervisor", "accepted_at", "awaiting_reply_since", "version"])
        back = {"agent": left, "reason": session.reason, "escalated_at": session.state_json()["escalated_at"]}
        events = [
            ("agent_left", {"session_name": name, "status": Status.WAITING_AGENT, "data": back}),
            _status_change(name, Status.AGENT_HANDLING, Status.WAITING_AGENT, None),
        ]
        envelopes = _announce(session, events, left, watcher)
    send(envelopes)  # after the commit
    return answer(session, envelopes)


@command
def close(request: HttpRequest, name: str, body: dict[str, Any]) -> HttpResponse:
    """The agent closes their session; a supervisor (staff) any session not closed yet."""
    note = body.get("note", "")
    if not isinstance(note, str) or len(note) > 2000:
        return error(400, "note must be a string of at most 2000 characters")
    supervisor = bool(request.user.is_staff)
    with transaction.atomic():
        session = locked(name)
        allowed = (
            (Status.AGENT_HANDLING, Status.WAITING_AGENT, Status.AI_HANDLING)
            if supervisor
            else (Status.AGENT_HANDLING,)
        )
        if session.status not in allowed:
            raise Refused(409, f"cannot close: session {name} is {session.status}")
        if not supervisor and session.agent_id != request.user.pk:
            raise Refused(403, f"session {name} is handled by {session.agent_name}")
        previous, watcher = session.status, session.supervisor_name
        session.status = Status.CLOSED
        session.closed_at = timezone.now()
        session.resolution_note = note
        session.awaiting_reply_since = None
        session.supervisor = None
        session.version += 1
        session.save(
            update_fields=["status", "closed_at", "resolution_note", "awaiting_reply_since", "supervisor", "version"]
        )
        # The agent stays on a closed session as the record of who handled it last.
        agent = session.agent_name if previous == Status.AGENT_HANDLING else None
        envelopes = _announce(session, [_status_change(name, previous, Status.CLOSED, agent)], agent, watcher)
    send(envelopes)  # after the commit
    return answer(session, envelopes)
