"""Accounts: passwords follow Django's validators (create_agent included), supervisors are staff
with the permissions they need and no more, and signing in is throttled per username and per
address (django-axes)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.test import Client

GOOD = "a-long-passphrase-9"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("password", "why"),
    [
        ("a", "too short"),
        ("1234567890123", "entirely numeric"),
        ("password123", "too common"),
        ("ana_agent_1", "similar"),
    ],
)
def test_create_agent_refuses_a_weak_password_and_saves_nothing(password: str, why: str) -> None:
    with pytest.raises(CommandError, match=why):
        call_command("create_agent", "ana_agent_1", password=password)
    assert not get_user_model().objects.filter(username="ana_agent_1").exists()


@pytest.mark.django_db
def test_create_agent_keeps_the_old_password_when_a_new_one_is_refused() -> None:
    call_command("create_agent", "ana", password=GOOD)
    with pytest.raises(CommandError):
        call_command("create_agent", "ana", password="short")
    assert get_user_model().objects.get(username="ana").check_password(GOOD)


@pytest.mark.django_db
def test_a_supervisor_is_staff_in_the_supervisors_group_not_a_superuser() -> None:
    call_command("create_agent", "sam", password=GOOD, supervisor=True)
    sam = get_user_model().objects.get(username="sam")
    assert sam.is_staff and not sam.is_superuser
    assert list(sam.groups.values_list("name", flat=True)) == ["supervisors"]
    assert sam.has_perm("dashboard.change_chatsession") and sam.has_perm("axes.delete_accessattempt")
    assert not sam.has_perm("auth.change_user") and not sam.has_perm("auth.add_user")
    # Made an agent again: no longer staff, out of the group.
    call_command("create_agent", "sam", password=GOOD)
    sam.refresh_from_db()
    assert not sam.is_staff and not sam.groups.exists()


@pytest.mark.django_db
def test_a_supervisor_uses_the_admin_for_sessions_but_cannot_touch_accounts() -> None:
    call_command("create_agent", "sam", password=GOOD, supervisor=True)
    call_command("create_agent", "ana", password=GOOD)
    client = Client()
    client.force_login(get_user_model().objects.get(username="sam"))
    assert client.get("/admin/dashboard/chatsession/").status_code == 200
    ana = get_user_model().objects.get(username="ana")
    assert client.get(f"/admin/auth/user/{ana.pk}/password/").status_code == 403
    assert client.get("/admin/auth/user/").status_code == 403


def sign_in(client: Client, username: str, password: str, address: str = "10.0.0.1") -> int:
    response = client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=address)
    return response.status_code


@pytest.fixture
def ana(db: Any) -> Any:
    return get_user_model().objects.create_user("ana", password=GOOD)


def test_ten_wrong_passwords_lock_the_username_even_for_the_right_one(ana: Any, settings: Any) -> None:
    assert settings.AXES_FAILURE_LIMIT == 10
    client = Client()
    for attempt in range(10):
        # The first nine show the form again; the tenth failure locks.
        assert sign_in(client, "ana", f"wrong-{attempt}") in (200, 429)
    response = client.post("/accounts/login/", {"username": "ana", "password": GOOD}, REMOTE_ADDR="10.0.0.1")
    assert response.status_code == 429
    assert b"Sign-in paused" in response.content and b"15 minutes" in response.content
    assert "_auth_user_id" not in client.session
    # From another address too: the username is locked, not only the address.
    assert sign_in(Client(), "ana", GOOD, address="10.0.0.2") == 429


def test_one_address_trying_many_usernames_is_locked_too(db: Any) -> None:
    get_user_model().objects.create_user("bob", password=GOOD)
    client = Client()
    for n in range(10):
        sign_in(client, f"nobody_{n}", "wrong-password", address="10.0.0.9")
    assert sign_in(client, "bob", GOOD, address="10.0.0.9") == 429
    # bob himself is not locked: from his own address he signs in.
    assert sign_in(Client(), "bob", GOOD, address="10.0.0.10") == 302


def test_a_successful_sign_in_clears_the_count(ana: Any) -> None:
    client = Client()
    for _ in range(9):
        assert sign_in(client, "ana", "wrong") == 200
    assert sign_in(client, "ana", GOOD) == 302
    client.logout()
    for _ in range(9):
        assert sign_in(client, "ana", "wrong") == 200
    assert sign_in(client, "ana", GOOD) == 302
