"""`manage.py create_agent <username> --password <pw> [--supervisor]`: create or update an agent."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from dashboard.accounts import AccountError, save_account


class Command(BaseCommand):
    help = (
        "Create or update an agent account (its agent_id is the username); --supervisor makes it a "
        "supervisor (staff in the supervisors group). The password must pass the password rules."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("--password", required=True)
        parser.add_argument("--supervisor", action="store_true", help="a supervisor: may use /dashboard/ and /admin/")

    def handle(self, *args: Any, username: str, password: str, supervisor: bool, **options: Any) -> None:
        try:
            with transaction.atomic():
                _, created = save_account(username, password, supervisor=supervisor)
        except AccountError as exc:
            raise CommandError(str(exc)) from None
        role = "supervisor" if supervisor else "agent"
        self.stdout.write(f"{'created' if created else 'updated'} {role} {username}")
