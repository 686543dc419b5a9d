"""`manage.py demo_accounts`: the demo agent and supervisor for `make run`, with fresh passwords."""

from __future__ import annotations

import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from dashboard.accounts import save_account


class Command(BaseCommand):
    help = "Create (or reset) a demo agent and a demo supervisor and print their passwords."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", default="agent_demo")
        parser.add_argument("--supervisor", default="supervisor_demo")

    def handle(self, *args: Any, agent: str, supervisor: str, **options: Any) -> None:
        lines = []
        for username, staff in ((agent, False), (supervisor, True)):
            password = secrets.token_urlsafe(12)
            with transaction.atomic():
                save_account(username, password, supervisor=staff)
            lines.append(f"  {'supervisor' if staff else 'agent':<10} {username:<18} password: {password}")
        self.stdout.write("\nDemo accounts (passwords are new on every start):\n" + "\n".join(lines) + "\n")
