"""The session keys in Redis `session:{name}` and `status:{status}` follow the database (real Redis)."""

import json

import pytest
from django.core.management import call_command

from dashboard import services
from dashboard.models import ChatSession
from realtime.auth import Principal
from tests.support.sessions import make_user, status_sets, unique

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")
ALICE = Principal("agent", "alice")


@pytest.fixture
def redis(redis_bus):
    make_user("alice")
    make_user("bob")
    return redis_bus


def assert_in_sync(client, name):
    session = ChatSession.objects.select_related("agent").get(name=name)
    stored = json.loads(client.get(f"session:{name}"))
    assert stored == {**session.state_json(), "version": session.version}
    assert status_sets(client, name) == {session.status}
    return stored


def test_the_keys_follow_every_step_of_a_handoff(redis):
    name = unique("keys")

    services.escalate(name, by=BOT, reason="help")
    assert assert_in_sync(redis, name)["status"] == "waiting_agent"
    services.accept(name, by=ALICE)
    assert assert_in_sync(redis, name)["agent"] == "alice"
    services.send_message(name, "hello", by=ALICE)
    stored = assert_in_sync(redis, name)
    assert stored["last_event_id"] == ChatSession.objects.get(name=name).last_event_id is not None
    services.leave(name, by=ALICE)
    assert assert_in_sync(redis, name)["agent"] is None
    services.close(name, by=BOT)
    assert assert_in_sync(redis, name)["status"] == "closed"


def test_a_refused_command_changes_no_key(redis):
    name = unique("refused")
    services.escalate(name, by=BOT)
    services.accept(name, by=ALICE)
    before = redis.get(f"session:{name}")

    with pytest.raises(services.Conflict):
        services.accept(name, by=Principal("agent", "bob"))
    with pytest.raises(services.Forbidden):
        services.leave(name, by=Principal("agent", "bob"))

    assert redis.get(f"session:{name}") == before
    assert status_sets(redis, name) == {"agent_handling"}


def test_an_older_copy_never_replaces_a_newer_one(redis):
    name = unique("stale")
    services.escalate(name, by=BOT)
    stale = ChatSession.objects.get(name=name)
    services.accept(name, by=ALICE)
    newer = redis.get(f"session:{name}")

    assert not services.sync_to_redis(stale)  # a slow process writing what it saw earlier

    assert redis.get(f"session:{name}") == newer
    assert status_sets(redis, name) == {"agent_handling"}


def test_sync_session_keys_rebuilds_keys_that_redis_lost(redis, capsys):
    name = unique("lost")
    services.escalate(name, by=BOT)
    redis.delete(f"session:{name}")
    redis.srem("status:waiting_agent", name)

    call_command("sync_session_keys")

    assert_in_sync(redis, name)
    assert "wrote the Redis keys of" in capsys.readouterr().out
