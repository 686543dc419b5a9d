"""`manage.py create_agent <username> --password <pw> [--supervisor]`: create or update an agent."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from realtime.channels import InvalidChannel, validate_name


class Command(BaseCommand):
    help = "Create or update an agent account (its agent_id is the username); --supervisor makes it staff."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--supervisor", action="store_true", help="staff: may use /dashboard/ and /admin/")

    def handle(self, *args: Any, username: str, password: str, supervisor: bool, **options: Any) -> None:
        try:
            validate_name(username, "username (the agent_id)")
        except InvalidChannel as exc:
            raise CommandError(str(exc)) from None
        if not password:
            raise CommandError("the password must not be empty")
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username=username)
        user.set_password(password)
        user.is_active = True
        user.is_staff = supervisor
        user.is_superuser = supervisor
        user.save()
        role = "supervisor" if supervisor else "agent"
        self.stdout.write(f"{'created' if created else 'updated'} {role} {username}")
