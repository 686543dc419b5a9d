"""Who may open which page: the workbench for everyone signed in, the dashboard for supervisors."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def agent(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("ana")


@pytest.fixture
def supervisor(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("sam", is_staff=True)


@pytest.mark.parametrize("path", ["/workbench/", "/dashboard/", "/dashboard/sessions/cust_1/"])
def test_a_visitor_who_is_not_signed_in_is_sent_to_the_login_page(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"/accounts/login/?next={path}"


def test_signing_in_leads_to_the_workbench(client: Client, agent: Any) -> None:
    agent.set_password("pw")
    agent.save()
    response = client.post("/accounts/login/", {"username": "ana", "password": "pw"})
    assert response.status_code == 302
    assert response["Location"] == "/workbench/"


def test_an_agent_opens_the_workbench(client: Client, agent: Any) -> None:
    client.force_login(agent)
    response = client.get("/workbench/")
    assert response.status_code == 200
    assert b'id="queue"' in response.content


def test_an_agent_who_opens_the_dashboard_is_told_it_is_for_supervisors(client: Client, agent: Any) -> None:
    client.force_login(agent)
    response = client.get("/dashboard/")
    assert response.status_code == 403
    assert b"This page is for supervisors" in response.content
    assert b'href="/workbench/"' in response.content


def test_a_supervisor_opens_the_dashboard_and_sees_the_admin_link(client: Client, supervisor: Any) -> None:
    client.force_login(supervisor)
    response = client.get("/dashboard/")
    assert response.status_code == 200
    assert b'id="feed"' in response.content
    assert b'href="/admin/"' in response.content


def test_only_supervisors_see_the_dashboard_and_admin_links_in_the_top_bar(
    client: Client, agent: Any, supervisor: Any
) -> None:
    client.force_login(agent)
    assert b'href="/dashboard/"' not in client.get("/workbench/").content
    client.force_login(supervisor)
    assert b'href="/dashboard/"' in client.get("/workbench/").content


def test_the_dashboard_feed_is_for_supervisors_only(client: Client, agent: Any) -> None:
    assert client.get("/dashboard/feed.json").status_code == 401
    client.force_login(agent)
    response = client.get("/dashboard/feed.json")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_the_front_page_sends_a_signed_in_agent_to_the_workbench(client: Client, agent: Any) -> None:
    client.force_login(agent)
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/workbench/"


def test_the_front_page_sends_a_visitor_to_the_login_form(client: Client) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
