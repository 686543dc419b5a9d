"""Every JSON body the API reads is bounded: too deep, not UTF-8 or holding a lone surrogate is a
400 `invalid_json` that changes nothing, never a 500 (realtime.envelope.load_json)."""

from __future__ import annotations

import json

import pytest

from dashboard.models import ChatSession
from realtime.envelope import MAX_DEPTH, InvalidJSON, load_json
from tests.support.sessions import browser, make_user, post_as, post_service

pytestmark = pytest.mark.django_db

DEEP = "[" * 2000 + "]" * 2000
HOSTILE = [
    DEEP,
    '{"a":' * 5000 + "1" + "}" * 5000,
    '{"channel": "sse:broadcast", "type": "status_change", "payload": {"x": "\\ud800"}}',
    b'{"session_name": "\xff\xfe"}',
]


def nested(depth: int) -> str:
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


def test_load_json_takes_32_levels_and_refuses_33() -> None:
    assert load_json(nested(MAX_DEPTH)) is not None
    with pytest.raises(InvalidJSON, match="deeper than 32"):
        load_json(nested(MAX_DEPTH + 1))


@pytest.mark.parametrize("raw", HOSTILE)
def test_load_json_refuses_what_it_cannot_handle_with_its_own_error(raw: str | bytes) -> None:
    with pytest.raises(InvalidJSON):
        load_json(raw)


@pytest.mark.parametrize("raw", HOSTILE)
def test_a_service_gets_400_for_a_hostile_body_on_every_endpoint(bus, client, raw: str | bytes) -> None:
    for url in ["/api/publish", "/api/manual/escalate", "/api/sessions/cust_1/close"]:
        response = post_service(client, url, raw)
        assert response.status_code == 400, (url, response.content[:200])
        assert response.json()["error"] == "invalid_json"
    assert not ChatSession.objects.exists()


@pytest.mark.parametrize("raw", HOSTILE)
def test_an_agent_gets_400_for_a_hostile_body(bus, raw: str | bytes) -> None:
    agent = browser(make_user("alice"))
    response = post_as(agent, "/api/sessions/cust_1/messages", raw)
    assert response.status_code == 400 and response.json()["error"] == "invalid_json"


def test_a_deep_payload_that_is_valid_json_is_a_400_from_the_publish_api(bus, client) -> None:
    body = json.dumps({"channel": "sse:broadcast", "type": "status_change", "payload": json.loads(nested(40))})
    response = post_service(client, "/api/publish", body)
    assert response.status_code == 400
