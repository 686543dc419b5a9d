"""The chatbot simulator one step and one event at a time: a fake clock, captured publishes."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from dashboard.simulator import ChatbotSimulator, Options, Phase
from dashboard.simulator_scripts import ADOPTED, AGENT_LEFT_LINE, NUDGE_LINE, RESOLVING


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Captured:
    published: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    escalations: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    async def publish(self, channel: str, event_type: str, payload: dict[str, Any]) -> str:
        self.published.append((channel, event_type, payload))
        return f"1-{len(self.published)}"

    async def escalate(self, name: str, reason: str, data: dict[str, Any]) -> None:
        self.escalations.append((name, reason, data))

    def lines(self, channel: str) -> list[tuple[str, str]]:
        return [(p["data"]["sender"], p["data"]["text"]) for c, _, p in self.published if c == channel]


def make(**options: Any) -> tuple[ChatbotSimulator, Clock, Captured]:
    clock, captured = Clock(), Captured()
    defaults: dict[str, Any] = {"escalate_share": 1.0, "first_after": 0.5}
    sim = ChatbotSimulator(
        Options(**{**defaults, **options}),
        rng=random.Random(7),
        clock=clock,
        publish=captured.publish,
        escalate=captured.escalate,
    )
    return sim, clock, captured


def step(sim: ChatbotSimulator) -> bool:
    return asyncio.run(sim.step())


def run_until_escalated(sim: ChatbotSimulator, clock: Clock, captured: Captured, limit: int = 50) -> str:
    for _ in range(limit):
        if captured.escalations:
            return captured.escalations[-1][0]
        step(sim)
        clock.now += 2.0
    raise AssertionError("no escalation")


def event(kind: str, name: str, **data: Any) -> dict[str, Any]:
    payload: dict[str, Any] = {"session_name": name, "data": data}
    if "status" in data:
        payload["status"] = data.pop("status")
    return {"id": "5-0", "channel": "sse:broadcast", "type": kind, "payload": payload, "source": "agent_workbench"}


def test_a_step_with_nothing_due_does_nothing() -> None:
    sim, clock, captured = make()
    assert step(sim) is False
    assert captured.published == []


def test_the_first_customer_arrives_soon_after_start_and_the_bot_speaks_first() -> None:
    sim, clock, captured = make()
    clock.now += 0.5
    assert step(sim) is True
    [name] = sim.sessions
    channel = f"sse:session:{name}"
    assert captured.lines(channel)[0][0] == "bot"
    # Before the hand-over, the bot's chat goes to the session's channel only.
    assert [c for c, _, _ in captured.published] == [channel]
    assert {t for _, t, _ in captured.published} == {"new_message"}


def test_an_escalating_conversation_plays_its_lines_then_escalates_once() -> None:
    sim, clock, captured = make()
    name = run_until_escalated(sim, clock, captured)
    session = sim.sessions[name]
    assert session.phase is Phase.WAITING
    assert len(captured.lines(f"sse:session:{name}")) == len(session.script.lines)
    [(escalated, reason, data)] = captured.escalations
    assert (escalated, reason) == (name, session.script.reason)
    assert data == {"customer": session.customer, "topic": session.script.topic}


def test_a_conversation_the_bot_resolves_ends_without_an_escalation() -> None:
    sim, clock, captured = make(escalate_share=0.0, max_sessions=1)
    for _ in range(20):
        step(sim)
        clock.now += 2.0
    assert captured.escalations == []
    assert sim.sessions == {}
    texts = [text for _, _, p in captured.published if (text := p["data"]["text"])]
    assert any(texts[-1] == script.lines[-1][1] for script in RESOLVING)


def test_no_new_customer_arrives_while_the_queue_is_full() -> None:
    sim, clock, captured = make(max_waiting=2, every=1.0)
    for _ in range(200):
        step(sim)
        clock.now += 1.0
    waiting = [s for s in sim.sessions.values() if s.phase is Phase.WAITING]
    assert len(waiting) == 2
    assert len(captured.escalations) == 2
    assert sim.opened == 2


def test_it_opens_no_more_than_max_sessions() -> None:
    sim, clock, captured = make(max_sessions=1, every=0.5)
    for _ in range(100):
        step(sim)
        clock.now += 1.0
    assert sim.opened == 1


def test_once_an_agent_joins_the_bot_says_nothing_more() -> None:
    sim, clock, captured = make(max_sessions=1)
    clock.now += 0.5
    step(sim)  # the first bot line
    [name] = sim.sessions
    sim.handle(event("agent_joined", name, agent="ana", status="agent_handling"))
    before = len(captured.published)
    for _ in range(30):
        step(sim)
        clock.now += 2.0
    assert len(captured.published) == before
    assert captured.escalations == []


def test_each_agent_message_gets_one_customer_answer_after_a_moment_on_the_agents_channel_too() -> None:
    sim, clock, captured = make(max_sessions=1)
    name = run_until_escalated(sim, clock, captured)
    sim.handle(event("agent_joined", name, agent="ana", status="agent_handling"))
    sim.handle(event("new_message", name, text="How can I help?", sender="agent", agent="ana"))
    before = len(captured.published)
    assert step(sim) is False  # the customer is still typing
    clock.now += 5.0
    assert step(sim) is True
    assert step(sim) is False  # one answer per agent message
    answer = captured.published[before:]
    script = sim.sessions[name].script
    assert [(c, p["data"]) for c, _, p in answer] == [
        (c, {"text": script.replies[0], "sender": "customer"})
        for c in (f"sse:session:{name}", "sse:broadcast", "sse:agent:ana")
    ]


def test_the_bots_own_messages_on_broadcast_get_no_answer() -> None:
    sim, clock, captured = make(max_sessions=1)
    name = run_until_escalated(sim, clock, captured)
    sim.handle(event("agent_joined", name, agent="ana", status="agent_handling"))
    before = len(captured.published)
    sim.handle(event("new_message", name, text="Hello?", sender="customer"))
    sim.handle(event("new_message", name, text="I'm the bot", sender="bot"))
    clock.now += 10.0
    assert step(sim) is False
    assert len(captured.published) == before


def test_when_the_agent_leaves_the_customer_waits_again_and_the_bot_says_so_once() -> None:
    sim, clock, captured = make(max_sessions=1)
    name = run_until_escalated(sim, clock, captured)
    sim.handle(event("agent_joined", name, agent="ana", status="agent_handling"))
    sim.handle(event("agent_left", name, agent="ana", status="waiting_agent"))
    assert sim.sessions[name].phase is Phase.WAITING
    clock.now += 3.0
    before = len(captured.published)
    assert step(sim) is True
    assert step(sim) is False
    assert [p["data"] for _, _, p in captured.published[before:]] == [{"text": AGENT_LEFT_LINE, "sender": "bot"}] * 2


def test_a_customer_waiting_long_asks_once_whether_anyone_is_there() -> None:
    sim, clock, captured = make(max_sessions=1, nudge_after=30.0)
    name = run_until_escalated(sim, clock, captured)
    before = len(captured.published)
    clock.now += 31.0
    assert step(sim) is True
    clock.now += 60.0
    assert step(sim) is False
    assert captured.lines(f"sse:session:{name}")[-1] == ("customer", NUDGE_LINE)
    assert len(captured.published) == before + 2


def test_a_closed_session_is_forgotten() -> None:
    sim, clock, captured = make(max_sessions=1)
    name = run_until_escalated(sim, clock, captured)
    sim.handle(event("status_change", name, status="closed", previous="waiting_agent", agent=None))
    assert name not in sim.sessions


def test_it_plays_the_customer_of_a_session_someone_else_escalated() -> None:
    sim, clock, captured = make(max_sessions=0)
    sim.handle(event("transfer_request", "cust_other", status="waiting_agent", reason="asked for a human"))
    assert sim.sessions["cust_other"].script is ADOPTED
    sim.handle(event("agent_joined", "cust_other", agent="ben", status="agent_handling"))
    sim.handle(event("new_message", "cust_other", text="Hi!", sender="agent", agent="ben"))
    clock.now += 10.0
    assert step(sim) is True
    assert captured.lines("sse:session:cust_other") == [("customer", ADOPTED.replies[0])]


def test_an_agent_message_in_an_unknown_session_is_answered_too() -> None:
    sim, clock, captured = make(max_sessions=0)
    sim.handle(event("new_message", "cust_before_restart", text="Still there?", sender="agent", agent="ben"))
    clock.now += 10.0
    assert step(sim) is True
    assert captured.lines("sse:agent:ben") == [("customer", ADOPTED.replies[0])]


def test_a_refused_escalation_drops_the_session_and_the_demo_goes_on() -> None:
    sim, clock, captured = make(max_sessions=2, every=1.0)

    async def refuse(name: str, reason: str, data: dict[str, Any]) -> None:
        raise RuntimeError("409: it already has a human")

    sim.escalate = refuse
    for _ in range(60):
        step(sim)
        clock.now += 1.0
    assert sim.opened == 2
    assert sim.sessions == {}
