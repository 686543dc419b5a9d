"""GET /api/canned-replies (the composer's "/" list) and the example replies `make run` adds.

The composer's side (filtering as the agent types, inserting, the variables) is in
tests/browser/test_canned_replies.py.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client

from dashboard.api import MAX_CANNED
from dashboard.management.commands.demo_accounts import DEMO_REPLIES
from dashboard.models import CannedReply
from tests.support.sessions import TEST_TOKEN, browser, make_user

pytestmark = pytest.mark.django_db

URL = "/api/canned-replies"


@pytest.fixture
def replies() -> None:
    for shortcut, title in (
        ("refund", "Refund policy"),
        ("greeting", "Hello and welcome"),
        ("order-status", "Where is my order"),
        ("closing", "Goodbye"),
    ):
        CannedReply.objects.create(shortcut=shortcut, title=title, text=f"The {title.lower()} text: refund-free.")


def shortcuts(client: Any, query: str | None = None) -> list[str]:
    response = client.get(URL, {} if query is None else {"q": query})
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"replies"}
    for reply in body["replies"]:
        assert set(reply) == {"shortcut", "title", "text"}
    return [reply["shortcut"] for reply in body["replies"]]


def test_every_reply_in_shortcut_order_without_q(alice: Any, replies: None) -> None:
    assert shortcuts(alice) == ["closing", "greeting", "order-status", "refund"]
    assert shortcuts(alice, "") == shortcuts(alice, "   ") == shortcuts(alice)
    first = alice.get(URL).json()["replies"][0]
    assert first == {"shortcut": "closing", "title": "Goodbye", "text": "The goodbye text: refund-free."}


@pytest.mark.parametrize(
    "query, expected",
    [
        ("ref", ["refund"]),  # the shortcut
        ("REF", ["refund"]),  # in any case
        ("order", ["order-status"]),  # shortcut and title alike: listed once
        ("welcome", ["greeting"]),  # the title only
        ("e", ["closing", "greeting", "order-status", "refund"]),
        ("  bye ", ["closing"]),  # spaces around are dropped
        ("free", []),  # the text is not searched
        ("nothing-like-it", []),
    ],
)
def test_q_filters_by_shortcut_and_title(alice: Any, replies: None, query: str, expected: list[str]) -> None:
    assert shortcuts(alice, query) == expected


def test_a_supervisor_may_read_them_too(bus: Any, replies: None) -> None:
    assert shortcuts(browser(make_user("sue", staff=True)), "refund") == ["refund"]


def test_at_most_max_canned_are_answered(alice: Any) -> None:
    CannedReply.objects.bulk_create(
        CannedReply(shortcut=f"r{i:03d}", title=f"Reply {i}", text="x") for i in range(MAX_CANNED + 5)
    )
    found = shortcuts(alice)
    assert len(found) == MAX_CANNED and found[0] == "r000"


@pytest.mark.parametrize(
    "query, detail",
    [
        ("x" * 101, "q is at most 100 characters"),
        ("a\x00b", "q must not contain NUL characters"),
    ],
)
def test_a_bad_q_is_400(alice: Any, replies: None, query: str, detail: str) -> None:
    response = alice.get(URL, {"q": query})

    assert response.status_code == 400
    assert response.json() == {"error": "invalid_input", "detail": detail}


def test_q_of_exactly_100_characters_is_accepted(alice: Any, replies: None) -> None:
    assert shortcuts(alice, "x" * 100) == []


def test_a_service_token_is_refused(bus: Any, replies: None) -> None:
    """The replies are the agents' wording, for the composer; a service has no composer."""
    response = Client().get(URL, HTTP_AUTHORIZATION=f"Bearer {TEST_TOKEN}")

    assert response.status_code == 403
    assert response.json() == {"error": "forbidden", "detail": "ai_chatbot may not do this"}


def test_someone_not_signed_in_is_401(bus: Any, replies: None) -> None:
    response = Client().get(URL)

    assert response.status_code == 401
    assert response.json()["error"] == "not_authenticated"


def test_an_unknown_token_is_401(bus: Any, replies: None) -> None:
    response = Client().get(URL, HTTP_AUTHORIZATION="Bearer not-a-token-of-anyone-0123456789")

    assert response.status_code == 401


def test_only_get(alice: Any) -> None:
    response = alice.post(URL, "{}", content_type="application/json", HTTP_X_CSRFTOKEN=alice.csrf)

    assert response.status_code == 405
    assert response.json()["error"] == "method_not_allowed"


# --- the examples of `make run` -----------------------------------------------------------


def run_demo(path: Path) -> str:
    out = io.StringIO()
    call_command("demo_accounts", file=path, stdout=out)
    return out.getvalue()


def test_make_run_adds_the_examples_once_when_there_are_none(tmp_path: Path) -> None:
    path = tmp_path / ".demo-accounts.json"

    first = run_demo(path)

    assert sorted(CannedReply.objects.values_list("shortcut", flat=True)) == sorted(s for s, _, _ in DEMO_REPLIES)
    assert {"greeting", "refund-policy", "order-status", "closing"} <= set(
        CannedReply.objects.values_list("shortcut", flat=True)
    )
    assert f"Added {len(DEMO_REPLIES)} example canned replies" in first
    second = run_demo(path)
    assert CannedReply.objects.count() == len(DEMO_REPLIES)
    assert "canned replies" not in second


def test_make_run_leaves_a_team_s_own_replies_alone(tmp_path: Path) -> None:
    CannedReply.objects.create(shortcut="ours", title="Our own", text="Our wording.")

    run_demo(tmp_path / ".demo-accounts.json")

    assert list(CannedReply.objects.values_list("shortcut", "text")) == [("ours", "Our wording.")]


def test_make_run_keeps_examples_a_supervisor_edited_or_deleted(tmp_path: Path) -> None:
    path = tmp_path / ".demo-accounts.json"
    run_demo(path)
    CannedReply.objects.filter(shortcut="greeting").update(text="Hello, {customer_name}!")
    CannedReply.objects.filter(shortcut="hold").delete()

    run_demo(path)

    assert CannedReply.objects.get(shortcut="greeting").text == "Hello, {customer_name}!"
    assert not CannedReply.objects.filter(shortcut="hold").exists()


def test_the_examples_are_valid_replies_using_only_known_variables() -> None:
    """What the admin would accept, and no placeholder the composer would leave unfilled."""
    known = {"customer_name", "agent_name", "session_name"}
    used: set[str] = set()
    for shortcut, title, text in DEMO_REPLIES:
        CannedReply(shortcut=shortcut, title=title, text=text).full_clean()
        used |= set(re.findall(r"\{([^{}]*)\}", text))
    assert used == known  # the demo shows every variable, and only those
