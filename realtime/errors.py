"""The contract's error shape, `{"error": code, "detail": text}`, for views and consumers."""

from __future__ import annotations

import json

from django.http import JsonResponse

from realtime.channels import InvalidChannel
from realtime.envelope import EventTooLarge, SourceNotAllowed

REASONS = {
    400: "bad_request",
    401: "not_authenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "too_large",
    429: "too_many",
    503: "unavailable",
}


class ApiError(Exception):
    def __init__(self, status: int, detail: str, code: str | None = None, *, retry_after: int | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code or REASONS.get(status, "error")
        self.retry_after = retry_after  # seconds, sent as Retry-After (429, 503)

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The response headers of this error (ASGI form)."""
        headers = [(b"content-type", b"application/json")]
        if self.retry_after is not None:
            headers.append((b"retry-after", str(self.retry_after).encode()))
        return headers


def from_validation(exc: ValueError) -> ApiError:
    if isinstance(exc, EventTooLarge):
        return ApiError(413, str(exc))
    if isinstance(exc, InvalidChannel):
        return ApiError(400, str(exc), "invalid_channel")
    if isinstance(exc, SourceNotAllowed):
        return ApiError(403, str(exc), "source_not_allowed")
    return ApiError(400, str(exc), "invalid_event")


def error_body(status: int, detail: str, code: str | None = None) -> bytes:
    return json.dumps({"error": code or REASONS.get(status, "error"), "detail": detail}).encode()


def error_response(error: ApiError) -> JsonResponse:
    response = JsonResponse({"error": error.code, "detail": error.detail}, status=error.status)
    # The reason code for the log line of a refused request (realtime.metrics's middleware).
    response.error_code = error.code  # type: ignore[attr-defined]
    if error.retry_after is not None:
        response["Retry-After"] = str(error.retry_after)
    return response
