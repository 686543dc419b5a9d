"""Typed environment readers: a bad value stops start-up with a message naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from sse_project.env import envbool, envhostports, envint, envlist, envstr, envtokens
from tests.support.procs import ROOT, base_env

TOKEN_A = "a" * 16
TOKEN_B = "b" * 24


@pytest.mark.parametrize("value", ["1", "true", "True", "YES", "on", " true "])
def test_envbool_reads_true(value: str) -> None:
    assert envbool("USE_REDIS_SSE", False, env={"USE_REDIS_SSE": value}) is True


@pytest.mark.parametrize("value", ["0", "false", "FALSE", "no", "off"])
def test_envbool_reads_false(value: str) -> None:
    assert envbool("USE_REDIS_SSE", True, env={"USE_REDIS_SSE": value}) is False


@pytest.mark.parametrize("env", [{}, {"USE_REDIS_SSE": ""}, {"USE_REDIS_SSE": "   "}])
def test_envbool_takes_the_default_when_unset_or_empty(env: dict[str, str]) -> None:
    assert envbool("USE_REDIS_SSE", True, env=env) is True


@pytest.mark.parametrize("value", ["maybe", "2", "tru", "y e s", "\u30cf\u30a4"])
def test_envbool_refuses_a_bad_value_naming_the_variable(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="USE_REDIS_SSE must be true or false"):
        envbool("USE_REDIS_SSE", True, env={"USE_REDIS_SSE": value})


def test_envint_reads_a_number_and_defaults_when_unset() -> None:
    assert envint("SSE_HISTORY_SIZE", 1000, env={"SSE_HISTORY_SIZE": " 50 "}) == 50
    assert envint("SSE_HISTORY_SIZE", 1000, env={}) == 1000
    assert envint("SSE_HISTORY_SIZE", 1000, minimum=0, env={"SSE_HISTORY_SIZE": "0"}) == 0


@pytest.mark.parametrize("value", ["ten", "1.5", "1e3", "0x10", "15s"])
def test_envint_refuses_a_value_that_is_not_a_whole_number(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="SSE_HEARTBEAT_SECONDS must be a whole number"):
        envint("SSE_HEARTBEAT_SECONDS", 15, env={"SSE_HEARTBEAT_SECONDS": value})


def test_envint_refuses_a_value_out_of_bounds_naming_the_variable() -> None:
    with pytest.raises(ImproperlyConfigured, match="SSE_HEARTBEAT_SECONDS must be at least 1, not 0"):
        envint("SSE_HEARTBEAT_SECONDS", 15, minimum=1, env={"SSE_HEARTBEAT_SECONDS": "0"})
    with pytest.raises(ImproperlyConfigured, match="SSE_HEARTBEAT_SECONDS must be at most 3600, not 3601"):
        envint("SSE_HEARTBEAT_SECONDS", 15, maximum=3600, env={"SSE_HEARTBEAT_SECONDS": "3601"})


def test_envstr_and_envlist_strip_and_default() -> None:
    assert envstr("REDIS_URL", env={"REDIS_URL": "  "}) is None
    assert envstr("REDIS_URL", "x", env={}) == "x"
    assert envlist("DJANGO_ALLOWED_HOSTS", ["d"], env={"DJANGO_ALLOWED_HOSTS": " a, ,b "}) == ["a", "b"]


def test_envtokens_maps_each_token_to_its_identity() -> None:
    env = {"SERVICE_TOKENS": f" ai_chatbot={TOKEN_A} , crm-2 = {TOKEN_B},"}
    assert envtokens("SERVICE_TOKENS", env=env) == {TOKEN_A: "ai_chatbot", TOKEN_B: "crm-2"}
    assert envtokens("SERVICE_TOKENS", env={}) == {}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("ai_chatbot", "expected identity=token"),
        (f"={TOKEN_A}", "expected identity=token"),
        ("ai_chatbot=", "expected identity=token"),
        (f"ai chatbot={TOKEN_A}", "may hold only"),
        (f"ai:chatbot={TOKEN_A}", "may hold only"),
        (f"b\u00f6t={TOKEN_A}", "may hold only"),
        ("ai_chatbot=short", "shorter than 16"),
        (f"ai_chatbot={TOKEN_A},crm={TOKEN_A}", "share one token"),
    ],
    ids=["no equals", "no identity", "no token", "space", "colon", "non-ASCII", "short token", "shared token"],
)
def test_envtokens_refuses_a_bad_value_naming_the_variable(value: str, reason: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=f"^SERVICE_TOKENS: .*{reason}"):
        envtokens("SERVICE_TOKENS", env={"SERVICE_TOKENS": value})


def test_envtokens_never_repeats_a_token_in_its_error() -> None:
    with pytest.raises(ImproperlyConfigured) as caught:
        envtokens("SERVICE_TOKENS", env={"SERVICE_TOKENS": "ai_chatbot:" + TOKEN_B})
    assert TOKEN_B not in str(caught.value)


def test_a_bad_setting_stops_start_up_with_the_variables_name() -> None:
    done = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=base_env(SSE_HEARTBEAT_SECONDS="soon"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured: SSE_HEARTBEAT_SECONDS must be a whole number, not 'soon'" in done.stderr


@pytest.mark.parametrize("identity", ["system", "agent_workbench"])
def test_it_refuses_a_service_identity_that_would_let_a_token_speak_for_the_server(identity):
    with pytest.raises(ImproperlyConfigured, match="reserved"):
        envtokens("SERVICE_TOKENS", env={"SERVICE_TOKENS": f"{identity}=0123456789abcdefXYZ"})


# --- REDIS_SENTINELS: host:port lists -------------------------------------------------------


def test_envhostports_reads_hosts_and_ports_in_order() -> None:
    env = {"REDIS_SENTINELS": "a:1,b:2"}
    assert envhostports("REDIS_SENTINELS", env=env) == [("a", 1), ("b", 2)]
    env = {"REDIS_SENTINELS": " sentinel-1.internal:26379 , ,10.0.0.2:26380, "}
    assert envhostports("REDIS_SENTINELS", env=env) == [("sentinel-1.internal", 26379), ("10.0.0.2", 26380)]


def test_envhostports_reads_ipv6_addresses_in_brackets() -> None:
    env = {"REDIS_SENTINELS": "[::1]:26379,[fd00::7]:65535"}
    assert envhostports("REDIS_SENTINELS", env=env) == [("::1", 26379), ("fd00::7", 65535)]


@pytest.mark.parametrize("env", [{}, {"REDIS_SENTINELS": ""}, {"REDIS_SENTINELS": "  "}])
def test_envhostports_is_empty_when_unset(env: dict[str, str]) -> None:
    assert envhostports("REDIS_SENTINELS", env=env) == []


@pytest.mark.parametrize(
    "value",
    ["nohost", "h:0", "h:99999", "h:65536", "h:x", "h:-1", "h:", ":26379", "[::1]", "a:1,nohost"],
)
def test_envhostports_refuses_a_bad_item_naming_the_variable(value: str) -> None:
    with pytest.raises(ImproperlyConfigured, match="^REDIS_SENTINELS: expected host:port, got "):
        envhostports("REDIS_SENTINELS", env={"REDIS_SENTINELS": value})


def test_envhostports_refuses_a_port_of_digits_int_cannot_read() -> None:
    # "²".isdigit() is True but int("²") raises ValueError: it must still be the named error.
    with pytest.raises(ImproperlyConfigured, match="^REDIS_SENTINELS: expected host:port"):
        envhostports("REDIS_SENTINELS", env={"REDIS_SENTINELS": "h:\u00b2"})


def _django_setup(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=base_env(**env),
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.mark.parametrize(
    "env",
    [{"REDIS_SENTINELS": "127.0.0.1:9"}, {"REDIS_SENTINEL_MASTER": "helpdesk"}],
    ids=["sentinels without a master name", "a master name without sentinels"],
)
def test_settings_refuse_sentinels_and_master_name_one_without_the_other(env: dict[str, str]) -> None:
    done = _django_setup(**env)
    assert done.returncode != 0
    assert "ImproperlyConfigured: REDIS_SENTINELS and REDIS_SENTINEL_MASTER are set together" in done.stderr


def test_settings_refuse_both_redis_url_and_sentinels() -> None:
    done = _django_setup(
        REDIS_URL="redis://127.0.0.1:9/0", REDIS_SENTINELS="127.0.0.1:9", REDIS_SENTINEL_MASTER="helpdesk"
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured: set REDIS_URL or REDIS_SENTINELS, not both" in done.stderr


def test_settings_refuse_a_malformed_sentinel_list_naming_the_variable() -> None:
    done = _django_setup(REDIS_SENTINELS="127.0.0.1:26379,sentinel-2", REDIS_SENTINEL_MASTER="helpdesk")
    assert done.returncode != 0
    assert "ImproperlyConfigured: REDIS_SENTINELS: expected host:port, got 'sentinel-2'" in done.stderr


def test_settings_accept_sentinels_with_a_master_name_and_use_the_redis_layer() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.BUS_ON_REDIS, s.REDIS_SENTINELS, s.CHANNEL_LAYERS['default']['CONFIG']['hosts'])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=base_env(REDIS_SENTINELS="127.0.0.1:9,[::1]:10", REDIS_SENTINEL_MASTER="helpdesk"),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    hosts = "[{'sentinels': [('127.0.0.1', 9), ('::1', 10)], 'master_name': 'helpdesk'}]"
    assert done.stdout.strip() == f"True [('127.0.0.1', 9), ('::1', 10)] {hosts}"
