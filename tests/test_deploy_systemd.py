"""The shipped systemd units (docs/deploy/systemd/) and the environment file they read.

`systemd-analyze verify` and `systemd-analyze security --offline` on the shipped files, their
paths pointed at this checkout; the daphne unit's command line run for real and stopped with
its KillSignal within SSE_SHUTDOWN_SECONDS and far inside TimeoutStopSec; run_background's too;
and docs/deploy/helpdesk.env naming every variable the settings read, in a form systemd and a
shell read alike. (This machine runs no systemd as PID 1: the units are not started by systemd
here; their command lines are.)
"""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.deploy import (
    DAPHNE_UNIT,
    ENV_FILE,
    UNITS,
    VENV_DIR,
    UnitDaphne,
    render_unit,
    unit_values,
)
from tests.support.procs import ROOT, RedisServer, SSEClient, base_env, migrate, wait_until

SETTINGS = ROOT / "sse_project" / "settings.py"
BACKGROUND_UNIT = UNITS / "helpdesk-background.service"
# What each shipped unit is verified as: the template as two of its instances.
VERIFIED = ["helpdesk-daphne@8001.service", "helpdesk-daphne@8002.service", "helpdesk-background.service"]
VERIFIED += ["helpdesk.target"]
# systemd-analyze security's scale: 0 (locked down) to 10 (exposed); "OK" is below 4.
EXPOSURE_CEILING = 2.0
# Python's start and the interpreter's exit are not in the budget SSE_SHUTDOWN_SECONDS sets.
EXIT_MARGIN = 3.0


def systemd_analyze() -> str:
    binary = shutil.which("systemd-analyze")
    if binary is None:
        raise RuntimeError("systemd-analyze is missing: the unit tests need Debian's systemd (apt-get install systemd)")
    return binary


def env_file() -> dict[str, str]:
    """The shipped environment file's active lines."""
    values = {}
    for line in ENV_FILE.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name] = value
    return values


def seconds(value: str) -> float:
    """A systemd time span such as `30`, `30s`, `2min`, `1min 30s`."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.fixture
def rendered(tmp_path: Path) -> Path:
    """The shipped units with this checkout's paths, in a directory of their own."""
    for unit in UNITS.iterdir():
        (tmp_path / unit.name).write_text(render_unit(unit))
    return tmp_path


def verify(directory: Path, *units: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), "verify", *units], cwd=directory, capture_output=True, text=True, timeout=60
    )


def test_the_shipped_units_pass_systemd_analyze_verify(rendered: Path) -> None:
    assert sorted(p.name for p in rendered.iterdir()) == sorted(p.name for p in UNITS.iterdir())
    done = verify(rendered, *VERIFIED)
    assert done.returncode == 0, done.stdout + done.stderr
    # Unknown keys and bad values are only warnings to verify: there must be none at all.
    assert done.stdout + done.stderr == "", done.stdout + done.stderr

    # verify does check the programs a unit starts: the daphne unit with its shipped paths (no
    # /opt/helpdesk on this machine) fails.
    (rendered / DAPHNE_UNIT.name).write_text(DAPHNE_UNIT.read_text())
    shipped = verify(rendered, "helpdesk-daphne@8001.service")
    assert shipped.returncode != 0 and f"{VENV_DIR}/bin/daphne" in shipped.stderr


def test_the_shipped_units_are_hardened(rendered: Path) -> None:
    for unit in ("helpdesk-daphne@8001.service", "helpdesk-background.service"):
        done = subprocess.run(
            [systemd_analyze(), "security", "--offline=true", f"./{unit}"],
            cwd=rendered,
            capture_output=True,
            text=True,
            timeout=60,
        )
        level = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
        assert level, done.stdout[-1000:] + done.stderr
        assert float(level.group(1)) <= EXPOSURE_CEILING, done.stdout


def test_the_units_restart_on_failure_and_stop_after_the_streams_have_ended() -> None:
    shutdown = int(env_file()["SSE_SHUTDOWN_SECONDS"])
    for unit in (DAPHNE_UNIT, BACKGROUND_UNIT):
        assert unit_values(unit, "KillSignal") == ["SIGTERM"]
        assert unit_values(unit, "Restart") == ["on-failure"]
        assert unit_values(unit, "EnvironmentFile") == ["/etc/helpdesk/helpdesk.env"]
        # systemd sends SIGKILL after TimeoutStopSec: the streams need their SSE_SHUTDOWN_SECONDS
        # and the process its exit before that.
        (stop,) = unit_values(unit, "TimeoutStopSec")
        assert seconds(stop) >= shutdown + 10, f"{unit.name}: TimeoutStopSec={stop}, SSE_SHUTDOWN_SECONDS={shutdown}"
    # Every stream is a file descriptor: well above the default 1024.
    (files,) = unit_values(DAPHNE_UNIT, "LimitNOFILE")
    assert int(files) >= 20_000


@pytest.fixture
def redis_and_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    redis = RedisServer().start()
    shutdown = env_file()["SSE_SHUTDOWN_SECONDS"]
    env = base_env(
        REDIS_URL=redis.url, DATABASE_URL=f"sqlite:///{tmp_path / 'units.sqlite3'}", SSE_SHUTDOWN_SECONDS=shutdown
    )
    migrate(env)
    try:
        yield env
    finally:
        redis.stop()


def test_the_daphne_unit_command_serves_and_stops_on_its_kill_signal_within_the_budget(
    redis_and_env: dict[str, str], tmp_path: Path
) -> None:
    daphne = UnitDaphne(redis_and_env, log_path=tmp_path / "unit.log").start()
    try:
        assert "--proxy-headers" in daphne.command and daphne.command[-1] == "sse_project.asgi:application"
        streams = [SSEClient(daphne.url, "/api/broadcast/events").wait_open() for _ in range(3)]
        assert daphne.proc is not None
        daphne.proc.send_signal(signal.SIGTERM)  # the unit's KillSignal
        started = time.monotonic()
        code = daphne.proc.wait(int(env_file()["SSE_SHUTDOWN_SECONDS"]) + EXIT_MARGIN)
        took = time.monotonic() - started
        for stream in streams:
            assert stream.closed.wait(2) and stream.ended_cleanly, "a stream was cut instead of ended"
        # systemd counts exit 0 (or death by SIGTERM) after its own SIGTERM as a clean stop.
        assert code in (0, -signal.SIGTERM), daphne.log_text()[-2000:]
        assert took < seconds(unit_values(DAPHNE_UNIT, "TimeoutStopSec")[0])
    finally:
        daphne.stop(signal.SIGKILL)


def test_the_background_unit_command_runs_and_stops_on_its_kill_signal(redis_and_env: dict[str, str]) -> None:
    (command,) = unit_values(BACKGROUND_UNIT, "ExecStart")
    words = [word.replace(VENV_DIR, sys.prefix) for word in shlex.split(command)]
    assert Path(words[0]).exists()
    (workdir,) = unit_values(BACKGROUND_UNIT, "WorkingDirectory")
    assert workdir == "/opt/helpdesk/app"
    worker = subprocess.Popen(words, cwd=ROOT, env=redis_and_env, stdout=subprocess.PIPE, text=True)
    try:
        output = worker.stdout
        assert output is not None
        wait_until(lambda: "running on Redis" in output.readline(), timeout=20, what="run_background to start")
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(seconds(unit_values(BACKGROUND_UNIT, "TimeoutStopSec")[0])) == 0
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)


def test_the_environment_file_names_every_variable_the_settings_read() -> None:
    read = set(re.findall(r'env(?:str|int|bool|list|hostports|tokens)\(\s*"([A-Z0-9_]+)"', SETTINGS.read_text()))
    assert len(read) > 30, "the settings are no longer read as this test expects"
    text = ENV_FILE.read_text()
    written = set(re.findall(r"^(?:# )?([A-Z][A-Z0-9_]*)=", text, re.M))
    assert read - written == set(), "variables the settings read, missing from docs/deploy/helpdesk.env"
    # And each is explained: the line above it, or above the group of variables it is in, is a
    # comment (not a section's heading).
    lines = text.splitlines()
    variable = re.compile(r"(# )?[A-Z][A-Z0-9_]*=")
    for name in sorted(read):
        at = next(i for i, line in enumerate(lines) if re.match(rf"(# )?{name}=", line))
        while at > 0 and variable.match(lines[at - 1]):
            at -= 1
        above = lines[at - 1] if at > 0 else ""
        assert above.startswith("# ") and not above.startswith("# ---"), f"{name} is not explained in helpdesk.env"


def test_the_environment_file_reads_the_same_in_systemd_and_a_shell() -> None:
    for number, line in enumerate(ENV_FILE.read_text().splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        # No quotes, spaces, $ or backslashes: systemd's EnvironmentFile= and `set -a; . file`
        # would each read them their own way.
        assert re.fullmatch(r"[A-Z][A-Z0-9_]*=[^\s\"'$\\`]*", line), f"helpdesk.env line {number}: {line!r}"
    # The daphne unit's ${HELPDESK_BIND} has a default in the unit and a value in the file.
    assert "HELPDESK_BIND" in env_file()
    assert "HELPDESK_BIND=127.0.0.1" in unit_values(DAPHNE_UNIT, "Environment")
