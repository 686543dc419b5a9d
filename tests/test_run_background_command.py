"""`manage.py run_background`: the relay and the recorder as a process of their own."""

import signal
import subprocess
import sys
import time

from tests.support.procs import ROOT, RedisServer, request, wait_until
from tests.support.sessions import unique


def test_it_stores_what_a_server_without_its_own_threads_published_and_stops_on_sigterm(
    redis_env: dict[str, str], tmp_path
) -> None:
    from tests.support.procs import Daphne

    redis = RedisServer().start()
    env = {**redis_env, "REDIS_URL": redis.url}
    server = Daphne({**env, "SSE_BACKGROUND": "false"}, log_path=tmp_path / "daphne.log").start()
    worker = subprocess.Popen(
        [sys.executable, "manage.py", "run_background"], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        name = unique("worker")
        payload = {"session_name": name, "data": {"text": "stored by the worker", "sender": "customer"}}
        status, body = request(
            "POST",
            server.url + "/api/publish",
            {"channel": f"sse:session:{name}", "type": "new_message", "payload": payload},
        )
        assert status == 202 and body["delivery"] == "bus"
        status, body = request("POST", server.url + "/api/manual/escalate", {"session_name": name})
        assert status == 201

        def recorded() -> list[str]:
            _, detail = request("GET", f"{server.url}/api/sessions/{name}")
            return [e["type"] for e in detail.get("events", [])] if isinstance(detail, dict) else []

        wait_until(lambda: recorded() == ["new_message", "transfer_request", "status_change"], timeout=10)
        worker.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert worker.wait(10) == 0 and time.monotonic() - started < 5
        assert "outbox relay and recorder running on Redis" in (worker.stdout.read() if worker.stdout else "")
    finally:
        if worker.poll() is None:
            worker.kill()
        server.stop()
        redis.stop()
