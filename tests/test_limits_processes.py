"""Limits per identity across two real daphne processes on one Redis, and streams that end
when access ends (realtime/limits.py, realtime/access.py)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import (
    OTHER_TOKEN,
    SERVICE_TOKEN,
    Daphne,
    RedisServer,
    SSEClient,
    base_env,
    migrate,
    request,
    run_python,
    wait_until,
)
from tests.support.sessions import Agent, create_agents, login

PASSWORD = "pw-for-tests-long-enough"
HEARTBEAT = 2


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daphne, Daphne, dict[str, str]]]:
    """Two daphne processes with small limits: 3 streams per person, 20 events/s per service,
    at most 8 streams per process (so 4 per identity per process)."""
    tmp: Path = tmp_path_factory.mktemp("limits")
    redis = RedisServer().start()
    env = base_env(
        REDIS_URL=redis.url,
        DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}",
        SSE_HEARTBEAT_SECONDS=str(HEARTBEAT),
        SSE_MAX_STREAMS_PER_USER="3",
        SSE_PUBLISH_RATE="20",
        SSE_MAX_CONNECTIONS="8",
    )
    migrate(env)
    create_agents(env, "ana", "bea", "cat", "dan", password=PASSWORD)
    run_python(
        "from django.core.management import call_command\n"
        f"call_command('create_agent', 'sam', password={PASSWORD!r}, supervisor=True)\n",
        env,
    )
    a = Daphne(env, log_path=tmp / "a.log").start()
    b = Daphne(env, log_path=tmp / "b.log").start()
    yield a, b, env
    a.stop()
    b.stop()
    redis.stop()


def stream(daphne: Daphne, path: str, agent: Agent | None = None, token: str | None = None) -> SSEClient:
    headers = {"Cookie": agent.cookie} if agent else None
    return SSEClient(daphne.url, path, token=token, headers=headers)


def opened(client: SSEClient) -> SSEClient:
    return client.wait_open(10)


def refused(client: SSEClient) -> tuple[int, dict[str, str]]:
    status = client.wait_status(10)
    client.closed.wait(10)
    return status, client.headers


# --- streams per person -------------------------------------------------------------------------


def test_one_person_holds_at_most_her_share_of_streams_across_processes(pair) -> None:
    a, b, _ = pair
    ana = login(a.url, "ana", PASSWORD)
    mine = [opened(stream(a, "/api/broadcast/events", ana)), opened(stream(a, "/api/agents/ana/events", ana))]
    mine.append(opened(stream(b, "/api/broadcast/events", ana)))
    try:
        for daphne in (a, b):
            extra = stream(daphne, "/api/broadcast/events", ana)
            status, headers = refused(extra)
            assert status == 429 and headers["retry-after"].isdigit()
            assert b'"too_many"' in extra.body
        # Someone else is not affected.
        bea = login(b.url, "bea", PASSWORD)
        other = opened(stream(b, "/api/broadcast/events", bea))
        other.close()
        # A stream closed frees its slot, on the other process too.
        mine.pop().close()
        wait_until(lambda: _opens(a, ana), timeout=10, what="a slot freed by a closed stream")
    finally:
        for client in mine:
            client.close()


def _opens(daphne: Daphne, agent: Agent) -> bool:
    client = stream(daphne, "/api/broadcast/events", agent)
    try:
        return client.wait_status(10) == 200
    finally:
        client.close()


def test_one_identity_never_takes_every_slot_of_a_process(pair) -> None:
    a, _, _ = pair
    held = [opened(stream(a, "/api/broadcast/events", token=OTHER_TOKEN)) for _ in range(4)]
    try:
        status, headers = refused(stream(a, "/api/broadcast/events", token=OTHER_TOKEN))
        assert status == 429 and "retry-after" in headers
        # The process still has room for others.
        cat = login(a.url, "cat", PASSWORD)
        other = opened(stream(a, "/api/broadcast/events", cat))
        other.close()
    finally:
        for client in held:
            client.close()


# --- publish rate ---------------------------------------------------------------------------------


def test_a_service_publishes_at_most_its_rate_across_processes_and_others_are_not_slowed(pair) -> None:
    a, b, _ = pair
    started = time.monotonic()
    statuses = []
    for n in range(120):
        daphne = (a, b)[n % 2]
        status, body = request(
            "POST",
            daphne.url + "/api/publish",
            {"channel": "sse:broadcast", "type": "new_message", "payload": {"n": n}},
        )
        statuses.append(status)
        if status == 429:
            assert body["error"] == "rate_limited"
    elapsed = time.monotonic() - started
    accepted = statuses.count(202)
    assert set(statuses) == {202, 429}
    # A burst of 40 (twice the rate) and 20 a second after it, give or take one refill each.
    assert 40 <= accepted <= 40 + 20 * elapsed + 4, (accepted, elapsed)
    # The 429 says when to come back (the bucket may have refilled a token meanwhile: the
    # next calls at once use it up).
    answers = [_publish_with_headers(a) for _ in range(4)]
    refused = [headers for status, headers in answers if status == 429]
    assert refused and all(int(headers["Retry-After"]) >= 1 for headers in refused), answers
    # Another service identity has its own bucket: crm is not refused for ai_chatbot's rate
    # (only for what it may not publish).
    status, body = request(
        "POST",
        b.url + "/api/publish",
        {"channel": "sse:session:rate_other", "type": "new_message", "payload": {}},
        token=OTHER_TOKEN,
    )
    assert (status, body["error"]) == (403, "source_not_allowed")


def _publish_with_headers(daphne: Daphne) -> tuple[int, dict[str, str]]:
    import json
    import urllib.error
    import urllib.request

    req = urllib.request.Request(
        daphne.url + "/api/publish",
        data=json.dumps({"channel": "sse:broadcast", "type": "new_message", "payload": {}}).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {SERVICE_TOKEN}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers)


def test_escalations_count_against_the_rate(pair) -> None:
    a, _, _ = pair
    time.sleep(2.5)  # the bucket of the test before refills (40 tokens at 20/s)
    started = time.monotonic()
    statuses = [
        request("POST", a.url + "/api/manual/escalate", {"session_name": f"rate_{n}"}, token=SERVICE_TOKEN)[0]
        for n in range(40)
    ]
    elapsed = time.monotonic() - started
    went_through = len([s for s in statuses if s in (200, 201, 202)])
    # Two events each: the burst of 40 tokens is 20 escalations, then 10 a second.
    assert 20 <= went_through <= (40 + 20 * elapsed) / 2 + 2, (went_through, elapsed)
    assert 429 in statuses


# --- access ends streams ------------------------------------------------------------------------


def ended_within(client: SSEClient, seconds: float) -> bool:
    return client.closed.wait(seconds)


def test_a_deactivated_agents_streams_end_on_every_process(pair) -> None:
    a, b, env = pair
    dan = login(a.url, "dan", PASSWORD)
    on_a = opened(stream(a, "/api/agents/dan/events", dan))
    on_b = opened(stream(b, "/api/broadcast/events", dan))
    bea = login(a.url, "bea", PASSWORD)
    bystander = opened(stream(a, "/api/broadcast/events", bea))
    try:
        run_python(
            "from django.contrib.auth import get_user_model\n"
            "get_user_model().objects.filter(username='dan').update(is_active=False)\n",
            env,
        )
        stopped = time.monotonic()
        assert ended_within(on_a, HEARTBEAT + 1) and ended_within(on_b, HEARTBEAT + 1)
        assert time.monotonic() - stopped <= HEARTBEAT + 1
        assert on_a.ended_cleanly and on_b.ended_cleanly
        # The reconnect is refused; someone else's stream goes on.
        assert stream(a, "/api/broadcast/events", dan).wait_status(10) == 401
        assert not bystander.closed.is_set()
    finally:
        for client in (on_a, on_b, bystander):
            client.close()
        run_python(
            "from django.contrib.auth import get_user_model\n"
            "get_user_model().objects.filter(username='dan').update(is_active=True)\n",
            env,
        )


def test_signing_out_ends_that_sessions_streams(pair) -> None:
    a, b, _ = pair
    cat = login(a.url, "cat", PASSWORD)
    other_login = login(b.url, "cat", PASSWORD)  # another browser of hers
    signed_out = opened(stream(b, "/api/broadcast/events", cat))
    kept = opened(stream(a, "/api/broadcast/events", other_login))
    try:
        status, _ = cat.post(a.url + "/accounts/logout/")
        assert status in (200, 302)
        assert ended_within(signed_out, HEARTBEAT + 1)
        time.sleep(HEARTBEAT)
        assert not kept.closed.is_set(), "signing out in one browser ends only that browser's streams"
    finally:
        signed_out.close()
        kept.close()


def test_a_password_change_ends_the_streams(pair) -> None:
    a, b, env = pair
    bea = login(a.url, "bea", PASSWORD)
    client = opened(stream(b, "/api/broadcast/events", bea))
    try:
        run_python(
            "from django.core.management import call_command\n"
            "call_command('create_agent', 'bea', password='another-long-password-2')\n"
            f"call_command('create_agent', 'bea', password={PASSWORD!r})\n",
            env,
        )
        assert ended_within(client, HEARTBEAT + 1)
    finally:
        client.close()


def test_a_supervisor_made_an_agent_loses_other_agents_channels_only(pair) -> None:
    a, _, env = pair
    sam = login(a.url, "sam", PASSWORD)
    watching_ana = opened(stream(a, "/api/agents/ana/events", sam))
    broadcast = opened(stream(a, "/api/broadcast/events", sam))
    try:
        run_python(
            "from django.contrib.auth import get_user_model\n"
            "get_user_model().objects.filter(username='sam').update(is_staff=False)\n",
            env,
        )
        assert ended_within(watching_ana, HEARTBEAT + 1)
        time.sleep(HEARTBEAT)
        assert not broadcast.closed.is_set()
    finally:
        watching_ana.close()
        broadcast.close()
        run_python(
            "from django.contrib.auth import get_user_model\n"
            "get_user_model().objects.filter(username='sam').update(is_staff=True)\n",
            env,
        )
