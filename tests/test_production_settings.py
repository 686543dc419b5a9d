"""Production-safe settings: a process outside DEBUG refuses to start half-configured; the
documented production environment passes `check --deploy`; the DEBUG page hides passwords in
URLs; every page carries a Content-Security-Policy and needs nothing inline."""

from __future__ import annotations

import re
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import ROOT, base_env

PRODUCTION_ENV = ROOT / "docs" / "deploy" / "helpdesk.env"


def environment(**env: str) -> dict[str, str]:
    """The test processes' environment with `env` on top; an empty value unsets a variable."""
    return {name: value for name, value in base_env(**env).items() if value != "" or name not in env}


def run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environment(**env), capture_output=True, text=True, timeout=60
    )


def setup_fails_with(**env: str) -> str:
    done = run("import django; django.setup()", **env)
    assert done.returncode != 0, "the settings accepted it"
    return done.stderr


def test_outside_debug_it_refuses_the_development_key() -> None:
    stderr = setup_fails_with(DJANGO_DEBUG="false", DJANGO_SECRET_KEY="")
    assert "ImproperlyConfigured: DJANGO_SECRET_KEY is not set" in stderr


def test_debug_is_off_unless_asked_for() -> None:
    # No DJANGO_DEBUG at all: the development key is refused as in production.
    assert "DJANGO_SECRET_KEY is not set" in setup_fails_with(DJANGO_SECRET_KEY="")


@pytest.mark.parametrize("key", ["short-key", "a" * 64])
def test_outside_debug_it_refuses_a_weak_key(key: str) -> None:
    assert "DJANGO_SECRET_KEY is too weak" in setup_fails_with(DJANGO_DEBUG="false", DJANGO_SECRET_KEY=key)


def test_outside_debug_it_refuses_an_empty_host_list() -> None:
    assert "DJANGO_ALLOWED_HOSTS is empty" in setup_fails_with(DJANGO_DEBUG="false", DJANGO_ALLOWED_HOSTS="")


def test_with_debug_on_the_development_defaults_start() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DEBUG, s.ALLOWED_HOSTS, s.SESSION_COOKIE_SECURE)"
    )
    done = run(code, DJANGO_DEBUG="true", DJANGO_SECRET_KEY="", DJANGO_ALLOWED_HOSTS="", DJANGO_HTTPS="")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True ['127.0.0.1', 'localhost', '[::1]', 'testserver'] False"


@pytest.mark.parametrize("value", ["X-Forwarded-Proto: https", "X_Forwarded Proto", "x" * 65])
def test_a_malformed_proxy_ssl_header_is_refused(value: str) -> None:
    assert "DJANGO_SECURE_PROXY_SSL_HEADER must be a header name" in setup_fails_with(
        DJANGO_SECURE_PROXY_SSL_HEADER=value
    )


def production_env() -> dict[str, str]:
    """docs/deploy/helpdesk.env, with the secret an operator must fill in."""
    env = {}
    for line in PRODUCTION_ENV.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            env[name.strip()] = value.strip()
    assert env["DJANGO_SECRET_KEY"] == "", "the shipped file must not carry a secret"
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    env.setdefault("DJANGO_HTTPS", "")  # the test processes' plain-HTTP switch does not apply
    return env


def test_the_documented_production_environment_passes_check_deploy() -> None:
    env = environment(**production_env())
    done = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_the_shipped_production_environment_refuses_to_start_until_its_secret_is_set() -> None:
    env = production_env()
    env["DJANGO_SECRET_KEY"] = ""
    assert "DJANGO_SECRET_KEY is not set" in setup_fails_with(**env)


def test_the_production_environment_turns_on_https_hsts_and_the_proxy_header() -> None:
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
        "s.SECURE_PROXY_SSL_HEADER, s.DEBUG)"
    )
    done = run(code, **production_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True True True 31536000 ('HTTP_X_FORWARDED_PROTO', 'https') False"


# --- the DEBUG error page ---------------------------------------------------------------------


_PASSWORDS: list[str] = []


def _settings_with_passwords(settings: Any) -> None:
    """URL settings with random passwords; kept out of the test's locals, which the page shows."""
    _PASSWORDS[:] = [secrets.token_hex(8) for _ in range(3)]
    red, layer, service = _PASSWORDS
    settings.REDIS_URL = f"redis://:{red}@cache.internal:6379/0"
    settings.CHANNEL_LAYERS = {"default": {"CONFIG": {"hosts": [f"redis://user:{layer}@cache.internal:6379/0"]}}}
    settings.SOME_SERVICE_URL = f"https://bob:{service}@example.com/path"


def _boom() -> None:
    raise RuntimeError("boom")


def test_the_debug_page_hides_the_password_of_every_url_setting(rf: Any, settings: Any) -> None:
    from django.views.debug import technical_500_response

    settings.DEBUG = True
    _settings_with_passwords(settings)
    try:
        _boom()
    except RuntimeError:
        page = technical_500_response(rf.get("/x"), *sys.exc_info()).content.decode()
    assert "boom" in page and "cache.internal:6379" in page and "bob:********************@example.com" in page
    assert [p for p in _PASSWORDS if p in page] == []


# --- Content-Security-Policy --------------------------------------------------------------------


def test_pages_carry_a_strict_content_security_policy(client: Any) -> None:
    response = client.get("/accounts/login/")
    policy = response["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert "unsafe-inline" not in policy
    assert response["X-Frame-Options"] == "DENY"


def test_no_template_needs_inline_script_or_style() -> None:
    """The policy allows no inline code: every template keeps its script and style in files."""
    offenders = []
    for path in Path(ROOT, "templates").rglob("*.html"):
        text = path.read_text()
        if re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text) or re.search(r"\sstyle=|<style\b|\son[a-z]+=", text):
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []


POOL = (
    "import django; django.setup(); from django.conf import settings as s; "
    "print(s.DATABASES['default'].get('OPTIONS', {}).get('pool'))"
)


def test_postgresql_connections_are_pooled_per_process_by_default() -> None:
    done = run(POOL, DJANGO_DEBUG="true", DATABASE_URL="postgres://helpdesk@db.example/helpdesk")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "{'min_size': 2, 'max_size': 10, 'timeout': 10}"
    sized = run(
        POOL,
        DJANGO_DEBUG="true",
        DATABASE_URL="postgres://helpdesk@db.example/helpdesk",
        DATABASE_POOL_SIZE="25",
        DATABASE_POOL_TIMEOUT="3",
    )
    assert sized.stdout.strip() == "{'min_size': 2, 'max_size': 25, 'timeout': 3}", sized.stderr


@pytest.mark.parametrize(
    "env",
    [{"DATABASE_POOL_SIZE": "0", "DATABASE_URL": "postgres://helpdesk@db.example/helpdesk"}, {"DATABASE_URL": ""}],
)
def test_no_pool_when_turned_off_or_on_sqlite(env: dict[str, str]) -> None:
    done = run(POOL, DJANGO_DEBUG="true", **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "None"


def test_a_bad_pool_size_stops_start_up_naming_the_variable() -> None:
    assert "DATABASE_POOL_SIZE" in setup_fails_with(DJANGO_DEBUG="true", DATABASE_POOL_SIZE="lots")
