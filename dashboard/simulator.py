"""A stand-in for the ai_chatbot, so the pages have something to show (`manage.py simulate_chatbot`).

It opens customer sessions, plays the bot's and the customer's lines (published with
`enqueue_sse_message`, source `ai_chatbot`, as the real chatbot would), escalates some of
them through `dashboard.services.escalate`, and listens on `sse:broadcast` with
`subscribe_sse_events`: once an agent joins, the bot stops talking, and each agent message
gets an answer "from the customer" a moment later.

The work is a loop of single steps (`ChatbotSimulator.step`, which does the one most
urgent thing and says whether it did anything) and single events (`handle`), so tests drive
it one step at a time with a fake clock and a fake publisher.

With Redis it runs as its own process (the cross-process story). On the in-memory layer
events never leave a process, so `make run` (SIMULATE_CHATBOT=true) runs it inside the
daphne process instead (dashboard/simulator_inprocess.py).

Split by job: the lines it says are in dashboard/simulator_scripts.py, running it inside
the server process in dashboard/simulator_inprocess.py.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async

from dashboard import services
from dashboard.simulator_scripts import ADOPTED, AGENT_LEFT_LINE, CUSTOMERS, ESCALATING, NUDGE_LINE, RESOLVING, Script
from realtime.auth import Principal
from realtime.bus import enqueue_sse_message, get_layer, subscribe_sse_events
from realtime.channels import BROADCAST, agent_channel, session_channel

logger = logging.getLogger(__name__)

SOURCE = "ai_chatbot"

Publish = Callable[[str, str, dict[str, Any]], Awaitable[str | None]]
Escalate = Callable[[str, str, dict[str, Any]], Awaitable[None]]


class Phase(enum.Enum):
    BOT = "bot"  # the bot is talking
    WAITING = "waiting"  # escalated, in the queue
    AGENT = "agent"  # an agent has joined: the bot is silent, the customer answers the agent


@dataclass
class Options:
    """How lively the demo is. Times are seconds; `speed` below 1 makes everything faster."""

    every: float = 5.0  # a new customer about this often
    first_after: float = 0.5  # the first customer arrives this soon after start
    turn: tuple[float, float] = (0.6, 1.5)  # between two lines of the bot's conversation
    reply: tuple[float, float] = (1.5, 3.5)  # a customer takes this long to answer an agent
    max_waiting: int = 6  # no new customers while this many wait: the queue stays workable
    max_sessions: int | None = None  # stop opening sessions after this many (None: never stop)
    escalate_share: float = 0.75  # the share of conversations the bot hands over
    nudge_after: float = 45.0  # a waiting customer asks "is anyone there?" once, after this long
    speed: float = 1.0
    idle: float = 0.1  # how long the loop sleeps when a step had nothing to do


@dataclass
class SimSession:
    name: str
    script: Script
    customer: dict[str, str]  # as sent in the escalation's data.customer
    phase: Phase = Phase.BOT
    turn: int = 0  # the next line of script.lines
    due: float = 0.0  # when the next bot-side line (or the escalation) is due
    agent: str | None = None
    replies_due: list[float] = field(default_factory=list)  # customer answers owed to the agent
    replied: int = 0
    waiting_since: float | None = None
    nudged: bool = False
    pending_notice: str | None = None  # a bot line to say at `due` while waiting


class ChatbotSimulator:
    """The bot's side of many conversations, advanced one step at a time."""

    def __init__(
        self,
        options: Options | None = None,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
        publish: Publish | None = None,
        escalate: Escalate | None = None,
    ) -> None:
        self.options = options or Options()
        self.rng = rng or random.Random()
        self.clock = clock
        self.publish = publish or publish_as_chatbot
        self.escalate = escalate or escalate_with_service
        self.sessions: dict[str, SimSession] = {}
        self.opened = 0
        self.next_open = clock() + self._scaled(self.options.first_after)

    # --- one step ---------------------------------------------------------------------

    async def step(self) -> bool:
        """Do the most urgent due thing (answer an agent, advance a conversation, nudge, open a
        new session); True if something was done."""
        now = self.clock()
        for session in list(self.sessions.values()):
            if session.phase is Phase.AGENT and session.replies_due and session.replies_due[0] <= now:
                session.replies_due.pop(0)
                await self.answer_agent(session)
                return True
        for session in list(self.sessions.values()):
            if session.phase is Phase.BOT and session.due <= now:
                await self.advance(session)
                return True
            if session.phase is Phase.WAITING and session.pending_notice and session.due <= now:
                text, session.pending_notice = session.pending_notice, None
                await self.say(session, "bot", text)
                return True
        for session in list(self.sessions.values()):
            if (
                session.phase is Phase.WAITING
                and not session.nudged
                and session.waiting_since is not None
                and now - session.waiting_since >= self._scaled(self.options.nudge_after)
            ):
                session.nudged = True
                await self.say(session, "customer", NUDGE_LINE)
                return True
        if now >= self.next_open and self._may_open():
            await self.open_session()
            return True
        return False

    def _may_open(self) -> bool:
        limit = self.options.max_sessions
        if limit is not None and self.opened >= limit:
            return False
        # Customers still talking to the bot count too: most of them are about to wait.
        waiting = sum(1 for s in self.sessions.values() if s.phase is not Phase.AGENT)
        return waiting < self.options.max_waiting

    async def open_session(self) -> SimSession:
        escalates = self.rng.random() < self.options.escalate_share
        script = self.rng.choice(ESCALATING if escalates else RESOLVING)
        name = f"cust_{self.rng.getrandbits(40):010x}"
        session = SimSession(name, script, self.rng.choice(CUSTOMERS), due=self.clock())
        self.sessions[name] = session
        self.opened += 1
        self.next_open = self.clock() + self._scaled(self.options.every * self.rng.uniform(0.5, 1.5))
        logger.info("customer %s opened session %s (%s)", session.customer["id"], name, script.topic)
        await self.advance(session)
        return session

    async def advance(self, session: SimSession) -> None:
        """Say the next line of the script; after the last one, escalate or end the chat."""
        script = session.script
        if session.turn < len(script.lines):
            sender, text = script.lines[session.turn]
            session.turn += 1
            session.due = self.clock() + self._delay(self.options.turn)
            await self.say(session, sender, text)
            return
        if script.reason is None:
            logger.info("the bot resolved %s (%s)", session.name, script.topic)
            del self.sessions[session.name]
            return
        session.phase = Phase.WAITING
        session.waiting_since = self.clock()
        data = {"customer": session.customer, "topic": script.topic}
        try:
            await self.escalate(session.name, script.reason, data)
        except Exception as exc:  # noqa: BLE001 - one refused escalation must not stop the demo
            logger.warning("could not escalate %s: %s", session.name, exc)
            del self.sessions[session.name]
            return
        logger.info("escalated %s: %s", session.name, script.reason)

    async def answer_agent(self, session: SimSession) -> None:
        replies = session.script.replies
        text = replies[min(session.replied, len(replies) - 1)]
        session.replied += 1
        await self.say(session, "customer", text)
        logger.info("customer answered in %s (%d characters)", session.name, len(text))

    async def say(self, session: SimSession, sender: str, text: str) -> None:
        """One bot-side message on the session's channel (its history is what an agent reads
        on opening it). Once the session is handed over it also goes where the dashboard's own
        events go: sse:broadcast, and the channel of the agent who has it. Before that the chat
        is the bot's business, and the session does not exist for the pages yet."""
        # One message_id for every copy: pages and the record recognise it as one message.
        payload = {
            "session_name": session.name,
            "message_id": uuid.uuid4().hex,
            "data": {"text": text, "sender": sender},
        }
        channels = [session_channel(session.name)]
        if session.phase is not Phase.BOT:
            channels.append(BROADCAST)
        if session.agent is not None:
            channels.append(agent_channel(session.agent))
        for channel in channels:
            await self.publish(channel, "new_message", payload)

    # --- one event --------------------------------------------------------------------

    def handle(self, event: dict[str, Any]) -> None:
        """Follow the sessions as agents work on them (events from sse:broadcast)."""
        payload = event.get("payload") or {}
        data = payload.get("data") or {}
        name = payload.get("session_name")
        kind = event.get("type")
        if not isinstance(name, str) or not isinstance(data, dict):
            return
        session = self.sessions.get(name)
        now = self.clock()
        if kind == "transfer_request" and session is None:
            self._adopt(name, Phase.WAITING)
        elif kind == "agent_joined" or (kind == "status_change" and payload.get("status") == "agent_handling"):
            session = session or self._adopt(name, Phase.AGENT)
            if session.phase is not Phase.AGENT:
                logger.info("agent %s joined %s; the bot stops talking", data.get("agent"), name)
            session.phase = Phase.AGENT
            session.agent = data.get("agent") or session.agent
            session.pending_notice = None
        elif kind == "new_message" and data.get("sender") == "agent":
            session = session or self._adopt(name, Phase.AGENT)
            session.phase = Phase.AGENT
            session.agent = data.get("agent") or session.agent
            session.replies_due.append(now + self._delay(self.options.reply))
            # Never the text itself: logs hold no message texts (docs/operations.md).
            logger.info("agent %s wrote in %s (message %s)", data.get("agent"), name, payload.get("message_id"))
        elif kind == "agent_left" and session is not None and session.phase is Phase.AGENT:
            session.phase = Phase.WAITING
            session.agent = None
            session.replies_due.clear()
            session.waiting_since = now
            session.nudged = False
            session.pending_notice = AGENT_LEFT_LINE
            session.due = now + self._delay(self.options.turn)
        elif kind == "status_change" and payload.get("status") == "closed" and session is not None:
            logger.info("session %s closed", name)
            del self.sessions[name]

    def _adopt(self, name: str, phase: Phase) -> SimSession:
        """A session someone else opened: the simulator plays its customer from now on."""
        session = SimSession(name, ADOPTED, self.rng.choice(CUSTOMERS), phase=phase, turn=0)
        session.waiting_since = self.clock() if phase is Phase.WAITING else None
        self.sessions[name] = session
        return session

    # --- running ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Listen and step until `stop` is set (or forever)."""
        stop = stop or asyncio.Event()
        # The cursor is taken first, so events published while the subscription is being set
        # up are replayed to us rather than missed.
        cursor = await get_layer().cursor()
        listener = asyncio.ensure_future(self.listen(cursor))
        logger.info("the chatbot simulator is running (listening on %s)", BROADCAST)
        try:
            while not stop.is_set():
                try:
                    did = await self.step()
                except Exception:
                    logger.exception("a simulator step failed")
                    did = False
                    await asyncio.sleep(1)
                if not did:
                    try:
                        await asyncio.wait_for(stop.wait(), self.options.idle)
                    except TimeoutError:
                        pass
        finally:
            listener.cancel()

    async def listen(self, last_id: str | None) -> None:
        """Feed `handle` from sse:broadcast; on a failure, subscribe again from the last id."""
        while True:
            try:
                async for event in subscribe_sse_events([BROADCAST], last_event_id=last_id):
                    if event.get("id"):
                        last_id = event["id"]
                    self.handle(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - keep listening: Redis comes back
                logger.warning("the simulator lost sse:broadcast (%s); subscribing again", exc)
                await asyncio.sleep(1)

    # --- helpers --------------------------------------------------------------------------

    def _scaled(self, seconds: float) -> float:
        return seconds * self.options.speed

    def _delay(self, bounds: tuple[float, float]) -> float:
        return self._scaled(self.rng.uniform(*bounds))


async def publish_as_chatbot(channel: str, event_type: str, payload: dict[str, Any]) -> str | None:
    return await enqueue_sse_message(channel, event_type, payload, source=SOURCE)


async def escalate_with_service(name: str, reason: str, data: dict[str, Any]) -> None:
    """The escalation goes through the same service as POST /api/manual/escalate."""
    chatbot = Principal("service", SOURCE)
    await sync_to_async(services.escalate)(name, by=chatbot, reason=reason, data=data)
