"""Read markers: how far each agent has read each session, so unread counts come from the server.

A customer message is unread for the agent on a session when it came after both the agent's
read marker and the accept (what the bot heard before the agent took the session is context,
not news). Counts survive reloads and follow the agent to another device.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q

from dashboard.models import ChatSession, ReadMarker, SessionEvent, Status
from dashboard.services import Forbidden, InvalidInput, NotFound, agent_pk_of, valid_name
from realtime.auth import Principal
from realtime.channels import InvalidChannel, validate_name


def unread_counts(sessions: Iterable[ChatSession], user_pk: int) -> dict[str, dict[str, Any]]:
    """{session name: {"unread", "read_up_to"}} for the given user's own open sessions."""
    mine = [s for s in sessions if s.agent_id == user_pk and s.status == Status.AGENT_HANDLING]
    if not mine:
        return {}
    markers = {
        marker.session_id: marker
        for marker in ReadMarker.objects.filter(user_id=user_pk, session_id__in=[s.pk for s in mine])
    }
    answer: dict[str, dict[str, Any]] = {}
    for session in mine:
        marker = markers.get(session.pk)
        answer[session.name] = {
            "unread": _count(session, marker),
            "read_up_to": marker.message_id if marker is not None else None,
        }
    return answer


def _count(session: ChatSession, marker: ReadMarker | None) -> int:
    after = session.accepted_at.timestamp() if session.accepted_at is not None else 0.0
    if marker is not None:
        after = max(after, marker.timestamp)
    # One indexed range read per session (sessionevent_transcript: session, timestamp).
    return SessionEvent.objects.filter(
        session_id=session.pk, timestamp__gt=after, type="new_message", sender="customer"
    ).count()


def mark_read(name: str, up_to: object, *, by: Principal) -> dict[str, Any]:
    """The agent on session `name` has read up to message `up_to` (markers only move forward)."""
    name = valid_name(name)
    if not isinstance(up_to, str):
        raise InvalidInput("up_to must be a message_id (a string)")
    try:
        validate_name(up_to, "up_to")
    except InvalidChannel as exc:
        raise InvalidInput(str(exc)) from None
    user_pk = agent_pk_of(by)
    session = ChatSession.objects.filter(name=name).first()
    if session is None:
        raise NotFound(f"no session {name}")
    if session.agent_id != user_pk or session.status != Status.AGENT_HANDLING:
        raise Forbidden(f"only the agent handling {name} keeps read markers on it")
    message = (
        SessionEvent.objects.filter(session_id=session.pk, message_id=up_to).values("timestamp", "message_id").first()
    )
    if message is None:
        raise NotFound(f"no message {up_to} in session {name}")
    _move_forward(user_pk, session.pk, up_to, message["timestamp"])
    return unread_counts([session], user_pk)[name]


def _move_forward(user_pk: int, session_pk: int, message_id: str, timestamp: float) -> None:
    """Create the marker or move it forward; an older message never moves it back (two tabs)."""
    moved = ReadMarker.objects.filter(Q(user_id=user_pk, session_id=session_pk) & Q(timestamp__lt=timestamp)).update(
        message_id=message_id, timestamp=timestamp
    )
    if moved or ReadMarker.objects.filter(user_id=user_pk, session_id=session_pk).exists():
        return
    try:
        with transaction.atomic():
            ReadMarker.objects.create(
                user_id=user_pk, session_id=session_pk, message_id=message_id, timestamp=timestamp
            )
    except IntegrityError:  # another tab created it meanwhile: move that one instead
        _move_forward(user_pk, session_pk, message_id, timestamp)
