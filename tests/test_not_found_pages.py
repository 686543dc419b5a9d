"""A friendly "not found" page (templates/404.html) in every mode, DEBUG included, with a link
home and status 404; paths under /api/ keep their JSON 404; a failing page gets templates/500.html.

Each test runs with DEBUG off (production) and on (`make run`, where Django would show its
technical page with the URL list: sse_project/not_found.py answers with the friendly one)."""

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path

from tests.support.sessions import make_user

pytestmark = pytest.mark.django_db


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a page that fails")


# For the 500 test only (pytest.mark.urls): the site's routes plus one page that fails.
urlpatterns = [path("boom/", boom), path("", include("sse_project.urls"))]

# What Django's technical 404 page says: none of it may reach a person.
TECHNICAL = ("Using the URLconf", "Django tried these URL patterns", "DEBUG = True", "sse_project.urls")


@pytest.fixture(params=[False, True], ids=["production", "debug"])
def debug(request: pytest.FixtureRequest, settings: object) -> bool:
    settings.DEBUG = request.param  # type: ignore[attr-defined]
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
def agent() -> Client:
    client = Client()
    client.force_login(make_user("ana"))
    return client


def friendly(response: HttpResponse, heading: str, debug: bool) -> str:
    """The friendly page: status 404, HTML, its heading, a link home, none of Django's debug page."""
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert f"<h1>{heading}</h1>" in page
    assert '<a class="btn btn-primary" href="/">' in page
    for words in TECHNICAL:
        assert words not in page
    # The site's policy comes with it, as with every page (django-csp leaves 404s alone in DEBUG,
    # for Django's debug page and its inline style; the friendly page needs no exemption).
    if not debug:
        assert "script-src 'self'" in response["Content-Security-Policy"]
    return page


def test_an_unknown_session_page_says_there_is_no_such_session(debug, agent):
    page = friendly(agent.get("/dashboard/sessions/nobody_here/"), "No such session", debug)

    assert "There is no session called <code>nobody_here</code>" in page
    assert '<a class="btn" href="/history/">Search the History</a>' in page
    assert "Sign out" in page  # the pages' own top bar for a signed-in person


def test_a_session_name_the_bus_would_refuse_is_not_found_either(debug, agent):
    friendly(agent.get("/dashboard/sessions/no%20such%3Cb%3E/"), "No such session", debug)


def test_an_unknown_page_for_someone_signed_in(debug, agent):
    page = friendly(agent.get("/no/such/page/"), "Page not found", debug)

    assert "There is nothing at <code>/no/such/page/</code>" in page
    assert "Back to the workbench" in page and "Sign out" in page


def test_an_unknown_page_for_a_visitor_who_is_not_signed_in(debug):
    page = friendly(Client().get("/nothing-<script>/"), "Page not found", debug)

    assert "Go to the sign-in page" in page
    assert "Sign out" not in page and 'class="nav"' not in page  # the brand alone, no one to sign out
    assert "<script>/" not in page and "&lt;script&gt;" in page  # the path is text, never markup


def test_an_unknown_admin_page_for_a_supervisor(debug):
    client = Client()
    client.force_login(make_user("sue", staff=True))

    friendly(client.get("/admin/dashboard/nothing/"), "Page not found", debug)


def test_api_paths_keep_their_json_404(debug, agent):
    for url in ("/api/nothing", "/api/sessions/nobody_here", "/api/sessions/a/b/c"):
        response = agent.get(url)
        assert response.status_code == 404, url
        assert response["Content-Type"] == "application/json", url
        assert response.json()["error"] == "not_found", url


def test_a_missing_slash_is_still_redirected_not_404(debug, agent):
    response = agent.get("/history")

    assert response.status_code == 301 and response["Location"] == "/history/"


@pytest.mark.urls("tests.test_not_found_pages")
def test_a_failing_page_shows_the_500_page_without_knowing_who_asks(settings, agent):
    settings.DEBUG = False
    agent.raise_request_exception = False

    response = agent.get("/boom/")

    assert response.status_code == 500
    page = response.content.decode()
    assert "<h1>Something went wrong</h1>" in page
    assert '<a class="btn btn-primary" href="/">' in page
    assert "a page that fails" not in page and "Sign out" not in page
