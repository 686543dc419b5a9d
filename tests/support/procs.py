"""Real processes for cross-process tests: redis-server, daphne, publishers and an SSE client.

Every test that needs Redis starts its own `redis-server` on a free port; nothing here
touches the machine's shared Redis on 6379.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.env import TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
SERVICE_TOKEN = "test-token-ai-chatbot-0123456789"
OTHER_TOKEN = "test-token-other-service-0123456"
SERVICE_TOKENS = f"ai_chatbot={SERVICE_TOKEN},crm={OTHER_TOKEN}"

# Every daphne log file of the run and every secret the suite handed a process, by what it
# is: at the end of the run tests/conftest.py checks that no log holds one (docs/operations.md
# "Logs": never tokens, cookies or passwords).
LOG_FILES: list[Path] = []
SECRETS: dict[str, str] = {
    SERVICE_TOKEN: "the ai_chatbot service token",
    OTHER_TOKEN: "the crm service token",
    TEST_ENV["DJANGO_SECRET_KEY"]: "DJANGO_SECRET_KEY",
    # Every test password starts so (pw-for-tests, pw-for-browser-tests, pw-for-supervision, ...).
    "pw-for-": "a test password",
}


def leaked_secrets() -> list[tuple[Path, str]]:
    """(log file, what it holds) for each known secret found in a daphne log of this run."""
    found = []
    for path in dict.fromkeys(LOG_FILES):
        if not path.exists():
            continue
        text = path.read_text(errors="replace")
        found.extend((path, what) for secret, what in SECRETS.items() if secret in text)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.05, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:  # noqa: BLE001 - retried until the deadline
            last_error = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last error: {last_error!r}")


class RedisServer:
    """A private redis-server that keeps nothing on disk; can be stopped and restarted."""

    def __init__(self, port: int | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not on the PATH: install it (Debian package redis-server)")
        self.binary = binary
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self.ping, what=f"redis-server on {self.port}")
        return self

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def client(self) -> Any:
        import redis

        return redis.Redis.from_url(self.url)


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SSE_", "DJANGO_", "DATABASE_"))}
    env.update(
        TEST_ENV,
        # The suite publishes in bursts; the rate limit has tests of its own that set it.
        SSE_PUBLISH_RATE="1000000",
        DJANGO_SETTINGS_MODULE="sse_project.settings",
        SERVICE_TOKENS=SERVICE_TOKENS,
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def migrate(env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout


@dataclass
class Daphne:
    """One daphne process of the product."""

    env: dict[str, str]
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    # More daphne options, such as ("-v", "0"): no access log, as docs/operations.md says for JSON logs.
    args: tuple[str, ...] = ()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Daphne:
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        if self.log_path:
            LOG_FILES.append(self.log_path)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "daphne",
                *self.args,
                "-b",
                "127.0.0.1",
                "-p",
                str(self.port),
                "sse_project.asgi:application",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=log,
        )
        wait_until(self.healthy, timeout=20, what=f"daphne on {self.port}")
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"daphne exited with {self.proc.returncode}; log: {self.log_text()[-2000:]}")
        with urllib.request.urlopen(self.url + "/healthz", timeout=2) as response:
            return response.status == 200

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


def request(
    method: str,
    url: str,
    body: Any = None,
    token: str | None = SERVICE_TOKEN,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
) -> tuple[int, Any]:
    """One HTTP request; returns (status, parsed JSON or text)."""
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    try:
        return status, json.loads(raw)
    except ValueError:
        return status, raw.decode(errors="replace")[:2000]


def publish(daphne: Daphne, channel: str, n: int, event_type: str = "new_message") -> str:
    """POST /api/publish a `type` event numbered `n` on `channel` (as the ai_chatbot); its id."""
    status, body = request(
        "POST", daphne.url + "/api/publish", {"channel": channel, "type": event_type, "payload": {"n": n}}
    )
    assert status == 202, body
    event_id: str = body["id"]
    return event_id


@dataclass
class SSEEvent:
    id: str | None
    event: str | None
    data: str
    received_at: float

    @property
    def json(self) -> Any:
        return json.loads(self.data)


class SSEClient:
    """A real SSE client over a raw socket, reading in a thread; frames parsed as a browser would."""

    def __init__(
        self,
        base_url: str,
        path: str,
        token: str | None = SERVICE_TOKEN,
        last_event_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.sock, authority = self._connect(base_url)
        lines = [f"GET {path} HTTP/1.1", f"Host: {authority}", "Accept: text/event-stream"]
        if token:
            lines.append(f"Authorization: Bearer {token}")
        if last_event_id:
            lines.append(f"Last-Event-ID: {last_event_id}")
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.events: list[SSEEvent] = []
        self.comments: list[str] = []
        self.closed = threading.Event()
        self.opened = threading.Event()
        self.body = b""
        # True once the HTTP/1.1 chunked terminator (the 0-size chunk) was read: the server
        # ended the response properly, rather than the connection just dropping.
        self.ended_cleanly = False
        # The last `retry:` value the stream sent, in milliseconds.
        self.retry: int | None = None
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _connect(self, base_url: str) -> tuple[socket.socket, str]:
        """The connected socket and the Host header's value (a subclass may wrap it in TLS)."""
        host, port = base_url.removeprefix("http://").split(":")
        return socket.create_connection((host, int(port)), timeout=10), f"{host}:{port}"

    def _read(self) -> None:
        buffer = b""
        try:
            while b"\r\n\r\n" not in buffer:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, rest = buffer.partition(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            self.status = int(status_line.split()[1])
            for line in header_lines:
                key, _, value = line.partition(":")
                self.headers[key.strip().lower()] = value.strip()
            self.sock.settimeout(None)
            chunked = self.headers.get("transfer-encoding") == "chunked"
            raw = rest
            text = b""
            while True:
                if chunked:
                    while True:
                        size_line, sep, after = raw.partition(b"\r\n")
                        if not sep:
                            break
                        size = int(size_line.split(b";")[0], 16)
                        if len(after) < size + 2:
                            break
                        text += after[:size]
                        raw = after[size + 2 :]
                        if size == 0:
                            self.ended_cleanly = True
                            text = self._parse(text, final=True)
                            if self.status != 200:
                                self.body += text
                            return
                else:
                    text += raw
                    raw = b""
                text = self._parse(text)
                if self.status != 200:
                    self.body += text
                    text = b""
                chunk = self.sock.recv(65536)
                if not chunk:
                    self._parse(text, final=True)
                    return
                raw += chunk
        except OSError:
            pass
        finally:
            self.closed.set()

    def _parse(self, text: bytes, final: bool = False) -> bytes:
        if self.status != 200:
            return text
        while b"\n\n" in text:
            block, _, text = text.partition(b"\n\n")
            fields: dict[str, list[str]] = {}
            for line in block.decode().split("\n"):
                if line.startswith(":"):
                    self.comments.append(line[1:].strip())
                    self.opened.set()
                    continue
                key, _, value = line.partition(":")
                fields.setdefault(key, []).append(value[1:] if value.startswith(" ") else value)
            if "retry" in fields:
                if fields["retry"][-1].isdigit():
                    self.retry = int(fields["retry"][-1])
                self.opened.set()
            if "data" in fields:
                self.events.append(
                    SSEEvent(
                        (fields.get("id") or [None])[-1],
                        (fields.get("event") or [None])[-1],
                        "\n".join(fields["data"]),
                        time.monotonic(),
                    )
                )
        return text

    def wait_open(self, timeout: float = 10) -> SSEClient:
        if not self.opened.wait(timeout):
            raise AssertionError(f"stream did not open (status {self.status}, body {self.body[:300]!r})")
        return self

    def wait_status(self, timeout: float = 10) -> int:
        wait_until(lambda: self.status is not None, timeout, what="a response status")
        assert self.status is not None
        return self.status

    def wait_for(self, predicate: Callable[[SSEEvent], bool], timeout: float = 5, count: int = 1) -> list[SSEEvent]:
        def matches() -> list[SSEEvent]:
            found = [e for e in list(self.events) if predicate(e)]
            return found if len(found) >= count else []

        return wait_until(matches, timeout, what=f"{count} matching SSE event(s); got {self.types()}")  # type: ignore[no-any-return]

    def wait_body(self, timeout: float = 10) -> Any:
        self.closed.wait(timeout)
        return json.loads(self.body) if self.body else None

    def types(self) -> list[str | None]:
        return [e.event for e in self.events if e.event != "heartbeat"]

    def payload_events(self) -> list[SSEEvent]:
        return [e for e in self.events if e.event not in ("heartbeat", "reset")]

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def run_python(code: str, env: dict[str, str], timeout: float = 30) -> str:
    """Run `code` in a separate Python process with Django set up; returns its stdout."""
    prelude = "import django; django.setup()\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise AssertionError(f"publisher process failed: {done.stderr[-3000:]}")
    return done.stdout


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def login(base_url: str, username: str, password: str) -> dict[str, str]:
    """Log in through Django's own login form; returns the cookies (sessionid, csrftoken)."""
    import http.cookiejar
    import re
    from urllib.parse import urlencode

    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar), _NoRedirect())
    page = opener.open(base_url + "/accounts/login/", timeout=10).read().decode()
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert match, "no CSRF token on the login page"
    data = urlencode({"username": username, "password": password, "csrfmiddlewaretoken": match.group(1)}).encode()
    try:
        opener.open(urllib.request.Request(base_url + "/accounts/login/", data=data), timeout=10)
    except urllib.error.HTTPError as exc:
        if exc.code != 302:
            raise
    cookies = {c.name: c.value for c in jar}
    assert "sessionid" in cookies, f"login as {username} failed"
    SECRETS[password] = f"the password of {username}"
    SECRETS.update({value: f"the {name} cookie of {username}" for name, value in cookies.items()})
    return cookies


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())


class DelayProxy:
    """A TCP proxy that holds every byte a client sends for `delay` seconds (replies pass at once).

    Put between a daphne process and Redis, it makes Redis slow to see that process's commands,
    so "the stream opened before Redis confirmed the subscription" becomes a missed event
    instead of a race too short to observe on localhost.
    """

    def __init__(self, target_port: int, delay: float) -> None:
        self.target_port = target_port
        self.delay = delay
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self._sockets += [client, upstream]
            held: queue.Queue[tuple[float, bytes]] = queue.Queue()
            threading.Thread(target=self._read, args=(client, held), daemon=True).start()
            threading.Thread(target=self._release, args=(held, upstream, client), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _read(self, source: socket.socket, held: queue.Queue[tuple[float, bytes]]) -> None:
        while True:
            try:
                chunk = source.recv(65536)
            except OSError:
                chunk = b""
            held.put((time.monotonic() + self.delay, chunk))
            if not chunk:
                return

    @staticmethod
    def _release(held: queue.Queue[tuple[float, bytes]], target: socket.socket, source: socket.socket) -> None:
        while True:
            due, chunk = held.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if not chunk:
                    target.shutdown(socket.SHUT_WR)
                    return
                target.sendall(chunk)
            except OSError:
                source.close()
                return

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                chunk = source.recv(65536)
                if not chunk:
                    target.shutdown(socket.SHUT_WR)
                    return
                target.sendall(chunk)
            except OSError:
                return

    def close(self) -> None:
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass


class PauseProxy:
    """A TCP proxy whose traffic can be paused both ways and resumed, nothing lost: what a
    network stall between one process and Redis looks like (TCP holds the bytes)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._open = threading.Event()
        self._open.set()
        self._hole = threading.Event()
        self._trickle: tuple[int, float] | None = None
        self._sockets: list[socket.socket] = [self.listener]
        threading.Thread(target=self._accept, daemon=True).start()

    def pause(self) -> None:
        self._open.clear()

    def resume(self) -> None:
        self._open.set()

    def black_hole(self) -> None:
        """Cut every connection, then accept new ones and never answer them: a Redis host that
        died between accepting a connection and serving it. `restore()` ends it (the silent
        connections stay silent; only new ones reach Redis again)."""
        self._hole.set()
        for sock in self._sockets[1:]:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restore(self) -> None:
        self._hole.clear()

    def trickle(self, size: int, pause: float) -> None:
        """From now on pass at most `size` bytes each way, then wait `pause` seconds: a slow
        link, on which a large message arrives in pieces."""
        self._trickle = (size, pause)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._hole.is_set():
                self._sockets.append(client)  # held open, never read, never answered
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                chunk = source.recv(65536)
                self._open.wait()
                if not chunk:
                    target.shutdown(socket.SHUT_WR)
                    return
                if self._trickle is None:
                    target.sendall(chunk)
                    continue
                size, pause = self._trickle
                for start in range(0, len(chunk), size):
                    target.sendall(chunk[start : start + size])
                    time.sleep(pause)
            except OSError:
                # A reset on one side resets the other, as on a direct connection: a client
                # whose Redis died must not be left talking to a proxy that forwards nothing.
                for sock in (source, target):
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                        sock.close()
                    except OSError:
                        pass
                return

    def close(self) -> None:
        self._open.set()
        for sock in self._sockets:
            try:
                sock.close()
            except OSError:
                pass
