"""Who may be given sessions: each agent's Available / Away, and round-robin assignment.

- **Availability** is the agent's own choice, remembered (`AgentState`): agents start
  available, supervisors away (a supervisor takes sessions only after choosing to). Presence
  (`realtime.presence`) says separately whether a workbench of theirs is open right now.
- **Assignment** (`ASSIGNMENT`, docs/sessions.md): `manual` (the default) leaves the queue to
  the agents. `round_robin` gives each waiting session, oldest first, to an agent who is
  available, online and below `ASSIGNMENT_MAX_PER_AGENT` open sessions, the one who waited
  longest for a session first. Assigning is an accept on the agent's behalf: the same one
  conditional UPDATE, so it races safely with manual accepts and with the other processes
  doing the same (exactly one owner, always; a refused one is simply the next candidate's).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import close_old_connections
from django.db.models import Count, Q
from django.utils import timezone

from dashboard import services
from dashboard.models import AgentState, Availability, ChatSession, Status
from realtime.auth import Principal
from realtime.bus import get_layer
from realtime.channels import InvalidChannel, validate_name

logger = logging.getLogger(__name__)


def default_state(user: Any) -> str:
    return Availability.AWAY if user.is_staff else Availability.AVAILABLE


def state_of(user: Any) -> str:
    row = AgentState.objects.filter(user=user).values_list("state", flat=True).first()
    return row or default_state(user)


def is_available(user: Any) -> bool:
    return state_of(user) == Availability.AVAILABLE


def states(usernames: list[str]) -> dict[str, str]:
    """{username: state} for the given accounts (unknown names left out), in two queries."""
    users = list(get_user_model().objects.filter(username__in=usernames, is_active=True))
    saved = dict(AgentState.objects.filter(user__in=users).values_list("user_id", "state"))
    return {user.get_username(): saved.get(user.pk) or default_state(user) for user in users}


def available_agents() -> list[str]:
    """Usernames of the active accounts that are available (by choice or by default)."""
    users = get_user_model().objects.filter(is_active=True)
    saved = dict(AgentState.objects.values_list("user_id", "state"))
    return sorted(
        user.get_username() for user in users if (saved.get(user.pk) or default_state(user)) == Availability.AVAILABLE
    )


def set_availability(agent_id: object, state: object, *, by: Principal) -> dict[str, str]:
    """`agent_id` sets their own state; a supervisor may set anyone's. Answers the new state."""
    if not isinstance(agent_id, str):
        raise services.InvalidInput("agent_id must be a string")
    try:
        validate_name(agent_id, "agent_id")
    except InvalidChannel as exc:
        raise services.InvalidInput(str(exc)) from None
    if state not in Availability.values:
        raise services.InvalidInput(f"state must be one of {', '.join(Availability.values)}")
    if by.is_service or (by.name != agent_id and not by.is_supervisor):
        raise services.Forbidden("an agent sets their own availability; a supervisor anyone's")
    user = get_user_model().objects.filter(username=agent_id, is_active=True).first()
    if user is None:
        raise services.NotFound(f"no active agent {agent_id}")
    AgentState.objects.update_or_create(user=user, defaults={"state": state, "changed_at": timezone.now()})
    logger.info("%s is now %s (set by %s)", agent_id, state, by.name)
    return {"agent": agent_id, "state": str(state)}


# --- round robin -------------------------------------------------------------------------


def round_robin() -> bool:
    return bool(settings.ASSIGNMENT == "round_robin")


def candidates(online: set[str]) -> list[Any]:
    """Available, online agents below the cap, least loaded and longest without a session first."""
    users = (
        get_user_model()
        .objects.filter(is_active=True, username__in=online)
        .annotate(load=Count("chat_sessions", filter=Q(chat_sessions__status=Status.AGENT_HANDLING)))
        .filter(load__lt=settings.ASSIGNMENT_MAX_PER_AGENT)
    )
    saved = {row.user_id: row for row in AgentState.objects.filter(user__in=users)}
    ready = [
        user for user in users if (saved[user.pk].state if user.pk in saved else default_state(user)) == "available"
    ]
    never = timezone.now().replace(year=1970)

    def order(user: Any) -> tuple[int, Any, str]:
        state = saved.get(user.pk)
        return (user.load, (state.last_assigned_at if state and state.last_assigned_at else never), user.username)

    return sorted(ready, key=order)


def assign_waiting(limit: int = 50) -> int:
    """One step: give waiting sessions (oldest first) to available agents; returns how many."""
    if not round_robin():
        return 0
    try:
        online = {row["agent"] for row in get_layer().online_agents()}
    except Exception as exc:  # noqa: BLE001 - no presence, no assignment this round
        logger.warning("round robin skipped a round: presence unavailable: %s", exc)
        return 0
    assigned = 0
    for name in ChatSession.objects.queue().values_list("name", flat=True)[:limit]:
        for agent in candidates(online):
            try:
                services.accept(name, by=Principal("agent", agent.get_username()))
            except services.Conflict:
                break  # taken meanwhile (a manual accept, another process): the next session
            except services.SessionError as exc:
                logger.info("round robin could not give %s to %s: %s", name, agent.get_username(), exc)
                continue
            # Only candidates are available, so a row made here says what was already true.
            AgentState.objects.update_or_create(user=agent, defaults={"last_assigned_at": timezone.now()})
            logger.info("round robin gave %s to %s", name, agent.get_username())
            assigned += 1
            break
        else:
            break  # nobody can take more: the rest of the queue waits too
    return assigned


class Assigner:
    """The round-robin loop of one server process: a step every ASSIGNMENT_INTERVAL_SECONDS."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="round-robin", daemon=True)

    def start(self) -> Assigner:
        self.thread.start()
        return self

    def run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                assign_waiting()
            except Exception:  # a bad round is logged; the next one tries again
                logger.exception("round robin step failed")
            finally:
                close_old_connections()


def start_assigner() -> Assigner | None:
    """Every server process runs the loop when ASSIGNMENT=round_robin (they race safely)."""
    if not round_robin():
        return None
    logger.info("round-robin assignment on: at most %d session(s) per agent", settings.ASSIGNMENT_MAX_PER_AGENT)
    return Assigner(settings.ASSIGNMENT_INTERVAL_SECONDS).start()
