"""JSON endpoints of the sessions (docs/sessions.md).

Thin: each view checks the body's shape, calls one function of `dashboard.services` and
turns its outcome or refusal into JSON. Authentication, CSRF and the error shape come from
`realtime.jsonapi`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.db.models import Q
from django.http import HttpRequest, HttpResponse

from dashboard import availability, history, services, unread
from dashboard.models import CannedReply, ChatSession, SessionEvent, Status
from realtime import viewers as realtime_viewers
from realtime.auth import Principal
from realtime.bus import bus_cursor, record_cursor
from realtime.channels import InvalidChannel, validate_name
from realtime.errors import ApiError
from realtime.jsonapi import api, json_body, ok
from realtime.views import who_is_online

logger = logging.getLogger(__name__)

# Enough for any queue a team works through, small enough to answer in milliseconds.
MAX_LIST = 1000
# The snapshot of one session carries this many of its latest events (the admin shows as many).
DETAIL_EVENTS = 200


def _humans(principal: Principal) -> bool:
    return not principal.is_service


def refusals(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Turn a service's refusal into the contract's error."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, principal: Principal, **kwargs: Any) -> HttpResponse:
        try:
            return view(request, principal, **kwargs)
        except services.SessionError as exc:
            raise ApiError(exc.status, str(exc), exc.code) from None

    return wrapper


def fields(
    request: HttpRequest, spec: dict[str, type | tuple[type, ...]], required: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The JSON body, checked against `spec` (field -> type).

    Unknown fields are refused rather than ignored: a typo (`"reson"`) or a field a client
    thinks it may set (`"source"`, `"agent"`) should fail loudly, not be dropped silently.
    """
    body = json_body(request)
    unknown = sorted(set(body) - set(spec))
    if unknown:
        known = ", ".join(spec) or "none"
        raise ApiError(400, f"unknown field(s): {', '.join(unknown)} (accepted: {known})", "unknown_field")
    for name in required:
        if name not in body:
            raise ApiError(400, f"missing field {name!r}", "invalid_input")
    for name, kind in spec.items():
        if name in body and not isinstance(body[name], kind):
            raise ApiError(400, f"{name} must be a {_type_name(kind)}", "invalid_input")
    return body


def _type_name(kind: type | tuple[type, ...]) -> str:
    names: dict[type, str] = {str: "string", dict: "JSON object", type(None): "null"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(one, one.__name__) for one in kinds)


def _answer(outcome: services.Outcome, status: int = 200) -> HttpResponse:
    """The session now, and the command's events on its channel: the page that issued it shows
    them at once, also while Redis is down (`id` null, `event_ids` empty: they wait in the
    outbox and reach every stream, with ids, once Redis is back)."""
    body: dict[str, Any] = {
        "session": outcome.session.to_json(),
        "event_ids": outcome.event_ids,
        "events": outcome.session_events(),
    }
    if outcome.message_id is not None:
        body["message_id"] = outcome.message_id
    return ok(body, status)


# --- commands ------------------------------------------------------------------------


# An escalation publishes transfer_request and status_change.
@api(("POST",), who=lambda p: p.is_service, publishes=2)
@refusals
def escalate(request: HttpRequest, principal: Principal) -> HttpResponse:
    body = fields(request, {"session_name": str, "reason": str, "data": dict}, required=("session_name",))
    outcome = services.escalate(
        body["session_name"], by=principal, reason=body.get("reason", ""), data=body.get("data")
    )
    return _answer(outcome, 201 if outcome.created else 200)


@api(("POST",), who=_humans)
@refusals
def accept(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    fields(request, {})
    return _answer(services.accept(name, by=principal))


@api(("POST",), who=_humans)
@refusals
def messages(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    body = fields(request, {"text": str}, required=("text",))
    return _answer(services.send_message(name, body["text"], by=principal))


@api(("POST",), who=_humans)
@refusals
def leave(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    fields(request, {})
    return _answer(services.leave(name, by=principal))


@api(("POST",), publishes=1)
@refusals
def close(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    body = fields(request, {"note": str})
    return _answer(services.close(name, by=principal, note=body.get("note", "")))


# --- snapshots -----------------------------------------------------------------------


@api(("GET",))
def session_list(request: HttpRequest, principal: Principal) -> HttpResponse:
    """GET /api/sessions[?status=][&agent=][&mine=1][&q=][&limit=]: the snapshot a page resumes
    from; with `q` (and status=closed) the history search (dashboard.history)."""
    status = request.GET.get("status") or None
    if status is not None and status not in Status.values:
        raise ApiError(400, f"status must be one of {', '.join(Status.values)}", "invalid_input")
    agent = request.GET.get("agent") or None
    limit = _limit(request.GET.get("limit"))
    search = _search(request.GET.get("q"), status)
    mine = _mine(request.GET.get("mine"), principal, agent)
    cursor = bus_cursor()  # before the query: resuming from it repeats, never misses
    queryset = ChatSession.objects.all()
    if agent is not None:
        try:
            validate_name(agent, "agent")
        except InvalidChannel as exc:
            raise ApiError(400, str(exc), "invalid_input") from None
        queryset = queryset.filter(agent__username=agent)
    if mine:
        queryset = queryset.filter(agent__username=principal.name)
    if search is not None:
        hits = history.closed_matching(queryset, search, limit)
        found = [{**hit.session.to_json(), "match": hit.match} for hit in hits]
        return ok({"sessions": found, "last_event_id": cursor})
    sessions = queryset.ordered_for(status, limit)
    return ok({"sessions": _with_unread(sessions, principal), "last_event_id": cursor})


def _with_unread(sessions: list[ChatSession], principal: Principal) -> list[dict[str, Any]]:
    """Session objects; the caller's own open sessions also carry `unread` and `read_up_to`."""
    counts: dict[str, dict[str, Any]] = {}
    if not principal.is_service:
        user_pk = next((s.agent_id for s in sessions if s.agent_name == principal.name), None)
        if user_pk is not None:
            counts = unread.unread_counts(sessions, user_pk)
    return [{**s.to_json(), **counts.get(s.name, {})} for s in sessions]


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return MAX_LIST
    if not value.isdigit() or not 1 <= int(value) <= MAX_LIST:
        raise ApiError(400, f"limit must be a whole number from 1 to {MAX_LIST}", "invalid_input")
    return int(value)


def _search(value: str | None, status: str | None) -> history.Search | None:
    """`q`: the history search, of closed sessions only (they are what the History page lists)."""
    try:
        search = history.parse(value)
    except history.InvalidSearch as exc:
        raise ApiError(400, str(exc), "invalid_input") from None
    if search is not None and status != Status.CLOSED:
        raise ApiError(400, "q searches closed sessions: use it with status=closed", "invalid_input")
    return search


def _mine(value: str | None, principal: Principal, agent: str | None) -> bool:
    """`mine=1`: only the sessions the caller handled (a person, not a service)."""
    if value in (None, "", "0"):
        return False
    if value != "1":
        raise ApiError(400, "mine must be 1 (or 0, or left out)", "invalid_input")
    if principal.is_service:
        raise ApiError(400, "mine needs a signed-in agent: a service token handles no sessions", "invalid_input")
    if agent is not None:
        raise ApiError(400, "use mine or agent, not both", "invalid_input")
    return True


@api(("GET",))
@refusals
def session_detail(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    """GET /api/sessions/{name}: the session, its recent events and a cursor to resume from."""
    cursor = record_cursor()  # before the query; where the record is complete
    session = services.session_detail(name)
    shown = _with_unread([session], principal)[0]
    return ok(
        {
            "session": shown,
            "events": services.session_history(name, upto=cursor, limit=DETAIL_EVENTS),
            "messages": _messages(session),
            "customer": session.customer or None,
            "customer_sessions": _earlier_sessions(session),
            "unread": shown.get("unread"),
            "read_up_to": shown.get("read_up_to"),
            "last_event_id": cursor,
        }
    )


# The customer panel lists this many of the customer's other sessions, newest first.
EARLIER_SESSIONS = 20


def _messages(session: ChatSession) -> list[dict[str, Any]]:
    """The session's latest chat messages from the record, oldest first (also after the bus
    forgot them): each {message_id, source, sender, text, timestamp}."""
    rows = (
        SessionEvent.objects.filter(session_id=session.pk, type="new_message")
        .order_by("-timestamp", "-pk")
        .values("message_id", "source", "sender", "text", "timestamp")[:DETAIL_EVENTS]
    )
    return [dict(row) for row in reversed(list(rows))]


def _earlier_sessions(session: ChatSession) -> list[dict[str, Any]]:
    if not session.customer_ref:
        return []
    others = (
        ChatSession.objects.filter(customer_ref=session.customer_ref)
        .exclude(pk=session.pk)
        .order_by("-created_at", "-pk")
        .values("name", "status", "reason", "created_at", "closed_at", "resolution_note")[:EARLIER_SESSIONS]
    )
    return [{**row, "created_at": row["created_at"].isoformat(), "closed_at": _iso(row["closed_at"])} for row in others]


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


@api(("POST",), who=_humans)
@refusals
def read(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    """POST /api/sessions/{name}/read {"up_to": <message_id>}: the agent has read this far."""
    body = fields(request, {"up_to": str}, required=("up_to",))
    return ok(unread.mark_read(name, body["up_to"], by=principal))


# --- supervision (docs/sessions.md) ----------------------------------------------------


@api(("POST",), who=_humans)
@refusals
def transfer(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    """POST /api/sessions/{name}/transfer {"to": "<agent_id>" | null}."""
    body = fields(request, {"to": (str, type(None))}, required=("to",))
    return _answer(services.transfer(name, body["to"], by=principal))


@api(("POST",), who=_humans)
@refusals
def join(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    fields(request, {})
    return _answer(services.join(name, by=principal))


@api(("POST",), who=_humans)
@refusals
def part(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    fields(request, {})
    return _answer(services.part(name, by=principal))


@api(("POST",), who=_humans)
@refusals
def set_availability(request: HttpRequest, principal: Principal, agent_id: str) -> HttpResponse:
    """POST /api/agents/{agent_id}/availability {"state": "available" | "away"}."""
    body = fields(request, {"state": str}, required=("state",))
    return ok(availability.set_availability(agent_id, body["state"], by=principal))


@api(("GET",))
def presence(request: HttpRequest, principal: Principal) -> HttpResponse:
    """GET /api/presence: who has a workbench open, each with their Available / Away; and
    `available`: who is available, open workbench or not (the dashboard's agents list)."""
    agents, complete = who_is_online()
    known = availability.states([row["agent"] for row in agents])
    for row in agents:
        row["state"] = known.get(row["agent"], "away")
    return ok({"agents": agents, "complete": complete, "available": availability.available_agents()})


@api(("GET",), who=_humans)
@refusals
def session_viewers(request: HttpRequest, principal: Principal, name: str) -> HttpResponse:
    """GET /api/sessions/{name}/viewers: who has the session open right now, on any process
    (the pages' "Also viewing" line polls it; realtime.viewers)."""
    name = services.valid_name(name)
    if not ChatSession.objects.filter(name=name).exists():
        raise services.NotFound(f"no session {name}")
    viewers, complete = realtime_viewers.viewers_of(name)
    return ok({"viewers": viewers, "complete": complete})


# Enough for every prepared answer of a team; the composer shows the first few that match.
MAX_CANNED = 200


@api(("GET",), who=_humans)
def canned_replies(request: HttpRequest, principal: Principal) -> HttpResponse:
    """GET /api/canned-replies[?q=]: prepared answers whose shortcut or title contains q."""
    query = request.GET.get("q", "").strip()
    if len(query) > 100:
        raise ApiError(400, "q is at most 100 characters", "invalid_input")
    if "\x00" in query:  # PostgreSQL refuses NUL in a string; say so the same way on every database
        raise ApiError(400, "q must not contain NUL characters", "invalid_input")
    replies = CannedReply.objects.all()
    if query:
        replies = replies.filter(Q(shortcut__icontains=query) | Q(title__icontains=query))
    return ok({"replies": [reply.to_json() for reply in replies[:MAX_CANNED]]})
