"""Shared fixtures: real redis-server and daphne processes, test users, event capture."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.support.databases import scratch_database_url
from tests.support.procs import Daphne, RedisServer, base_env, migrate

# The outbox relay and the recorder are background threads of server processes; in this
# process the tests drive their single steps themselves (daphne processes run them).
settings.SSE_BACKGROUND = False


@pytest.fixture(autouse=True)
def empty_recorder_queue() -> Iterator[None]:
    """The in-memory recorder's queue is per process: what one test published is not another's."""
    from realtime.recorder import memory_recorder

    yield
    memory_recorder().clear()


@pytest.fixture(autouse=True)
def fresh_publish_rate() -> Iterator[None]:
    """The publish-rate buckets are per process: one test's publishing is not the next one's."""
    from realtime.limits import publish_rate

    publish_rate.reset()
    yield


@pytest.fixture(autouse=True)
def healthy_bus() -> Iterator[None]:
    """Whether this process reaches Redis is process-wide: a test that stopped Redis must not
    leave the next one degraded."""
    from realtime.health import health

    yield
    health.__init__()  # type: ignore[misc]


@pytest.fixture
def stoppable_redis(settings: Any) -> Iterator[RedisServer]:
    """A redis-server of this test's own (it may stop and restart it) as the bus's Redis."""
    from tests.support.sessions import fresh_bus

    server = RedisServer().start()
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "realtime.layers.RedisSSEChannelLayer", "CONFIG": {"hosts": [server.url]}}
    }
    fresh_bus()
    try:
        yield server
    finally:
        fresh_bus()
        server.stop()


@pytest.fixture
def fresh_layer() -> Iterator[Any]:
    """A new channel layer from the current settings (empty history, no hubs), dropped after the test.

    `channel_layers` caches one layer per process; without this, events and ids leak between tests.
    """
    from channels.layers import channel_layers

    from realtime.bus import get_layer

    channel_layers.backends.clear()
    yield get_layer()
    channel_layers.backends.clear()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_env(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for product processes on the private Redis, with a migrated SQLite database."""
    database = scratch_database_url(tmp_path_factory.mktemp("db"), "cross")
    env = base_env(REDIS_URL=redis_server.url, DATABASE_URL=database, SSE_HEARTBEAT_SECONDS="2")
    migrate(env)
    return env


@pytest.fixture(scope="session")
def daphne_pair(redis_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daphne, Daphne]]:
    """Two daphne processes of the product sharing one Redis and one database."""
    logs: Path = tmp_path_factory.mktemp("logs")
    a = Daphne(redis_env, log_path=logs / "a.log").start()
    b = Daphne(redis_env, log_path=logs / "b.log").start()
    yield a, b
    a.stop()
    b.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last.

    Playwright's sync API keeps its event loop marked as running in the main thread for as
    long as the session-scoped browser lives; after that, `asyncio.run` and `async_to_sync`
    (the consumer tests) refuse to start. Their relative order is kept.
    """
    browser_dir = Path(__file__).parent / "browser"
    items.sort(key=lambda item: browser_dir in Path(str(item.path)).parents)


@pytest.fixture
def bus(settings: Any) -> Iterator[Any]:
    """A fresh in-memory bus with the test service tokens, for the session tests."""
    from tests.support.sessions import TEST_TOKENS, fresh_bus

    settings.SERVICE_TOKENS = TEST_TOKENS
    yield fresh_bus()
    fresh_bus()


@pytest.fixture
def alice(bus: Any) -> Any:
    """An agent with a logged-in Django test client."""
    from tests.support.sessions import browser, make_user

    return browser(make_user("alice"))


@pytest.fixture
def keep_the_test_database_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    # database_sync_to_async closes "old" connections around each call; in a test that would
    # close the connection holding the test transaction (Channels' own communicators patch
    # this too, but only while they wait).
    monkeypatch.setattr("channels.db.close_old_connections", lambda: None)


@pytest.fixture
def private_pair(redis_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[RedisServer, Daphne, Daphne]]:
    """A Redis of this test's own, with two daphne processes on it: it can be restarted."""
    redis = RedisServer().start()
    env = {**redis_env, "REDIS_URL": redis.url}
    a = b = None
    try:
        a = Daphne(env, log_path=tmp_path / "a.log").start()
        b = Daphne(env, log_path=tmp_path / "b.log").start()
        yield redis, a, b
    finally:
        for daphne in (a, b):
            if daphne is not None:
                daphne.stop()
        redis.stop()


@pytest.fixture
def redis_bus(settings: Any, redis_server: RedisServer) -> Iterator[Any]:
    """The Redis layer on the suite's private redis-server, fresh for this test; a sync client to it."""
    from tests.support.sessions import fresh_bus

    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "realtime.layers.RedisSSEChannelLayer", "CONFIG": {"hosts": [redis_server.url]}}
    }
    fresh_bus()
    client = redis_server.client()
    yield client
    client.close()
    fresh_bus()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The logs of the whole run hold no token, password or cookie: every daphne log file the
    suite wrote is read for every secret it handed a process (tests/support/procs.SECRETS).
    A leak fails the run, naming the file and what it holds (never the secret itself)."""
    from tests.support.procs import leaked_secrets

    leaks = leaked_secrets()
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line("")
        reporter.write_sep("=", "secrets in daphne logs: the run fails", red=True)
    for path, what in leaks:
        message = f"a daphne log holds {what}: {path}"
        if reporter is not None:
            reporter.write_line(message, red=True)
        else:
            print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
