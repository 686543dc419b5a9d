"""The hot path's shortcuts keep the wire and the lifecycle exactly as before.

Under daphne, live frames go straight to the socket (realtime.stream.DirectWriter) with the
chunk framing daphne's `send` would give them; a stream the hub closes ends its response
without a second task per connection; a request with an Authorization header skips the
cookie stack.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

import pytest
from twisted.web.http import toChunk

from realtime import bus, limits
from realtime.under_daphne.writes import DirectWriter, _chunk, _daphne_request
from tests.support.procs import SERVICE_TOKEN, Daphne, SSEClient, request, wait_until
from tests.support.streams import Stream, in_loop, login_cookie

TOKEN = "direct-write-test-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}


def test_a_chunk_is_framed_byte_for_byte_as_twisted_frames_it() -> None:
    for data in (b"x", b"id: 1-0\nevent: new_message\ndata: {}\n\n", "é€".encode() * 1000):
        assert _chunk(data) == b"".join(toChunk(data))


def test_the_chunk_of_the_previous_frame_is_not_reused_for_another_frame() -> None:
    first, second = b"data: 1\n\n", b"data: 22\n\n"
    assert _chunk(first) == b"".join(toChunk(first))
    assert _chunk(second) == b"".join(toChunk(second))


def test_a_send_behind_an_unknown_wrapper_keeps_the_asgi_path() -> None:
    async def compressing_send(message: dict[str, Any]) -> None:
        """Any wrapper this module does not know might change body messages."""

    def handle_reply(protocol: Any, message: dict[str, Any]) -> None:
        """Named like daphne's, but not daphne's server."""

    assert _daphne_request(compressing_send) is None
    assert _daphne_request(functools.partial(handle_reply, object())) is None
    assert DirectWriter.for_send(compressing_send) is None


def test_streams_on_daphne_write_directly_and_arrive_as_whole_frames(daphne_pair: tuple[Daphne, Daphne]) -> None:
    a, b = daphne_pair
    channel = f"sse:session:direct_{uuid.uuid4().hex[:10]}"
    client = SSEClient(a.url, f"/api/events?channel={channel}").wait_open()
    try:
        sent = []
        for n in range(5):
            status, body = request(
                "POST", b.url + "/api/publish", {"channel": channel, "type": "new_message", "payload": {"n": n}}
            )
            assert status == 202, body
            sent.append(body["id"])
        wait_until(lambda: len([e for e in client.events if e.event == "new_message"]) == 5, what="five events")
        received = [e for e in client.events if e.event == "new_message"]
        assert [e.id for e in received] == sent
        assert [e.json["payload"]["n"] for e in received] == list(range(5))
        status, health = request("GET", a.url + "/healthz", token=None)
        assert health["counters"]["direct_streams"] >= 1
    finally:
        client.close()


@pytest.mark.django_db
@in_loop
async def test_a_stream_the_hub_closes_ends_its_response_and_leaves_the_hub(settings: Any, fresh_layer: Any) -> None:
    settings.SERVICE_TOKENS = {TOKEN: "ai_chatbot"}
    before = limits.open_streams()
    stream = Stream("/api/broadcast/events", headers=BEARER)
    assert await stream.open() == 200
    (connection,) = bus.get_layer().hub.subscribers["sse:broadcast"]
    connection.close()  # what a client too far behind gets
    while not stream.finished:
        await stream._body(2)
    await stream.communicator.wait(2)
    assert stream.communicator.future.exception() is None
    assert bus.get_layer().hub.subscribers == {}
    assert limits.open_streams() == before


@pytest.mark.django_db
@in_loop
async def test_a_cookie_stream_still_goes_through_the_auth_stack(settings: Any, fresh_layer: Any) -> None:
    cookie = await _login("agent_direct")
    stream = Stream("/api/agents/agent_direct/events", headers={"Cookie": cookie})
    assert await stream.open() == 200
    await stream.disconnect()


async def _login(username: str) -> str:
    from asgiref.sync import sync_to_async

    return str(await sync_to_async(login_cookie)(username))


def test_only_a_bodiless_http1_get_or_head_skips_the_body_limit() -> None:
    from realtime.middleware import _may_have_body

    def scope(method: str, version: str = "1.1", headers: list[tuple[bytes, bytes]] | None = None) -> dict[str, Any]:
        return {"type": "http", "method": method, "http_version": version, "headers": headers or []}

    assert not _may_have_body(scope("GET"))
    assert not _may_have_body(scope("HEAD", "1.0"))
    assert _may_have_body(scope("GET", headers=[(b"content-length", b"10")]))
    assert _may_have_body(scope("GET", headers=[(b"transfer-encoding", b"chunked")]))
    assert _may_have_body(scope("GET", "2"))
    assert _may_have_body(scope("POST"))


@pytest.mark.parametrize("kind", ["token", "cookie", "through the body limit"])
def test_every_recognised_wrapper_keeps_the_direct_path_on_daphne(
    daphne_pair: tuple[Daphne, Daphne], redis_env: dict[str, str], kind: str
) -> None:
    """One test per wrapper the fast path looks through: daphne's own send, channels' session
    middleware (cookie streams) and the body-limit middleware (a GET that declares a body,
    even an empty one, goes through it). Each must still count as a direct stream."""
    from tests.support.sessions import create_agents, login

    a, _ = daphne_pair
    headers: dict[str, str] = {}
    token: str | None = SERVICE_TOKEN
    if kind == "cookie":
        create_agents(redis_env, "direct_ana")
        token, headers = None, {"Cookie": login(a.url, "direct_ana").cookie}
    elif kind == "through the body limit":
        headers = {"Content-Length": "0"}

    def direct_streams() -> int:
        _, health = request("GET", a.url + "/healthz", token=None)
        return int(health["counters"].get("direct_streams", 0))

    before = direct_streams()
    client = SSEClient(a.url, "/api/broadcast/events", token=token, headers=headers).wait_open()
    try:
        status, body = request(
            "POST", a.url + "/api/publish", {"channel": "sse:broadcast", "type": "new_message", "payload": {}}
        )
        assert status == 202, body
        client.wait_for(lambda e: e.id == body["id"])
        assert direct_streams() == before + 1, f"a {kind} stream took the ASGI path"
    finally:
        client.close()
