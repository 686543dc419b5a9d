"""`manage.py demo_accounts`: the demo agent and supervisor for `make run`.

Their passwords are made once and kept in a local file (`.demo-accounts.json` in the project,
ignored by git, readable by its owner only), so a restart of `make run` does not sign anyone
out of an open page. Delete the file for new passwords.

While there are no canned replies at all, it also adds a few examples, so a newcomer finds
something when they type "/" in the composer. Once there is any reply (the examples edited, or
the team's own), none is added or changed; delete every one and the next start adds the
examples again.
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
from dashboard.models import CannedReply

# (shortcut, title, text): what a support team says every day. {customer_name} only follows
# "Hi", where its stand-in for a customer the bot did not name ("there") reads well too.
DEMO_REPLIES = (
    (
        "greeting",
        "Greeting",
        "Hi {customer_name}, I'm {agent_name} from the support team. I've read your conversation "
        "with our assistant, so there's no need to repeat anything: let me take it from here.",
    ),
    (
        "order-status",
        "Order status",
        "I'm checking your order now; it takes a minute or two. If you have the order number "
        "at hand (it starts with #), please send it. Your reference for this chat is {session_name}.",
    ),
    (
        "refund-policy",
        "Refund policy",
        "You can return any item within 30 days of delivery for a full refund. Once the item "
        "reaches us, the money goes back to your original payment method within 5 to 7 working days.",
    ),
    (
        "hold",
        "Asking to wait",
        "Thank you for your patience. I need a couple of minutes to check this with a colleague; I'll be right back.",
    ),
    (
        "closing",
        "Closing",
        "Is there anything else I can help you with today? If not, thank you for contacting us and have a great day.",
    ),
)


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
    help = (
        "Create the demo agent and supervisor (or keep them) and print their passwords; "
        "add example canned replies while there are none."
    )

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
        added = seed_canned_replies()
        if added:
            self.stdout.write(
                f"Added {added} example canned replies: type / in the composer (edit them in the admin).\n"
            )


def seed_canned_replies() -> int:
    """Add the example canned replies if there are none at all; returns how many were added."""
    with transaction.atomic():
        if CannedReply.objects.exists():
            return 0
        made = CannedReply.objects.bulk_create(
            CannedReply(shortcut=shortcut, title=title, text=text) for shortcut, title, text in DEMO_REPLIES
        )
    return len(made)
