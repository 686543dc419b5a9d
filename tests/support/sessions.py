"""Helpers for the session tests: agents logged in over real HTTP, and reading the record
(the SQLite file, the session keys in Redis and the bus history) straight from the source."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from tests.support import procs
from tests.support.databases import query_one
from tests.support.procs import request, run_python

ROW_SQL = """
SELECT s.name, s.status, u.username, s.reason, s.escalated_at, s.accepted_at, s.closed_at, s.last_event_id
FROM dashboard_chatsession s LEFT JOIN auth_user u ON u.id = s.agent_id WHERE s.name = ?
"""


def unique(prefix: str) -> str:
    """A session or agent name no other test uses (the process tests share one database)."""
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@dataclass
class Agent:
    """An agent logged in with Django's login form: a session cookie and a CSRF token."""

    username: str
    sessionid: str
    csrftoken: str

    @property
    def cookie(self) -> str:
        return f"sessionid={self.sessionid}; csrftoken={self.csrftoken}"

    def post(self, url: str, body: Any = None, csrf: bool = True) -> tuple[int, Any]:
        headers = {"Cookie": self.cookie, **({"X-CSRFToken": self.csrftoken} if csrf else {})}
        return request("POST", url, b"" if body is None else body, token=None, headers=headers)

    def get(self, url: str) -> tuple[int, Any]:
        return request("GET", url, token=None, headers={"Cookie": self.cookie})


def create_agents(env: dict[str, str], *usernames: str, password: str = "pw-for-tests") -> None:
    """Create agent accounts with `manage.py create_agent`, all in one process."""
    calls = "".join(f"call_command('create_agent', {u!r}, password={password!r})\n" for u in usernames)
    run_python("from django.core.management import call_command\n" + calls, env)


def login(base_url: str, username: str, password: str = "pw-for-tests") -> Agent:
    """Log in over HTTP as a browser does: GET the form, POST it with the CSRF token."""
    cookies = procs.login(base_url, username, password)
    return Agent(username, cookies["sessionid"], cookies["csrftoken"])


def db_row(database_url: str, name: str) -> dict[str, Any] | None:
    """The session's row, read from the database the daphne processes share."""
    row = query_one(database_url, ROW_SQL, (name,))
    if row is None:
        return None
    keys = ("name", "status", "agent", "reason", "escalated_at", "accepted_at", "closed_at", "last_event_id")
    return dict(zip(keys, row, strict=True))


def redis_state(client: Any, name: str) -> dict[str, Any] | None:
    raw = client.get(f"session:{name}")
    return None if raw is None else json.loads(raw)


def status_sets(client: Any, name: str) -> set[str]:
    """The statuses whose `status:{status}` set holds `name` (exactly one when in sync)."""
    statuses = ("ai_handling", "waiting_agent", "agent_handling", "closed")
    return {s for s in statuses if client.sismember(f"status:{s}", name)}


def history(client: Any, channel: str) -> list[dict[str, Any]]:
    """Every event the bus keeps for `channel`, oldest first, read from its Redis stream."""
    from realtime.layers import history_key

    return [json.loads(fields[b"e"]) | {"id": i.decode()} for i, fields in client.xrange(history_key(channel))]


def _instant(value: str | None) -> datetime | None:
    """An ISO time from Redis or a SQLite datetime column (UTC, naive) as an aware datetime."""
    if value is None:
        return None
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def assert_redis_matches_db(client: Any, database_url: str, name: str) -> dict[str, Any]:
    """The session keys say what the database says; returns the row."""
    row = db_row(database_url, name)
    assert row is not None, f"no row for {name}"
    state = redis_state(client, name)
    assert state is not None, f"no session:{name} key"
    for key in ("name", "status", "agent", "reason"):
        assert state[key] == row[key], (key, state, row)
    for key in ("escalated_at", "accepted_at", "closed_at"):
        assert _instant(state[key]) == _instant(row[key]), (key, state, row)
    assert state["last_event_id"] == (row["last_event_id"] or None), (state, row)
    assert status_sets(client, name) == {row["status"]}
    return row


# --- in-process helpers (pytest-django, the layer of the test settings) ---------------

BOT = "ai_chatbot"


def fresh_bus() -> Any:
    """A new channel layer from the current settings: empty history, so events do not leak."""
    from channels.layers import channel_layers

    from realtime.bus import get_layer

    channel_layers.backends.clear()
    return get_layer()


def record_pending() -> int:
    """Store what the in-memory layer's recorder has queued (a server's thread does it at once)."""
    from realtime.recorder import memory_recorder

    done = 0
    while count := memory_recorder().step(timeout=0):
        done += count
    return done


def published(layer: Any, channel: str) -> list[dict[str, Any]]:
    """The envelopes the layer keeps for `channel`, oldest first."""
    return [json.loads(e.envelope) for e in layer.history_sync(channel, 100_000)]


def kinds(layer: Any, channel: str) -> list[str]:
    return [e["type"] for e in published(layer, channel)]


def make_user(username: str, staff: bool = False, password: str | None = None) -> Any:
    """A user; without a password (tests log in with force_login), which skips the slow hashing.
    staff=True makes a supervisor as the product does: staff in the supervisors group."""
    from django.contrib.auth import get_user_model

    from dashboard.accounts import supervisors_group

    user = get_user_model().objects.create_user(username, password=password)
    if staff:
        user.is_staff = True
        user.save()
        user.groups.add(supervisors_group())
    return user


TEST_TOKEN = "unit-test-token-ai-chatbot-0123456789"
CRM_TOKEN = "unit-test-token-crm-service-012345678"
TEST_TOKENS = {TEST_TOKEN: "ai_chatbot", CRM_TOKEN: "crm"}


def browser(user: Any) -> Any:
    """A Django test client logged in as `user` that enforces CSRF like a real browser session.

    `.csrf` is the token to send as X-CSRFToken (the cookie holds the same secret).
    """
    import secrets

    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.csrf = secrets.token_hex(16)  # a 32-character secret, as Django makes them
    client.cookies["csrftoken"] = client.csrf
    return client


def post_as(client: Any, url: str, body: Any = None, csrf: bool = True) -> Any:
    data = "" if body is None else (body if isinstance(body, (str, bytes)) else json.dumps(body))
    extra = {"HTTP_X_CSRFTOKEN": client.csrf} if csrf else {}
    return client.post(url, data, content_type="application/json", **extra)


def post_service(client: Any, url: str, body: Any, token: str = TEST_TOKEN) -> Any:
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(url, data, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def resume_from(redis_url: str, name: str, cursor: str) -> Any:
    """What the session's stream resumed from `cursor` replays (the bus's history), as a Resume."""
    import asyncio

    from realtime.bus import get_layer
    from realtime.redis_conn import RedisTarget
    from realtime.redis_store import read_resume

    async def read() -> Any:
        client = RedisTarget(url=redis_url).async_client()
        try:
            return await read_resume(client, [f"sse:session:{name}"], cursor, get_layer().history_size)
        finally:
            await client.aclose()

    return asyncio.run(read())
