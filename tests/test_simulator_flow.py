"""The simulator against the real services and the in-memory bus, in one process: it escalates
through dashboard.services, and answers an agent who accepted and wrote, as the customer."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from dashboard import services
from dashboard.models import ChatSession, Status
from dashboard.simulator import ChatbotSimulator, Options
from realtime.auth import Principal
from realtime.bus import subscribe_sse_events

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_layer")]


def test_the_simulator_escalates_through_the_services_and_answers_the_agent(django_user_model: Any) -> None:
    django_user_model.objects.create_user("ana")
    ana = Principal("agent", "ana")
    options = Options(first_after=0.0, turn=(0.01, 0.02), reply=(0.05, 0.1), max_sessions=1, escalate_share=1.0)
    simulator = ChatbotSimulator(options, rng=random.Random(1))

    async def scenario() -> tuple[ChatSession, list[dict[str, Any]]]:
        stop = asyncio.Event()
        running = asyncio.ensure_future(simulator.run(stop))
        try:
            session = await wait_for_waiting_session()
            events = subscribe_sse_events([f"sse:session:{session.name}"])
            first = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0.05)  # the subscription is in place
            await sync_to_async(services.accept)(session.name, by=ana)
            await sync_to_async(services.send_message)(session.name, "How can I help?", by=ana)
            seen = [await first]
            while not any(e["payload"]["data"].get("sender") == "customer" for e in seen if e["type"] == "new_message"):
                seen.append(await asyncio.wait_for(anext(events), 5))
            await events.aclose()
            return session, seen
        finally:
            stop.set()
            await running

    session, seen = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert session.reason == simulator_script(simulator, session.name).reason
    messages = [e for e in seen if e["type"] == "new_message"]
    assert [m["payload"]["data"]["sender"] for m in messages] == ["agent", "customer"]
    assert messages[1]["source"] == "ai_chatbot"
    assert messages[1]["payload"]["data"]["text"] == simulator_script(simulator, session.name).replies[0]


def simulator_script(simulator: ChatbotSimulator, name: str) -> Any:
    return simulator.sessions[name].script


async def wait_for_waiting_session() -> ChatSession:
    for _ in range(200):
        session = await sync_to_async(ChatSession.objects.filter(status=Status.WAITING_AGENT).first)()
        if session is not None:
            return session
        await asyncio.sleep(0.02)
    raise AssertionError("the simulator escalated nothing")
