from tests.support.procs import SSEClient, request


def test_an_event_posted_on_b_reaches_a_subscriber_on_a(daphne_pair):
    a, b = daphne_pair
    client = SSEClient(a.url, "/api/broadcast/events").wait_open()
    status, body = request(
        "POST", b.url + "/api/publish", {"channel": "sse:broadcast", "type": "status_change", "payload": {"n": 1}}
    )
    assert status == 202, body
    [event] = client.wait_for(lambda e: e.event == "status_change", timeout=1)
    assert event.id == body["id"]
    client.close()
