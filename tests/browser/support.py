"""Helpers of the browser tests: the chatbot simulator as a process, and the bot's side of a chat."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from tests.support.procs import ROOT, request, wait_until


def unique(prefix: str = "cust") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


class ChatbotProcess:
    """`manage.py simulate_chatbot` in its own process, logging to a file."""

    def __init__(self, env: dict[str, str], log_path: Path, *args: str) -> None:
        self.env = {**env, "LOG_LEVEL": "INFO"}
        self.log_path = log_path
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> ChatbotProcess:
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "simulate_chatbot", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        wait_until(lambda: "simulator is running" in self.log(), timeout=20, what="the simulator to start")
        return self

    def log(self) -> str:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"the simulator exited: {self.log_path.read_text(errors='replace')[-2000:]}")
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        self.proc = None


def escalate(base_url: str, name: str, reason: str = "customer asked for a human") -> dict[str, Any]:
    """What the ai_chatbot does to hand a session over (service token)."""
    status, body = request("POST", base_url + "/api/manual/escalate", {"session_name": name, "reason": reason})
    assert status in (200, 201), body
    return body  # type: ignore[no-any-return]


def bot_says(base_url: str, name: str, text: str, sender: str = "customer", agent: str | None = None) -> list[str]:
    """A bot-side message, published as the ai_chatbot would: to the session and broadcast
    channels, and to the agent's channel when an agent has the session."""
    channels = [f"sse:session:{name}", "sse:broadcast", *([f"sse:agent:{agent}"] if agent else [])]
    ids = []
    for channel in channels:
        payload = {"session_name": name, "data": {"text": text, "sender": sender}}
        status, body = request(
            "POST", base_url + "/api/publish", {"channel": channel, "type": "new_message", "payload": payload}
        )
        assert status == 202, body
        ids.append(body["id"])
    return ids
