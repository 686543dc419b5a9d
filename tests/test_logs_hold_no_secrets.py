"""The logs hold no token, password, cookie or message text, and with LOG_FORMAT=json each line is
one JSON object with time, level, logger and message (docs/operations.md "Logs").

A small real scenario over two daphne processes started as docs/operations.md says for JSON logs
(`-v 0`: no access log of daphne's own), at LOG_LEVEL=DEBUG: a failed and a good sign-in, the bot
escalating a session and writing in it, the agent accepting, reading the stream and answering,
a scrape of /metrics, and refused requests with a wrong token, without CSRF and anonymously.
Every secret and every text the scenario used is then looked for in both processes' logs.
(tests/conftest.py also reads every daphne log of the whole run for the suite's own secrets.)
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import (
    SERVICE_TOKEN,
    Daphne,
    RedisServer,
    SSEClient,
    base_env,
    migrate,
    request,
    wait_until,
)
from tests.support.sessions import create_agents, login

PASSWORD = f"pw-for-logs-{uuid.uuid4().hex}"
WRONG_PASSWORD = f"pw-for-logs-wrong-{uuid.uuid4().hex}"
WRONG_TOKEN = f"wrong-token-{uuid.uuid4().hex}"
METRICS_TOKEN = f"metrics-token-{uuid.uuid4().hex}"
CUSTOMER_TEXT = f"my card number is {uuid.uuid4().hex}"
AGENT_TEXT = f"thanks, your new pin is {uuid.uuid4().hex}"
REASON = f"the customer asked for a human {uuid.uuid4().hex}"


@pytest.fixture
def pair(redis_server: RedisServer, tmp_path: Path) -> Iterator[tuple[Daphne, Daphne, dict[str, str]]]:
    env = base_env(
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",  # its own: sign-in failures counted apart
        METRICS_TOKEN=METRICS_TOKEN,
        LOG_FORMAT="json",
        LOG_LEVEL="DEBUG",
        SSE_HEARTBEAT_SECONDS="1",
    )
    migrate(env)
    a = b = None
    try:
        a = Daphne(env, log_path=tmp_path / "a.log", args=("-v", "0")).start()
        b = Daphne(env, log_path=tmp_path / "b.log", args=("-v", "0")).start()
        yield a, b, env
    finally:
        for daphne in (a, b):
            if daphne is not None:
                daphne.stop()


def test_a_real_scenario_logs_json_lines_without_a_secret_or_a_message_text(
    pair: tuple[Daphne, Daphne, dict[str, str]],
) -> None:
    a, b, env = pair
    name, agent_id = f"logs_{uuid.uuid4().hex[:10]}", f"agent_{uuid.uuid4().hex[:8]}"
    create_agents(env, agent_id, password=PASSWORD)

    # A failed sign-in, then a good one (its cookies are secrets too).
    with pytest.raises(AssertionError, match="login as"):
        login(a.url, agent_id, WRONG_PASSWORD)
    agent = login(a.url, agent_id, PASSWORD)
    workbench = SSEClient(
        a.url,
        f"/api/events?channel=sse:broadcast&channel=sse:agent:{agent_id}&channel=sse:session:{name}",
        token=None,
        headers={"Cookie": agent.cookie},
    ).wait_open()
    bot_stream = SSEClient(b.url, f"/api/sessions/{name}/events").wait_open()
    try:
        status, body = request("POST", b.url + "/api/manual/escalate", {"session_name": name, "reason": REASON})
        assert status == 201, body
        status, body = agent.post(f"{a.url}/api/sessions/{name}/accept")
        assert status == 200, body
        status, body = request(
            "POST",
            b.url + "/api/publish",
            {
                "channel": f"sse:session:{name}",
                "type": "new_message",
                "payload": {"session_name": name, "data": {"text": CUSTOMER_TEXT, "sender": "customer"}},
            },
        )
        assert status == 202, body
        status, body = agent.post(f"{a.url}/api/sessions/{name}/messages", {"text": AGENT_TEXT})
        assert status == 200, body
        for stream in (workbench, bot_stream):
            stream.wait_for(lambda e: e.event == "new_message" and AGENT_TEXT in e.data)
            stream.wait_for(lambda e: e.event == "new_message" and CUSTOMER_TEXT in e.data)

        # Refused: a wrong token on the API and on a stream, a write without CSRF, an anonymous scrape.
        assert request("POST", b.url + "/api/publish", {}, token=WRONG_TOKEN)[0] == 401
        refused = SSEClient(b.url, f"/api/sessions/{name}/events", token=WRONG_TOKEN)
        assert refused.wait_status() == 401
        refused.close()
        assert agent.post(f"{a.url}/api/sessions/{name}/messages", {"text": AGENT_TEXT}, csrf=False)[0] == 403
        assert request("GET", a.url + "/metrics", token=None)[0] == 401
        assert request("GET", a.url + "/metrics", token=METRICS_TOKEN)[0] == 200
    finally:
        workbench.close()
        bot_stream.close()
    wait_until(lambda: "stream closed for" in b.log_text() and "stream closed for" in a.log_text())
    a.stop()  # the rest of the log is written
    b.stop()

    secrets = {
        "the service token": SERVICE_TOKEN,
        "the metrics token": METRICS_TOKEN,
        "a wrong token": WRONG_TOKEN,
        "the password": PASSWORD,
        "a wrong password": WRONG_PASSWORD,
        "the session cookie": agent.sessionid,
        "the CSRF cookie": agent.csrftoken,
        "the customer's text": CUSTOMER_TEXT,
        "the agent's text": AGENT_TEXT,
        "the escalation's reason": REASON,
    }
    for daphne in (a, b):
        log = daphne.log_text()
        assert not [what for what, secret in secrets.items() if secret in log], daphne.log_path
        records = [json.loads(line) for line in log.splitlines() if line.strip()]
        for record in records:
            assert isinstance(record, dict) and {"time", "level", "logger", "message"} <= set(record), record
        assert any(r["level"] == "DEBUG" for r in records)  # the scenario ran at DEBUG

    # The lines the scenario had to write, so the checks above read a real log.
    messages_a = [r["message"] for r in map(json.loads, a.log_text().splitlines())]
    messages_b = [r["message"] for r in map(json.loads, b.log_text().splitlines())]
    assert any(m.startswith(f"stream opened by user:{agent_id} on sse:broadcast,") for m in messages_a)
    assert any(m.startswith(f"stream closed for user:{agent_id} on ") for m in messages_a)
    assert f"refused POST api/sessions/<str:name>/messages: 403 csrf_failed ({agent_id} from 127.0.0.1)" in messages_a
    assert "refused GET metrics: 401 not_authenticated (anonymous from 127.0.0.1)" in messages_a
    assert "refused POST api/publish: 401 not_authenticated (an unknown token from 127.0.0.1)" in messages_b
    assert (
        "refused GET api/sessions/<name>/events: 401 not_authenticated (an unknown token from 127.0.0.1)" in messages_b
    )
    assert any(m.startswith(f"stream opened by service:ai_chatbot on sse:session:{name}") for m in messages_b)
