"""The shipped nginx config (docs/deploy/nginx/nginx.conf) in front of two daphne processes.

Debian's nginx runs the shipped file itself, its placeholders, ports and log paths replaced
(tests/support/deploy.py), with a self-signed certificate; the daphne processes are started
with the shipped systemd unit's command line (--proxy-headers). Checked: `nginx -t`; pages,
static files and redirects; that the X-Forwarded-* headers daphne believes are nginx's, never
the client's; the 64 KiB body limit at nginx; and streams through nginx that lose nothing when
one daphne process is killed. How much latency nginx adds is measured by `make bench`
(bench/nginx.py), not timed here; Chromium over HTTP/2 is tests/browser/test_http2.py.
"""

from __future__ import annotations

import json
import re
import signal
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from realtime.routing import sse_urlpatterns
from tests.support.deploy import (
    NGINX_CONF,
    SERVER_NAME,
    Deployment,
    Nginx,
    ResumingStream,
    deployment,
    https,
    negotiated_protocol,
    plain,
    render_nginx,
    self_signed_certificate,
)
from tests.support.procs import SERVICE_TOKEN, free_port, run_python, wait_until

LIMIT = 64 * 1024
JSON = {"Content-Type": "application/json", "Authorization": f"Bearer {SERVICE_TOKEN}"}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("deploy")) as running:
        yield running


def log_lines(site: Deployment, fragment: str) -> list[dict[str, str]]:
    """The access log's lines whose request holds `fragment`, as {status, upstream, conn, ...}."""
    found = []
    for line in site.nginx.access_log():
        request = re.search(r'"([A-Z]+ \S+ [^"]+)"', line)
        if request and fragment in request.group(1):
            fields = dict(re.findall(r"(\w+)=(\S+)", line))
            status = re.search(r'" (\d{3}) ', line)
            found.append({"request": request.group(1), "status": status.group(1) if status else "", **fields})
    return found


def logged(site: Deployment, fragment: str, count: int = 1) -> list[dict[str, str]]:
    """Waits for `count` access-log lines of `fragment` (nginx writes a line when a request ends)."""
    return wait_until(
        lambda: (lines := log_lines(site, fragment)) and len(lines) >= count and lines,
        timeout=5,
        what=f"{count} access log line(s) for {fragment}",
    )


def test_the_shipped_config_rendered_passes_nginx_t(tmp_path: Path) -> None:
    cert, key = self_signed_certificate(tmp_path)
    (tmp_path / "static").mkdir()
    config = render_nginx(
        prefix=tmp_path / "nginx",
        https_port=free_port(),
        http_port=free_port(),
        upstreams=[free_port(), free_port(), free_port()],
        certificate=cert,
        key=key,
        static_root=tmp_path / "static",
    )
    done = Nginx(tmp_path / "nginx", config, 0, 0).check()
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "test is successful" in done.stderr
    assert "[warn]" not in done.stderr and "[emerg]" not in done.stderr, done.stderr

    # And nginx -t does read what it names: the same file with a certificate that is not there fails.
    missing = config.replace(str(cert), str(tmp_path / "no-such-cert.pem"))
    assert Nginx(tmp_path / "nginx", missing, 0, 0).check().returncode != 0


def test_the_streams_location_matches_every_stream_route_and_nothing_else() -> None:
    # nginx's regex for the streams (PCRE; this one reads the same in Python) against the ASGI
    # routes realtime/routing.py serves as streams: a new stream route must be added there too.
    (pattern,) = re.findall(r"location ~ (\S+) \{", NGINX_CONF.read_text())
    nginx = re.compile(pattern)
    paths = [
        "/api/events",
        "/api/events/",
        "/api/broadcast/events",
        "/api/sessions/cust_1/events",
        "/api/sessions/cust_1/events/",
        "/api/agents/ana/events",
        "/api/sessions/cust_1",
        "/api/sessions/cust_1/messages",
        "/api/sessions",
        "/api/publish",
        "/api/presence",
        "/workbench/",
        "/api/sessions/a/b/events",
        "/static/js/live.js",
    ]
    for path in paths:
        routed = any(route.pattern.regex.search(path[1:]) for route in sse_urlpatterns)
        assert bool(nginx.search(path)) == routed, f"{path}: nginx {'un' if routed else ''}buffered, routing disagrees"
    assert sum(bool(nginx.search(p)) for p in paths) == 6


def test_pages_static_files_and_plain_http_through_nginx(site: Deployment) -> None:
    # A page: from daphne, which believes the request came over HTTPS (HSTS, no redirect).
    page = https(site.port, "GET", "/accounts/login/", headers={"Accept-Encoding": "gzip"})
    assert page.status == 200
    assert page.headers.get("strict-transport-security", "").startswith("max-age=")
    assert "content-security-policy" in page.headers
    assert "content-encoding" not in page.headers, "pages carry CSRF tokens: not compressed (BREACH)"
    assert logged(site, "/accounts/login/")[-1]["upstream"] in {f"127.0.0.1:{d.port}" for d in site.daphnes}

    # The static files: nginx's own, from collectstatic's directory, compressed, revalidated.
    shipped = (site.static_root / "css" / "app.css").read_bytes()
    css = https(site.port, "GET", "/static/css/app.css")
    assert css.status == 200 and css.body == shipped
    assert css.headers["cache-control"] == "no-cache" and css.headers["x-content-type-options"] == "nosniff"
    assert css.headers["content-type"].startswith("text/css")
    assert logged(site, "/static/css/app.css")[-1]["upstream"] == "-", "a static file went to daphne"
    gzipped = https(site.port, "GET", "/static/css/app.css", headers={"Accept-Encoding": "gzip"})
    assert gzipped.headers.get("content-encoding") == "gzip" and len(gzipped.body) < len(shipped)
    admin = https(site.port, "GET", "/static/admin/css/base.css")
    assert admin.status == 200, "the admin's static files were not collected"

    # HTTP/2 is offered to browsers; plain HTTP moves to HTTPS.
    assert negotiated_protocol(site.port) == "h2"
    moved = plain(site.nginx.http_port, "/workbench/?tab=2")
    assert moved.status == 301 and moved.headers["location"] == f"https://{SERVER_NAME}/workbench/?tab=2"


def test_daphne_believes_the_forwarded_headers_of_nginx_never_the_clients(site: Deployment) -> None:
    # A client claiming plain HTTP over HTTPS: nginx overwrites X-Forwarded-Proto, no redirect.
    claimed = https(site.port, "GET", "/accounts/login/", headers={"X-Forwarded-Proto": "http"})
    assert claimed.status == 200
    # ...while daphne reached directly, without nginx's header, takes the request for plain HTTP.
    direct = plain(site.daphnes[0].port, "/accounts/login/")
    assert direct.status == 301 and direct.headers["location"].startswith("https://")

    # A failed sign-in from 127.0.0.5 claiming to be 203.0.113.9: throttling counts 127.0.0.5,
    # the address nginx saw (nginx itself connects to daphne from 127.0.0.1).
    username = "forged_" + uuid.uuid4().hex[:8]
    form = https(site.port, "GET", "/accounts/login/", source="127.0.0.5")
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
    cookie = re.search(r"csrftoken=([^;]+)", form.headers.get("set-cookie", ""))
    assert token and cookie
    body = f"username={username}&password=wrong-password-0&csrfmiddlewaretoken={token.group(1)}".encode()
    answer = https(
        site.port,
        "POST",
        "/accounts/login/",
        body,
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Cookie": f"csrftoken={cookie.group(1)}",
            "Referer": f"{site.url}/accounts/login/",
            "Origin": site.url,
            "X-Forwarded-For": "203.0.113.9",
        },
        source="127.0.0.5",
    )
    assert answer.status == 200, "not the login form again: the sign-in did not fail"
    addresses = run_python(
        "from axes.models import AccessAttempt\n"
        f"print(sorted(set(AccessAttempt.objects.filter(username={username!r}).values_list('ip_address', flat=True))))",
        site.env,
    )
    assert addresses.strip() == "['127.0.0.5']"


def test_a_body_over_64_kib_gets_413_from_nginx_before_daphne_sees_it(site: Deployment) -> None:
    before = len(log_lines(site, "/api/publish"))
    too_big = b'{"pad": "' + b"x" * (65 * 1024 - 11) + b'"}'
    assert len(too_big) == 65 * 1024
    answer = https(site.port, "POST", "/api/publish", too_big, JSON)
    assert answer.status == 413
    assert answer.headers["content-type"] == "application/json"
    assert json.loads(answer.body) == {"error": "too_large", "detail": "the request body is over 65536 bytes"}
    # Sent in chunks, without a Content-Length: refused all the same.
    chunked = https(site.port, "POST", "/api/publish", too_big, JSON, chunked=True)
    assert chunked.status == 413
    # A body of exactly 64 KiB goes through to daphne, which answers it (here: not a valid event).
    at_limit = b'{"pad": "' + b"x" * (LIMIT - 11) + b'"}'
    passed = https(site.port, "POST", "/api/publish", at_limit, JSON)
    assert passed.status == 400, passed.text[:300]

    lines = logged(site, "/api/publish", before + 3)[before:]
    assert [(line["status"], line["upstream"]) for line in lines[:2]] == [("413", "-"), ("413", "-")]
    assert lines[2]["status"] == "400" and lines[2]["upstream"] != "-"


# --- streams through nginx, one daphne killed ------------------------------------------------------


@dataclass
class Sent:
    n: int
    started: float
    status: int | str = 0
    id: str | None = None


class Publisher(threading.Thread):
    """POST /api/publish through nginx, numbered events at ~25 a second, every answer kept."""

    def __init__(self, port: int, channel: str) -> None:
        super().__init__(daemon=True)
        self.port, self.channel = port, channel
        self.sent: list[Sent] = []
        self.halt = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.halt.wait(0.04):
            n += 1
            record = Sent(n, time.monotonic())
            body = json.dumps({"channel": self.channel, "type": "new_message", "payload": {"n": n}}).encode()
            try:
                answer = https(self.port, "POST", "/api/publish", body, JSON)
                record.status = answer.status
                record.id = json.loads(answer.body).get("id") if answer.status == 202 else None
            except Exception as exc:  # noqa: BLE001 - kept as the publish's outcome
                record.status = repr(exc)
            self.sent.append(record)


@pytest.fixture
def killable(tmp_path: Path) -> Iterator[Deployment]:
    """A deployment of this test's own: one of its processes is killed."""
    with deployment(tmp_path, SSE_HEARTBEAT_SECONDS="2") as running:
        yield running


def test_streams_through_nginx_resume_on_the_other_process_when_one_is_killed_with_nothing_lost(
    killable: Deployment,
) -> None:
    site = killable
    channel = "sse:session:deploy_" + uuid.uuid4().hex[:10]
    streams = [ResumingStream(site.port, f"/api/events?channel={channel}").open() for _ in range(6)]
    publisher = Publisher(site.port, channel)
    try:
        first = streams[0].segments[0]
        assert first.headers["content-type"].startswith("text/event-stream")
        assert "content-encoding" not in first.headers
        publisher.start()
        wait_until(lambda: all(len(s.events) >= 10 for s in streams), timeout=10, what="events on every stream")

        # Both processes carry streams (least_conn); one is killed, as a crash would.
        killed = site.daphnes[0]
        killed.stop(signal.SIGKILL)
        killed_at = time.monotonic()
        wait_until(
            lambda: any(s.reconnects for s in streams) and all(not s.segments[-1].closed.is_set() for s in streams),
            timeout=15,
            what="the streams of the killed process to reconnect through nginx",
        )
        survivor = site.daphnes[1]
        time.sleep(2)  # publishing goes on, through nginx, to the one process left
        publisher.halt.set()
        publisher.join(10)

        answered = [s for s in publisher.sent if s.id is not None]
        wanted = {s.id for s in answered}
        wait_until(
            lambda: all(wanted <= {e.id for e in s.events if e.event == "new_message"} for s in streams),
            timeout=10,
            what="every published event on every stream",
        )
    finally:
        publisher.halt.set()
        for stream in streams:
            stream.close()

    # The one process that was killed carried some of the streams; nginx sent them to the other.
    assert sum(1 for s in streams if s.reconnects) >= 1
    resumed = [line for line in log_lines(site, channel) if line["upstream"].endswith(f":{survivor.port}")]
    assert resumed, "no stream reached the surviving process through nginx"
    problems = accounting(streams, publisher.sent, killed_at)
    assert not problems, "\n".join(problems[:20])


def accounting(streams: list[ResumingStream], sent: list[Sent], killed_at: float) -> list[str]:
    """faults.py's standard: per stream, every id a publisher got back exactly once (none missing
    without a reset, none doubled, in order); a publish may fail only in the instant of the kill."""
    problems = []
    for s in sent:
        if s.status != 202 and not (killed_at - 0.5 <= s.started <= killed_at + 0.5 and s.status == 502):
            problems.append(f"publish {s.n} at {s.started - killed_at:+.2f}s from the kill answered {s.status}")
    failed = sum(1 for s in sent if s.status != 202)
    if failed > 3:
        problems.append(f"{failed} publishes failed around the kill")
    for number, stream in enumerate(streams):
        events: list[Any] = stream.events
        if any(e.event == "reset" for e in events):
            problems.append(f"stream {number} got a reset")
        got = [e.id for e in events if e.event == "new_message"]
        doubled = [i for i, count in Counter(got).items() if count > 1]
        if doubled:
            problems.append(f"stream {number} got {doubled[:5]} more than once")
        missing = [s.n for s in sent if s.id is not None and s.id not in got]
        if missing:
            problems.append(f"stream {number} missed events {missing[:10]}")
        keys = [tuple(map(int, i.split("-"))) for i in got if i]
        if keys != sorted(keys):
            problems.append(f"stream {number} got events out of order")
    return problems
