"""`make run`'s demo accounts keep their passwords across restarts (a local, owner-only file)."""

from __future__ import annotations

import io
import json
import stat
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def run(path: Path) -> str:
    out = io.StringIO()
    call_command("demo_accounts", file=path, stdout=out)
    return out.getvalue()


def test_the_passwords_are_made_once_and_printed_at_every_start(tmp_path: Path) -> None:
    path = tmp_path / ".demo-accounts.json"
    first = run(path)
    saved = json.loads(path.read_text())
    assert set(saved) == {"agent_demo", "supervisor_demo"}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    second = run(path)
    assert json.loads(path.read_text()) == saved
    for username, password in saved.items():
        assert password in first and password in second
        assert get_user_model().objects.get(username=username).check_password(password)


def test_a_password_changed_by_hand_or_a_lost_file_gives_new_ones(tmp_path: Path) -> None:
    path = tmp_path / ".demo-accounts.json"
    run(path)
    saved = json.loads(path.read_text())
    agent = get_user_model().objects.get(username="agent_demo")
    agent.set_password("changed-by-someone-1")
    agent.save()
    run(path)
    again = json.loads(path.read_text())
    assert again["agent_demo"] != saved["agent_demo"] and again["supervisor_demo"] == saved["supervisor_demo"]
    path.write_text("not json")
    run(path)
    assert json.loads(path.read_text())["supervisor_demo"] != saved["supervisor_demo"]
