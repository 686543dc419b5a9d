"""Without Redis the product says at start-up that it runs on the in-memory layer."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.support.procs import ROOT, base_env

WARNING = "the realtime bus runs on the in-memory layer, one process only"


def start(**env: str) -> str:
    code = (
        "import django; django.setup(); from django.conf import settings; "
        "print(settings.CHANNEL_LAYERS['default']['BACKEND'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=base_env(**env), capture_output=True, text=True, check=True
    )
    return done.stdout.strip() + "\n" + done.stderr


def test_without_redis_url_it_warns_and_uses_the_memory_layer() -> None:
    output = start()
    assert "MemorySSEChannelLayer" in output and "REDIS_URL is unset: " + WARNING in output


def test_use_redis_sse_false_forces_the_memory_layer_with_a_warning() -> None:
    output = start(REDIS_URL="redis://127.0.0.1:1/0", USE_REDIS_SSE="false")
    assert "MemorySSEChannelLayer" in output and "USE_REDIS_SSE=false: " + WARNING in output


def test_with_redis_url_it_uses_the_redis_layer_quietly() -> None:
    output = start(REDIS_URL="redis://127.0.0.1:1/0")
    assert "RedisSSEChannelLayer" in output and WARNING not in output


@pytest.mark.parametrize("variable", ["SSE_HISTORY_SIZE", "SSE_HEARTBEAT_SECONDS"])
def test_a_bad_value_stops_start_up_naming_the_variable(variable: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=base_env(**{variable: "abc"}),
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0 and variable in done.stderr
