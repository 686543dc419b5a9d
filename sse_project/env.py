"""Typed readers for environment variables.

Every setting that comes from the environment goes through one of these, so a bad
value stops start-up with a message that names the variable, instead of surfacing
later as a confusing error deep inside the product.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from django.core.exceptions import ImproperlyConfigured

from realtime.channels import NAME_RULE, InvalidChannel, validate_name

RESERVED_IDENTITIES = frozenset({"system", "agent_workbench"})
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def envstr(name: str, default: str | None = None, env: Mapping[str, str] | None = None) -> str | None:
    """The variable as a string, or `default` when it is unset or empty."""
    value = (os.environ if env is None else env).get(name, "")
    return value.strip() if value.strip() else default


def envbool(name: str, default: bool, env: Mapping[str, str] | None = None) -> bool:
    value = envstr(name, env=env)
    if value is None:
        return default
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {value!r}")


def envint(
    name: str,
    default: int,
    *,
    minimum: int | None = None,
    maximum: int | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    value = envstr(name, env=env)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {value!r}") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {number}")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name} must be at most {maximum}, not {number}")
    return number


def envlist(name: str, default: list[str], env: Mapping[str, str] | None = None) -> list[str]:
    value = envstr(name, env=env)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def envhostports(name: str, env: Mapping[str, str] | None = None) -> list[tuple[str, int]]:
    """Parse `host:port,host:port` (e.g. REDIS_SENTINELS) into [(host, port)]."""
    value = envstr(name, env=env)
    if value is None:
        return []
    pairs: list[tuple[str, int]] = []
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        host = host.strip().removeprefix("[").removesuffix("]")
        if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
            raise ImproperlyConfigured(f"{name}: expected host:port, got {item[:80]!r}")
        pairs.append((host, int(port)))
    return pairs


def envtokens(name: str, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """Parse `identity=token,other=token` into {token: identity}.

    Identities follow the agent-id rule (they become event sources); tokens must be
    long enough not to be guessed and must not repeat.
    """
    value = envstr(name, env=env)
    if value is None:
        return {}
    tokens: dict[str, str] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        identity, sep, token = item.partition("=")
        identity, token = identity.strip(), token.strip()
        if not sep or not identity or not token:
            # Without '=' the item may be the token itself: never echo it into a log.
            got = f"{identity!r}=..." if sep else "an item without '='"
            raise ImproperlyConfigured(f"{name}: expected identity=token, got {got}")
        try:
            validate_name(identity, "identity")  # the name rule: identities become event sources
        except InvalidChannel:
            raise ImproperlyConfigured(f"{name}: identity {identity[:80]!r} may hold only {NAME_RULE}") from None
        if identity in RESERVED_IDENTITIES:
            # These name the server and the workbench: a token holding one could forge them.
            raise ImproperlyConfigured(f"{name}: {identity!r} is reserved and cannot be a service identity")
        if len(token) < 16:
            raise ImproperlyConfigured(f"{name}: the token for {identity!r} is shorter than 16 characters")
        if token in tokens:
            raise ImproperlyConfigured(f"{name}: two identities share one token")
        tokens[token] = identity
    return tokens
