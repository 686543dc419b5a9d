"""Ending every SSE stream properly when daphne shuts down (SIGTERM), within SSE_SHUTDOWN_SECONDS.

All the Twisted/daphne coupling of a clean shutdown lives here. What happens without it
(daphne 4.2.3, Twisted's asyncio reactor):

1. `reactor.run()` installs Twisted's signal handlers: SIGTERM (and SIGINT) call
   `reactor.stop()`, which on the next reactor tick fires the "shutdown" system event.
2. The "before" phase calls every before-trigger in the order they were added and waits for
   every Deferred they return. daphne's `Server.run()` adds one itself,
   `Server.kill_all_applications`, which cancels every ASGI application task at once.
3. The "during" phase then stops the event loop (`crash`) and `disconnectAll()` drops every
   socket, without flushing what Twisted still buffers.

A cancelled stream ends without the HTTP/1.1 chunked terminator (`0\\r\\n\\r\\n`), so a client
cannot tell a server that said goodbye from a connection that broke.

`install()` therefore takes daphne's trigger out of the before phase and adds one of its own
that first closes every stream through the hubs (each consumer then sends its final empty
body, which daphne turns into the terminator), waits until they are gone and their bytes have
left Twisted's buffers (or the deadline), and only then calls daphne's `kill_all_applications`
for whatever is left (other requests, streams past the deadline). Twisted waits for the
Deferred it returns before going on with the shutdown.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings

from realtime.hub import Hub, all_hubs

logger = logging.getLogger(__name__)

# True once `install()` ran in this process (whether it installed anything or not): the
# consumer checks this bool per stream, the work is done once.
installed = False

# How often the shutdown looks again whether the streams have gone: short, as streams end in
# a loop tick or two; each look also closes streams that opened after the first close.
POLL_SECONDS = 0.02


def install() -> bool:
    """Hook the clean stream shutdown into daphne's reactor, once per process; True if hooked.

    Call it from inside a running stream (on the event loop). Outside daphne (pytest with
    Channels communicators, management commands, another ASGI server) it does nothing and never
    imports Twisted's reactor: importing `twisted.internet.reactor` would install one.
    """
    global installed
    if installed:
        return False
    installed = True
    reactor = _running_daphne_reactor()
    if reactor is None:
        logger.debug("not under daphne's reactor: no shutdown hook")
        return False
    event = getattr(reactor, "_eventTriggers", {}).get("shutdown")
    if event is not None and getattr(event, "state", "BASE") != "BASE":
        # The shutdown is already firing (a stream opened after SIGTERM): too late to hook in;
        # daphne cancels what is left.
        return False
    kills = _take_daphne_kill_triggers(reactor, event)
    if not kills:
        logger.warning("daphne's kill_all_applications trigger was not found; streams may be cut on shutdown")
    reactor.addSystemEventTrigger("before", "shutdown", _before_shutdown, reactor, kills)
    logger.debug("clean stream shutdown hooked into daphne (%d daphne trigger(s) deferred)", len(kills))
    return True


def _running_daphne_reactor() -> Any | None:
    """The Twisted reactor if daphne runs it on the current event loop, else None."""
    # `installReactor` puts the reactor object itself in sys.modules; looking there (instead
    # of importing) cannot install a reactor in a process that has none.
    reactor = sys.modules.get("twisted.internet.reactor")
    if reactor is None or "daphne.server" not in sys.modules or not getattr(reactor, "running", False):
        return None
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    # daphne installs Twisted's asyncio reactor on its own loop and runs the app on it.
    if getattr(reactor, "_asyncioEventloop", None) is not loop:
        return None
    return reactor


def _take_daphne_kill_triggers(reactor: Any, event: Any) -> list[Callable[[], Any]]:
    """Remove daphne's `kill_all_applications` before-shutdown triggers; return them, ready to call.

    Left in place, it would cancel every stream in the same before phase as our trigger, before
    any stream had a chance to end. Twisted's public API removes a trigger by the id that
    `addSystemEventTrigger` returned, which daphne did not keep; the id is the tuple
    `(event, (phase, callable, args, kwargs))`, rebuilt here from the trigger list.
    """
    daphne_server = sys.modules.get("daphne.server")
    kill = getattr(getattr(daphne_server, "Server", None), "kill_all_applications", None)
    before = list(getattr(event, "before", None) or [])
    taken: list[Callable[[], Any]] = []
    for callable_, args, kwargs in before:
        if kill is None or getattr(callable_, "__func__", None) is not kill:
            continue
        try:
            reactor.removeSystemEventTrigger(("shutdown", ("before", callable_, args, kwargs)))
        except (ValueError, KeyError):
            logger.warning("could not take daphne's shutdown trigger out of the reactor", exc_info=True)
            continue
        taken.append(functools.partial(callable_, *args, **kwargs))
    return taken


def _before_shutdown(reactor: Any, kills: list[Callable[[], Any]]) -> Any:
    """The before-shutdown trigger: end the streams, then daphne's own kill; a Deferred for Twisted."""
    from twisted.internet import defer  # only ever runs under daphne: Twisted is loaded

    started = time.monotonic()
    budget = float(settings.SSE_SHUTDOWN_SECONDS)
    # Part of the budget stays for daphne's kill of what is left, so the process still exits
    # inside SSE_SHUTDOWN_SECONDS when some stream never goes.
    reserve = min(1.0, budget / 5)
    servers = [getattr(getattr(kill, "func", None), "__self__", None) for kill in kills]
    ending = asyncio.ensure_future(
        end_streams(all_hubs(), started + budget - reserve, [s for s in servers if s is not None])
    )

    def log_result(result: tuple[int, int]) -> None:
        ended, left = result
        took = time.monotonic() - started
        if left:
            logger.warning("shutdown: ended %d SSE stream(s); %d still open after %.3f s, cut", ended, left, took)
        else:
            logger.info("shutdown: ended %d SSE stream(s) cleanly in %.3f s", ended, took)

    def kill_the_rest(_: object) -> Any:
        remaining = max(started + budget - time.monotonic(), 0.1)
        waits = []
        for kill in kills:
            try:
                result = kill()
            except Exception:  # noqa: BLE001 - a failing kill must not stop the shutdown
                logger.exception("daphne's kill_all_applications failed")
                continue
            if isinstance(result, defer.Deferred):
                waits.append(result)
        waiting = defer.DeferredList(waits, consumeErrors=True)
        # A task that ignores its cancellation must not hold the process past the budget.
        waiting.addTimeout(remaining, reactor)
        waiting.addErrback(lambda failure: logger.warning("shutdown: gave up waiting for cancelled tasks: %s", failure))
        return waiting

    done = defer.Deferred.fromFuture(ending)
    done.addCallback(log_result)
    # Whatever went wrong above, the shutdown goes on: log it, then kill as daphne would.
    done.addErrback(lambda failure: logger.error("shutdown: ending streams failed: %s", failure.getTraceback()))
    done.addBoth(kill_the_rest)
    return done


async def end_streams(hubs: list[Hub], deadline: float, servers: list[Any] | None = None) -> tuple[int, int]:
    """Close every stream of `hubs` and wait until they are gone and flushed, or `deadline`.

    `deadline` is on the `time.monotonic()` clock. Returns (streams closed, streams still open).
    A stream that opens meanwhile (its request was already in) is closed on the next look.
    `servers` are daphne Server objects whose connections must have written every byte: the
    shutdown's next phase drops the sockets with whatever Twisted still buffers, terminators
    included.
    """
    ended = 0
    transports: set[Any] = set()
    while True:
        # Before closing: a finished Twisted request forgets its channel, and so its transport.
        for server in servers or ():
            transports |= _transports(server)
        ended += sum(_close_all(hub) for hub in hubs)
        left = sum(_count(hub) for hub in hubs)
        if (left == 0 and not _unflushed(transports)) or time.monotonic() >= deadline:
            return ended, left
        await asyncio.sleep(min(POLL_SECONDS, max(deadline - time.monotonic(), 0)))


def _close_all(hub: Hub) -> int:
    """`hub.close_all()` on the hub's own loop; how many it closed (0 if it ran elsewhere)."""
    try:
        current = asyncio.get_running_loop()
    except RuntimeError:
        current = None
    if hub.loop is current:
        return hub.close_all()
    if not hub.loop.is_closed():
        # A hub of another loop (another thread): its subscribers belong to that loop.
        hub.loop.call_soon_threadsafe(hub.close_all)
    return 0


def _count(hub: Hub) -> int:
    try:
        return hub.connection_count()
    except RuntimeError:  # a hub of another thread changed while counted: look again next time
        return 1


def _transports(server: Any) -> set[Any]:
    """The Twisted transports of a daphne server's HTTP connections."""
    found = set()
    for protocol in list(getattr(server, "connections", {})):
        transport = getattr(getattr(protocol, "channel", None), "transport", None)
        if transport is not None:
            found.add(transport)
    return found


def _unflushed(transports: set[Any]) -> int:
    """How many of `transports` are connected and hold bytes Twisted has not written yet."""
    pending = 0
    for transport in transports:
        if not getattr(transport, "connected", False) or getattr(transport, "_writeDisconnected", False):
            continue
        # The same write-buffer fields `realtime.stream.DirectWriter` relies on (Twisted pinned).
        try:
            queued = len(transport.dataBuffer) - transport.offset + transport._tempDataLen
        except (AttributeError, TypeError):
            continue
        if queued > 0:
            pending += 1
    return pending
