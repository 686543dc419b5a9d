"""POST /api/publish: services publish one event; bad input gets the contract's status and publishes nothing."""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from django.test import Client

from realtime import bus
from realtime.middleware import MAX_BODY_BYTES
from tests.support.procs import SERVICE_TOKEN, Daphne, RedisServer, request
from tests.support.streams import Stream, in_loop, login_cookie

TOKEN = "publish-api-token-ai-chatbot-0123"
CRM_TOKEN = "publish-api-token-crm-0123456789"
CHANNEL = "sse:session:user_123_abc"
GOOD = {"channel": CHANNEL, "type": "new_message", "payload": {"session_name": "user_123_abc", "data": {"text": "hi"}}}


@pytest.fixture(autouse=True)
def service_tokens(settings: Any) -> None:
    settings.SERVICE_TOKENS = {TOKEN: "ai_chatbot", CRM_TOKEN: "crm"}


@pytest.fixture
def layer(fresh_layer: Any) -> Any:
    return fresh_layer


def post(body: Any, token: str | None = TOKEN, client: Client | None = None, method: str = "post") -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return (client or Client()).generic(method.upper(), "/api/publish", raw, "application/json", **headers)


class Nothing:
    """Asserts that nothing was published between enter and exit."""

    def __init__(self, layer: Any) -> None:
        self.layer = layer

    def __enter__(self) -> None:
        self.cursor = self.layer.cursor_sync()

    def __exit__(self, *exc: object) -> None:
        assert self.layer.cursor_sync() == self.cursor
        for channel in (CHANNEL, "sse:broadcast"):
            assert self.layer.history_sync(channel) == []


def refused(response: Any, status: int, error: str, detail: str = "") -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert body["error"] == error, body
    assert detail in body["detail"], body


# --- success ---------------------------------------------------------------------------------


def test_a_service_publishes_an_event_stamped_with_its_own_identity(layer: Any) -> None:
    response = post(GOOD)
    assert response.status_code == 202
    body = response.json()
    assert body["channel"] == CHANNEL and body["event_ids"] == [body["id"]]
    [stored] = layer.history_sync(CHANNEL)
    envelope = json.loads(stored.envelope)
    assert stored.id == body["id"] == envelope["id"]
    assert (envelope["type"], envelope["source"]) == ("new_message", "ai_chatbot")
    assert envelope["payload"] == {**GOOD["payload"], "message_id": envelope["payload"]["message_id"]}


# --- 400 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "channel",
    ["sse:session:a*", "sse:session:a?", "sse:session:a[1]", "sse:session:a:b", "sse:session:a/b", "sse:session:a.b",
     "sse:session:a b", "sse:session:a\n", "sse:session:a\x00", "sse:session:caf\u00e9", "sse:session:",
     "sse:session:" + "a" * 65, "sse:agent:*", "sse:*", "*", "sse:broadcast:x", ""],
)  # fmt: skip
def test_a_bad_channel_is_a_bad_request(layer: Any, channel: str) -> None:
    with Nothing(layer):
        refused(post({**GOOD, "channel": channel}), 400, "invalid_channel")


def test_a_bad_session_name_in_the_payload_is_a_bad_request(layer: Any) -> None:
    with Nothing(layer):
        refused(post({**GOOD, "payload": {"session_name": "a*"}}), 400, "invalid_channel", "payload.session_name")


@pytest.mark.parametrize(
    "raw",
    [b"{", b"not json", b"{'channel': 1}", b"\xff\xfe", b'{"a": NaN'],
    ids=["open", "text", "quotes", "utf", "nan"],
)
def test_a_body_that_is_not_json_is_a_bad_request(layer: Any, raw: bytes) -> None:
    with Nothing(layer):
        refused(post(raw), 400, "invalid_json")


@pytest.mark.parametrize("body", [[GOOD], "text", 5, None, True], ids=["list", "string", "number", "null", "bool"])
def test_json_that_is_not_an_object_is_a_bad_request(layer: Any, body: Any) -> None:
    with Nothing(layer):
        refused(post(body), 400, "invalid_json", "JSON object")


@pytest.mark.parametrize("payload", [None, [], "hi", 5], ids=["null", "list", "string", "number"])
def test_a_payload_that_is_not_an_object_is_a_bad_request(layer: Any, payload: Any) -> None:
    with Nothing(layer):
        refused(post({**GOOD, "payload": payload}), 400, "invalid_event", "payload")


@pytest.mark.parametrize("event_type", [None, 5, ["new_message"], {"new_message": 1}, True])
def test_a_type_that_is_not_a_string_is_a_bad_request(layer: Any, event_type: Any) -> None:
    with Nothing(layer):
        refused(post({**GOOD, "type": event_type}), 400, "invalid_event", "unknown event type")


@pytest.mark.parametrize("channel", [None, 5, [CHANNEL], {"channel": CHANNEL}])
def test_a_channel_that_is_not_a_string_is_a_bad_request(layer: Any, channel: Any) -> None:
    with Nothing(layer):
        refused(post({**GOOD, "channel": channel}), 400, "invalid_channel")


@pytest.mark.parametrize("event_type", ["unknown", "", "NEW_MESSAGE", "new_message "])
def test_an_unknown_type_is_a_bad_request(layer: Any, event_type: str) -> None:
    with Nothing(layer):
        refused(post({**GOOD, "type": event_type}), 400, "invalid_event", "unknown event type")


@pytest.mark.parametrize("event_type", ["heartbeat", "reset"])
def test_heartbeat_and_reset_cannot_be_published(layer: Any, event_type: str) -> None:
    with Nothing(layer):
        refused(post({**GOOD, "type": event_type}), 400, "invalid_event", "cannot be published")


@pytest.mark.parametrize("missing", ["channel", "type", "payload"])
def test_a_missing_field_is_a_bad_request(layer: Any, missing: str) -> None:
    with Nothing(layer):
        refused(post({k: v for k, v in GOOD.items() if k != missing}), 400, "invalid_event", repr(missing))


def test_an_empty_body_is_a_bad_request(layer: Any) -> None:
    with Nothing(layer):
        refused(post(b""), 400, "invalid_event", "missing field")


@pytest.mark.parametrize("extra", ["source", "id", "timestamp", "channels", "Type"])
def test_an_unknown_field_is_a_bad_request_so_source_can_never_be_forged(layer: Any, extra: str) -> None:
    with Nothing(layer):
        refused(post({**GOOD, extra: "system"}), 400, "bad_request", extra)


# --- 403 -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "event_type"),
    [(TOKEN, "agent_joined"), (TOKEN, "agent_left"), (CRM_TOKEN, "status_change"), (CRM_TOKEN, "new_message"),
     (CRM_TOKEN, "transfer_request")],
)  # fmt: skip
def test_a_type_the_tokens_identity_may_not_publish_is_forbidden(layer: Any, token: str, event_type: str) -> None:
    with Nothing(layer):
        refused(post({**GOOD, "type": event_type}, token=token), 403, "source_not_allowed", "may not publish")


@pytest.mark.django_db
@pytest.mark.parametrize("csrf_checks", [False, True], ids=["csrf passed", "csrf enforced"])
def test_an_agent_with_a_session_cookie_may_not_publish(layer: Any, csrf_checks: bool) -> None:
    cookie = login_cookie("agent_001")
    client = Client(enforce_csrf_checks=csrf_checks)
    client.cookies.load(cookie)
    with Nothing(layer):
        refused(post(GOOD, token=None, client=client), 403, "csrf_failed" if csrf_checks else "forbidden")


# --- 401 / 405 -------------------------------------------------------------------------------


def test_a_request_without_a_token_is_not_authenticated(layer: Any) -> None:
    with Nothing(layer):
        refused(post(GOOD, token=None), 401, "not_authenticated")


@pytest.mark.parametrize("token", ["wrong-token-0123456789", TOKEN[:-1], TOKEN + "x", f"{TOKEN} {TOKEN}"])
def test_a_bad_token_is_not_authenticated(layer: Any, token: str) -> None:
    with Nothing(layer):
        refused(post(GOOD, token=token), 401, "not_authenticated", "unknown service token")


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_publish_takes_post_only(layer: Any, method: str) -> None:
    with Nothing(layer):
        refused(post(GOOD, method=method), 405, "method_not_allowed", "POST")


# --- 413 -------------------------------------------------------------------------------------


def test_an_event_over_64_kib_is_too_large_even_when_its_body_is_not(layer: Any) -> None:
    # The body fits exactly; the envelope adds timestamp, source and id, and does not.
    empty = len(json.dumps({**GOOD, "payload": {"pad": ""}}, separators=(",", ":")))
    body = json.dumps({**GOOD, "payload": {"pad": "x" * (MAX_BODY_BYTES - empty)}}, separators=(",", ":")).encode()
    assert len(body) == MAX_BODY_BYTES
    with Nothing(layer):
        refused(post(body), 413, "too_large")


@pytest.mark.usefixtures("fresh_layer")
@in_loop
async def test_a_body_over_64_kib_with_content_length_is_refused_before_it_is_read() -> None:
    layer = bus.get_layer()
    body = json.dumps({**GOOD, "payload": {"pad": "x" * MAX_BODY_BYTES}}).encode()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", "Content-Length": str(len(body))}
    stream = Stream("/api/publish", headers=headers, method="POST")
    cursor = layer.cursor_sync()
    # Only the headers: the application must answer without waiting for the body.
    start = await stream.communicator.receive_output(1)
    assert start["status"] == 413
    response = await stream.communicator.receive_output(1)
    assert json.loads(response["body"])["error"] == "too_large"
    assert layer.cursor_sync() == cursor


@pytest.mark.usefixtures("fresh_layer")
@in_loop
async def test_a_streamed_body_over_64_kib_without_content_length_is_refused() -> None:
    layer = bus.get_layer()
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    stream = Stream("/api/publish", headers=headers, method="POST")
    cursor = layer.cursor_sync()
    chunk = b" " * 16384
    for _ in range(5):
        await stream.communicator.send_input({"type": "http.request", "body": chunk, "more_body": True})
    start = await stream.communicator.receive_output(1)
    assert start["status"] == 413
    response = await stream.communicator.receive_output(1)
    assert json.loads(response["body"]) == {
        "error": "too_large",
        "detail": f"the request body is over {MAX_BODY_BYTES} bytes",
    }
    assert layer.cursor_sync() == cursor


# --- over real daphne ------------------------------------------------------------------------


def raw_http(daphne: Daphne, head: list[str], body_parts: list[bytes]) -> tuple[int, dict[str, Any]]:
    """Send a request over a plain socket; return the status and the JSON body."""
    with socket.create_connection(("127.0.0.1", daphne.port), timeout=10) as sock:
        sock.sendall(("\r\n".join([*head, f"Host: 127.0.0.1:{daphne.port}", "", ""])).encode())
        try:
            for part in body_parts:
                sock.sendall(part)
        except OSError:
            pass  # the server may answer and close before it has read everything
        data = b""
        while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head_bytes, _, body = data.partition(b"\r\n\r\n")
    return int(head_bytes.split()[1]), json.loads(body[: _length(data)])


def _length(data: bytes) -> int:
    for line in data.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def chunked(data: bytes, size: int = 8192) -> list[bytes]:
    parts = [b"%x\r\n%s\r\n" % (len(data[i : i + size]), data[i : i + size]) for i in range(0, len(data), size)]
    return [*parts, b"0\r\n\r\n"]


POST_HEAD = ["POST /api/publish HTTP/1.1", f"Authorization: Bearer {SERVICE_TOKEN}", "Content-Type: application/json"]


def test_over_daphne_a_chunked_body_over_64_kib_is_refused_and_publishes_nothing(
    daphne_pair: tuple[Daphne, Daphne], redis_server: RedisServer
) -> None:
    a, _ = daphne_pair
    redis = redis_server.client()
    channel = "sse:session:chunked_413"
    body = json.dumps({"channel": channel, "type": "new_message", "payload": {"pad": "x" * 100_000}}).encode()
    seq = redis.get("sse:seq")
    status, error = raw_http(a, [*POST_HEAD, "Transfer-Encoding: chunked"], chunked(body))
    assert status == 413 and error["error"] == "too_large"
    assert redis.get("sse:seq") == seq and redis.exists("sse:history:" + channel) == 0


def test_over_daphne_a_small_chunked_body_is_published(daphne_pair: tuple[Daphne, Daphne]) -> None:
    a, _ = daphne_pair
    body = json.dumps({"channel": "sse:session:chunked_ok", "type": "new_message", "payload": {"n": 1}}).encode()
    status, answer = raw_http(a, [*POST_HEAD, "Transfer-Encoding: chunked"], chunked(body, 16))
    assert status == 202 and answer["channel"] == "sse:session:chunked_ok"


def test_over_daphne_a_content_length_over_64_kib_is_refused_and_publishes_nothing(
    daphne_pair: tuple[Daphne, Daphne], redis_server: RedisServer
) -> None:
    a, _ = daphne_pair
    redis = redis_server.client()
    body = json.dumps({"channel": CHANNEL, "type": "new_message", "payload": {"pad": "x" * 100_000}}).encode()
    seq = redis.get("sse:seq")
    status, error = raw_http(a, [*POST_HEAD, f"Content-Length: {len(body)}"], [body])
    assert status == 413 and error["error"] == "too_large"
    assert redis.get("sse:seq") == seq


def test_over_daphne_bad_input_gets_json_errors(daphne_pair: tuple[Daphne, Daphne]) -> None:
    a, _ = daphne_pair
    url = a.url + "/api/publish"
    assert request("POST", url, b"{", token=SERVICE_TOKEN) == (
        400,
        {"error": "invalid_json", "detail": "the body is not valid JSON"},
    )
    status, body = request("POST", url, GOOD, token=None)
    assert status == 401 and body["error"] == "not_authenticated"
    status, body = request("GET", url, token=SERVICE_TOKEN)
    assert status == 405 and body["error"] == "method_not_allowed"
