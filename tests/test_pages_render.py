"""What the pages hand to their JavaScript, the session page, and the login page."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client

from dashboard.models import ChatSession, Status

pytestmark = pytest.mark.django_db


def page_config(content: bytes) -> dict[str, Any]:
    match = re.search(rb'<script id="page-config" type="application/json">(.*?)</script>', content, re.S)
    assert match, "no page-config on the page"
    return json.loads(match.group(1))  # type: ignore[no-any-return]


def test_the_workbench_tells_its_script_who_is_signed_in_and_the_queue_sla(
    client: Client, django_user_model: Any, settings: Any
) -> None:
    settings.QUEUE_SLA_SECONDS = 42
    client.force_login(django_user_model.objects.create_user("ana"))
    response = client.get("/workbench/")
    config = page_config(response.content)
    assert config["me"] == "ana"
    assert config["sla_seconds"] == 42
    assert config["is_supervisor"] is False
    assert config["urls"]["login"] == "/accounts/login/"
    # The CSRF cookie is set, so the page's commands (accept, send, leave, close) can send the token.
    assert "csrftoken" in response.cookies


def test_the_pages_load_their_own_scripts_and_styles_from_static_and_nothing_else(
    client: Client, django_user_model: Any
) -> None:
    client.force_login(django_user_model.objects.create_user("sam", is_staff=True))
    pages = (
        (
            "/workbench/",
            ["viewers.js", "transfer.js", "workbench.js", "availability.js", "layout.js", "canned.js", "alerts.js"],
        ),
        ("/dashboard/", ["transfer.js", "dashboard.js"]),
    )
    for path, scripts in pages:
        content = client.get(path).content.decode()
        sources = re.findall(r'(?:src|href)="([^"]+\.(?:js|css))"', content)
        # live.js first, the page's own, then keys.js (the keyboard, on every page) last.
        expected = ["/static/css/app.css", "/static/js/live.js", *(f"/static/js/{s}" for s in scripts)]
        assert sources == [*expected, "/static/js/keys.js"]


def test_a_session_page_shows_the_session_and_links_supervisors_to_its_admin_page(
    client: Client, django_user_model: Any
) -> None:
    session = ChatSession.objects.create(name="cust_page_1", status=Status.WAITING_AGENT)
    client.force_login(django_user_model.objects.create_user("sam", is_staff=True))
    response = client.get("/dashboard/sessions/cust_page_1/")
    assert response.status_code == 200
    assert page_config(response.content)["session_name"] == "cust_page_1"
    assert f'href="/admin/dashboard/chatsession/{session.pk}/change/"'.encode() in response.content
    assert b'id="pane-close"' in response.content


def test_an_agent_may_read_a_session_page_but_gets_no_admin_link_and_no_close_button(
    client: Client, django_user_model: Any
) -> None:
    ChatSession.objects.create(name="cust_page_2", status=Status.AGENT_HANDLING)
    client.force_login(django_user_model.objects.create_user("ana"))
    response = client.get("/dashboard/sessions/cust_page_2/")
    assert response.status_code == 200
    assert b"/admin/" not in response.content
    assert b'id="pane-close"' not in response.content


@pytest.mark.parametrize("name", ["cust_nobody", "bad*name", "a" * 65])
def test_a_session_page_for_an_unknown_or_invalid_name_is_not_found(
    client: Client, django_user_model: Any, name: str
) -> None:
    client.force_login(django_user_model.objects.create_user("sam", is_staff=True))
    assert client.get(f"/dashboard/sessions/{name}/").status_code == 404


def test_the_login_page_has_labelled_fields_the_csrf_token_and_the_stylesheet(client: Client) -> None:
    content = client.get("/accounts/login/?next=/dashboard/").content.decode()
    assert '<label for="id_username">' in content
    assert '<label for="id_password">' in content
    assert 'autocomplete="current-password"' in content
    assert 'name="csrfmiddlewaretoken"' in content
    assert '<input type="hidden" name="next" value="/dashboard/">' in content
    assert "/static/css/app.css" in content


def test_a_wrong_password_is_told_on_the_login_page(client: Client, django_user_model: Any) -> None:
    django_user_model.objects.create_user("ana", password="pw")
    response = client.post("/accounts/login/", {"username": "ana", "password": "nope"})
    assert response.status_code == 200
    assert b'class="form-error" role="alert"' in response.content
    assert b'value="ana"' in response.content
