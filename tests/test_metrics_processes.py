"""GET /metrics scraped from two real daphne processes while events flow between them: each
process counts what it published and what it fanned out, its open streams by kind, resumes and
requests by route; the output parses with prometheus-client's parser; anonymous scrapes are
refused. One scrape per process: the figures of A and B are each their own."""

from __future__ import annotations

import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.procs import Daphne, SSEClient, publish, request, wait_until

METRICS_TOKEN = "process-test-metrics-token-0123456789"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(daphne: Daphne) -> Samples:
    """One scrape of one process, as Prometheus makes it, parsed with prometheus-client's parser."""
    req = urllib.request.Request(daphne.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 200
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return get(after, name, **labels) - get(before, name, **labels)


@pytest.fixture
def pair(redis_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Daphne, Daphne]]:
    """Two processes of the product with a metrics token, on the suite's Redis and database."""
    env = {**redis_env, "METRICS_TOKEN": METRICS_TOKEN}
    a = b = None
    try:
        a = Daphne(env, log_path=tmp_path / "a.log").start()
        b = Daphne(env, log_path=tmp_path / "b.log").start()
        yield a, b
    finally:
        for daphne in (a, b):
            if daphne is not None:
                daphne.stop()


def test_the_counters_of_each_process_move_as_events_flow(pair: tuple[Daphne, Daphne]) -> None:
    a, b = pair
    name = f"metrics_{uuid.uuid4().hex[:10]}"
    channel = f"sse:session:{name}"
    before_a, before_b = scrape(a), scrape(b)
    streams: list[SSEClient] = []
    try:
        # A: one stream on the session. B: one on the session and the broadcast, one on the session alone.
        on_a = SSEClient(a.url, f"/api/sessions/{name}/events").wait_open()
        both_b = SSEClient(b.url, f"/api/events?channel={channel}&channel=sse:broadcast").wait_open()
        alone_b = SSEClient(b.url, f"/api/events?channel={channel}").wait_open()
        streams += [on_a, both_b, alone_b]
        during_a, during_b = scrape(a), scrape(b)
        assert moved(before_a, during_a, "helpdesk_sse_streams_open", kind="session") == 1
        assert moved(before_b, during_b, "helpdesk_sse_streams_open", kind="session") == 2
        assert moved(before_b, during_b, "helpdesk_sse_streams_open", kind="broadcast") == 1
        assert moved(before_b, during_b, "helpdesk_sse_streams") == 2
        assert moved(before_a, during_a, "helpdesk_sse_streams") == 1

        ids = [publish(a, channel, n) for n in range(5)] + [publish(b, channel, n) for n in range(5, 8)]
        for stream in streams:
            stream.wait_for(lambda e: e.event == "new_message", count=8)
        # A stream that comes back with Last-Event-ID is a resume, replayed from history.
        resumed = SSEClient(b.url, f"/api/events?channel={channel}", last_event_id=ids[3]).wait_open()
        streams.append(resumed)
        resumed.wait_for(lambda e: e.event == "new_message", count=4)

        after_a, after_b = scrape(a), scrape(b)
        # Published: each process counts its own publishes.
        assert moved(before_a, after_a, "helpdesk_events_published_total", path="bus") == 5
        assert moved(before_b, after_b, "helpdesk_events_published_total", path="bus") == 3
        # Fanned out once per event per process; delivered once per stream.
        assert moved(before_a, after_a, "helpdesk_events_fanned_out_total") == 8
        assert moved(before_a, after_a, "helpdesk_event_deliveries_total") == 8
        assert moved(before_b, after_b, "helpdesk_events_fanned_out_total") == 8
        assert moved(before_b, after_b, "helpdesk_event_deliveries_total") == 16
        # The latency of each live event, observed once per process: 8 each, whatever the streams.
        for before, after in ((before_a, after_a), (before_b, after_b)):
            assert moved(before, after, "helpdesk_event_delivery_latency_seconds_count") == 8
            assert moved(before, after, "helpdesk_event_delivery_latency_seconds_bucket", le="+Inf") == 8
            assert 0 < moved(before, after, "helpdesk_event_delivery_latency_seconds_sum") < 8 * 5
        assert moved(before_b, after_b, "helpdesk_sse_resumes_total", outcome="replayed") == 1
        assert moved(before_a, after_a, "helpdesk_sse_resumes_total", outcome="replayed") == 0
        # Requests by route pattern and status, the streams' own routes included.
        assert (
            moved(before_a, after_a, "helpdesk_http_requests_total", route="api/publish", method="POST", status="202")
            == 5
        )
        assert (
            moved(before_b, after_b, "helpdesk_http_requests_total", route="api/publish", method="POST", status="202")
            == 3
        )
        stream_route = {"route": "api/sessions/<name>/events", "method": "GET", "status": "200"}
        assert moved(before_a, after_a, "helpdesk_http_requests_total", **stream_route) == 1
        assert (
            moved(before_b, after_b, "helpdesk_http_requests_total", route="api/events", method="GET", status="200")
            == 3
        )
        assert get(after_a, "helpdesk_bus_state", state="ok") == 1
        assert get(after_a, "helpdesk_outbox_pending") >= 0 and "helpdesk_queue_length" in {n for n, _ in after_a}
    finally:
        for stream in streams:
            stream.close()

    # Closed streams leave the gauges, and each close is one log line with its count of events.
    def closed() -> bool:
        now_b = scrape(b)
        return get(now_b, "helpdesk_sse_streams_open", kind="session") == get(
            before_b, "helpdesk_sse_streams_open", kind="session"
        ) and get(now_b, "helpdesk_sse_streams") == get(before_b, "helpdesk_sse_streams")

    wait_until(closed, timeout=10, what="B's streams to be gone from its gauges")
    wait_until(lambda: "stream closed for service:ai_chatbot on " + channel in a.log_text(), what="A's close line")
    log_a = a.log_text()
    assert f"stream opened by service:ai_chatbot on {channel}" in log_a
    assert f"stream closed for service:ai_chatbot on {channel} after" in log_a
    assert ", 8 event(s): the client left" in log_a
    log_b = b.log_text()
    assert f"on {channel}, resuming after {ids[3]} (4 event(s) replayed)" in log_b
    assert log_b.count(", 8 event(s): the client left") == 2 and ", 4 event(s): the client left" in log_b


def test_anonymous_and_wrong_token_scrapes_are_refused_on_every_process(pair: tuple[Daphne, Daphne]) -> None:
    for daphne in pair:
        status, body = request("GET", daphne.url + "/metrics", token=None)
        assert status == 401 and body["error"] == "not_authenticated"
        status, body = request("GET", daphne.url + "/metrics", token="not-the-metrics-token-0123456789")
        assert status == 401
        # A service's token is not the metrics token either.
        status, body = request("GET", daphne.url + "/metrics")
        assert status == 401
        samples = scrape(daphne)
        assert get(samples, "helpdesk_http_requests_total", route="metrics", method="GET", status="401") == 3
        wait_until(lambda d=daphne: d.log_text().count("refused GET metrics: 401 not_authenticated") == 3)
        log = daphne.log_text()
        assert "(anonymous from 127.0.0.1)" in log and "(an unknown token from 127.0.0.1)" in log
        assert "(service ai_chatbot from 127.0.0.1)" in log
