"""`manage.py simulate_chatbot`: its own process on Redis; refused on the in-memory layer."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from tests.support.procs import ROOT, RedisServer
from tests.support.sessions import db_row, history


def test_without_redis_the_command_refuses_and_points_to_make_run(settings: Any) -> None:
    settings.BUS_ON_REDIS = False
    with pytest.raises(CommandError, match="make run"):
        call_command("simulate_chatbot", "--duration", "0.1")


def test_as_its_own_process_it_opens_sessions_talks_and_escalates_them_over_redis(
    redis_env: dict[str, str], redis_server: RedisServer
) -> None:
    client = redis_server.client()
    before = {e["id"] for e in history(client, "sse:broadcast")}
    args = ["--every", "0.2", "--speed", "0.05", "--escalate-share", "1", "--sessions", "2", "--duration", "3"]
    done = subprocess.run(
        [sys.executable, "manage.py", "simulate_chatbot", *args],
        cwd=ROOT,
        env=redis_env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    new = [e for e in history(client, "sse:broadcast") if e["id"] not in before]
    escalated = [e["payload"]["session_name"] for e in new if e["type"] == "transfer_request"]
    assert len(escalated) == 2
    assert {e["source"] for e in new} == {"ai_chatbot"}
    for name in escalated:
        row = db_row(redis_env["DATABASE_URL"], name)
        assert row is not None and row["status"] == "waiting_agent"
        lines = [e for e in history(client, f"sse:session:{name}") if e["type"] == "new_message"]
        assert [e["payload"]["data"]["sender"] for e in lines][:2] == ["bot", "customer"]
