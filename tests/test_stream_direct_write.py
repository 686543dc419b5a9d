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

from realtime import bus, consumers
from realtime.stream import DirectWriter, _chunk, _daphne_request
from tests.support.procs import Daphne, SSEClient, request, wait_until
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
    before = consumers.open_streams
    stream = Stream("/api/broadcast/events", headers=BEARER)
    assert await stream.open() == 200
    (connection,) = bus.get_layer().hub.subscribers["sse:broadcast"]
    connection.close()  # what a client too far behind gets
    while not stream.finished:
        await stream._body(2)
    await stream.communicator.wait(2)
    assert stream.communicator.future.exception() is None
    assert bus.get_layer().hub.subscribers == {}
    assert consumers.open_streams == before


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
