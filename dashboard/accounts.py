"""Agent and supervisor accounts: one place that creates them, checks their passwords and
gives supervisors what they need (staff, the "supervisors" group), and no more.

A supervisor is a staff user in the "supervisors" group, never a superuser: they can watch and
act on sessions and unlock a locked-out sign-in, not edit accounts or reset passwords."""

from __future__ import annotations

from django.contrib.auth import get_user_model, password_validation
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.core.exceptions import ValidationError

from realtime.channels import InvalidChannel, validate_name

SUPERVISORS_GROUP = "supervisors"

# app label, codename: what a supervisor may do in /admin/ (the pages ask for is_staff).
SUPERVISOR_PERMISSIONS = (
    ("dashboard", "view_chatsession"),
    ("dashboard", "change_chatsession"),  # the admin's actions (return to queue, close)
    ("dashboard", "view_sessionevent"),
    # Canned replies are the team's wording: supervisors keep them.
    ("dashboard", "view_cannedreply"),
    ("dashboard", "add_cannedreply"),
    ("dashboard", "change_cannedreply"),
    ("dashboard", "delete_cannedreply"),
    ("axes", "view_accessattempt"),
    ("axes", "delete_accessattempt"),  # unlocks a locked-out sign-in
    ("axes", "view_accesslog"),
)


class AccountError(ValueError):
    """The username or password cannot be used; the message says why, for a person."""


def supervisors_group() -> Group:
    """The supervisors' group with exactly its permissions (made or brought up to date)."""
    group, _ = Group.objects.get_or_create(name=SUPERVISORS_GROUP)
    wanted = [
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, codename in SUPERVISOR_PERMISSIONS
    ]
    group.permissions.set(wanted)
    return group


def save_account(username: str, password: str, *, supervisor: bool) -> tuple[AbstractBaseUser, bool]:
    """Create or update an agent (supervisor=True: a supervisor); returns (user, created).

    The username is the agent_id, so it follows the channel-name rule; the password must pass
    Django's validators (AUTH_PASSWORD_VALIDATORS). Nothing is saved when either is refused."""
    try:
        validate_name(username, "username (the agent_id)")
    except InvalidChannel as exc:
        raise AccountError(str(exc)) from None
    users = get_user_model()
    user = users.objects.filter(username=username).first()
    created = user is None
    if user is None:
        user = users(username=username)
    try:
        password_validation.validate_password(password, user)
    except ValidationError as exc:
        raise AccountError("the password is refused: " + " ".join(exc.messages)) from None
    user.set_password(password)
    user.is_active = True
    user.is_staff = supervisor
    user.is_superuser = False
    user.save()
    group = supervisors_group()
    if supervisor:
        user.groups.add(group)
    else:
        user.groups.remove(group)
    return user, created
