"""A stream belongs to who opened it (docs/bus.md "Limits"). Each process keeps, for its open
streams, who owns them; every half heartbeat interval (so within SSE_HEARTBEAT_SECONDS) it
asks the database, in one round for all of them, whether each owner still may listen:

- the account still exists and is active;
- the session the stream was opened with still exists (signing out deletes it) and still
  carries the account's password hash (a password change ends the other sessions, as in
  Django's own views);
- the account still may listen to every channel of the stream (an agent channel belongs to
  its agent and to supervisors: a supervisor made an agent loses the others').

A stream that fails any of these is closed; the client's reconnect then gets 401 or 403.
Service streams hold a token from the environment, which cannot change while the process
runs. The same round renews the stream slots' leases (realtime.limits).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from importlib import import_module
from typing import Any

from channels.db import database_sync_to_async
from django.conf import settings

from realtime.auth import Principal, may_listen
from realtime.limits import StreamSlots

logger = logging.getLogger(__name__)

DB_SESSIONS = "django.contrib.sessions.backends.db"


@dataclass(slots=True)
class Owner:
    """Who opened one stream, and with what."""

    identity: str  # the slot key: "user:<username>" or "service:<identity>"
    person: bool
    channels: tuple[str, ...]
    user_id: Any = None  # people only: their account's primary key
    session_key: str | None = None  # people only: the session the stream was opened with
    slot: str = ""


def owner_of(principal: Principal, scope: dict[str, Any], channels: tuple[str, ...]) -> Owner:
    """The owner of a stream opened by `principal` (the scope gives a cookie's session)."""
    if principal.is_service:
        return Owner("service:" + principal.name, False, channels)
    user = scope.get("user")
    session = scope.get("session")
    return Owner(
        "user:" + principal.name,
        True,
        channels,
        user_id=getattr(user, "pk", None),
        session_key=getattr(session, "session_key", None),
    )


def check_interval() -> float:
    return max(0.5, float(settings.SSE_HEARTBEAT_SECONDS) / 2)


def _sessions(keys: set[str]) -> dict[str, dict[str, Any]]:
    """The data of the sessions among `keys` that still exist and have not expired."""
    engine = import_module(settings.SESSION_ENGINE)
    if settings.SESSION_ENGINE == DB_SESSIONS:
        from django.contrib.sessions.models import Session
        from django.utils import timezone

        store = engine.SessionStore()
        rows = Session.objects.filter(session_key__in=keys, expire_date__gt=timezone.now())
        return {row.session_key: store.decode(row.session_data) for row in rows}
    found = {}
    for key in keys:
        store = engine.SessionStore(session_key=key)
        if store.exists(key):
            found[key] = store.load()
    return found


def _hash_matches(data: dict[str, Any], user: Any) -> bool:
    from django.contrib.auth import HASH_SESSION_KEY
    from django.utils.crypto import constant_time_compare

    stored = data.get(HASH_SESSION_KEY)
    if not isinstance(stored, str):
        return False
    hashes = [user.get_session_auth_hash()]
    fallbacks = getattr(user, "get_session_auth_fallback_hash", None)
    if fallbacks is not None:  # SECRET_KEY_FALLBACKS, as django.contrib.auth.get_user allows
        hashes.extend(fallbacks())
    return any(constant_time_compare(stored, h) for h in hashes)


def revoked(owners: list[Owner]) -> list[bool]:
    """For each owner, whether their access has ended (sync: database queries)."""
    from django.contrib.auth import SESSION_KEY, get_user_model

    ids = {o.user_id for o in owners if o.user_id is not None}
    users = {user.pk: user for user in get_user_model().objects.filter(pk__in=ids)}
    sessions = _sessions({o.session_key for o in owners if o.session_key})
    verdicts = []
    for owner in owners:
        user = users.get(owner.user_id)
        data = sessions.get(owner.session_key or "")
        if user is None or not user.is_active or data is None:
            verdicts.append(True)
            continue
        if str(data.get(SESSION_KEY)) != str(user.pk) or not _hash_matches(data, user):
            verdicts.append(True)
            continue
        principal = Principal("supervisor" if user.is_staff else "agent", user.get_username())
        verdicts.append(not all(may_listen(principal, channel) for channel in owner.channels))
    return verdicts


class StreamGuard:
    """The owners of this loop's open streams, their slots, and the round that checks them."""

    def __init__(self, slots: StreamSlots | None = None) -> None:
        self.slots = slots or StreamSlots()
        self.owners: dict[Any, Owner] = {}  # stream (an SSEConnection) -> its owner
        self._task: asyncio.Task[None] | None = None

    async def admit(self, stream: Any, owner: Owner) -> None:
        """Take a slot for the stream (TooManyStreams when there is none) and keep its owner."""
        owner.slot = await self.slots.take(owner.identity, person=owner.person)
        self.owners[stream] = owner
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def release(self, stream: Any) -> None:
        owner = self.owners.pop(stream, None)
        if owner is not None:
            await self.slots.give_back(owner.identity, owner.slot)

    async def check_once(self) -> int:
        """One round: renew the slots' leases, close the streams whose access ended; returns
        how many were closed."""
        await self.slots.renew()
        people = [(stream, owner) for stream, owner in self.owners.items() if owner.person]
        if not people:
            return 0
        verdicts = await database_sync_to_async(revoked)([owner for _, owner in people])
        ended = [(stream, owner) for (stream, owner), gone in zip(people, verdicts, strict=True) if gone]
        if ended:
            from realtime.hub import stats  # the hub imports this module

            stats["streams_cut_access"] += len(ended)
        for stream, owner in ended:
            logger.info("ended a stream of %s on %s: their access ended", owner.identity, ",".join(owner.channels))
            stream.close()
        return len(ended)

    async def _loop(self) -> None:
        while self.owners:
            await asyncio.sleep(check_interval())
            try:
                await self.check_once()
            except Exception:  # the next round tries again; streams are never left unchecked for long
                logger.exception("stream access round failed")
