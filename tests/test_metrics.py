"""GET /metrics in one process: who may read it, what the collector reports, the request counts
by route, the latency histogram counted once per event, and the settings of metrics and logs.
The same over two real daphne processes: tests/test_metrics_processes.py."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from realtime import metrics
from realtime.health import health
from realtime.history import Resume, StoredEvent
from realtime.hub import Hub, stats
from realtime.link import RedisLink
from realtime.metrics import LatencyHistogram, delivery_latency
from realtime.redis_conn import RedisTarget
from tests.support.hubs import Collect, NoBackend
from tests.support.procs import ROOT, base_env
from tests.support.sessions import TEST_TOKEN, TEST_TOKENS, browser, make_user

METRICS_TOKEN = "unit-test-metrics-token-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape, parsed with prometheus-client's own parser."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


@pytest.fixture
def scraper(settings: Any, bus: Any) -> Any:
    """A test client sending the metrics token."""
    from django.test import Client

    settings.METRICS_TOKEN = METRICS_TOKEN
    return Client(HTTP_AUTHORIZATION=f"Bearer {METRICS_TOKEN}")


@pytest.fixture
def clean_stats() -> Iterator[None]:
    """The counters are process-wide: each test here starts from its own."""
    saved = dict(stats)
    stats.clear()
    yield
    stats.clear()
    stats.update(saved)


# --- who may read them ------------------------------------------------------------------


@pytest.mark.django_db
def test_an_anonymous_scrape_is_refused_with_401(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN
    response = client.get("/metrics")
    assert response.status_code == 401 and response.json()["error"] == "not_authenticated"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    ["Bearer not-the-metrics-token-0123456789", f"Bearer {TEST_TOKEN}", f"Basic {METRICS_TOKEN}", "Bearer "],
    ids=["a wrong token", "a service token", "another scheme", "an empty token"],
)
def test_a_scrape_with_any_other_token_is_refused_with_401(client: Any, settings: Any, header: str) -> None:
    settings.METRICS_TOKEN = METRICS_TOKEN
    settings.SERVICE_TOKENS = TEST_TOKENS
    response = client.get("/metrics", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


@pytest.mark.django_db
def test_without_metrics_token_set_no_bearer_token_opens_it(client: Any, settings: Any) -> None:
    settings.METRICS_TOKEN = None
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer None").status_code == 401


@pytest.mark.django_db
def test_a_signed_in_agent_is_refused_with_403(bus: Any) -> None:
    agent = browser(make_user("metrics_agent"))
    response = agent.get("/metrics")
    assert response.status_code == 403 and response.json()["error"] == "forbidden"


@pytest.mark.django_db
def test_a_supervisor_reads_them_and_the_output_parses(bus: Any) -> None:
    supervisor = browser(make_user("metrics_supervisor", staff=True))
    response = supervisor.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain; version=")
    assert response["Cache-Control"] == "no-store"
    names = {family.name for family in text_string_to_metric_families(response.content.decode())}
    assert {
        "helpdesk_sse_streams",
        "helpdesk_sse_streams_open",
        "helpdesk_events_published",
        "helpdesk_events_fanned_out",
        "helpdesk_event_deliveries",
        "helpdesk_events_dropped",
        "helpdesk_sse_resumes",
        "helpdesk_bus_heals",
        "helpdesk_bus_state",
        "helpdesk_bus_state_seconds",
        "helpdesk_event_delivery_latency_seconds",
        "helpdesk_outbox_pending",
        "helpdesk_queue_length",
        "helpdesk_queue_longest_wait_seconds",
        "helpdesk_http_requests",
        "process_resident_memory_bytes",
    } <= names


@pytest.mark.django_db
def test_the_metrics_token_reads_them(scraper: Any) -> None:
    assert scraper.get("/metrics").status_code == 200


@pytest.mark.django_db
def test_it_only_answers_get(scraper: Any) -> None:
    response = scraper.post("/metrics")
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


@pytest.mark.django_db
def test_plain_http_scrapes_are_not_redirected_to_https(scraper: Any, settings: Any) -> None:
    # Prometheus scrapes each process's own port, as load balancers probe /healthz.
    settings.SECURE_SSL_REDIRECT = True
    assert scraper.get("/metrics").status_code == 200
    assert scraper.get("/api/presence").status_code == 301


# --- what the collector reports -----------------------------------------------------------


@pytest.mark.django_db
def test_the_collector_reports_the_products_counters_by_label(scraper: Any, clean_stats: None) -> None:
    stats.update(
        {
            "streams_open_session": 3,
            "streams_open_agent": 2,
            "streams_open_broadcast": 1,
            "published": 10,
            "outbox_published": 4,
            "published_locally": 2,
            "events": 7,
            "deliveries": 70,
            "dropped_invalid": 5,
            "record_dropped": 1,
            "resumes_replayed": 6,
            "resumes_reset": 2,
            "heals_replayed": 3,
            "heal_resets": 1,
            "heal_replayed": 12,
            "failovers": 1,
            "streams_cut_slow": 2,
            "streams_cut_access": 1,
        }
    )
    samples = parse(scraper.get("/metrics").content.decode())
    assert value(samples, "helpdesk_sse_streams_open", kind="session") == 3
    assert value(samples, "helpdesk_sse_streams_open", kind="agent") == 2
    assert value(samples, "helpdesk_sse_streams_open", kind="broadcast") == 1
    assert value(samples, "helpdesk_events_published_total", path="bus") == 10
    assert value(samples, "helpdesk_events_published_total", path="outbox") == 4
    assert value(samples, "helpdesk_events_published_total", path="local") == 2
    assert value(samples, "helpdesk_events_fanned_out_total") == 7
    assert value(samples, "helpdesk_event_deliveries_total") == 70
    assert value(samples, "helpdesk_events_dropped_total", reason="invalid") == 5
    assert value(samples, "helpdesk_events_dropped_total", reason="not_recorded") == 1
    assert value(samples, "helpdesk_sse_resumes_total", outcome="replayed") == 6
    assert value(samples, "helpdesk_sse_resumes_total", outcome="reset") == 2
    assert value(samples, "helpdesk_bus_heals_total", outcome="replayed") == 3
    assert value(samples, "helpdesk_bus_heals_total", outcome="reset") == 1
    assert value(samples, "helpdesk_bus_heal_replayed_events_total") == 12
    assert value(samples, "helpdesk_redis_failovers_total") == 1
    assert value(samples, "helpdesk_sse_streams_cut_total", reason="slow_client") == 2
    assert value(samples, "helpdesk_sse_streams_cut_total", reason="access_ended") == 1


@pytest.mark.django_db
def test_the_bus_state_and_the_time_in_it(scraper: Any) -> None:
    samples = parse(scraper.get("/metrics").content.decode())
    assert value(samples, "helpdesk_bus_state", state="ok") == 1
    assert value(samples, "helpdesk_bus_state", state="degraded") == 0
    degradations = value(samples, "helpdesk_bus_degradations_total")
    health.mark_down("Redis is unreachable: a test")
    health._state = health._state.__class__(health._state.state, health._state.reason, health._state.since - 30)
    samples = parse(scraper.get("/metrics").content.decode())
    assert value(samples, "helpdesk_bus_state", state="ok") == 0
    assert value(samples, "helpdesk_bus_state", state="degraded") == 1
    assert 30 <= value(samples, "helpdesk_bus_state_seconds") < 60
    assert value(samples, "helpdesk_bus_degradations_total") == degradations + 1


@pytest.mark.django_db
def test_the_queue_and_the_outbox_backlog_come_from_the_database(scraper: Any) -> None:
    from dashboard.models import ChatSession, Status
    from realtime.models import OutboxEvent

    samples = parse(scraper.get("/metrics").content.decode())
    assert value(samples, "helpdesk_queue_length") == 0
    assert value(samples, "helpdesk_queue_longest_wait_seconds") == 0
    assert value(samples, "helpdesk_outbox_pending") == 0
    now = timezone.now()
    for n, waited in enumerate((90, 20)):
        ChatSession.objects.create(
            name=f"waiting_{n}", status=Status.WAITING_AGENT, escalated_at=now - timedelta(seconds=waited)
        )
    ChatSession.objects.create(name="with_the_bot", status=Status.AI_HANDLING)
    ChatSession.objects.create(
        name="long_done", status=Status.CLOSED, escalated_at=now - timedelta(hours=5), closed_at=now
    )
    OutboxEvent.objects.create(batch="b1", channel="sse:broadcast", type="status_change", body="{}")
    OutboxEvent.objects.create(batch="b0", channel="sse:broadcast", type="status_change", body="{}", published_at=now)
    samples = parse(scraper.get("/metrics").content.decode())
    assert value(samples, "helpdesk_queue_length") == 2
    assert 90 <= value(samples, "helpdesk_queue_longest_wait_seconds") < 120
    assert value(samples, "helpdesk_outbox_pending") == 1


@pytest.mark.django_db
def test_requests_are_counted_by_route_pattern_never_by_raw_path(scraper: Any, bus: Any) -> None:
    def count(samples: Samples, route: str, method: str, status: str) -> float:
        return samples.get(
            ("helpdesk_http_requests_total", frozenset(dict(route=route, method=method, status=status).items())), 0
        )

    before = parse(scraper.get("/metrics").content.decode())
    from django.test import Client

    anonymous = Client()
    for name in ("first_one", "second_one", "third_one"):
        assert anonymous.get(f"/api/sessions/{name}").status_code == 401
    anonymous.generic("BREW", "/healthz")
    after = parse(scraper.get("/metrics").content.decode())
    route = "api/sessions/<str:name>"
    assert count(after, route, "GET", "401") - count(before, route, "GET", "401") == 3
    assert count(after, "healthz", "other", "405") - count(before, "healthz", "other", "405") == 1
    assert count(after, "metrics", "GET", "200") - count(before, "metrics", "GET", "200") == 1
    assert not any("first_one" in dict(labels).get("route", "") for _, labels in after)


@pytest.mark.django_db
def test_each_refused_request_is_one_log_line_with_its_reason_and_no_detail(
    client: Any, settings: Any, caplog: Any
) -> None:
    settings.SERVICE_TOKENS = TEST_TOKENS
    caplog.set_level(logging.INFO, logger="realtime.refused")
    client.get("/api/sessions/a_session", HTTP_AUTHORIZATION="Bearer a-token-nobody-has-0123456789")
    client.post(
        "/api/publish",
        json.dumps({"channel": "sse:broadcast", "type": "new_message", "payload": {}, "secret_field": "x"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {TEST_TOKEN}",
    )
    client.get("/no/such/page/")
    lines = [r.getMessage() for r in caplog.records if r.name == "realtime.refused"]
    assert lines == [
        "refused GET api/sessions/<str:name>: 401 not_authenticated (an unknown token from 127.0.0.1)",
        "refused POST api/publish: 400 bad_request (service ai_chatbot from 127.0.0.1)",
    ]
    assert not any("a-token-nobody-has" in line or "secret_field" in line for line in caplog.messages)


# --- counted once per event, never per delivery ---------------------------------------------

CHANNEL = "sse:session:metrics"


def envelope(event_id: str, n: int, timestamp: float) -> str:
    return json.dumps(
        {
            "id": event_id,
            "channel": CHANNEL,
            "type": "new_message",
            "payload": {"n": n},
            "timestamp": timestamp,
            "source": "ai_chatbot",
        },
        separators=(",", ":"),
    )


def observations() -> int:
    return sum(delivery_latency.counts)


def test_an_event_is_counted_and_timed_once_whatever_the_number_of_streams(clean_stats: None) -> None:
    import time

    async def scenario() -> None:
        hub = Hub(NoBackend(), asyncio.get_running_loop())
        streams = [Collect(CHANNEL) for _ in range(3)]
        for stream in streams:
            await hub.add(stream)
        timed = observations()
        hub.deliver(CHANNEL, envelope("100-0", 0, time.time()))
        assert (stats["events"], stats["deliveries"], observations() - timed) == (1, 3, 1)
        hub.deliver_batch([(CHANNEL, envelope(f"10{n}-0", n, time.time())) for n in range(1, 5)])
        assert (stats["events"], stats["deliveries"], observations() - timed) == (5, 15, 5)
        assert hub.events_on([CHANNEL, "sse:broadcast"]) == 5

        # A replay after a reconnect is counted, not timed: its publish was long before.
        async def read(channels: list[str], after: str) -> Resume:
            return Resume(events=[StoredEvent("200-0", CHANNEL, envelope("200-0", 9, time.time() - 60))])

        await hub.heal("104-0", read, "the connection to Redis was lost")
        assert (stats["events"], stats["deliveries"], observations() - timed) == (6, 18, 5)
        assert stats["heals_replayed"] == 1 and stats["heal_replayed"] == 1
        assert [len(stream.events) for stream in streams] == [6, 6, 6]
        for stream in streams:
            await hub.remove(stream)
        assert hub.channel_events == {}  # nothing kept for a channel without streams

    asyncio.run(scenario())


def test_the_latency_histogram_puts_each_value_in_its_le_bucket() -> None:
    histogram = LatencyHistogram((0.01, 0.1, 1.0))
    for seconds in (0.005, 0.01, 0.05, 2.0, -0.5):
        histogram.observe(seconds)
    buckets, total = histogram.cumulative()
    assert buckets == [("0.01", 3), ("0.1", 4), ("1.0", 4), ("+Inf", 5)]
    assert total == pytest.approx(2.065)  # a clock slightly ahead counts as 0, not negative


def test_a_sentinel_failover_is_counted_and_logged_once(clean_stats: None, caplog: Any) -> None:
    class Connection:
        def __init__(self, port: int) -> None:
            self.host, self.port = "10.0.0.1", port

    class PubSub:
        def __init__(self, port: int) -> None:
            self.connection = Connection(port)

    async def scenario() -> None:
        link = RedisLink(RedisTarget(sentinels=(("127.0.0.1", 26379),), master="helpdesk"), 10)
        caplog.set_level(logging.WARNING, logger="realtime.link")
        link._note_master(PubSub(6379))
        link._note_master(PubSub(6379))  # a reconnect to the same master
        assert stats["failovers"] == 0
        link._note_master(PubSub(6380))
        assert stats["failovers"] == 1
        await link.close()

    asyncio.run(scenario())
    assert caplog.messages == [
        "Redis failover: the sentinels of helpdesk now name 10.0.0.1:6380 as the master (it was 10.0.0.1:6379)"
    ]


# --- the settings of metrics and logs ----------------------------------------------------------


def _django_setup(code: str = "", **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()\n" + code],
        cwd=ROOT,
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LOG_FORMAT": "xml"}, "LOG_FORMAT must be plain or json, not 'xml'"),
        ({"LOG_LEVEL": "loud"}, "LOG_LEVEL must be DEBUG, INFO, WARNING, ERROR or CRITICAL, not 'LOUD'"),
        ({"METRICS_TOKEN": "short-secret"}, "METRICS_TOKEN is shorter than 16 characters"),
        (
            {"METRICS_TOKEN": "test-token-ai-chatbot-0123456789"},
            "METRICS_TOKEN is also a token in SERVICE_TOKENS: give it a value of its own",
        ),
    ],
    ids=["a log format", "a log level", "a short metrics token", "a service's token"],
)
def test_a_bad_value_stops_start_up_naming_the_variable_and_never_the_token(env: dict[str, str], message: str) -> None:
    done = _django_setup(**env)
    assert done.returncode != 0
    assert f"ImproperlyConfigured: {message}" in done.stderr
    if "METRICS_TOKEN" in env:
        assert env["METRICS_TOKEN"] not in done.stderr


def test_log_format_json_writes_one_json_object_per_line_with_time_level_logger_and_message() -> None:
    code = (
        "import logging, warnings\n"
        "logging.getLogger('realtime.test').info('two\\nlines %s', 'in one')\n"
        "try:\n    1 / 0\nexcept ZeroDivisionError:\n    logging.getLogger('realtime.test').exception('failed')\n"
        "warnings.warn('a warning')\n"
    )
    done = _django_setup(code, LOG_FORMAT="json", LOG_LEVEL="debug", USE_REDIS_SSE="false")
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    mine = [r for r in records if r["logger"] in ("realtime.test", "py.warnings")]
    assert [(r["level"], r["logger"], r["message"]) for r in mine] == [
        ("INFO", "realtime.test", "two\nlines in one"),
        ("ERROR", "realtime.test", "failed"),
        ("WARNING", "py.warnings", mine[2]["message"]),
    ]
    assert "ZeroDivisionError" in mine[1]["exc_info"] and "a warning" in mine[2]["message"]
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record)
        assert record["time"].endswith("+00:00")


def test_the_plain_format_stays_the_default() -> None:
    done = _django_setup("import logging\nlogging.getLogger('realtime.test').warning('plain')\n")
    assert done.returncode == 0, done.stderr
    assert " WARNING realtime.test [" in done.stderr and "] plain" in done.stderr


def test_the_registry_holds_the_queue_collector_once() -> None:
    from dashboard.metrics import QueueCollector

    collectors = list(metrics.registry._collector_to_names)
    assert sum(isinstance(c, QueueCollector) for c in collectors) == 1


def test_the_middleware_counts_and_logs_in_an_async_chain_too(rf: Any, caplog: Any) -> None:
    from django.contrib.auth.models import AnonymousUser

    from realtime.errors import ApiError, error_response
    from realtime.metrics import RequestMetricsMiddleware

    async def view(request: Any) -> Any:
        return error_response(ApiError(429, "slow down", "rate_limited"))

    middleware = RequestMetricsMiddleware(view)
    request = rf.post("/api/anything")
    request.user = AnonymousUser()
    caplog.set_level(logging.INFO, logger="realtime.refused")
    before = metrics._requests[(metrics.UNMATCHED, "POST", 429)]
    response = asyncio.run(middleware(request))
    assert response.status_code == 429
    assert metrics._requests[(metrics.UNMATCHED, "POST", 429)] == before + 1
    assert caplog.messages == ["refused POST (unmatched): 429 rate_limited (anonymous from 127.0.0.1)"]


@pytest.mark.django_db
def test_each_api_call_counts_its_database_queries_and_their_time_by_view(scraper: Any, alice: Any) -> None:
    from django.test import Client

    from tests.support.sessions import post_as, post_service

    def figures(samples: Samples, view: str) -> tuple[float, float, float]:
        labels = frozenset({"view": view}.items())
        return tuple(  # type: ignore[return-value]
            samples.get((f"helpdesk_api_{name}_total", labels), 0.0) for name in ("calls", "db_queries", "db_seconds")
        )

    assert post_service(Client(), "/api/manual/escalate", {"session_name": "counted"}).status_code == 201
    before = parse(scraper.get("/metrics").content.decode())
    assert post_as(alice, "/api/sessions/counted/accept").status_code == 200
    assert post_as(alice, "/api/sessions/counted/messages", {"text": "hi"}).status_code == 200
    # A refused call is counted too: its queries are as real as a successful one's.
    assert post_as(alice, "/api/sessions/counted/accept").status_code == 409
    after = parse(scraper.get("/metrics").content.decode())
    calls, queries, seconds = (a - b for a, b in zip(figures(after, "accept"), figures(before, "accept"), strict=True))
    assert calls == 2
    assert queries >= 4  # the accept's update, its events in the outbox and the record, at least
    assert 0 < seconds < 5
    calls, queries, seconds = (
        a - b for a, b in zip(figures(after, "messages"), figures(before, "messages"), strict=True)
    )
    assert (calls, queries > 0, seconds > 0) == (1, True, True)


@pytest.mark.django_db
def test_a_postgresql_pools_waits_are_there_to_see(scraper: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db import connection

    samples = parse(scraper.get("/metrics").content.decode())
    assert not any(name.startswith("helpdesk_db_") for name, _ in samples)  # SQLite: no pool

    class Pool:
        def get_stats(self) -> dict[str, int]:
            return {"pool_size": 10, "pool_available": 0, "requests_waiting": 3, "requests_num": 40}

    monkeypatch.setattr(connection, "_connection_pools", {connection.alias: Pool()}, raising=False)
    samples = parse(scraper.get("/metrics").content.decode())
    assert value(samples, "helpdesk_db_pool_size") == 10
    assert value(samples, "helpdesk_db_requests_waiting") == 3
    assert value(samples, "helpdesk_db_requests_num_total") == 40
    assert value(samples, "helpdesk_db_requests_wait_ms_total") == 0
