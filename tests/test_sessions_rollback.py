"""An event never announces a change that was rolled back (real Redis: no key, no event)."""

import pytest

from dashboard import services
from dashboard.models import ChatSession, Status
from realtime.auth import Principal
from realtime.channels import BROADCAST
from tests.support.sessions import history, make_user, unique

pytestmark = pytest.mark.django_db(transaction=True)

BOT = Principal("service", "ai_chatbot")
ALICE = Principal("agent", "alice")


class Boom(Exception):
    pass


@pytest.fixture
def redis(redis_bus):
    make_user("alice")
    return redis_bus


def fail_after_the_change(monkeypatch):
    """From now on the service raises inside its transaction, after its UPDATE and after its
    events were queued with publish_on_commit."""
    real = services._announce

    def announce_then_fail(*args, **kwargs):
        real(*args, **kwargs)
        raise Boom("the database said no at the last moment")

    monkeypatch.setattr(services, "_announce", announce_then_fail)


def events_about(client, channel, name):
    return [e["type"] for e in history(client, channel) if e["payload"].get("session_name") == name]


def test_an_accept_that_rolls_back_publishes_nothing_and_changes_nothing(redis, monkeypatch):
    name = unique("rollback")
    services.escalate(name, by=BOT)
    before = ChatSession.objects.get(name=name)
    key_before = redis.get(f"session:{name}")
    fail_after_the_change(monkeypatch)

    with pytest.raises(Boom):
        services.accept(name, by=ALICE)

    after = ChatSession.objects.get(name=name)
    assert (after.status, after.agent_id, after.version) == (Status.WAITING_AGENT, None, before.version)
    assert redis.get(f"session:{name}") == key_before
    assert events_about(redis, f"sse:session:{name}", name) == ["transfer_request", "status_change"]
    assert events_about(redis, BROADCAST, name) == ["transfer_request", "status_change"]
    assert events_about(redis, "sse:agent:alice", name) == []


def test_an_escalation_that_rolls_back_leaves_no_session_key_or_event(redis, monkeypatch):
    name = unique("rollback")
    fail_after_the_change(monkeypatch)

    with pytest.raises(Boom):
        services.escalate(name, by=BOT)

    assert not ChatSession.objects.filter(name=name).exists()
    assert redis.get(f"session:{name}") is None
    assert history(redis, f"sse:session:{name}") == []
    assert events_about(redis, BROADCAST, name) == []
