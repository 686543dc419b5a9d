"""Over real daphne: a body over 64 KiB is refused before it is buffered (in memory or on disk),
and a request that arrives too slowly (slowloris) is cut off. The hook is realtime/under_daphne/requests.py."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from realtime.middleware import MAX_BODY_BYTES
from tests.support.procs import SERVICE_TOKEN, Daphne, base_env, migrate, request

MIB = 1024 * 1024


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def open_temp_files(pid: int) -> list[str]:
    """Files daphne has open that are not sockets, pipes or the code it runs (a spooled body would be one)."""
    found = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = str(fd.readlink())
        except OSError:
            continue
        if target.startswith(("socket:", "pipe:", "anon_inode:", "/dev/")) or target.endswith((".sqlite3", ".log")):
            continue
        found.append(target)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daphne]:
    """One daphne on the in-memory layer, with a short request deadline."""
    tmp = tmp_path_factory.mktemp("guard")
    env = base_env(DATABASE_URL=f"sqlite:///{tmp / 'db.sqlite3'}", HTTP_REQUEST_SECONDS="2")
    migrate(env)
    daphne = Daphne(env, log_path=tmp / "daphne.log").start()
    yield daphne
    daphne.stop()


def read_response(sock: socket.socket, deadline: float) -> bytes:
    """What the server sent until it closed or the JSON body was complete."""
    data = b""
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
        head, sep, body = data.partition(b"\r\n\r\n")
        if sep and b"content-length:" in head.lower():
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(body) >= length:
                break
    return data


def status_and_json(data: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(body)


def send_huge_body(port: int, head: str, total: int) -> tuple[float, bytes, int]:
    """Send `head` and then `total` bytes of body as fast as the server takes them, while
    reading its answer; returns (seconds until the answer, the answer, bytes of body sent)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=0.2)
    sent = 0
    stop = threading.Event()

    def pump() -> None:
        nonlocal sent
        block = b"x" * MIB
        try:
            sock.sendall(head.encode())
            while sent < total and not stop.is_set():
                sock.sendall(block)
                sent += len(block)
        except OSError:
            pass  # the server closed: what it should do

    started = time.monotonic()
    sender = threading.Thread(target=pump, daemon=True)
    sender.start()
    answer = b""
    while time.monotonic() - started < 10 and not answer.endswith(b"}"):
        answer += read_response(sock, time.monotonic() + 0.2)
    took = time.monotonic() - started
    stop.set()
    sender.join(10)
    sock.close()
    return took, answer, sent


def test_a_300_mib_body_with_content_length_is_refused_at_once_and_never_stored(server: Daphne) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    rss_before = rss_kib(pid)
    head = (
        "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {300 * MIB}\r\n\r\n"
    )
    took, answer, sent = send_huge_body(server.port, head, 300 * MIB)
    status, error = status_and_json(answer)
    assert (status, error["error"]) == (413, "too_large")
    assert took < 1.0, f"the 413 took {took:.2f}s"
    assert sent < 300 * MIB, "the server read the whole body instead of closing"
    assert open_temp_files(pid) == []
    assert rss_kib(pid) - rss_before < 5 * 1024, "the server's memory grew by 5 MB or more"


def test_a_chunked_body_is_refused_as_soon_as_it_passes_64_kib(server: Daphne) -> None:
    assert server.proc is not None
    pid = server.proc.pid
    rss_before = rss_kib(pid)
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 16384
    framed = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    for _ in range(MAX_BODY_BYTES // len(chunk)):
        sock.sendall(framed)  # exactly the limit: not refused yet
    sock.settimeout(0.3)
    with pytest.raises(TimeoutError):
        sock.recv(1)
    sock.settimeout(5)
    started = time.monotonic()
    sock.sendall(b"1\r\nx\r\n")  # one byte over
    status, error = status_and_json(read_response(sock, time.monotonic() + 5))
    took = time.monotonic() - started
    assert (status, error["error"]) == (413, "too_large") and took < 1.0
    # The connection is then closed.
    assert read_response(sock, time.monotonic() + 3) == b""
    sock.close()
    assert open_temp_files(pid) == []
    assert rss_kib(pid) - rss_before < 5 * 1024


def test_a_body_within_the_limit_still_reaches_the_application(server: Daphne) -> None:
    body = json.dumps({"pad": "x" * (MAX_BODY_BYTES - 20)}).encode()
    assert 100_000 > len(body) <= MAX_BODY_BYTES
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /api/publish HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
        )
        status, error = status_and_json(read_response(sock, time.monotonic() + 5))
    # The application read it and said what it thinks (no token), rather than the guard.
    assert (status, error["error"]) == (401, "not_authenticated")


def test_a_request_dripped_a_byte_at_a_time_is_cut_off_at_the_deadline(server: Daphne) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=0.5)
    started = time.monotonic()
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200
    answer = b""
    for byte in request:
        try:
            sock.sendall(bytes([byte]))
        except OSError:
            break
        try:
            chunk = sock.recv(4096)
        except TimeoutError:  # nothing yet: the next byte, half a second later
            continue
        answer += chunk
        if not chunk or answer.endswith(b"}"):
            break
    took = time.monotonic() - started
    sock.close()
    status, error = status_and_json(answer)
    assert status == 408 and error["error"]
    assert 1.5 < took < 4, f"cut off after {took:.1f}s with a 2s deadline"


def test_a_stream_outlives_the_request_deadline(server: Daphne) -> None:
    """Only receiving a request has a deadline: a keep-alive connection serves one request,
    waits less than the deadline, serves another; an open response is never cut."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            status, body = status_and_json(read_response(sock, time.monotonic() + 5))
            assert status == 200 and body["status"] == "ok"
            time.sleep(1.2)
    # An open stream, well past the deadline, still gets what is published.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"GET /api/broadcast/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Authorization: Bearer %s\r\n\r\n" % SERVICE_TOKEN.encode()
        )
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
        time.sleep(3)
        status, answer = request(
            "POST",
            server.url + "/api/publish",
            {"channel": "sse:broadcast", "type": "new_message", "payload": {"n": 1}},
        )
        assert status == 202, answer
        received = b""
        deadline = time.monotonic() + 5
        while f"id: {answer['id']}".encode() not in received and time.monotonic() < deadline:
            received += sock.recv(65536)
        assert f"id: {answer['id']}".encode() in received
