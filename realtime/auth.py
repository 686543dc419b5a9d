"""Who is asking, and which channels they may listen to or publish on.

Agents and supervisors are Django users (session cookie); other services present
`Authorization: Bearer <token>` with a token from SERVICE_TOKENS. The event `source` is
derived from this, never from a request body (the defence against forged messages).
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

from realtime.channels import channel_kind

AGENT_SOURCE = "agent_workbench"


class NotAuthenticated(Exception):
    """No credentials, or credentials that are wrong (401)."""


@dataclass(frozen=True)
class Principal:
    kind: str  # "agent", "supervisor" or "service"
    name: str  # username, or the service identity
    # The account's primary key when it came from a signed-in user (already read for the
    # request): the commands need not look it up again. Not part of who the principal is.
    user_id: int | None = field(default=None, compare=False)

    @property
    def is_service(self) -> bool:
        return self.kind == "service"

    @property
    def is_supervisor(self) -> bool:
        return self.kind == "supervisor"

    @property
    def source(self) -> str:
        """The `source` this principal's events carry."""
        return self.name if self.is_service else AGENT_SOURCE


def service_for_token(token: str) -> str | None:
    # Compare against every token in constant time, so timing does not leak a prefix.
    found = None
    for known, identity in settings.SERVICE_TOKENS.items():
        if hmac.compare_digest(known.encode(), token.encode()):
            found = identity
    return found


def principal_from(authorization: str | None, user: Any) -> Principal | None:
    """The principal for an Authorization header value and a Django user; None if anonymous.

    A Bearer header that does not match a token raises NotAuthenticated: a service with a
    wrong token should hear about it, not silently fall back to the cookie.
    """
    if authorization:
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthenticated("the Authorization header must be 'Bearer <token>'")
        identity = service_for_token(token.strip())
        if identity is None:
            raise NotAuthenticated("unknown service token")
        return Principal("service", identity)
    if user is not None and getattr(user, "is_authenticated", False) and getattr(user, "is_active", False):
        return Principal("supervisor" if user.is_staff else "agent", user.get_username(), user.pk)
    return None


def may_listen(principal: Principal, channel: str) -> bool:
    """docs/bus.md section 4: sessions and broadcast for everyone signed in; an agent channel for its agent."""
    kind, name = channel_kind(channel)
    if kind == "agent":
        return principal.is_service or principal.is_supervisor or principal.name == name
    return True
