"""The session rules: every change of a ChatSession goes through one function here.

    ai_handling --escalate--> waiting_agent --accept--> agent_handling --close--> closed
                                   ^                         |
                                   +---------leave-----------+
    (close also from ai_handling and waiting_agent; escalate reopens a closed session)

Each command is one transaction that starts with a conditional UPDATE (`... WHERE status =
<expected>`), so the database decides races: of two agents accepting at once exactly one
UPDATE matches a row. Starting with the write also means SQLite takes its write lock first
and never fails a read-then-write with "database is locked". A refused command raises
inside the transaction, so it changes no row, and its events (queued with
`publish_on_commit`) never go out. After the commit the events are published, the
session's `last_event_id` is recorded and the session keys in Redis are rewritten.

A command's session-channel events are also stored in the record (`dashboard.record`), in the
same transaction: the conversation is in the database whatever happens to Redis.

(Just over 400 lines: the state machine and its input checks, one owner for every change
of a session; the Redis copy of the session keys lives in dashboard/session_keys.py.)
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from dashboard import customers, record
from dashboard.models import ChatSession, Status
from dashboard.session_keys import sync_all_to_redis, sync_to_redis
from realtime.auth import Principal
from realtime.bus import PendingEvent, publish_many_on_commit
from realtime.channels import BROADCAST, InvalidChannel, agent_channel, session_channel, validate_name
from realtime.envelope import InvalidEvent, check_source, parse_event_id

__all__ = ["sync_all_to_redis", "sync_to_redis"]  # the session keys, for callers of the commands

logger = logging.getLogger(__name__)

# A chat message is read by a person: 4000 characters is several screens, and keeps every
# event far below the bus's 64 KiB envelope limit.
MAX_MESSAGE_CHARS = 4000
# A reason is a label for the queue ("asks for a refund"), not a transcript.
MAX_REASON_CHARS = 500
# Escalating tries the UPDATE, then the INSERT; a session that changes between the two
# (another process closing or creating it) is retried this many times before giving up.
ESCALATE_ATTEMPTS = 3


class SessionError(Exception):
    """A refused command. `status` and `code` are what the HTTP API answers with."""

    status = 400
    code = "bad_request"


class InvalidInput(SessionError):
    code = "invalid_input"


class Forbidden(SessionError):
    status = 403
    code = "forbidden"


class NotFound(SessionError):
    status = 404
    code = "not_found"


class Conflict(SessionError):
    status = 409
    code = "conflict"


@dataclass
class Outcome:
    """What a command did: the session as it is now and the events it published.

    `events` are published after the commit; `event_ids` lists those that went out (none
    while Redis is unreachable: they wait in the outbox and go out once it is back).
    """

    session: ChatSession
    events: list[PendingEvent] = field(default_factory=list)
    created: bool = False

    @property
    def event_ids(self) -> list[str]:
        return [event.id for event in self.events if event.id is not None]

    def session_events(self) -> list[dict[str, Any]]:
        """The events on the session's own channel, as envelopes (with their ids once known),
        so the page that issued the command can show its result at once."""
        own = session_channel(self.session.name)
        return [event.envelope() for event in self.events if event.draft.channel == own]

    @property
    def message_id(self) -> str | None:
        for event in self.session_events():
            if event["type"] == "new_message":
                return str(event["payload"]["message_id"])
        return None


# --- the commands --------------------------------------------------------------------


def escalate(name: str, *, by: Principal, reason: str = "", data: dict[str, Any] | None = None) -> Outcome:
    """The bot asks for a human: the session joins the queue (created on first sight).

    A session already waiting is left as it is and nothing is published. A closed session
    is reopened into the queue: the customer is back and asks for a person again. A session
    an agent is handling is refused (409): it already has a human.
    """
    name = valid_name(name)
    reason = _valid_text(reason, "reason", MAX_REASON_CHARS, allow_empty=True)
    if data is not None and not isinstance(data, dict):
        raise InvalidInput("data must be a JSON object")
    try:
        customer = customers.valid_customer((data or {}).get("customer"))
    except customers.InvalidCustomer as exc:
        raise InvalidInput(str(exc)) from None
    _require_sources(by, "transfer_request", "status_change")
    for _ in range(ESCALATE_ATTEMPTS):
        now = timezone.now()
        changes: dict[str, Any] = {
            "escalated_at": now,
            "accepted_at": None,
            "closed_at": None,
            "resolution_note": "",
            "agent": None,
            "reason": reason,
            "awaiting_reply_since": None,
            # A customer the bot names again replaces the old details; one it does not keeps them.
            **(customers.columns(customer) if customer else {}),
        }
        with transaction.atomic():
            previous = _move(name, (Status.AI_HANDLING, Status.CLOSED), Status.WAITING_AGENT, **changes)
            created = False
            if previous is None:
                # Reading is safe now: the UPDATE above already took SQLite's write lock.
                existing = _current(name)
                if existing is not None and existing.status == Status.WAITING_AGENT:
                    return Outcome(existing)
                if existing is not None and existing.status == Status.AGENT_HANDLING:
                    raise Conflict(f"session {name} is with agent {existing.agent_name}: it already has a human")
                if existing is not None:
                    continue  # PostgreSQL: closed or reopened since our UPDATE; try again
                try:
                    with transaction.atomic():
                        ChatSession.objects.create(
                            name=name,
                            status=Status.WAITING_AGENT,
                            created_at=now,
                            escalated_at=now,
                            reason=reason,
                            **customers.columns(customer),
                        )
                except IntegrityError:
                    continue  # PostgreSQL: another process created it meanwhile; look again
                created = True
            session = _locked(name)
            transfer = {
                "session_name": name,
                "status": Status.WAITING_AGENT,
                "data": {**(data or {}), "reason": reason},
            }
            change = _status_change(name, previous or Status.AI_HANDLING, Status.WAITING_AGENT, None)
            outcome = _announce(session, [("transfer_request", transfer), change], by.source, agent=None)
            outcome.created = created
        return outcome
    raise Conflict(f"session {name} kept changing while it was escalated; try again")


def accept(name: str, *, by: Principal) -> Outcome:
    """An agent takes a waiting session. Of agents accepting at once, exactly one wins."""
    name = valid_name(name)
    agent_pk = agent_pk_of(by)
    _require_sources(by, "agent_joined", "status_change")
    with transaction.atomic():
        now = timezone.now()
        # The reply clock starts with the accept: the customer waits for the agent's first word.
        if _move(
            name,
            (Status.WAITING_AGENT,),
            Status.AGENT_HANDLING,
            agent_id=agent_pk,
            accepted_at=now,
            awaiting_reply_since=now,
        ):
            session = _locked(name)
            joined = {"session_name": name, "status": Status.AGENT_HANDLING, "data": {"agent": by.name}}
            change = _status_change(name, Status.WAITING_AGENT, Status.AGENT_HANDLING, by.name)
            return _announce(session, [("agent_joined", joined), change], by.source, agent=by.name)
        raise _refusal(name, "accept", (Status.WAITING_AGENT,))


def send_message(name: str, text: object, *, by: Principal) -> Outcome:
    """The agent on the session (or a supervisor who joined it) writes to the customer."""
    name = valid_name(name)
    text = _valid_text(text, "text", MAX_MESSAGE_CHARS, allow_empty=False)
    agent_pk = agent_pk_of(by)
    _require_sources(by, "new_message")
    with transaction.atomic():
        # Touch the row under the same condition a leave or close would change, so a message
        # and a concurrent leave are ordered by the database and a message never follows a leave.
        participant = Q(agent_id=agent_pk) | Q(supervisor_id=agent_pk)
        touched = ChatSession.objects.filter(participant, name=name, status=Status.AGENT_HANDLING).update(
            version=F("version") + 1,
            last_message_text=text[:200],
            last_message_sender="agent",
            last_message_at=timezone.now(),
            awaiting_reply_since=None,
        )
        if not touched:
            raise _refusal(name, "send messages", (Status.AGENT_HANDLING,), agent_pk, participants=True)
        session = _locked(name)
        message = {
            "session_name": name,
            "message_id": uuid.uuid4().hex,
            "data": {"text": text, "sender": "agent", "agent": by.name},
        }
        return _announce(
            session, [("new_message", message)], by.source, agent=session.agent_name, also=_joined(session)
        )


def leave(name: str, *, by: Principal) -> Outcome:
    """The agent on the session gives it back to the queue."""
    return _return_to_queue(name, by, agent_pk=agent_pk_of(by))


def requeue(name: str, *, by: Principal) -> Outcome:
    """A supervisor returns a session an agent is handling to the queue (the admin's action).

    The same events as a leave: `agent_left` for the agent who had it, then `status_change`.
    """
    if not by.is_supervisor:
        raise Forbidden("only a supervisor may return another agent's session to the queue")
    return _return_to_queue(name, by, agent_pk=None)


def transfer(name: str, to: object, *, by: Principal) -> Outcome:
    """Hand a session an agent is handling to another agent (`to`, who must be available), or
    back to the queue (`to` None). A supervisor may transfer any session; an agent their own.

    To an agent: `agent_left` (the old agent, `data.to`), `agent_joined` (the new, `data.from`),
    `status_change` (agent_handling to agent_handling), each also on both agents' channels, so
    the old agent's workbench drops it at once. To the queue: the events of a leave.
    """
    name = valid_name(name)
    by_pk = agent_pk_of(by)
    only_mine = None if by.is_supervisor else by_pk
    if to is None:
        return _return_to_queue(name, by, agent_pk=only_mine)
    if not isinstance(to, str):
        raise InvalidInput("to must be an agent_id (a string) or null")
    target = _available_agent(to)
    _require_sources(by, "agent_left", "agent_joined", "status_change")
    with transaction.atomic():
        filters: dict[str, Any] = {"agent_id": only_mine} if only_mine is not None else {}
        # One conditional UPDATE decides, as for an accept: of a transfer and a leave (or two
        # transfers) racing, exactly one finds the session still with its agent.
        moved = (
            ChatSession.objects.filter(name=name, status=Status.AGENT_HANDLING, **filters)
            .exclude(agent_id=target.pk)
            .update(version=F("version") + 1)
        )
        if not moved:
            current = _current(name)
            if current is not None and current.status == Status.AGENT_HANDLING and current.agent_id == target.pk:
                raise Conflict(f"session {name} is already with {to}")
            raise _refusal(name, "transfer", (Status.AGENT_HANDLING,), only_mine)
        # This transaction holds the row now: read who had it, then hand it over. The reply
        # clock runs on (the customer still waits for an answer); a supervisor who had joined
        # and now takes the session is its agent, no longer a second participant.
        before = _locked(name)
        old, watchers = before.agent_name, _joined(before)
        changes: dict[str, Any] = {"agent_id": target.pk, "accepted_at": timezone.now()}
        if before.supervisor_id == target.pk:
            changes["supervisor"] = None
        ChatSession.objects.filter(name=name).update(**changes)
        session = _locked(name)
        handover = {"by": by.name, "from": old, "to": to}
        left = {"session_name": name, "status": Status.AGENT_HANDLING, "data": {"agent": old, **handover}}
        joined = {"session_name": name, "status": Status.AGENT_HANDLING, "data": {"agent": to, **handover}}
        events = [
            ("agent_left", left),
            ("agent_joined", joined),
            _status_change(name, Status.AGENT_HANDLING, Status.AGENT_HANDLING, to),
        ]
        return _announce(session, events, by.source, agent=to, also=(*filter(None, [old]), *watchers))


def _available_agent(username: str) -> Any:
    """The active account `username`, available to take sessions (404 unknown, 409 away)."""
    try:
        validate_name(username, "to")
    except InvalidChannel as exc:
        raise InvalidInput(str(exc)) from None
    user = get_user_model().objects.filter(username=username, is_active=True).first()
    if user is None:
        raise NotFound(f"no active agent {username}")
    from dashboard.availability import is_available  # the availability rules' one owner

    if not is_available(user):
        raise Conflict(f"{username} is away: only an available agent can be given a session")
    return user


def join(name: str, *, by: Principal) -> Outcome:
    """A supervisor joins an agent's conversation as a second participant (and may write)."""
    return _participation(name, by, joining=True)


def part(name: str, *, by: Principal) -> Outcome:
    """The supervisor who joined a session leaves it; the agent keeps it."""
    return _participation(name, by, joining=False)


def _participation(name: str, by: Principal, *, joining: bool) -> Outcome:
    name = valid_name(name)
    if not by.is_supervisor:
        raise Forbidden("only a supervisor joins or parts an agent's session")
    pk = agent_pk_of(by)
    event_type = "agent_joined" if joining else "agent_left"
    _require_sources(by, event_type)
    with transaction.atomic():
        rows = ChatSession.objects.filter(name=name, status=Status.AGENT_HANDLING)
        if joining:
            moved = (
                rows.filter(supervisor__isnull=True)
                .exclude(agent_id=pk)
                .update(supervisor_id=pk, version=F("version") + 1)
            )
        else:
            moved = rows.filter(supervisor_id=pk).update(supervisor=None, version=F("version") + 1)
        if not moved:
            raise _participation_refusal(name, pk, joining)
        session = _locked(name)
        data = {"agent": by.name, "role": "supervisor"}
        event = (event_type, {"session_name": name, "status": Status.AGENT_HANDLING, "data": data})
        return _announce(session, [event], by.source, agent=session.agent_name, also=(by.name,))


def _participation_refusal(name: str, pk: int, joining: bool) -> SessionError:
    session = _current(name)
    if session is None:
        return NotFound(f"no session {name}")
    if session.status != Status.AGENT_HANDLING:
        return Conflict(f"session {name} is {session.status}: only a session an agent is handling can be joined")
    if joining and session.agent_id == pk:
        return Conflict(f"session {name} is already yours")
    if joining:
        return Conflict(f"{session.supervisor_name} has already joined session {name}")
    return Conflict(f"you have not joined session {name}")


# A resolution note is for a person to read later, not a transcript.
MAX_NOTE = 2000


def close(name: str, *, by: Principal, note: object = "") -> Outcome:
    """End a session, with an optional resolution note (kept on the session, shown in the admin).

    The agent on the session may close it while handling it; a supervisor or a service may
    close any session that is not closed yet (a customer who left the queue, a bot-only chat).
    """
    name = valid_name(name)
    note = _valid_text(note, "note", MAX_NOTE, allow_empty=True)
    _require_sources(by, "status_change")
    if by.is_service or by.is_supervisor:
        sources: tuple[str, ...] = (Status.AGENT_HANDLING, Status.WAITING_AGENT, Status.AI_HANDLING)
        agent_pk = None
    else:
        sources = (Status.AGENT_HANDLING,)
        agent_pk = agent_pk_of(by)
    with transaction.atomic():
        only_mine = {"agent_id": agent_pk} if agent_pk is not None else {}
        closing = {"closed_at": timezone.now(), "resolution_note": note, "awaiting_reply_since": None}
        previous = _move(name, sources, Status.CLOSED, filters=only_mine, **closing)
        if previous is None:
            raise _refusal(name, "close", sources, agent_pk)
        # A supervisor who had joined is told too (their workbench drops it); the row forgets them.
        joined = _joined(_locked(name))
        if joined:
            ChatSession.objects.filter(name=name).update(supervisor=None)
        session = _locked(name)
        # The agent stays on a closed session as a record of who handled it last.
        agent = session.agent_name if previous == Status.AGENT_HANDLING else None
        change = _status_change(name, previous, Status.CLOSED, agent)
        return _announce(session, [change], by.source, agent=agent, also=joined)


def session_detail(name: str) -> ChatSession:
    session = _current(valid_name(name))
    if session is None:
        raise NotFound(f"no session {name}")
    return session


def session_history(
    name: str, *, upto: str | None = None, limit: int = 200, waiting: bool = False
) -> list[dict[str, Any]]:
    """The latest `limit` events of session `name` from the record, oldest first (see
    `dashboard.record.transcript`)."""
    return record.transcript(valid_name(name), upto=upto, limit=limit, waiting=waiting)


# --- the machinery -------------------------------------------------------------------


def valid_name(name: object) -> str:
    try:
        return validate_name(name, "session_name")
    except InvalidChannel as exc:
        raise InvalidInput(str(exc)) from None


def _valid_text(value: object, what: str, limit: int, *, allow_empty: bool) -> str:
    if not isinstance(value, str):
        raise InvalidInput(f"{what} must be a string")
    if not allow_empty and not value.strip():
        raise InvalidInput(f"{what} must not be empty")
    if len(value) > limit:
        raise InvalidInput(f"{what} is {len(value)} characters; the limit is {limit}")
    return value


def _require_sources(by: Principal, *event_types: str) -> None:
    """Refuse up front a caller whose events the contract's source table would drop."""
    for event_type in event_types:
        try:
            check_source(event_type, by.source)
        except InvalidEvent as exc:
            raise Forbidden(f"{by.name} may not do this: {exc}") from None


def agent_pk_of(by: Principal) -> int:
    """The user id of an agent or supervisor; services do not act as agents."""
    if by.is_service:
        raise Forbidden("this is done by an agent, not a service")
    try:
        validate_name(by.name, "agent_id")
    except InvalidChannel:
        raise Forbidden(f"username {by.name[:80]!r} is not a valid agent_id (A-Z a-z 0-9 _ -)") from None
    if by.user_id is not None:
        return by.user_id  # the request's own signed-in, active user
    pk = get_user_model().objects.filter(username=by.name, is_active=True).values_list("pk", flat=True).first()
    if pk is None:
        raise Forbidden(f"no active agent {by.name}")
    return int(pk)


def _move(
    name: str, sources: tuple[str, ...], target: str, *, filters: dict[str, Any] | None = None, **changes: Any
) -> str | None:
    """One conditional UPDATE per allowed source status; returns the status it moved from.

    The first statement of the transaction is a write, for SQLite's sake (see the module doc).
    """
    for source in sources:
        moved = ChatSession.objects.filter(name=name, status=source, **(filters or {})).update(
            status=target, version=F("version") + 1, **changes
        )
        if moved:
            return source
    return None


def _current(name: str) -> ChatSession | None:
    return ChatSession.objects.select_related("agent", "supervisor").filter(name=name).first()


def _locked(name: str) -> ChatSession:
    """The row just updated by this transaction (its write lock is already held)."""
    return ChatSession.objects.select_related("agent", "supervisor").get(name=name)


def _refusal(
    name: str, action: str, allowed: tuple[str, ...], agent_pk: int | None = None, *, participants: bool = False
) -> SessionError:
    """Why a conditional UPDATE matched nothing: 404, 409 (wrong state) or 403 (not yours)."""
    session = _current(name)
    if session is None:
        return NotFound(f"no session {name}")
    if session.status not in allowed:
        needed = " or ".join(allowed)
        held = f" (agent {session.agent_name})" if session.status == Status.AGENT_HANDLING else ""
        return Conflict(f"cannot {action}: session {name} is {session.status}{held}, not {needed}")
    if (
        agent_pk is not None
        and session.agent_id != agent_pk
        and not (participants and session.supervisor_id == agent_pk)
    ):
        return Forbidden(f"cannot {action}: session {name} is handled by {session.agent_name or 'nobody'}")
    return Conflict(f"cannot {action}: session {name} changed meanwhile; try again")


def _status_change(name: str, previous: str, new: str, agent: str | None) -> tuple[str, dict[str, Any]]:
    """`data.agent` is the session's agent after the change (None when it has none)."""
    return "status_change", {"session_name": name, "status": new, "data": {"previous": previous, "agent": agent}}


def _return_to_queue(name: str, by: Principal, agent_pk: int | None) -> Outcome:
    name = valid_name(name)
    _require_sources(by, "agent_left", "status_change")
    with transaction.atomic():
        only_mine = {"agent_id": agent_pk} if agent_pk is not None else {}
        # Back in the queue in its old place: escalated_at stays the first escalation of
        # this episode, so a customer an agent gave back is not sent behind newer ones.
        previous = _move(name, (Status.AGENT_HANDLING,), Status.WAITING_AGENT, filters=only_mine)
        if previous is None:
            raise _refusal(name, "leave", (Status.AGENT_HANDLING,), agent_pk)
        # The agent is cleared in a second UPDATE, after reading who it was: this transaction
        # already holds the row, so no other command can come between the two.
        left = _locked(name).agent_name
        joined = _joined(_locked(name))
        ChatSession.objects.filter(name=name).update(
            agent=None, supervisor=None, accepted_at=None, awaiting_reply_since=None
        )
        session = _locked(name)
        # The queue's pages put it back where it was, with its reason, from the event alone.
        back = {"agent": left, "reason": session.reason, "escalated_at": session.state_json()["escalated_at"]}
        events = [
            ("agent_left", {"session_name": name, "status": Status.WAITING_AGENT, "data": back}),
            _status_change(name, Status.AGENT_HANDLING, Status.WAITING_AGENT, None),
        ]
        return _announce(session, events, by.source, agent=left, also=joined)


def _joined(session: ChatSession) -> tuple[str, ...]:
    """The supervisor who joined the session, whose workbench follows it too."""
    return (session.supervisor_name,) if session.supervisor_name else ()


def _announce(
    session: ChatSession,
    events: list[tuple[str, dict[str, Any]]],
    source: str,
    *,
    agent: str | None,
    also: tuple[str, ...] = (),
) -> Outcome:
    """Store each event for the session channel, sse:broadcast and the agent's channel in the
    outbox, and the session channel's in the record, all in the command's transaction.

    Nothing goes out unless it commits. After the commit the events are published (the
    outbox) and the session keys in Redis rewritten; the session's last event id is recorded when
    its events are published (`dashboard.record.on_outbox_published`).
    """
    channels = [session_channel(session.name), BROADCAST]
    for person in dict.fromkeys((agent, *also)):  # each agent channel once, in order
        if person is not None:
            channels.append(agent_channel(person))
    outcome = Outcome(session)
    outcome.events = publish_many_on_commit(
        [(channel, event_type, payload) for event_type, payload in events for channel in channels], source=source
    )
    record.store_command_events(session, outcome.events, source)
    # robust: the change is committed whatever happens here; a failure is logged, not a 500.
    transaction.on_commit(lambda: _after_commit(outcome), robust=True)
    return outcome


def _after_commit(outcome: Outcome) -> None:
    # The answer shows the session as it is now: with the last_event_id of its events when
    # they went out at once. The session keys are rewritten as they go out (dashboard.record).
    session = _current(outcome.session.name)
    if session is not None:
        outcome.session = session


def event_key(event_id: str) -> str:
    """An id as a fixed-width string that sorts like the id, for comparison in SQL."""
    ms, seq = parse_event_id(event_id)
    return f"{ms:020d}{seq:020d}"


def record_last_event(name: str, event_id: str) -> bool:
    """Set the session's last_event_id, unless a later id is already recorded."""
    key = event_key(event_id)
    return bool(
        ChatSession.objects.filter(Q(name=name) & Q(last_event_key__lt=key)).update(
            last_event_id=event_id, last_event_key=key, version=F("version") + 1
        )
    )
