"""The product's own "not found" page (templates/404.html) in every mode, DEBUG included.

With DEBUG off Django renders templates/404.html itself. With DEBUG on (`make run`) it shows its
technical page instead: yellow, with the site's URL list, which a person trying the demo takes
for a crash. This middleware answers such a 404 with the friendly page in DEBUG too. The
technical page is not kept reachable: what it adds (the URL patterns tried) is in
sse_project/urls.py, and Django still logs every 404 ("Not Found: /path", logger
django.request), so a developer loses nothing a visitor should see.

Paths under /api/ are left alone: the API answers its own JSON 404 (realtime.views.api_not_found
and ApiError), and a client reading JSON must never get a page.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.views.defaults import page_not_found

API_PREFIX = "/api/"


def is_api_path(path: str) -> bool:
    return path == API_PREFIX.rstrip("/") or path.startswith(API_PREFIX)


class FriendlyNotFoundMiddleware:
    """In DEBUG, an HTML 404 of a page (Django's technical one) becomes templates/404.html."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            settings.DEBUG
            and response.status_code == 404
            and not response.streaming
            and response.get("Content-Type", "").startswith("text/html")
            and not is_api_path(request.path_info)
        ):
            # The same view Django calls for a 404 when DEBUG is off: one page, one rendering.
            return page_not_found(request, Http404(request.path_info))
        return response
