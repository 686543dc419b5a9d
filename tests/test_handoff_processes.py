"""The whole handoff over real processes: two daphne servers, one Redis, one database.

The bot (a service token) works on process B, the agent (logged in over HTTP) on process A,
the bot's chat messages come from a third Python process. After every step the session keys
in Redis say what the database says.
"""

import json

from tests.support.procs import SSEClient, request, run_python
from tests.support.sessions import assert_redis_matches_db, create_agents, login, unique


def about(name, *types):
    def match(event):
        return event.event in types and json.loads(event.data)["payload"].get("session_name") == name

    return match


def test_a_session_goes_from_the_bot_to_an_agent_and_back_across_processes(daphne_pair, redis_env, redis_server):
    a, b = daphne_pair
    redis = redis_server.client()
    db = redis_env["DATABASE_URL"]
    name, agent_id = unique("handoff"), unique("agent")
    create_agents(redis_env, agent_id)
    agent = login(a.url, agent_id)
    workbench = SSEClient(
        a.url,
        f"/api/events?channel=sse:broadcast&channel=sse:agent:{agent_id}",
        token=None,
        headers={"Cookie": agent.cookie},
    ).wait_open()
    session_stream = SSEClient(b.url, f"/api/sessions/{name}/events").wait_open()

    # 1. The bot escalates on B; the agent on A sees the request in the broadcast.
    status, body = request("POST", b.url + "/api/manual/escalate", {"session_name": name, "reason": "wants a human"})
    assert status == 201, body
    seen = workbench.wait_for(about(name, "transfer_request", "status_change"), count=2)
    assert [e.event for e in seen] == ["transfer_request", "status_change"]
    assert [e.id for e in seen] == [body["event_ids"][1], body["event_ids"][3]]
    assert seen[0].json["payload"]["data"]["reason"] == "wants a human" and seen[0].json["source"] == "ai_chatbot"
    assert assert_redis_matches_db(redis, db, name)["status"] == "waiting_agent"

    # 2. The agent accepts on A (cookie + CSRF token); the session channel and the agent's own hear it.
    status, body = agent.post(f"{a.url}/api/sessions/{name}/accept")
    assert status == 200, body
    joined = session_stream.wait_for(about(name, "agent_joined", "status_change"), count=3)
    assert [e.event for e in joined[1:]] == ["agent_joined", "status_change"]
    assert joined[-1].json["payload"]["status"] == "agent_handling"
    mine = workbench.wait_for(lambda e: e.json["channel"] == f"sse:agent:{agent_id}", count=2)
    assert [e.event for e in mine] == ["agent_joined", "status_change"]
    assert mine[0].json["payload"]["data"]["agent"] == agent_id
    row = assert_redis_matches_db(redis, db, name)
    assert (row["status"], row["agent"]) == ("agent_handling", agent_id)

    # 3. The customer writes (the bot publishes from its own process); the agent answers over HTTP.
    run_python(
        "import asyncio\n"
        "from realtime.bus import enqueue_sse_message\n"
        "async def main():\n"
        f"    for channel in ('sse:session:{name}', 'sse:agent:{agent_id}'):\n"
        f"        await enqueue_sse_message(channel, 'new_message', {{'session_name': '{name}', "
        "'data': {'text': 'where is my parcel?', 'sender': 'customer'}}, source='ai_chatbot')\n"
        "asyncio.run(main())\n",
        redis_env,
    )
    [from_customer] = workbench.wait_for(about(name, "new_message"))
    assert from_customer.json["payload"]["data"] == {"text": "where is my parcel?", "sender": "customer"}
    status, body = agent.post(f"{a.url}/api/sessions/{name}/messages", {"text": "It ships today."})
    assert status == 200, body
    messages = session_stream.wait_for(about(name, "new_message"), count=2)
    assert [m.json["payload"]["data"]["sender"] for m in messages] == ["customer", "agent"]
    assert messages[1].json["source"] == "agent_workbench" and messages[1].id == body["event_ids"][0]
    assert_redis_matches_db(redis, db, name)

    # 4. The agent leaves: back to the queue; the bot closes it on B.
    status, body = agent.post(f"{a.url}/api/sessions/{name}/leave")
    assert status == 200, body
    left = workbench.wait_for(
        lambda e: e.json["channel"] == f"sse:agent:{agent_id}" and e.event != "new_message", count=4
    )
    assert [e.event for e in left[2:]] == ["agent_left", "status_change"]
    assert left[-1].json["payload"]["status"] == "waiting_agent"
    row = assert_redis_matches_db(redis, db, name)
    assert (row["status"], row["agent"]) == ("waiting_agent", None)

    status, body = request("POST", f"{b.url}/api/sessions/{name}/close")
    assert status == 200, body
    [closed] = workbench.wait_for(lambda e: about(name, "status_change")(e) and e.json["payload"]["status"] == "closed")
    assert closed.json["channel"] == "sse:broadcast" and closed.json["source"] == "ai_chatbot"
    assert closed.id in body["event_ids"]
    assert assert_redis_matches_db(redis, db, name)["status"] == "closed"
    session_stream.wait_for(about(name, "status_change"), count=4)
    assert [e.event for e in session_stream.payload_events()] == [
        "transfer_request",
        "status_change",
        "agent_joined",
        "status_change",
        "new_message",
        "new_message",
        "agent_left",
        "status_change",
        "status_change",
    ]

    # The agent's snapshot from A agrees with the stream.
    status, snapshot = agent.get(f"{a.url}/api/sessions/{name}")
    assert status == 200
    assert [e["id"] for e in snapshot["events"]] == [e.id for e in session_stream.payload_events()]
    workbench.close()
    session_stream.close()
    redis.close()
