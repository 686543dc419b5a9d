"""The naive contact centre of the bench (bench/naive/centre_*.py), against real processes.

A private redis-server, a SQLite file (a PostgreSQL database on the suite's PostgreSQL pass)
migrated with the product's migrations, agents and session cookies minted with the product's
settings, the naive server under daphne (started as the bench starts it), the naive bot's
functions called in a process of their own: the stream gets the frames of an escalation, an
accept and messages; the record is in the product's tables; the race and the refusals answer
as the product does.
"""

from __future__ import annotations

import http.client
import json
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from bench import procs as bench_procs
from tests.support.databases import scratch_database_url
from tests.support.procs import RedisServer, SSEClient, migrate, run_python

pytestmark = pytest.mark.timeout(60)

MINT = """
import json
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.sessions.backends.db import SessionStore
out = {}
for name in NAMES:
    user = get_user_model().objects.create_user(name, password="pw-for-naive-centre-0123")
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.create()
    out[name] = store.session_key
print(json.dumps(out))
"""

BOT = """
from bench.naive import centre_bot
for call in CALLS:
    getattr(centre_bot, call[0])(*call[1:])
"""

RECORD = """
import json
from dashboard.models import ChatSession, SessionEvent
session = ChatSession.objects.select_related("agent").get(name="nc_1")
rows = SessionEvent.objects.filter(session=session).order_by("timestamp", "pk")
print(json.dumps({
    "status": session.status,
    "agent": session.agent_name,
    "customer_ref": session.customer_ref,
    "last_message": [session.last_message_sender, session.last_message_text],
    "rows": [[r.type, r.source, r.sender, r.text, r.message_id, r.event_id, r.payload] for r in rows],
}))
"""


class Centre:
    def __init__(self, tmp: Path) -> None:
        self.redis = RedisServer().start()
        self.db_url = scratch_database_url(tmp, "naive_centre")  # SQLite, or PostgreSQL on its pass
        # The bench's own environment (its secret key), as bench/centre.py mints its cookies.
        self.product_env = bench_procs.base_env(DATABASE_URL=self.db_url, DJANGO_SETTINGS_MODULE="sse_project.settings")
        self.naive_env = bench_procs.base_env(
            REDIS_URL=self.redis.url, DATABASE_URL=self.db_url, DJANGO_SETTINGS_MODULE="bench.naive.centre_settings"
        )
        migrate(self.product_env)
        self.cookies: dict[str, str] = json.loads(run_python("NAMES = ['nc_ann', 'nc_bob']\n" + MINT, self.product_env))
        self.log = tmp / "naive-centre.log"
        self.server = bench_procs.naive_centre_server(self.redis.url, self.db_url, self.log).start()
        self.server.wait_ready()
        self.streams: list[SSEClient] = []

    def stop(self) -> None:
        for stream in self.streams:
            stream.close()
        self.server.stop()
        self.redis.stop()

    def stream(self, channels: list[str], who: str | None) -> SSEClient:
        query = "&".join(f"channel={c}" for c in channels)
        headers = {"Cookie": f"sessionid={self.cookies[who]}"} if who else {}
        client = SSEClient(f"http://127.0.0.1:{self.server.port}", f"/api/events?{query}", token=None, headers=headers)
        self.streams.append(client)
        return client

    def post(
        self, who: str | None, path: str, body: dict[str, Any] | None = None, csrf: bool = True
    ) -> tuple[int, Any]:
        secret = secrets.token_hex(16)  # a 32-character CSRF secret, as the load process sends
        cookies = [f"sessionid={self.cookies[who]}"] if who else []
        headers = {"Content-Type": "application/json"}
        if csrf:
            cookies.append(f"csrftoken={secret}")
            headers["X-CSRFToken"] = secret
        if cookies:
            headers["Cookie"] = "; ".join(cookies)
        connection = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            connection.request("POST", path, body=json.dumps(body or {}), headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        is_json = response.getheader("Content-Type", "").startswith("application/json")
        return response.status, json.loads(data) if is_json else data

    def bot(self, *calls: list[Any]) -> None:
        run_python(f"CALLS = {list(calls)!r}\n" + BOT, self.naive_env)


@pytest.fixture
def centre(tmp_path: Path) -> Iterator[Centre]:
    made = Centre(tmp_path)
    try:
        yield made
    finally:
        made.stop()


def test_naive_centre_commands_frames_and_record(centre: Centre) -> None:
    channels = ["sse:broadcast", "sse:agent:nc_ann", "sse:session:nc_1"]
    ann = centre.stream(channels, "nc_ann").wait_open()
    assert ann.status == 200 and ann.retry == 2000 and "stream open" in ann.comments

    # Refused streams: anonymous, and another agent's channel.
    anonymous = centre.stream(["sse:broadcast"], None)
    assert anonymous.wait_status() == 403
    assert centre.stream(["sse:agent:nc_bob"], "nc_ann").wait_status() == 403

    customer = {"id": "cust-7", "name": "Pat Doe"}
    hello = {
        "session_name": "nc_1",
        "message_id": "m-customer-1",
        "data": {"text": "hello #qc1.", "sender": "customer"},
    }
    centre.bot(["escalate", "nc_1", "wants a person", customer])
    ann.wait_for(lambda e: e.event == "transfer_request", count=2)  # session channel and broadcast

    # Two agents accept at once: exactly one wins, the other gets the product's 409.
    status, body = centre.post("nc_ann", "/api/sessions/nc_1/accept")
    assert status == 200, body
    assert body["session"]["status"] == "agent_handling" and body["session"]["agent"] == "nc_ann"
    assert [e["type"] for e in body["events"]] == ["agent_joined", "status_change"]
    assert centre.post("nc_bob", "/api/sessions/nc_1/accept")[0] == 409
    # Agent, broadcast and session channel each carry the join.
    joined = ann.wait_for(lambda e: e.event == "agent_joined", count=3)
    assert sorted(e.json["channel"] for e in joined) == sorted(channels)

    centre.bot(["say", "nc_1", ["sse:session:nc_1", "sse:broadcast", "sse:agent:nc_ann"], hello])
    status, body = centre.post("nc_ann", "/api/sessions/nc_1/messages", {"text": "Thanks, checking #qa1."})
    assert status == 200, body
    message_id = body["message_id"]
    messages = ann.wait_for(lambda e: e.event == "new_message", count=6)
    mine = [e.json for e in messages if e.json["payload"]["message_id"] == message_id]
    theirs = [e.json for e in messages if e.json["payload"]["message_id"] == "m-customer-1"]
    assert sorted(e["channel"] for e in mine) == sorted(channels) == sorted(e["channel"] for e in theirs)
    for frame, event in [(e, e.json) for e in messages]:
        # The product's envelope, keys in its order; the frame's id is the envelope's.
        assert list(event) == ["id", "channel", "type", "payload", "timestamp", "source"]
        assert frame.id == event["id"]
    assert {e["source"] for e in mine} == {"agent_workbench"} and {e["source"] for e in theirs} == {"ai_chatbot"}
    assert mine[0]["payload"]["data"] == {"text": "Thanks, checking #qa1.", "sender": "agent", "agent": "nc_ann"}
    ids = [e.id for e in ann.events]
    assert len(ids) == len(set(ids))

    # Refusals: not the agent's session, no CSRF, nobody signed in, no such session.
    assert centre.post("nc_bob", "/api/sessions/nc_1/messages", {"text": "hi"})[0] == 403
    assert centre.post("nc_ann", "/api/sessions/nc_1/messages", {"text": "hi"}, csrf=False)[0] == 403
    assert centre.post(None, "/api/sessions/nc_1/messages", {"text": "hi"})[0] == 401
    assert centre.post("nc_ann", "/api/sessions/nc_404/accept")[0] == 404

    record = json.loads(run_python(RECORD, centre.product_env))
    assert record["status"] == "agent_handling" and record["agent"] == "nc_ann"
    assert record["customer_ref"] == "cust-7"
    assert record["last_message"] == ["agent", "Thanks, checking #qa1."]
    # One row per session-channel event (not per copy), as the product's record.
    kinds = [(r[0], r[1], r[2]) for r in record["rows"]]
    assert kinds == [
        ("transfer_request", "ai_chatbot", ""),
        ("status_change", "ai_chatbot", ""),
        ("agent_joined", "agent_workbench", ""),
        ("status_change", "agent_workbench", ""),
        ("new_message", "ai_chatbot", "customer"),
        ("new_message", "agent_workbench", "agent"),
    ]
    assert record["rows"][4][3:5] == ["hello #qc1.", "m-customer-1"]
    assert record["rows"][5][3:5] == ["Thanks, checking #qa1.", message_id]
    assert record["rows"][0][6]["data"] == {"customer": customer, "reason": "wants a person"}
    session_ids = {e.id for e in ann.events if e.json["channel"] == "sse:session:nc_1"}
    assert {r[5] for r in record["rows"]} == session_ids  # the record keeps each event's id

    # Leave gives it back to the queue; accepted again, the agent closes it.
    assert centre.post("nc_ann", "/api/sessions/nc_1/leave")[0] == 200
    ann.wait_for(lambda e: e.event == "agent_left", count=3)
    assert centre.post("nc_bob", "/api/sessions/nc_1/accept")[0] == 200
    assert centre.post("nc_ann", "/api/sessions/nc_1/close")[0] == 403
    status, body = centre.post("nc_bob", "/api/sessions/nc_1/close")
    assert status == 200 and body["session"]["status"] == "closed", body
    # nc_ann's stream has the close on broadcast and the session channel (not bob's channel).
    closed = ann.wait_for(lambda e: e.event == "status_change" and e.json["payload"]["status"] == "closed", count=2)
    assert sorted(e.json["channel"] for e in closed) == ["sse:broadcast", "sse:session:nc_1"]
    assert "Traceback" not in centre.log.read_text(errors="replace")


def test_naive_centre_racing_accepts_one_wins(centre: Centre) -> None:
    names = [f"nc_race_{i}" for i in range(6)]
    centre.bot(*[["escalate", name, "race", {}] for name in names])
    with ThreadPoolExecutor(max_workers=2) as pool:
        for name in names:
            racing = [pool.submit(centre.post, who, f"/api/sessions/{name}/accept") for who in ("nc_ann", "nc_bob")]
            assert sorted(f.result()[0] for f in racing) == [200, 409], name
