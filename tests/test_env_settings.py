"""Typed environment readers: a bad value stops start-up with a message naming the variable."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.core.exceptions import ImproperlyConfigured

from sse_project.env import envbool, envint, envlist, envstr, envtokens
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
