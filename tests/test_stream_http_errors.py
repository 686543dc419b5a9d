"""A stream that cannot be served gets the contract's status and JSON error, and leaves nothing behind."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from realtime import bus, limits
from tests.support.streams import Stream, in_loop, login_cookie

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_layer", "keep_the_test_database_connection")]

TOKEN = "stream-errors-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(autouse=True)
def service_tokens(settings: Any) -> None:
    settings.SERVICE_TOKENS = {TOKEN: "ai_chatbot"}


async def refused(stream: Stream, status: int, error: str, detail: str = "") -> dict[str, Any]:
    """Open `stream`, expect a complete JSON error response, and no trace in the hub."""
    hub = bus.get_layer().hub
    before = limits.open_streams()
    subscribers = {channel: set(members) for channel, members in hub.subscribers.items()}
    assert await stream.open() == status, stream.raw
    assert stream.finished
    body = stream.error()
    assert set(body) == {"error", "detail"} and body["error"] == error, body
    assert detail in body["detail"]
    await stream.communicator.wait()
    assert hub.subscribers == subscribers
    assert limits.open_streams() == before
    return body


def channels_query(count: int) -> str:
    return "&".join(f"channel=sse:session:s{n}" for n in range(count))


# --- 429 -------------------------------------------------------------------------------------


@in_loop
async def test_twenty_one_channels_on_one_connection_are_too_many() -> None:
    await refused(Stream("/api/events", query=channels_query(21), headers=BEARER), 429, "too_many", "limit is 20")


@in_loop
async def test_twenty_channels_are_allowed_and_a_repeated_channel_counts_once() -> None:
    stream = Stream("/api/events", query=channels_query(20) + "&channel=sse:session:s0", headers=BEARER)
    assert await stream.open() == 200
    assert len(bus.get_layer().hub.subscribers) == 20
    await stream.disconnect()


@in_loop
async def test_the_channel_limit_follows_its_setting(settings: Any) -> None:
    settings.SSE_MAX_CHANNELS_PER_CONNECTION = 2
    await refused(Stream("/api/events", query=channels_query(3), headers=BEARER), 429, "too_many", "limit is 2")


@in_loop
async def test_a_stream_past_the_connection_limit_is_refused(settings: Any) -> None:
    settings.SSE_MAX_CONNECTIONS = limits.open_streams() + 1
    first = Stream("/api/broadcast/events", headers=BEARER)
    assert await first.open() == 200
    await refused(Stream("/api/broadcast/events", headers=BEARER), 429, "too_many", "streams")
    await first.disconnect()
    again = Stream("/api/broadcast/events", headers=BEARER)
    assert await again.open() == 200
    await again.disconnect()


# --- 401 / 403 -------------------------------------------------------------------------------


@in_loop
async def test_an_anonymous_client_is_not_authenticated() -> None:
    await refused(Stream("/api/broadcast/events"), 401, "not_authenticated", "/accounts/login/")


@in_loop
async def test_a_session_cookie_that_matches_no_session_is_anonymous() -> None:
    await refused(Stream("/api/broadcast/events", headers={"Cookie": "sessionid=nonsense"}), 401, "not_authenticated")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer wrong-token-0123456789", "Bearer ", "Basic " + TOKEN, TOKEN, "Bearer " + TOKEN[:-1]],
    ids=["unknown token", "empty token", "basic scheme", "no scheme", "token prefix"],
)
@in_loop
async def test_a_bad_token_is_not_authenticated(authorization: str) -> None:
    await refused(Stream("/api/broadcast/events", headers={"Authorization": authorization}), 401, "not_authenticated")


@in_loop
async def test_a_bad_token_is_refused_even_next_to_a_good_session_cookie() -> None:
    cookie = await sync_to_async(login_cookie)("agent_001")
    headers = {"Cookie": cookie, "Authorization": "Bearer wrong-token-0123456789"}
    await refused(Stream("/api/broadcast/events", headers=headers), 401, "not_authenticated", "unknown service token")


@in_loop
async def test_an_inactive_agent_is_not_authenticated() -> None:
    cookie = await sync_to_async(login_cookie)("gone")
    await sync_to_async(get_user_model().objects.filter(username="gone").update)(is_active=False)
    await refused(Stream("/api/broadcast/events", headers={"Cookie": cookie}), 401, "not_authenticated")


@in_loop
async def test_an_agent_may_not_listen_to_another_agents_channel() -> None:
    cookie = await sync_to_async(login_cookie)("agent_001")
    headers = {"Cookie": cookie}
    await refused(Stream("/api/agents/agent_002/events", headers=headers), 403, "forbidden", "sse:agent:agent_002")
    query = "channel=sse:agent:agent_001&channel=sse:agent:agent_002"
    await refused(Stream("/api/events", query=query, headers=headers), 403, "forbidden", "agent_001 may not listen")


# --- 400 -------------------------------------------------------------------------------------

BAD_PATH_NAMES = {
    "star": "a*",
    "question mark": "a%3F",
    "bracket": "a[1]",
    "colon": "a:1",
    "dot": "a.1",
    "space": "a%201",
    "newline": "a%0A",
    "NUL": "a%00",
    "non-ASCII": "caf%C3%A9",
    "empty": "",
    "65 characters": "a" * 65,
}


@pytest.mark.parametrize("name", list(BAD_PATH_NAMES.values()), ids=list(BAD_PATH_NAMES))
@in_loop
async def test_a_bad_session_name_or_agent_id_in_the_path_is_a_bad_request(name: str) -> None:
    for path in (f"/api/sessions/{unquote(name)}/events", f"/api/agents/{unquote(name)}/events"):
        await refused(Stream(path, headers=BEARER), 400, "invalid_channel", "1 to 64 characters")


@pytest.mark.parametrize(
    "channel",
    ["sse:session:a*", "sse:session:a/b", "sse:agent:a b", "sse:*", "sse:session:", "sse:broadcast:x", "other", ""],
)
@in_loop
async def test_a_bad_channel_in_the_query_is_a_bad_request(channel: str) -> None:
    query = f"channel=sse:broadcast&channel={quote(channel)}"
    await refused(Stream("/api/events", query=query, headers=BEARER), 400, "invalid_channel")


@in_loop
async def test_a_stream_without_any_channel_is_a_bad_request() -> None:
    await refused(Stream("/api/events", headers=BEARER), 400, "invalid_channel", "at least one channel")


@pytest.mark.parametrize("last_id", ["yesterday", "1-2-3", "-1", "1732410000123", "1-0\r\nX: y", "1_0"])
@in_loop
async def test_a_bad_last_event_id_header_is_a_bad_request(last_id: str) -> None:
    headers = {**BEARER, "Last-Event-ID": last_id}
    await refused(Stream("/api/broadcast/events", headers=headers), 400, "invalid_last_event_id", "Last-Event-ID")


@in_loop
async def test_a_bad_last_event_id_query_parameter_is_a_bad_request() -> None:
    stream = Stream("/api/broadcast/events", query="last_event_id=yesterday", headers=BEARER)
    await refused(stream, 400, "invalid_last_event_id")


@in_loop
async def test_a_bad_query_parameter_is_never_read_when_the_header_wins() -> None:
    headers = {**BEARER, "Last-Event-ID": bus.get_layer().cursor_sync()}
    stream = Stream("/api/broadcast/events", query="last_event_id=yesterday", headers=headers)
    assert await stream.open() == 200
    await stream.disconnect()


# --- 405 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "HEAD"])
@in_loop
async def test_a_stream_is_read_with_get_only(method: str) -> None:
    stream = Stream("/api/broadcast/events", headers=BEARER, method=method, body=b"{}")
    await refused(stream, 405, "method_not_allowed", "GET")


@in_loop
async def test_the_method_is_checked_before_authentication() -> None:
    await refused(Stream("/api/broadcast/events", method="POST"), 405, "method_not_allowed")


@pytest.mark.parametrize("path", ["/api/sessions/a/b/events", "/api/nothing-here", "/api/agents/"])
def test_an_unknown_api_path_gets_the_contracts_json_404(client, path):
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


# --- the Host header -------------------------------------------------------------------------


@in_loop
async def test_a_host_that_is_not_allowed_gets_400_before_anything_else() -> None:
    stream = Stream("/api/broadcast/events", headers={**BEARER, "Host": "evil.example"})
    await refused(stream, 400, "invalid_host", "evil.example")


@in_loop
async def test_a_stream_without_a_host_header_gets_400() -> None:
    stream = Stream("/api/broadcast/events", headers={**BEARER, "Host": ""})
    await refused(stream, 400, "invalid_host")


@in_loop
async def test_an_allowed_host_with_a_port_opens(settings: Any) -> None:
    settings.ALLOWED_HOSTS = ["helpdesk.example.com"]
    stream = Stream("/api/broadcast/events", headers={**BEARER, "Host": "helpdesk.example.com:8443"})
    assert await stream.open() == 200
    await stream.disconnect()


@in_loop
async def test_a_last_event_id_in_other_scripts_digits_is_refused() -> None:
    # Percent-encoded UTF-8 in the query decodes to Arabic-Indic digits, which `\d` would take.
    stream = Stream("/api/broadcast/events", query="last_event_id=" + quote("١٧٣٢٤١٠٠٠٠١٢٣-٠"), headers=BEARER)
    await refused(stream, 400, "invalid_last_event_id")
