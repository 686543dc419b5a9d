"""The shipped deployment recipe (docs/deploy/) run for real: nginx from docs/deploy/nginx/nginx.conf
and daphne processes started with the ExecStart of docs/deploy/systemd/helpdesk-daphne@.service.

The shipped files are read and rendered by plain substitution (each value asserted to be there,
no placeholder left), so what runs is the file a deployment installs, not a copy of it. nginx
runs as the test user in the foreground, with its pid, logs and temporary files in a directory
of the test's own and its ports from free_port(); nothing here touches /etc, /run or /var.
`make bench`'s nginx part (bench/nginx.py) uses the same rendering.
"""

from __future__ import annotations

import http.client
import os
import re
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.databases import scratch_database_url
from tests.support.procs import (
    LOG_FILES,
    ROOT,
    SERVICE_TOKEN,
    Daphne,
    RedisServer,
    SSEClient,
    base_env,
    free_port,
    migrate,
    wait_until,
)

DEPLOY = ROOT / "docs" / "deploy"
NGINX_CONF = DEPLOY / "nginx" / "nginx.conf"
UNITS = DEPLOY / "systemd"
DAPHNE_UNIT = UNITS / "helpdesk-daphne@.service"
ENV_FILE = DEPLOY / "helpdesk.env"
# The host name the rendered config serves and the certificate names (browsers and clients use it).
SERVER_NAME = "localhost"
# Where the shipped units expect the checkout and its virtualenv, and the environment file.
APP_DIR = "/opt/helpdesk/app"
VENV_DIR = "/opt/helpdesk/venv"
ETC_ENV_FILE = "/etc/helpdesk/helpdesk.env"
PLACEHOLDER = re.compile(r"@[A-Z_]+@")
# The upstream lines of the shipped file: two daphne processes on this machine.
SHIPPED_UPSTREAMS = ["127.0.0.1:8001", "127.0.0.1:8002"]


def nginx_binary() -> str:
    """Debian's nginx (in /usr/sbin, which a non-root PATH may lack); a clear error without it."""
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if binary is None:
        raise RuntimeError("nginx is not installed: the deployment tests run Debian's nginx (apt-get install -y nginx)")
    return binary


def replace(text: str, old: str, new: str, count: int = 1) -> str:
    """`text` with `old` replaced by `new`, asserting the shipped file holds `old` exactly `count` times."""
    found = text.count(old)
    assert found == count, f"the shipped file holds {old!r} {found} time(s), expected {count}: update the renderer"
    return text.replace(old, new)


def render_nginx(
    *,
    prefix: Path,
    https_port: int,
    http_port: int,
    upstreams: list[int],
    certificate: Path,
    key: Path,
    static_root: Path,
    template: str | None = None,
) -> str:
    """docs/deploy/nginx/nginx.conf with its placeholders filled in and, for a run as the test
    user, its ports, pid, logs and temporary paths moved under `prefix`."""
    text = NGINX_CONF.read_text() if template is None else template
    placeholders = {
        # Each named once in the file's header, then where it is used.
        "@SERVER_NAME@": (SERVER_NAME, 3),
        "@TLS_CERTIFICATE@": (str(certificate), 2),
        "@TLS_CERTIFICATE_KEY@": (str(key), 2),
        "@STATIC_ROOT@": (str(static_root), 2),
    }
    named = set(PLACEHOLDER.findall(text))
    assert named == set(placeholders), f"the shipped file's placeholders changed: {sorted(named)}"
    for old, (new, count) in placeholders.items():
        text = replace(text, old, new, count)
    # The two shipped server lines (their options kept) become one line per test process.
    shipped = re.compile(r"^( +)server (127\.0\.0\.1:800[12])( [^;]*);\n", re.M)
    found = shipped.findall(text)
    assert [address for _, address, _ in found] == list(SHIPPED_UPSTREAMS), f"the upstream lines changed: {found}"
    indent, _, options = found[0]
    servers = "".join(f"{indent}server 127.0.0.1:{port}{options};\n" for port in upstreams)
    text = shipped.sub(lambda match: servers if match.group(2) == SHIPPED_UPSTREAMS[0] else "", text)
    # As root, nginx's workers would take the shipped `user` (www-data), who cannot read the test's
    # files; as anyone else nginx ignores the directive with a warning.
    text = replace(text, "user www-data;\n", "user root;\n" if os.geteuid() == 0 else "")
    text = replace(text, "pid /run/nginx.pid;", f"pid {prefix}/nginx.pid;")
    text = replace(text, "error_log /var/log/nginx/error.log;", f"error_log {prefix}/error.log info;")
    text = replace(text, "access_log /var/log/nginx/access.log helpdesk;", f"access_log {prefix}/access.log helpdesk;")
    temp = "".join(
        f"    {kind}_temp_path {prefix}/{kind}_temp;\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    text = replace(text, "http {\n", "http {\n" + temp)
    text = replace(text, "listen 80;", f"listen 127.0.0.1:{http_port};")
    text = replace(text, "listen 443 ssl http2;", f"listen 127.0.0.1:{https_port} ssl http2;")
    leftover = PLACEHOLDER.findall(text)
    assert not leftover, f"placeholders left after rendering: {leftover}"
    return text


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throw-away certificate for SERVER_NAME (and 127.0.0.1), made with openssl."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"]
        + ["-subj", f"/CN={SERVER_NAME}"]
        + ["-addext", f"subjectAltName=DNS:{SERVER_NAME},IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key


def collect_static(env: dict[str, str], into: Path) -> Path:
    """`manage.py collectstatic` into `into` (the settings' STATIC_ROOT, overridden for the test)."""
    code = (
        "import django, sys; django.setup()\n"
        "from django.conf import settings; from django.core.management import call_command\n"
        "settings.STATIC_ROOT = sys.argv[1]\n"
        "call_command('collectstatic', interactive=False, verbosity=0)\n"
    )
    subprocess.run([sys.executable, "-c", code, str(into)], cwd=ROOT, env=env, check=True, timeout=120)
    return into


@dataclass
class Nginx:
    """nginx in the foreground on a rendered config, as the test user; `stop()` ends it."""

    prefix: Path
    config: str
    https_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def conf_path(self) -> Path:
        return self.prefix / "nginx.conf"

    @property
    def url(self) -> str:
        return f"https://{SERVER_NAME}:{self.https_port}"

    def write(self) -> None:
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(self.config)

    def args(self) -> list[str]:
        return [nginx_binary(), "-p", str(self.prefix), "-e", str(self.prefix / "error.log"), "-c", str(self.conf_path)]

    def check(self) -> subprocess.CompletedProcess[str]:
        """`nginx -t` on the rendered file."""
        self.write()
        return subprocess.run([*self.args(), "-t"], capture_output=True, text=True, timeout=30)

    def start(self) -> Nginx:
        self.write()
        log = open(self.prefix / "nginx.out", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen([*self.args(), "-g", "daemon off;"], stdout=log, stderr=log)
        wait_until(self.ready, timeout=15, what=f"nginx on {self.https_port}")
        return self

    def ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"nginx exited with {self.proc.returncode}: {self.error_log()[-2000:]}")
        with socket.create_connection(("127.0.0.1", self.https_port), timeout=1):
            return True

    def error_log(self) -> str:
        path = self.prefix / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def access_log(self) -> list[str]:
        path = self.prefix / "access.log"
        return path.read_text(errors="replace").splitlines() if path.exists() else []

    def pids(self) -> list[int]:
        """The master and its workers (for CPU accounting)."""
        if self.proc is None:
            return []
        found = [self.proc.pid]
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        if children.exists():
            found += [int(pid) for pid in children.read_text().split()]
        return found

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)  # graceful: workers finish, then exit
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None


# --- systemd units ----------------------------------------------------------------------------


def unit_values(path: Path, key: str) -> list[str]:
    """Every value of `key=` in a unit file (later lines of a key add to or override earlier ones)."""
    values = []
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#") and name.strip() == key:
            values.append(value.strip())
    return values


def render_unit(path: Path, env_file: Path = ENV_FILE) -> str:
    """A shipped unit with its paths pointed at this checkout, its virtualenv and the shipped
    environment file: what `systemd-analyze verify` needs to find every program it names."""
    text = path.read_text()
    text = text.replace(VENV_DIR, sys.prefix).replace(APP_DIR, str(ROOT)).replace(ETC_ENV_FILE, str(env_file))
    return text


def daphne_command(port: int) -> list[str]:
    """The ExecStart of helpdesk-daphne@.service for instance `port`, as systemd would run it:
    %i is the instance, ${HELPDESK_BIND} comes from the unit's Environment= default."""
    (command,) = unit_values(DAPHNE_UNIT, "ExecStart")
    defaults = dict(value.split("=", 1) for value in unit_values(DAPHNE_UNIT, "Environment"))
    words = []
    for word in shlex.split(command):
        word = word.replace("%i", str(port)).replace(VENV_DIR, sys.prefix)
        words.append(re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], word))
    return words


@dataclass
class UnitDaphne(Daphne):
    """A daphne process started with the shipped unit's command line (--proxy-headers, -v 0)."""

    command: list[str] = field(default_factory=list)

    def start(self) -> UnitDaphne:
        self.command = daphne_command(self.port)
        assert Path(self.command[0]).exists(), f"{self.command[0]} is missing"
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        if self.log_path:
            LOG_FILES.append(self.log_path)  # read for secrets at the end of the run (tests/conftest.py)
        self.proc = subprocess.Popen(self.command, cwd=ROOT, env=self.env, stdout=log, stderr=log)
        wait_until(self.healthy, timeout=20, what=f"daphne on {self.port}")
        return self


# --- HTTPS clients --------------------------------------------------------------------------------


def tls_context(alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """A client context that accepts the test's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(list(alpn))
    return context


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


def https(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    *,
    source: str | None = None,
    chunked: bool = False,
) -> Answer:
    """One request over HTTPS (HTTP/1.1) to nginx, optionally from another loopback address."""
    connection = http.client.HTTPSConnection(
        SERVER_NAME,
        port,
        timeout=15,
        context=tls_context(),
        source_address=(source, 0) if source else None,
    )
    try:
        sent = {"Host": f"{SERVER_NAME}:{port}", **(headers or {})}
        if chunked:
            connection.putrequest(method, path, skip_host=True)
            for key, value in {**sent, "Transfer-Encoding": "chunked"}.items():
                connection.putheader(key, value)
            connection.endheaders()
            for start in range(0, len(body or b""), 8192):
                piece = (body or b"")[start : start + 8192]
                connection.send(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            connection.send(b"0\r\n\r\n")
        else:
            connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def plain(port: int, path: str) -> Answer:
    """One plain-HTTP GET, redirects not followed."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": f"{SERVER_NAME}:{port}"})
        response = connection.getresponse()
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, response.read())
    finally:
        connection.close()


def negotiated_protocol(port: int) -> str | None:
    """What ALPN nginx picks when a client offers HTTP/2 and HTTP/1.1, as browsers do."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with tls_context(("h2", "http/1.1")).wrap_socket(raw, server_hostname=SERVER_NAME) as tls:
            return tls.selected_alpn_protocol()


class HTTPSSSEClient(SSEClient):
    """tests.support.procs.SSEClient over TLS: the same request, reader and parser, the socket wrapped."""

    def __init__(
        self,
        port: int,
        path: str,
        token: str | None = SERVICE_TOKEN,
        last_event_id: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"https://127.0.0.1:{port}", path, token, last_event_id, headers)

    def _connect(self, base_url: str) -> tuple[socket.socket, str]:
        port = int(base_url.rpartition(":")[2])
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        return tls_context().wrap_socket(raw, server_hostname=SERVER_NAME), f"{SERVER_NAME}:{port}"


@dataclass
class ResumingStream:
    """An SSE stream through nginx that reconnects as EventSource does: same URL, `Last-Event-ID`,
    after a short pause; shaped like tests.support.faults.Browser for faults.check()."""

    port: int
    path: str
    segments: list[SSEClient] = field(default_factory=list)
    reconnects: list[float] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def open(self) -> ResumingStream:
        self.segments.append(HTTPSSSEClient(self.port, self.path).wait_open())
        threading.Thread(target=self._watch, daemon=True).start()
        return self

    @property
    def events(self) -> list[Any]:
        return [e for segment in list(self.segments) for e in list(segment.events)]

    def _watch(self) -> None:
        while not self.stop.is_set():
            if not self.segments[-1].closed.wait(0.05) or self.stop.is_set():
                continue
            self.stop.wait(0.2)  # as a short `retry:` would
            if self.stop.is_set():
                return
            self.reconnects.append(time.monotonic())
            ids = [e.id for e in self.events if e.id]
            try:
                client = HTTPSSSEClient(self.port, self.path, last_event_id=ids[-1] if ids else None)
                status = client.wait_status(5)
            except Exception as exc:
                self.refused.append(repr(exc))
                continue
            if status == 200 and client.opened.wait(5):
                self.segments.append(client)
            else:
                self.refused.append(f"{status} {client.body[:200]!r}")
                client.close()

    def close(self) -> None:
        self.stop.set()
        for segment in self.segments:
            segment.close()


def healthz(url: str) -> int:
    with urllib.request.urlopen(url + "/healthz", timeout=5) as response:
        return int(response.status)


# --- a whole deployment -------------------------------------------------------------------------


@dataclass
class Deployment:
    """Redis, daphne processes started as the shipped unit starts them, nginx in front."""

    env: dict[str, str]
    redis: RedisServer
    daphnes: list[UnitDaphne]
    nginx: Nginx
    static_root: Path

    @property
    def url(self) -> str:
        return self.nginx.url

    @property
    def port(self) -> int:
        return self.nginx.https_port

    def stop(self) -> None:
        self.nginx.stop()
        for daphne in self.daphnes:
            daphne.stop()
        self.redis.stop()


def production_like_env(**extra: str) -> dict[str, str]:
    """The test processes' environment as behind a TLS proxy: HTTPS on (secure cookies, redirect,
    HSTS), the proxy's X-Forwarded-Proto believed, the rendered config's host name allowed."""
    return {
        "DJANGO_HTTPS": "true",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto",
        "DJANGO_ALLOWED_HOSTS": f"{SERVER_NAME},127.0.0.1",
        "SSE_RETRY_MS": "500",
        **extra,
    }


@contextmanager
def deployment(tmp: Path, processes: int = 2, **extra: str) -> Iterator[Deployment]:
    """A whole deployment on this machine, stopped at the end: a private redis-server, a fresh
    database, `processes` daphne processes from the shipped unit, nginx from the shipped config."""
    binary = nginx_binary()  # before anything starts: no nginx, no deployment
    assert binary
    redis = RedisServer().start()
    daphnes: list[UnitDaphne] = []
    proxy: Nginx | None = None
    try:
        env = base_env(REDIS_URL=redis.url, DATABASE_URL=scratch_database_url(tmp, "deploy"))
        env.update(production_like_env(**extra))
        migrate(env)
        static_root = collect_static(env, tmp / "static")
        for index in range(processes):
            daphnes.append(UnitDaphne(env, log_path=tmp / f"daphne-{index}.log").start())
        cert, key = self_signed_certificate(tmp)
        https_port, http_port = free_port(), free_port()
        prefix = tmp / "nginx"
        config = render_nginx(
            prefix=prefix,
            https_port=https_port,
            http_port=http_port,
            upstreams=[d.port for d in daphnes],
            certificate=cert,
            key=key,
            static_root=static_root,
        )
        proxy = Nginx(prefix, config, https_port, http_port).start()
        running = Deployment(env, redis, daphnes, proxy, static_root)
    except BaseException:
        if proxy is not None:
            proxy.stop()
        for daphne in daphnes:
            daphne.stop()
        redis.stop()
        raise
    try:
        yield running
    finally:
        running.stop()
