"""Prometheus metrics of one process at `GET /metrics` (docs/operations.md "Metrics").

One scrape per process: every daphne process answers for itself, and Prometheus scrapes each
process's own port. prometheus-client's multiprocess mode is not used: it shares metrics
through mmap files in one directory, which processes on other machines or in other containers
cannot share anyway; it cannot serve live gauges from a custom collector (open streams, the
bus state); and the product's processes are few and each has an address of its own.

Nothing here adds work per delivery. The counters are the ones the product keeps anyway
(`realtime.hub.stats`, bumped once per event per process, and a few per stream); a collector
reads them when Prometheus scrapes. The latency histogram is observed once per event per
process, when the hub fans the event out. The queue and the outbox cost one SQL query each,
at scrape time.
"""

from __future__ import annotations

import hmac
import logging
import threading
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.db import DatabaseError, connection
from django.http import HttpRequest, HttpResponse
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from realtime.auth import service_for_token
from realtime.errors import REASONS, ApiError, error_response

logger = logging.getLogger(__name__)
# One line per refused request (docs/operations.md "Logs"), under a name of its own so it can
# be filtered or routed apart.
refused_logger = logging.getLogger("realtime.refused")

# --- publish -> delivery latency ---------------------------------------------------------

# Seconds. A live event on a healthy bus takes a few milliseconds; the top buckets catch a
# stalled process, a publisher whose clock is off, or events held through a reconnect.
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class LatencyHistogram:
    """A histogram kept as plain bucket counts: one `observe` per event per process.

    Not prometheus-client's Histogram: that takes a lock per observation, and the hub's loop is
    the only writer. The collector copies the counts at scrape time.
    """

    __slots__ = ("bounds", "counts", "total")

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # the last one is +Inf
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        if seconds < 0:
            seconds = 0.0  # the publisher's clock is a little ahead of ours
        # bisect_left: a value equal to a bound belongs to that bound's bucket ("le").
        self.counts[bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """Prometheus's buckets (cumulative, ending with +Inf) and the sum."""
        counts, total = list(self.counts), self.total
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip((*map(str, self.bounds), "+Inf"), counts, strict=True):
            running += count
            buckets.append((bound, running))
        return buckets, total


# Fed by realtime.hub: the envelope's `timestamp` (set when it was published) against the
# moment this process fans it out. Replays after a reconnect are not live and stay out.
delivery_latency = LatencyHistogram()

# --- HTTP requests by route and status -----------------------------------------------------

UNMATCHED = "(unmatched)"  # no route: a 404, or answered before routing (a redirect to HTTPS)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_requests: Counter[tuple[str, str, int]] = Counter()
_requests_lock = threading.Lock()  # requests are counted from several threads


def count_request(route: str, method: str, status: int) -> None:
    """One answered request. `route` is a route pattern, never a raw path: the label's values
    stay as few as the routes are."""
    key = (route, method if method in _METHODS else "other", status)
    with _requests_lock:
        _requests[key] += 1


# --- database time of the JSON API's calls --------------------------------------------------

_database: dict[str, list[float]] = {}  # view -> [calls, queries, seconds]
_database_lock = threading.Lock()


@contextmanager
def database_time(view: str) -> Iterator[None]:
    """Count the queries of one JSON API call and the time they took, under its view's name.

    Through Django's execute wrapper, in the thread the view runs in: each query's time, not
    the commit (which is no query) nor waiting for the database's lock."""
    spent = [0, 0.0]

    def timed(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
        began = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            spent[0] += 1
            spent[1] += time.perf_counter() - began

    try:
        with connection.execute_wrapper(timed):
            yield
    finally:
        with _database_lock:
            totals = _database.setdefault(view, [0, 0, 0.0])
            totals[0] += 1
            totals[1] += spent[0]
            totals[2] += spent[1]


def who_asked(authorization: str | None, user: Any) -> str:
    """Who sent a request, for a log line: a username, a service identity or "anonymous";
    never a token or a cookie."""
    if authorization:
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return "a malformed Authorization header"
        if settings.METRICS_TOKEN and hmac.compare_digest(token.encode(), settings.METRICS_TOKEN.encode()):
            return "the metrics token"
        identity = service_for_token(token)
        return f"service {identity}" if identity else "an unknown token"
    if user is not None and getattr(user, "is_authenticated", False):
        return str(user.get_username())
    return "anonymous"


def note_refused(route: str, method: str, status: int, code: str | None, who: str, client: str | None) -> None:
    """The one log line of a refused request: status, reason code, route, who, from where.

    Never the error's detail: some details quote what the client sent."""
    refused_logger.info(
        "refused %s %s: %d %s (%s from %s)",
        method if method in _METHODS else "other",
        route,
        status,
        code or REASONS.get(status, "refused"),
        who,
        client or "?",
    )


def is_refusal(status: int) -> bool:
    """A 4xx other than 404 (a missing page is not a refusal, and bots would flood the log)."""
    return 400 <= status < 500 and status != 404


class RequestMetricsMiddleware:
    """Counts every Django response by route pattern, method and status; logs refusals.

    First in MIDDLEWARE, so it also sees what the others answer on their own (the redirect to
    HTTPS, a CSRF failure, django-axes's lockout). The SSE streams do not pass through Django:
    realtime.consumers counts and logs them the same way. Sync and async, like Django's own, so
    it never adds a thread hop to the chain.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self._acall(request)
        response = self.get_response(request)
        route, method = self._count(request, response)
        if is_refusal(response.status_code):
            self._refused(request, response, route, method)
        return response

    async def _acall(self, request: HttpRequest) -> HttpResponse:
        response = await self.get_response(request)
        route, method = self._count(request, response)
        if is_refusal(response.status_code):
            # Who asked may take the session from the database: not on the event loop.
            await sync_to_async(self._refused)(request, response, route, method)
        return response

    @staticmethod
    def _count(request: HttpRequest, response: HttpResponse) -> tuple[str, str]:
        match = getattr(request, "resolver_match", None)
        route = match.route if match is not None and match.route else UNMATCHED
        method = request.method or "GET"
        count_request(route, method, response.status_code)
        return route, method

    @staticmethod
    def _refused(request: HttpRequest, response: HttpResponse, route: str, method: str) -> None:
        note_refused(
            route,
            method,
            response.status_code,
            getattr(response, "error_code", None),
            who_asked(request.headers.get("Authorization"), getattr(request, "user", None)),
            request.META.get("REMOTE_ADDR"),
        )


# --- the collector -------------------------------------------------------------------------


def _counter(name: str, documentation: str, values: dict[str, float], label: str) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value_of_label, value in values.items():
        family.add_metric([value_of_label], value)
    return family


class ProductCollector(Collector):
    """Reads the product's own counters and state when Prometheus scrapes."""

    def collect(self) -> Iterator[Metric]:
        from realtime import outbox
        from realtime.health import DEGRADED, OK, health
        from realtime.hub import stats
        from realtime.limits import open_streams

        counts = dict(stats)  # one copy, so every figure below comes from the same moment
        yield GaugeMetricFamily("helpdesk_sse_streams", "SSE streams open in this process", value=open_streams())
        streams = GaugeMetricFamily(
            "helpdesk_sse_streams_open",
            "SSE streams open in this process by the kind of channel they carry (a stream with "
            "several kinds counts under each)",
            labels=["kind"],
        )
        for kind in ("session", "agent", "broadcast"):
            streams.add_metric([kind], counts.get(f"streams_open_{kind}", 0))
        yield streams
        yield _counter(
            "helpdesk_sse_streams_cut",
            "SSE streams this process ended itself: the client was too far behind, or its access ended",
            {"slow_client": counts.get("streams_cut_slow", 0), "access_ended": counts.get("streams_cut_access", 0)},
            "reason",
        )
        yield _counter(
            "helpdesk_events_published",
            "Events this process published: through Redis (bus), from the outbox after a commit, "
            "or to its own streams only while Redis was unreachable (local)",
            {
                "bus": counts.get("published", 0),
                "outbox": counts.get("outbox_published", 0),
                "local": counts.get("published_locally", 0),
            },
            "path",
        )
        yield CounterMetricFamily(
            "helpdesk_events_fanned_out",
            "Events this process fanned out to its streams (each once, whatever the number of streams)",
            value=counts.get("events", 0),
        )
        yield CounterMetricFamily(
            "helpdesk_event_deliveries",
            "Copies of events handed to this process's streams",
            value=counts.get("deliveries", 0),
        )
        yield _counter(
            "helpdesk_events_dropped",
            "Events dropped: not a valid envelope (invalid), or a session event the recorder gave up on storing "
            "(not_recorded)",
            {"invalid": counts.get("dropped_invalid", 0), "not_recorded": counts.get("record_dropped", 0)},
            "reason",
        )
        yield _counter(
            "helpdesk_sse_resumes",
            "Streams that opened with Last-Event-ID: the missed events replayed, or a reset",
            {"replayed": counts.get("resumes_replayed", 0), "reset": counts.get("resumes_reset", 0)},
            "outcome",
        )
        yield _counter(
            "helpdesk_bus_heals",
            "Reconnections to Redis after a loss: what was missed replayed to the streams, or a reset",
            {"replayed": counts.get("heals_replayed", 0), "reset": counts.get("heal_resets", 0)},
            "outcome",
        )
        yield CounterMetricFamily(
            "helpdesk_bus_heal_replayed_events",
            "Events replayed to this process's streams after reconnections to Redis",
            value=counts.get("heal_replayed", 0),
        )
        yield CounterMetricFamily(
            "helpdesk_redis_failovers",
            "Times this process found a new Redis master after a reconnection (Sentinel failover)",
            value=counts.get("failovers", 0),
        )
        state = health.current
        bus = GaugeMetricFamily("helpdesk_bus_state", "1 for the bus's current state in this process", labels=["state"])
        for name in (OK, DEGRADED):
            bus.add_metric([name], 1 if state.state == name else 0)
        yield bus
        yield GaugeMetricFamily(
            "helpdesk_bus_state_seconds",
            "Seconds the bus has been in its current state in this process",
            value=max(0.0, time.time() - state.since),
        )
        yield CounterMetricFamily(
            "helpdesk_bus_degradations",
            "Times the bus of this process went from ok to degraded",
            value=health.degradations,
        )
        buckets, total = delivery_latency.cumulative()
        yield HistogramMetricFamily(
            "helpdesk_event_delivery_latency_seconds",
            "From an event's publishing (its envelope's timestamp) to its fan-out in this process; once per event",
            buckets=buckets,
            sum_value=total,
        )
        try:
            backlog = outbox.pending_count()
        except DatabaseError as exc:
            # The scrape still answers, without this figure (an alert on absent() catches it).
            logger.warning("metrics without the outbox backlog: the database did not answer: %s", exc)
        else:
            yield GaugeMetricFamily(
                "helpdesk_outbox_pending", "Outbox events waiting to be published (one query)", value=backlog
            )
        requests = CounterMetricFamily(
            "helpdesk_http_requests",
            "HTTP requests answered by this process, by route pattern, method and status",
            labels=["route", "method", "status"],
        )
        with _requests_lock:
            answered = list(_requests.items())
        for (route, method, status), count in sorted(answered):
            requests.add_metric([route, method, str(status)], count)
        yield requests
        yield from _database_families()
        yield from _pool_families()


# psycopg_pool's get_stats() names, and what each says (PostgreSQL with DATABASE_POOL_SIZE).
_POOL_GAUGES = {
    "pool_size": "Connections in this process's pool, busy or not",
    "pool_available": "Connections in this process's pool waiting for a request",
    "requests_waiting": "Requests waiting for a connection of this process's pool now",
}
_POOL_COUNTERS = {
    "requests_num": "Connections asked of this process's pool",
    "requests_queued": "Connections asked of this process's pool that had to wait",
    "requests_wait_ms": "Milliseconds requests waited for a connection of this process's pool",
    "requests_errors": "Connections asked of this process's pool that failed (its timeout)",
}


def _pool_families() -> Iterator[Metric]:
    """The PostgreSQL pool's figures, when there is one (Django keeps one per alias)."""
    pool = getattr(connection, "_connection_pools", {}).get(connection.alias)
    if pool is None:
        return
    figures = pool.get_stats()  # counters since the pool started, and its measures now
    for name, documentation in _POOL_GAUGES.items():
        yield GaugeMetricFamily(f"helpdesk_db_{name}", documentation, value=figures.get(name, 0))
    for name, documentation in _POOL_COUNTERS.items():
        yield CounterMetricFamily(f"helpdesk_db_{name}", documentation, value=figures.get(name, 0))


def _database_families() -> Iterator[Metric]:
    with _database_lock:
        views = sorted((view, list(totals)) for view, totals in _database.items())
    families = (
        CounterMetricFamily("helpdesk_api_calls", "JSON API calls answered by this process, by view", labels=["view"]),
        CounterMetricFamily(
            "helpdesk_api_db_queries", "Database queries of the JSON API's calls, by view", labels=["view"]
        ),
        CounterMetricFamily(
            "helpdesk_api_db_seconds", "Time in database queries of the JSON API's calls, by view", labels=["view"]
        ),
    )
    for view, totals in views:
        for family, value in zip(families, totals, strict=True):
            family.add_metric([view], value)
    yield from families


# The sessions' queue is the dashboard's (realtime never imports it): dashboard.apps adds its
# collector here.
registry = CollectorRegistry(auto_describe=False)
registry.register(ProductCollector())
# The process's CPU, memory and file descriptors, the interpreter and its garbage collector.
for _standard in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
    registry.register(_standard)


# --- the view ------------------------------------------------------------------------------


def _refusal(request: HttpRequest) -> ApiError | None:
    """Staff signed in, or `Authorization: Bearer <METRICS_TOKEN>`; 401/403 otherwise."""
    header = request.headers.get("Authorization")
    if header:
        scheme, _, token = header.partition(" ")
        expected = settings.METRICS_TOKEN
        if scheme.lower() == "bearer" and expected and hmac.compare_digest(token.strip().encode(), expected.encode()):
            return None
        return ApiError(401, "send Authorization: Bearer <METRICS_TOKEN>, or sign in as a supervisor")
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return ApiError(401, "send Authorization: Bearer <METRICS_TOKEN>, or sign in as a supervisor")
    if not (user.is_active and user.is_staff):
        return ApiError(403, "only supervisors may read the metrics")
    return None


def metrics(request: HttpRequest) -> HttpResponse:
    """GET /metrics: this process's metrics in Prometheus's text format."""
    if request.method not in ("GET", "HEAD"):
        return error_response(ApiError(405, "use GET"))
    refusal = _refusal(request)
    if refusal is not None:
        return error_response(refusal)
    response = HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response
