"""HTML pages: the agent workbench, the history, the supervisor dashboard, the reports and one
session's page.

The pages are thin shells: each renders its configuration, then its JavaScript loads a
snapshot from the JSON API and keeps it current over one SSE stream (static/js/live.js).
`feed` is the dashboard's own snapshot: recent broadcast events and totals by status.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import redis
from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import NoReverseMatch, reverse
from django.views.decorators.csrf import ensure_csrf_cookie

from dashboard import availability, history, report_tables, reports
from dashboard.models import ChatSession
from realtime import outbox
from realtime.auth import Principal
from realtime.bus import bus_cursor, get_layer
from realtime.channels import BROADCAST, NAME_PATTERN, InvalidChannel, validate_name
from realtime.envelope import InvalidEvent, parse_event_id, parse_incoming
from realtime.jsonapi import api, ok

logger = logging.getLogger(__name__)

# Enough recent events to fill the dashboard's feed on load; older ones are in the admin.
FEED_SIZE = 100
# The History page asks for this many closed sessions at a time ("Show more" asks for more).
HISTORY_PAGE = 50

View = Callable[..., HttpResponse]


def home(request: HttpRequest) -> HttpResponse:
    """`/`: the workbench for people who are signed in, the login form for everyone else."""
    if request.user.is_authenticated:
        return redirect("workbench")
    return redirect("login")


def _config(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    """What every page's JavaScript needs to know (rendered with json_script)."""
    return {
        "me": request.user.get_username(),
        "is_supervisor": bool(request.user.is_staff),
        "sla_seconds": settings.QUEUE_SLA_SECONDS,
        # The SLA stages (docs/pages.md): [warning, overdue] seconds for the queue and for replies.
        "sla": {
            "queue": [settings.QUEUE_SLA_SECONDS, settings.QUEUE_OVERDUE_SECONDS],
            "reply": [settings.REPLY_SLA_SECONDS, settings.REPLY_OVERDUE_SECONDS],
        },
        # The name rule (realtime.channels), in JavaScript's spelling: `$` there never
        # accepts a trailing newline, so it stands for Python's `\Z`.
        "name_pattern": NAME_PATTERN.replace("\\Z", "$"),
        # The tabs of one person share one stream (static/js/live.js); its channels stay within this.
        "stream_max_channels": settings.SSE_MAX_CHANNELS_PER_CONNECTION,
        "urls": {
            "login": settings.LOGIN_URL,
            # A cheap authenticated GET: tells a page whose stream failed whether it must sign in again.
            "probe": reverse("presence"),
            "presence": reverse("presence"),
            "sessions": reverse("session-list"),
            # With "__name__" in place of a session's name (Live.sessionUrl fills it in).
            "session": reverse("session-detail", args=["__name__"]),
            "streams": "/api/events",  # an ASGI route (realtime/routing.py), not a Django URL
            "feed": reverse("dashboard_feed"),
            "session_page": reverse("session_page", args=["__name__"]),
        },
        **extra,
    }


def staff_page(view: View) -> View:
    """Signed-in staff only; a signed-in agent gets a page that says so (403), not a login loop."""

    @login_required
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            return render(request, "dashboard/forbidden.html", status=403)
        return view(request, *args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    return wrapper


@login_required
@ensure_csrf_cookie
def workbench(request: HttpRequest) -> HttpResponse:
    """The queue, the agent's own sessions and one open session (static/js/workbench.js)."""
    # The Available / Away switch starts from the remembered state (static/js/availability.js).
    mine = {
        "state": availability.state_of(request.user),
        "url": reverse("agent-availability", args=[request.user.get_username()]),
    }
    config = _config(request, availability=mine)
    return render(request, "dashboard/workbench.html", {"nav": "workbench", "page": config})


@login_required
@ensure_csrf_cookie
def history_page(request: HttpRequest) -> HttpResponse:
    """Closed sessions, the viewer's own by default, and the search over them (static/js/history.js).

    The query and the scope come from the URL, so a search can be shared and reloaded; they are
    rendered into the form here and the script takes over from there."""
    query = request.GET.get("q", "")[: history.MAX_QUERY_CHARS]
    everyone = request.GET.get("scope") == "all"
    config = _config(request, history={"page_size": HISTORY_PAGE, "max_query": history.MAX_QUERY_CHARS})
    context = {"nav": "history", "query": query, "everyone": everyone, "page": config}
    return render(request, "dashboard/history.html", context)


@staff_page
@ensure_csrf_cookie
def supervisor_dashboard(request: HttpRequest) -> HttpResponse:
    """Totals, open sessions, agents online and the live event feed (static/js/dashboard.js)."""
    return render(request, "dashboard/supervisor.html", {"nav": "dashboard", "page": _config(request)})


@staff_page
def reports_page(request: HttpRequest) -> HttpResponse:
    """Escalated sessions over a period, as charts and tables (static/js/reports.js), or as CSV.

    `?from=YYYY-MM-DD&to=YYYY-MM-DD&tz=<zone>&format=csv`; the figures and their definitions are
    `dashboard.reports`'. Bad input is the page again with what is wrong, answered 400."""
    try:
        period, fmt = reports.parse_request(request.GET)
    except reports.InvalidReport as exc:
        sent = {key: request.GET.get(key, "")[:40] for key in ("from", "to", "tz")}
        refused = {"nav": "reports", "error": str(exc), "sent": sent, "page": _config(request)}
        return render(request, "dashboard/reports.html", refused, status=400)
    report = reports.compute(period)
    if fmt == "csv":
        response = HttpResponse(report_tables.to_csv(report), content_type="text/csv; charset=utf-8")
        name = f"report-{period.first.isoformat()}-to-{period.last.isoformat()}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    query = {"from": period.first.isoformat(), "to": period.last.isoformat(), "tz": period.zone}
    today = reports.today(period.tz)
    context: dict[str, Any] = {
        "nav": "reports",
        "report": report,
        "tables": {table.id: table for table in report_tables.tables(report)},
        "sent": query,
        "csv_url": "?" + urlencode({**query, "format": "csv"}),
        "shortcuts": [
            (label, "?" + urlencode({"from": (today - timedelta(days=days - 1)).isoformat(), "tz": period.zone}))
            for label, days in (("Last 7 days", 7), ("Last 30 days", 30), ("Last 90 days", 90))
        ],
        "durations": {
            "wait_p50": report_tables.clock_text(report.wait.p50),
            "wait_p90": report_tables.clock_text(report.wait.p90),
            "response_p50": report_tables.clock_text(report.response.p50),
            "response_p90": report_tables.clock_text(report.response.p90),
        },
        "page": _config(request, report=report_tables.chart_data(report)),
    }
    return render(request, "dashboard/reports.html", context)


@login_required
@ensure_csrf_cookie
def session_page(request: HttpRequest, name: str) -> HttpResponse:
    """One session's live transcript; supervisors may close it from here."""
    try:
        validate_name(name)
    except InvalidChannel:
        raise Http404("no such session") from None
    pk = ChatSession.objects.filter(name=name).values_list("pk", flat=True).first()
    if pk is None:
        raise Http404("no such session")
    admin_url = None
    if request.user.is_staff:
        try:
            admin_url = reverse("admin:dashboard_chatsession_change", args=[pk])
        except NoReverseMatch:
            admin_url = None
    context = {
        "nav": "dashboard" if request.user.is_staff else "workbench",
        "from_history": request.GET.get("from") == "history",
        "session_name": name,
        "admin_url": admin_url,
        "page": _config(request, session_name=name),
    }
    return render(request, "dashboard/session.html", context)


def status_counts() -> dict[str, int]:
    """Sessions per status, every status present (zero when none)."""
    counts = dict.fromkeys(("ai_handling", "waiting_agent", "agent_handling", "closed"), 0)
    for row in ChatSession.objects.values("status").annotate(n=Count("pk")):
        counts[row["status"]] = row["n"]
    return counts


def recent_broadcast(cursor: str | None) -> list[dict[str, Any]]:
    """The latest FEED_SIZE events on sse:broadcast up to `cursor`, oldest first, each once."""
    events = {event["id"]: event for event in outbox.published_on(BROADCAST, FEED_SIZE, upto=cursor)}
    if cursor is not None:
        last = parse_event_id(cursor)
        try:
            stored = get_layer().history_sync(BROADCAST, FEED_SIZE)
        except (redis.RedisError, OSError) as exc:
            logger.warning("the feed has only the commands' events: %s", exc)
            stored = []
        for event in stored:
            if parse_event_id(event.id) <= last and event.id not in events:
                try:  # validated like any message from Redis: the history is outside input too
                    events[event.id] = parse_incoming(event.envelope, BROADCAST)
                except InvalidEvent as exc:
                    logger.warning("the feed left out history entry %s: %s", event.id, str(exc)[:200])
    ordered = sorted(events.values(), key=lambda event: parse_event_id(event["id"]))
    return ordered[-FEED_SIZE:]


@api(("GET",), who=lambda p: p.is_supervisor)
def feed(request: HttpRequest, principal: Principal) -> HttpResponse:
    """The dashboard's snapshot: recent broadcast events (oldest first), totals, and the cursor.

    The cursor is taken before anything is read, so resuming the stream from it misses
    nothing; an event that is both in the snapshot and resumed has one id and is shown once.
    The commands' events come from the database (they outlive the bus's history); what
    services published is added from the history while Redis answers.
    """
    cursor = bus_cursor()
    return ok(
        {
            "events": recent_broadcast(cursor),
            "counts": status_counts(),
            "last_event_id": cursor,
        }
    )
