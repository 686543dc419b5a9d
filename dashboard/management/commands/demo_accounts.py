"""`manage.py demo_accounts`: the demo agent and supervisor for `make run`.

Their passwords are made once and kept in a local file (`.demo-accounts.json` in the project,
ignored by git, readable by its owner only), so a restart of `make run` does not sign anyone
out of an open page. Delete the file for new passwords.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from dashboard.accounts import save_account


def _saved(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return (
        {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)} if isinstance(data, dict) else {}
    )


def _still_valid(username: str, password: str | None) -> bool:
    if not password:
        return False
    user = get_user_model().objects.filter(username=username).first()
    return user is not None and user.check_password(password)


class Command(BaseCommand):
    help = "Create the demo agent and supervisor (or keep them) and print their passwords."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--agent", default="agent_demo")
        parser.add_argument("--supervisor", default="supervisor_demo")
        parser.add_argument("--file", type=Path, default=Path(settings.BASE_DIR) / ".demo-accounts.json")

    def handle(self, *args: Any, agent: str, supervisor: str, file: Path, **options: Any) -> None:
        saved = _saved(file)
        kept: dict[str, str] = {}
        lines = []
        for username, staff in ((agent, False), (supervisor, True)):
            password = saved.get(username)
            if password is None or not _still_valid(username, password):
                password = secrets.token_urlsafe(12)
            with transaction.atomic():
                save_account(username, password, supervisor=staff)
            kept[username] = password
            lines.append(f"  {'supervisor' if staff else 'agent':<10} {username:<18} password: {password}")
        # Owner-only from the start: the file holds passwords.
        descriptor = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as out:
            json.dump(kept, out, indent=1)
        self.stdout.write(
            f"\nDemo accounts (kept across restarts in {file.name}; delete it for new passwords):\n"
            + "\n".join(lines)
            + "\n"
        )
