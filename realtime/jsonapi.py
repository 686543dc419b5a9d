"""Small toolkit for the JSON endpoints: authentication, CSRF, bodies and errors in one place."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.views.decorators.csrf import csrf_exempt

from realtime.auth import NotAuthenticated, Principal, principal_from
from realtime.envelope import InvalidJSON, load_json
from realtime.errors import ApiError, error_response, from_validation
from realtime.limits import RateLimited, charge_publish
from realtime.metrics import database_time

logger = logging.getLogger(__name__)

View = Callable[..., HttpResponse]


def _enforce_csrf(request: HttpRequest) -> None:
    # Cookie-authenticated writes need Django's CSRF check; token-authenticated ones carry
    # no ambient credentials and so are exempt (the same rule as Django REST framework).
    check = CsrfViewMiddleware(lambda r: HttpResponse())
    check.process_request(request)
    refused = check.process_view(request, lambda r: HttpResponse(), (), {})
    if refused is not None:
        raise ApiError(403, "CSRF check failed: send the csrftoken cookie's value as X-CSRFToken", "csrf_failed")


def authenticate(request: HttpRequest) -> Principal:
    try:
        principal = principal_from(request.headers.get("Authorization"), getattr(request, "user", None))
    except NotAuthenticated as exc:
        raise ApiError(401, str(exc)) from None
    if principal is None:
        raise ApiError(401, "log in at /accounts/login/ or send Authorization: Bearer <token>")
    if not principal.is_service and request.method not in ("GET", "HEAD", "OPTIONS"):
        _enforce_csrf(request)
    return principal


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request body as a JSON object (an empty body is `{}`)."""
    if not request.body:
        return {}
    try:
        body = load_json(request.body)
    except InvalidJSON as exc:
        raise ApiError(400, f"the body {exc}", "invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object", "invalid_json")
    return body


def api(
    methods: tuple[str, ...], who: Callable[[Principal], bool] | None = None, publishes: int = 0
) -> Callable[[View], View]:
    """Decorate a view `(request, principal, **kwargs)`: method check, auth, CSRF, JSON errors.

    `publishes`: the events one call publishes, charged to a service identity's publish rate
    (SSE_PUBLISH_RATE) before the view runs; over the rate is 429 with Retry-After."""

    def decorate(view: View) -> View:
        @csrf_exempt
        @functools.wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            try:
                if request.method not in methods:
                    raise ApiError(405, f"use {' or '.join(methods)}")
                principal = authenticate(request)
                if who is not None and not who(principal):
                    raise ApiError(403, f"{principal.name} may not do this")
                if publishes and principal.is_service:
                    try:
                        charge_publish(principal.name, publishes)
                    except RateLimited as exc:
                        raise ApiError(429, str(exc), "rate_limited", retry_after=exc.retry_after) from None
                with database_time(view.__name__):
                    return view(request, principal, **kwargs)
            except ApiError as error:
                return error_response(error)
            except ValueError as exc:  # InvalidChannel / InvalidEvent from the bus
                return error_response(from_validation(exc))

        return wrapper

    return decorate


def ok(data: dict[str, Any], status: int = 200) -> JsonResponse:
    return JsonResponse(data, status=status)
