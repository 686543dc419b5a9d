"""Which database the tests run on: SQLite, or PostgreSQL for the second pass of `make test`.

`make test` runs the whole suite on SQLite, then, when `TEST_POSTGRES_URL` is set (an admin
URL such as `postgres://postgres@127.0.0.1:5432/postgres`; `.ci/run` sets it), the session,
handoff and race tests again with `TEST_DB=postgres`: the in-process tests on a database
pytest-django creates, the daphne processes on scratch databases made here and dropped at
exit. Without PostgreSQL at that URL the pass fails at once, saying how to fix it.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

ON_POSTGRES = os.environ.get("TEST_DB") == "postgres"
POSTGRES_ADMIN = os.environ.get("TEST_POSTGRES_URL", "")
HOW_TO_FIX = (
    "the PostgreSQL pass needs a PostgreSQL server at TEST_POSTGRES_URL={url!r} ({error}). Start one "
    "(Debian: apt-get install -y postgresql && service postgresql start; trust auth for the postgres user "
    "on 127.0.0.1), or unset TEST_POSTGRES_URL to run on SQLite only"
)


def postgres_url(database: str) -> str:
    """The admin URL with another database name."""
    return f"{POSTGRES_ADMIN.rpartition('/')[0]}/{database}"


def check_postgres() -> None:
    """Fail loudly, with the fix, when the PostgreSQL pass cannot reach its server."""
    if not POSTGRES_ADMIN:
        raise RuntimeError(
            "TEST_DB=postgres needs TEST_POSTGRES_URL (an admin URL, e.g. postgres://postgres@127.0.0.1:5432/postgres)"
        )
    import psycopg

    try:
        psycopg.connect(POSTGRES_ADMIN, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        raise RuntimeError(HOW_TO_FIX.format(url=POSTGRES_ADMIN, error=str(exc).strip()[:200])) from None


def scratch_database_url(tmp: Path, label: str) -> str:
    """A fresh, empty database for product processes: a SQLite file in `tmp`, or on the
    PostgreSQL pass a new database on the server, dropped when the test run ends."""
    if not ON_POSTGRES:
        return f"sqlite:///{tmp / (label + '.sqlite3')}"
    import psycopg

    name = f"helpdesk_test_{label}_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    atexit.register(_drop, name)
    return postgres_url(name)


def _drop(name: str) -> None:
    import psycopg

    try:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error:
        pass  # the server is gone already: nothing left to tidy


def query_one(database_url: str, sql: str, params: tuple[object, ...]) -> tuple[object, ...] | None:
    """One row from the database the product processes share (SQLite file or PostgreSQL)."""
    if database_url.startswith("sqlite:///"):
        import sqlite3

        with sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=20) as conn:
            return conn.execute(sql, params).fetchone()  # type: ignore[no-any-return]
    import psycopg

    with psycopg.connect(database_url) as conn:
        row = conn.execute(sql.replace("?", "%s"), params).fetchone()
    if row is None:
        return None
    # As SQLite gives them: times as text, so the tests compare one shape.
    return tuple(value.isoformat(sep=" ") if hasattr(value, "isoformat") else value for value in row)


# The single tests that need PostgreSQL whatever the pass (the history search's index, the
# reports' percentiles): this machine and CI run one here.
LOCAL_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


def run_on_scratch_postgres(label: str, script: str, timeout: float = 120) -> dict[str, Any]:
    """Run `script` (Python, after django.setup()) on a fresh, migrated PostgreSQL database that
    is dropped afterwards; returns the JSON object its last line of output prints. Fails loudly,
    with the fix, when no PostgreSQL answers: never a skip counted as a pass."""
    import psycopg

    from tests.support.procs import ROOT, base_env, migrate

    admin_url = POSTGRES_ADMIN or LOCAL_POSTGRES
    try:
        admin = psycopg.connect(admin_url, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as exc:
        raise AssertionError(HOW_TO_FIX.format(url=admin_url, error=str(exc).strip()[:200])) from None
    scratch = f"test_{label}_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{scratch}"')
    try:
        env = base_env(DATABASE_URL=f"{admin_url.rpartition('/')[0]}/{scratch}")
        migrate(env)
        done = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()\n" + script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
        admin.close()
