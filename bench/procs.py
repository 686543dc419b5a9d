"""Processes of a bench run: a private redis-server, the servers under test, helpers.

Everything listens on 127.0.0.1 only; every process started here is stopped by the run.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# One process must hold 5000 client sockets (plus Redis and log descriptors).
WANTED_FILES = 20_000

BENCH_TOKEN = "bench-token-listener-0123456789abcdef"
CHATBOT_TOKEN = "bench-token-ai-chatbot-0123456789abc"
SERVICE_TOKENS = f"bench={BENCH_TOKEN},ai_chatbot={CHATBOT_TOKEN}"


def raise_file_limit(wanted: int = WANTED_FILES) -> int:
    """Raise RLIMIT_NOFILE as far as allowed (the hard limit too, when root); returns the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
            return wanted
        except (ValueError, OSError):
            wanted = hard
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except Exception as exc:
            last = exc
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}: {last!r}")


def rss_kib(pid: int) -> int:
    """Resident set size of one process, from /proc."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_", "SSE_", "DJANGO_", "DATABASE_"))}
    env.update(
        PYTHONPATH=os.environ.get("BENCH_EXTRA_PATH", "") + str(ROOT),
        PYTHONUNBUFFERED="1",
        SERVICE_TOKENS=SERVICE_TOKENS,
        LOG_LEVEL="WARNING",
        # What a process outside DEBUG needs to start, on plain HTTP on loopback.
        DJANGO_SECRET_KEY="bench-only-secret-key-long-enough-for-the-settings-check-0123",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        DJANGO_HTTPS="false",
        # The publishers measure the bus at full speed, not the per-service rate limit.
        SSE_PUBLISH_RATE="1000000",
        # The load clients stream as one service identity, which may hold half a process's slots.
        SSE_MAX_CONNECTIONS="100000",
    )
    env.update(extra)
    return env


class Proc:
    """A child process that is always stopped: SIGTERM, then SIGKILL."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], log: Path | None = None, cwd: Path = ROOT
    ) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.log = log
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self, **kwargs: Any) -> Proc:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115
        self.popen = subprocess.Popen(
            self.args, cwd=self.cwd, env=self.env, stdout=out, stderr=out, preexec_fn=raise_file_limit, **kwargs
        )
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self) -> None:
        if self.popen is None:
            return
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(5)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self.popen = None


class Redis(Proc):
    def __init__(self, log: Path | None = None) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("redis-server is not on the PATH (Debian package redis-server)")
        self.port = free_port()
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        # The default client-output-buffer-limit for pub/sub (32 MB) is kept: a subscriber that
        # falls that far behind is cut, which the bench reports as lost events.
        args += ["--maxclients", "20000"]
        super().__init__("redis", args, base_env(), log)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, **kwargs: Any) -> Redis:
        super().start(**kwargs)
        wait_until(self.ping, 10, "redis-server")
        return self

    def ping(self) -> bool:
        with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")

    def command(self, *words: str) -> bytes:
        """One command over a plain socket (the run itself imports no Redis client)."""
        payload = f"*{len(words)}\r\n".encode() + b"".join(
            f"${len(w.encode())}\r\n".encode() + w.encode() + b"\r\n" for w in words
        )
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(payload)
            return s.recv(65536)


class Server(Proc):
    """One server under test, listening on `port`; `ready` checks it answers."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], port: int, log: Path | None, cwd: Path = ROOT
    ) -> None:
        super().__init__(name, args, env, log, cwd)
        self.port = port

    def start(self, **kwargs: Any) -> Server:
        super().start(**kwargs)
        return self

    def wait_ready(self, timeout: float = 30) -> None:
        def up() -> bool:
            if not self.alive():
                raise SystemExit(f"{self.name} exited; see {self.log}")
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True

        wait_until(up, timeout, self.name)


def daphne_args(app: str, port: int) -> list[str]:
    # -v 0: no access log and Twisted's log goes nowhere (verbosity 1, daphne's default,
    # prints one access-log line per request to stdout).
    # The listen queue of the shipped unit (docs/deploy/systemd/helpdesk-daphne@.service):
    # -b/-p would give Twisted's 50, and a crowd of reconnecting streams would wait seconds.
    return [sys.executable, "-m", "daphne", "-v", "0", "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=4096", app]


def product_server(
    redis_url: str, db_url: str, log: Path | None, extra_env: dict[str, str], root: Path = ROOT, name: str = "product"
) -> Server:
    """The product's daphne; `root` is the source tree it runs (another version's, for `before`)."""
    port = free_port()
    env = base_env(REDIS_URL=redis_url, DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="sse_project.settings")
    env.update(extra_env, PYTHONPATH=os.environ.get("BENCH_EXTRA_PATH", "") + str(root))
    return Server(name, daphne_args("sse_project.asgi:application", port), env, port, log, cwd=root)


def background_process(redis_url: str, db_url: str, log: Path | None, extra_env: dict[str, str]) -> Proc:
    """`manage.py run_background`: the outbox relay and the recorder, apart from the servers."""
    env = base_env(REDIS_URL=redis_url, DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="sse_project.settings")
    env.update(extra_env)
    return Proc("background", [sys.executable, "manage.py", "run_background"], env, log)


def export_tree(ref: str, into: Path) -> Path:
    """The project's files at git `ref` (e.g. an earlier version to compare with), under `into`."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "--format=tar", ref], capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def naive_server(redis_url: str, log: Path | None) -> Server:
    port = free_port()
    env = base_env(REDIS_URL=redis_url, DJANGO_SETTINGS_MODULE="bench.naive.settings")
    return Server("naive", daphne_args("bench.naive.asgi:application", port), env, port, log)


def naive_centre_server(redis_url: str, db_url: str, log: Path | None) -> Server:
    """The contact centre the naive Django way (bench/naive/centre_*.py) on the product's
    database: its accounts, session cookies and tables, none of its realtime code."""
    port = free_port()
    env = base_env(REDIS_URL=redis_url, DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="bench.naive.centre_settings")
    return Server("naive-centre", daphne_args("bench.naive.centre_asgi:application", port), env, port, log)


def raw_server(redis_url: str, log: Path | None) -> Server:
    port = free_port()
    args = [sys.executable, "-m", "bench.raw_server", "--port", str(port), "--redis", redis_url]
    return Server("raw", args, base_env(), port, log)


def http_get(port: int, path: str, timeout: float = 5) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as response:
        return int(response.status)
