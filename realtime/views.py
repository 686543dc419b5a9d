"""HTTP endpoints of the bus: POST /api/publish and GET /healthz."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import redis
from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse

from realtime import outbox
from realtime.auth import Principal
from realtime.bus import enqueue_sse_message_sync, get_layer, reached_redis
from realtime.errors import ApiError, error_response
from realtime.health import DEGRADED, health
from realtime.hub import stats
from realtime.jsonapi import api, json_body, ok

logger = logging.getLogger(__name__)


@api(("POST",), who=lambda p: p.is_service, publishes=1)
def publish(request: HttpRequest, principal: Principal) -> HttpResponse:
    """Publish one event for a service in any language; `source` is the token's identity."""
    body = json_body(request)
    for field in ("channel", "type", "payload"):
        if field not in body:
            raise ApiError(400, f"missing field {field!r}", "invalid_event")
    unknown = set(body) - {"channel", "type", "payload"}
    if unknown:
        raise ApiError(400, f"unknown fields: {', '.join(sorted(unknown))} (source and id are set by the server)")
    event_id = enqueue_sse_message_sync(body["channel"], body["type"], body["payload"], source=principal.source)
    # "local": Redis is unreachable, so only this process's streams got it, live (no id).
    return ok(
        {
            "id": event_id,
            "channel": body["channel"],
            "event_ids": [event_id] if event_id is not None else [],
            "delivery": "bus" if event_id is not None else "local",
        },
        status=202,
    )


def who_is_online() -> tuple[list[dict[str, str]], bool]:
    """Agents with a workbench open on any process (with a short grace period), and whether
    the list is complete. `GET /api/presence` (dashboard.api) adds each one's availability."""
    layer = get_layer()
    complete = True
    try:
        rows = layer.online_agents()
    except (redis.RedisError, OSError) as exc:
        # Redis down: who is connected to this process is still known; say the list is partial.
        logger.warning("presence from this process only: %s", exc)
        rows, complete = layer.local_online_agents(), False
    return [{"agent": row["agent"], "since": _iso(row["since"])} for row in rows], complete


def _iso(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, tz=UTC).isoformat()


def api_not_found(request: HttpRequest) -> HttpResponse:
    return error_response(ApiError(404, f"no endpoint at {request.path[:200]}"))


def healthz(request: HttpRequest) -> HttpResponse:
    """Anyone may ask: the layer in use, whether Redis answers, and why the bus is degraded."""
    if request.method not in ("GET", "HEAD"):
        return error_response(ApiError(405, "use GET"))
    layer = get_layer()
    try:
        reachable = layer.ping_sync()
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        logger.warning("health check could not reach Redis: %s", exc)
        health.mark_down(f"Redis is unreachable: {exc}")
        reachable = False
    else:
        reached_redis()
    state = health.current
    try:
        backlog: int | None = outbox.pending_count()
    except DatabaseError as exc:
        logger.warning("health check could not count the outbox: %s", exc)
        backlog = None
    degraded = not reachable or state.state == DEGRADED
    body = {
        "status": "degraded" if degraded else "ok",
        "reason": (state.reason or "Redis is unreachable") if degraded else None,
        "since": _iso(state.since) if degraded else None,
        "layer": "redis" if settings.BUS_ON_REDIS else "memory",
        "redis": {
            "configured": settings.BUS_ON_REDIS,
            "reachable": reachable if settings.BUS_ON_REDIS else None,
            "target": layer.describe_target(),
        },
        # Commands' events waiting to be published (they go out once Redis is back).
        "outbox_pending": backlog,
        "history_size": layer.history_size,
        "counters": dict(stats),
    }
    # 200 either way: without Redis each process still serves its own subscribers.
    return JsonResponse(body)
