"""The reconnect storm: one of two daphne processes SIGKILLed under 2,500 SSE streams.

    python -m bench.storm                       # this part alone, on a private Redis (1-2 min)
    python -m bench.storm --storm-rounds 3      # three storms of each variant
    python -m bench.storm --storm-backlog 50    # daphne's -b/-p listen queue (Twisted's 50), not the shipped 4096
    python -m bench.storm --storm-profile       # py-spy on the surviving server, 5 s from the kill

Two product servers on the run's Redis and database, started with a short reconnect delay
(SSE_RETRY_MS, `--storm-retry-ms`, 500 by default, in the servers' environment). The storm's
load client (bench/storm_client.py) opens `--storm-killed` streams on `sse:broadcast` on the
first server and `--storm-kept` on the second, and the publisher publishes numbered events
through the product's path at `--storm-rate` the whole time. After `--storm-before` seconds
the first server is SIGKILLed. Each of its streams, on EOF, waits its delay and reopens on the
second server (where a proxy would send it) with `Last-Event-ID`, as EventSource does. Two
variants, each on a fresh pair of servers:

- `jitter`: each stream waits the `retry:` its server sent it (drawn per stream from
  [SSE_RETRY_MS, 2 * SSE_RETRY_MS), realtime.sse.jittered_retry_ms);
- `fixed`: each waits SSE_RETRY_MS itself, what they would all do if the server sent one fixed
  `retry:`: the whole herd comes back in the same instant.

Measured per storm: from the kill to the moment every killed stream has resumed (its first
frame on the new server) and has caught up (holds, with no gap, every event any stream had
received by the time it resumed); the same less the base delay (the client's own wait); the
reconnects' set-up times (connect to first frame), failed attempts by kind and retries; per
stream, every event published in the window exactly once (none missing, none doubled), and
`reset` events counted apart; the surviving server's CPU from the kill until the storm ends;
the connections the kernel dropped at a full listen queue (/proc/net/netstat, machine-wide).
A storm ends when every killed stream has caught up, been told to reset or given up, or
`--storm-limit` seconds after the kill.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import procs
from bench.procs import BENCH_TOKEN

if TYPE_CHECKING:
    from bench.run import Controlled, Run

VARIANTS = ("jitter", "fixed")
GOAL_S = 2.0  # every killed stream back and caught up within this, for 2,500 streams
LABELS = {"jitter": "with jitter", "fixed": "without jitter"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The part's options (bench/run.py adds them to its own parser)."""
    group = parser.add_argument_group("storm part")
    group.add_argument("--storm-killed", type=int, default=2500, help="streams on the server that is killed")
    group.add_argument("--storm-kept", type=int, default=2500, help="streams on the server that survives")
    group.add_argument("--storm-retry-ms", type=int, default=500, help="SSE_RETRY_MS of the storm's servers")
    group.add_argument("--storm-rate", type=float, default=20.0, help="events/s published during the storm")
    group.add_argument("--storm-before", type=float, default=3.0, help="seconds of publishing before the kill")
    group.add_argument("--storm-after", type=float, default=10.0, help="seconds of publishing after the kill")
    group.add_argument(
        "--storm-limit", type=float, default=30.0, help="the longest a storm is waited for, from the kill (s)"
    )
    group.add_argument("--storm-variants", default=",".join(VARIANTS), help="jitter, fixed (each on fresh servers)")
    group.add_argument("--storm-rounds", type=int, default=1, help="storms of each variant, taking turns")
    group.add_argument(
        "--storm-backlog",
        type=int,
        default=0,
        help="start daphne with this listen backlog (-e tcp:...:backlog=N); 0: as shipped (4096, the systemd unit's)",
    )
    group.add_argument(
        "--storm-profile", action="store_true", help="py-spy record the surviving server from the kill (5 s)"
    )


def measure(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """The storms of the part, on servers of their own and a load client of its own (all stopped)."""
    from bench.run import Controlled

    variants = [v for v in args.storm_variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"bench: unknown --storm-variants {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    print(
        f"\n== storm: {args.storm_killed} streams on a server that is SIGKILLed, {args.storm_kept} on the other, "
        f"SSE_RETRY_MS={args.storm_retry_ms}, {args.storm_rate:g} events/s",
        flush=True,
    )
    client = Controlled(
        "storm-client",
        [sys.executable, "-m", "bench.storm_client"]
        + ["--loop", getattr(args, "client_loop", "uvloop"), "--sched", getattr(args, "client_sched", "batch")],
        procs.base_env(),
        run.workdir / "storm-client.log",
    )
    result: dict[str, Any] = {
        "killed": args.storm_killed,
        "kept": args.storm_kept,
        "retry_ms": args.storm_retry_ms,
        "rate": args.storm_rate,
        "goal_s": GOAL_S,
        "backlog": args.storm_backlog or None,
        "limit_s": args.storm_limit,
        "storms": [],
    }
    try:
        for number in range(args.storm_rounds):
            for variant in variants:
                storm = one_storm(run, args, client, variant, f"storm-{variant}-{number + 1}")
                result["storms"].append(storm)
    finally:
        client.stop()
    result["summary"] = summary(result)
    return result


def listen_drops() -> dict[str, int]:
    """The kernel's counts of connections dropped at a full listen queue (this network namespace:
    other processes' too; on a quiet machine they are the servers')."""
    try:
        with open("/proc/net/netstat") as f:
            lines = [line.split() for line in f if line.startswith("TcpExt:")]
    except OSError:
        return {}
    if len(lines) < 2:
        return {}
    names, values = lines[0][1:], lines[1][1:]
    wanted = ("ListenOverflows", "ListenDrops", "TCPReqQFullDrop", "SyncookiesSent")
    return {name: int(value) for name, value in zip(names, values, strict=True) if name in wanted}


def last_ids(redis: procs.Redis, count: int) -> list[str]:
    """The ids of the newest `count` events of sse:broadcast's history, newest first."""
    reply = redis.command("XREVRANGE", "sse:history:sse:broadcast", "+", "-", "COUNT", str(count))
    return [m.decode() for m in re.findall(rb"\$\d+\r\n(\d+-\d+)\r\n", reply)]


def one_storm(run: Run, args: argparse.Namespace, client: Controlled, variant: str, label: str) -> dict[str, Any]:
    """Fresh servers, the streams, the publisher running, the kill, the storm; then the checks."""
    killed, kept, base = args.storm_killed, args.storm_kept, args.storm_retry_ms
    env = {**args.product_env, "SSE_RETRY_MS": str(base)}
    run.redis.command("DEL", "sse:record", "sse:recorder:raw")
    servers = [procs.product_server(run.redis.url, run.db_url, run.workdir / f"{label}-{i}.log", env) for i in range(2)]
    for server in servers:
        if args.storm_backlog:
            # The servers listen as the shipped unit does (-e tcp:...:backlog=4096); another queue
            # length, for comparison (daphne's -b/-p give Twisted's 50).
            at = server.args.index("-e")
            server.args[at + 1] = f"tcp:port={server.port}:interface=127.0.0.1:backlog={args.storm_backlog}"
        server.start()
    victim, survivor = servers
    storm: dict[str, Any] = {"variant": variant, "label": label}
    publishing: threading.Thread | None = None
    try:
        for server in servers:
            server.wait_ready()
        publisher = run.publisher("product")
        warm = publisher.call(
            {"cmd": "run", "mode": "broadcast", "sessions": 1, "rate": 200.0, "seconds": 0.25, "seq0": run.seq},
            timeout=60,
        )
        run.seq = warm["seq_hi"]
        # One resumed stream per server first (ten events replayed), so the first subscription,
        # the first history read and what they import are not counted as the storm's.
        ids = last_ids(run.redis, 10)
        lo = run.seq
        warmed = client.call(
            {
                "cmd": "open",
                "ports": [victim.port, survivor.port],
                "counts": [1, 1],
                "token": BENCH_TOKEN,
                "lo": lo,
                "size": 1,
                "last_id": ids[-1] if ids else None,
            }
        )
        client.call({"cmd": "close"})
        if warmed["opened"] != 2:
            raise RuntimeError(f"{label}: warm-up streams did not open: {warmed}")
        total = max(1, round(args.storm_rate * (args.storm_before + args.storm_after)))
        setup = client.call(
            {
                "cmd": "open",
                "ports": [victim.port, survivor.port],
                "counts": [killed, kept],
                "token": BENCH_TOKEN,
                "lo": lo,
                "size": total,
                "concurrency": getattr(args, "connect_concurrency", 64),
            },
            timeout=300,
        )
        storm["setup"] = setup
        print(
            f"   {label}: {setup['opened']} streams open in {setup['seconds']:.2f}s ({setup['failed']} failed), "
            f"retry: {setup['retry_ms_min']}-{setup['retry_ms_max']} ms",
            flush=True,
        )
        if setup["opened"] < killed + kept:
            storm["error"] = f"only {setup['opened']} of {killed + kept} streams opened: {setup['errors']}"
            return storm
        client.call({"cmd": "arm", "port": survivor.port, "delay": "retry" if variant == "jitter" else "base",
                     "base_ms": base})  # fmt: skip
        time.sleep(1.0)
        sent: dict[str, Any] = {}

        def publish() -> None:
            sent.update(
                publisher.call(
                    {"cmd": "run", "mode": "broadcast", "sessions": 1, "rate": args.storm_rate,
                     "seconds": args.storm_before + args.storm_after, "seq0": lo},
                    timeout=(args.storm_before + args.storm_after) * 10 + 60,
                )
            )  # fmt: skip

        pids = {"survivor": [survivor.pid], "client": [client.pid], "redis": [run.redis.pid]}
        pids["publisher"] = [publisher.pid]
        publishing = threading.Thread(target=publish, name="storm-publisher", daemon=True)
        publishing.start()
        wall0, cpu_start = time.monotonic(), procs.cpu_seconds(survivor.pid)
        time.sleep(args.storm_before)
        cpu0 = {role: sum(procs.cpu_seconds(p) for p in ps) for role, ps in pids.items()}
        busy0 = procs.machine_busy_seconds()
        drops0 = listen_drops()
        kill_wall = time.monotonic()
        steady = (cpu0["survivor"] - cpu_start) / max(kill_wall - wall0, 1e-9) * 100
        profiler = profile(run, survivor, label) if args.storm_profile else None
        t_kill = time.time()
        os.kill(victim.pid, signal.SIGKILL)
        state: dict[str, Any] = {}
        deadline = kill_wall + args.storm_limit
        while time.monotonic() < deadline:
            state = client.call({"cmd": "status", "hi": lo})
            if state["settled"] >= killed:
                break
            time.sleep(0.02)
        # From the kill until every killed stream is back and caught up (or never will be).
        storm_wall = time.monotonic() - kill_wall
        cpu = {role: sum(procs.cpu_seconds(p) for p in ps) - cpu0[role] for role, ps in pids.items()}
        other = max(0.0, procs.machine_busy_seconds() - busy0 - sum(cpu.values()))
        storm["listen_drops"] = {name: value - drops0.get(name, 0) for name, value in listen_drops().items()}
        storm["status_at_end"] = state
        storm["storm_wall_s"] = storm_wall
        storm["cpu_seconds"] = cpu
        storm["cpu_percent"] = {role: value / max(storm_wall, 1e-9) * 100 for role, value in cpu.items()}
        storm["cpu_percent"]["other"] = other / max(storm_wall, 1e-9) * 100
        storm["survivor_cpu_percent_before"] = steady
        if profiler is not None:
            profiler.wait(60)
        publishing.join((args.storm_before + args.storm_after) * 10 + 60)
        if "seq_hi" not in sent:
            raise RuntimeError(f"{label}: the publisher did not finish")
        run.seq = sent["seq_hi"]
        storm["published"] = sent["published"]
        storm["publisher_errors"] = sent["errors"]
        # Every stream holds every event, or nothing has moved for 2 s (at most 30 s).
        started, last, moved = time.monotonic(), -1, time.monotonic()
        while time.monotonic() - started < 30 and time.monotonic() - moved < 2:
            complete = client.call({"cmd": "status", "hi": run.seq})["complete"]
            if complete >= killed + kept:
                break
            if complete != last:
                last, moved = complete, time.monotonic()
            time.sleep(0.05)
        storm.update(client.call({"cmd": "result", "t_kill": t_kill, "hi": run.seq}, timeout=120))
        print_storm(storm, base)
    finally:
        if publishing is not None:
            publishing.join((args.storm_before + args.storm_after) * 10 + 60)
        client.call({"cmd": "close"}, timeout=60)
        for server in servers:
            server.stop()
    return storm


def profile(run: Run, server: procs.Server, label: str) -> subprocess.Popen[bytes] | None:
    """py-spy's collapsed stacks of `server` for 5 s, into the run's work directory."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        print("   (py-spy is not installed: no profile)", flush=True)
        return None
    out = run.workdir / f"{label}-survivor.txt"
    args = [spy, "record", "--pid", str(server.pid), "--duration", "5", "--rate", "250", "--format", "raw"]
    args += ["--output", str(out), "--nonblocking"]
    print(f"   profile: {out}", flush=True)
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def print_storm(storm: dict[str, Any], base_ms: int) -> None:
    def s(value: float | None) -> str:
        return "never" if value is None else f"{value:.2f}s"

    victims, kept = storm["victim_streams"], storm["kept_streams"]
    print(
        f"   {LABELS[storm['variant']]}: kill -> all resumed {s(storm['all_resumed_s'])}, all caught up "
        f"{s(storm['all_caught_up_s'])} (retry delays {storm['delay_ms_min']:.0f}-{storm['delay_ms_max']:.0f} ms); "
        f"set-up p50 {_ms(storm['reopen']['p50_ms'])} p99 {_ms(storm['reopen']['p99_ms'])} "
        f"max {_ms(storm['reopen']['max_ms'])} ms; failures {storm['failures'] or 0}, retries {storm['retries']}\n"
        f"              set-up times (s): {storm['reopen_histogram_s']}",
        flush=True,
    )
    print(
        f"              killed streams: {victims['missing']} missing, {victims['doubled']} doubled, "
        f"{victims['resets']} resets; kept: {kept['missing']} missing, {kept['doubled']} doubled; "
        f"survivor CPU {storm['cpu_seconds']['survivor']:.2f}s in {storm['storm_wall_s']:.2f}s "
        f"({storm['cpu_percent']['survivor']:.0f}%), client {storm['cpu_percent']['client']:.0f}%, "
        f"other {storm['cpu_percent']['other']:.0f}%; listen queue drops {storm['listen_drops'].get('ListenDrops')}",
        flush=True,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


# --- the figures over the storms, and their table ------------------------------------------


def _median(values: list[float | None]) -> float | None:
    """The median of the storms' figure; None when any storm never got there."""
    if not values or any(v is None for v in values):
        return None
    return float(statistics.median(v for v in values if v is not None))


def summary(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per variant: medians of the storms' times, sums of what went wrong."""
    out: dict[str, dict[str, Any]] = {}
    base_s = result["retry_ms"] / 1000
    for variant in VARIANTS:
        storms = [s for s in result["storms"] if s["variant"] == variant and "error" not in s]
        if not storms:
            continue
        resumed = _median([s["all_resumed_s"] for s in storms])
        failures: dict[str, int] = {}
        for storm in storms:
            for kind, count in storm["failures"].items():
                failures[kind] = failures.get(kind, 0) + count
        out[variant] = {
            "storms": len(storms),
            "all_resumed_s": resumed,
            "all_caught_up_s": _median([s["all_caught_up_s"] for s in storms]),
            "caught_up": _median([s["caught_up"] for s in storms]),
            "all_resumed_less_base_s": None if resumed is None else resumed - base_s,
            "delay_ms_min": min(s["delay_ms_min"] for s in storms),
            "delay_ms_max": max(s["delay_ms_max"] for s in storms),
            **{f"reopen_{k}": _median([s["reopen"][k] for s in storms]) for k in ("p50_ms", "p99_ms", "max_ms")},
            **{f"after_delay_{k}": _median([s["after_own_delay"][k] for s in storms]) for k in ("p99_ms", "max_ms")},
            "reopen_over_1s": _median([_over(s["reopen_histogram_s"], 1.0) for s in storms]),
            "resumed_within_1": _median([s["resumed_within"]["1"] for s in storms]),
            "resumed_within_2": _median([s["resumed_within"]["2"] for s in storms]),
            "failures": failures,
            "retries": sum(s["retries"] for s in storms),
            "gave_up": sum(s["gave_up"] for s in storms),
            "survivor_cpu_s": _median([s["cpu_seconds"]["survivor"] for s in storms]),
            "survivor_cpu_percent": _median([s["cpu_percent"]["survivor"] for s in storms]),
            "survivor_cpu_percent_before": _median([s["survivor_cpu_percent_before"] for s in storms]),
            "other_cpu_percent": _median([s["cpu_percent"]["other"] for s in storms]),
            "listen_drops": sum(s["listen_drops"].get("ListenDrops", 0) for s in storms),
            "client_lateness_max_ms": max(s["client_lateness_max_ms"] for s in storms),
            "eof_after_kill_max_ms": max(s["eof_after_kill_max_ms"] or 0.0 for s in storms),
            **{
                f"{group}_{key}": sum(s[f"{group}_streams"][key] for s in storms)
                for group in ("victim", "kept")
                for key in ("missing", "doubled", "streams_missing", "streams_doubled", "resets", "streams_reset")
            },
            "disorder": sum(s["victim_streams"]["disorder"] + s["kept_streams"]["disorder"] for s in storms),
        }
    return out


def _over(buckets: dict[str, int], limit: float) -> float:
    """How many set-ups took `limit` seconds or more, from the histogram's buckets."""
    total = 0
    for name, count in buckets.items():
        edge = float(name.lstrip("<>="))
        if (name.startswith(">=") and edge >= limit) or (name.startswith("<") and edge > limit):
            total += count
    return float(total)


def _s(value: float | None) -> str:
    return "never (not every stream)" if value is None else f"{value:.2f}"


def markdown(result: dict[str, Any]) -> list[str]:
    """The part's table, as markdown lines (bench/report.py puts them in the run's report)."""
    figures = result.get("summary") or summary(result)
    variants = [v for v in VARIANTS if v in figures]
    if not variants:
        errors = [s.get("error", "") for s in result.get("storms", [])]
        return ["### Reconnect storm", "", f"No storm completed: {'; '.join(e for e in errors if e)}", ""]
    killed, kept, base = result["killed"], result["kept"], result["retry_ms"]
    storms = figures[variants[0]]["storms"]
    out = [
        f"### Reconnect storm: one of two servers SIGKILLed under {killed:,} streams ({kept:,} on the other)",
        "",
        f"`sse:broadcast` at {result['rate']:g} events/s, SSE_RETRY_MS={base}. Each killed stream waits its delay "
        "and reopens on the surviving server with `Last-Event-ID`, as EventSource does: **with jitter** it waits "
        f"the `retry:` its server sent ([{base}, {2 * base}) ms, drawn per stream), **without jitter** {base} ms, "
        f"all of them in the same instant. Each variant on fresh servers; medians of {storms} storm(s), counts "
        "summed over them. The storm ends when every killed stream has caught up, been told to reset or given "
        f"up, or {result.get('limit_s', 30):g} s after the kill. "
        "Resumed: its first frame on the new server; caught up: it holds, with no gap, every event any stream "
        "had by then. Times from the kill, wall clock (reads stamped by the kernel). An attempt waits for its "
        "first frame as a browser does (up to 60 s, longer than a storm is waited for)"
        + (
            f"; daphne listening with a backlog of {result['backlog']} (as shipped: 4096)."
            if result.get("backlog")
            else "; daphne as the shipped unit starts it (a listen backlog of 4096)."
        ),
        "",
        "| metric | " + " | ".join(LABELS[v] for v in variants) + " |",
        "|---|" + "---:|" * len(variants),
    ]

    def row(label: str, cell: Any) -> None:
        out.append(f"| {label} | " + " | ".join(cell(figures[v]) for v in variants) + " |")

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.0f}"

    row("kill -> every killed stream resumed (s)", lambda f: _s(f["all_resumed_s"]))
    row(
        "kill -> every killed stream caught up (s)",
        lambda f: (
            _s(f["all_caught_up_s"])
            if f["all_caught_up_s"] is not None
            else f"never: {f['caught_up']:.0f} of {killed:,} (median)"
        ),
    )
    row(f"kill -> every killed stream resumed, less the base delay of {base} ms (s)",
        lambda f: _s(f["all_resumed_less_base_s"]))  # fmt: skip
    row("the clients' delays (ms)", lambda f: f"{f['delay_ms_min']:.0f}-{f['delay_ms_max']:.0f}")
    row(f"killed streams resumed within 1 s / 2 s (of {killed:,})",
        lambda f: f"{f['resumed_within_1']:.0f} / {f['resumed_within_2']:.0f}")  # fmt: skip
    row("reconnect set-up, connect -> first frame, p50 / p99 / max (ms)",
        lambda f: f"{ms(f['reopen_p50_ms'])} / {ms(f['reopen_p99_ms'])} / {ms(f['reopen_max_ms'])}")  # fmt: skip
    row("reconnects that took 1 s or more (a dropped SYN is sent again after 1 s)",
        lambda f: f"{f['reopen_over_1s']:.0f}")  # fmt: skip
    row("end of a stream's own delay -> first frame, p99 / max (ms)",
        lambda f: f"{ms(f['after_delay_p99_ms'])} / {ms(f['after_delay_max_ms'])}")  # fmt: skip
    row("failed attempts (by kind) / retries / gave up",
        lambda f: f"{_failures(f['failures'])} / {f['retries']} / {f['gave_up']}")  # fmt: skip
    row("events missing / doubled, killed streams (streams)",
        lambda f: f"{f['victim_missing']} ({f['victim_streams_missing']}) / {f['victim_doubled']} "
        f"({f['victim_streams_doubled']})")  # fmt: skip
    row("events missing / doubled, surviving streams (streams)",
        lambda f: f"{f['kept_missing']} ({f['kept_streams_missing']}) / {f['kept_doubled']} "
        f"({f['kept_streams_doubled']})")  # fmt: skip
    row("`reset` events (streams)", lambda f: f"{f['victim_resets'] + f['kept_resets']} "
        f"({f['victim_streams_reset'] + f['kept_streams_reset']})")  # fmt: skip
    row("connection attempts dropped at a full listen queue (kernel's ListenDrops)", lambda f: f"{f['listen_drops']}")
    row("surviving server's CPU, kill -> end of the storm: s (% of a core)",
        lambda f: f"{f['survivor_cpu_s']:.2f} ({f['survivor_cpu_percent']:.0f} %)")  # fmt: skip
    row("surviving server's CPU before the kill (% of a core)", lambda f: f"{f['survivor_cpu_percent_before']:.0f}")
    row("the rest of the machine during the storm (% of a core)", lambda f: f"{f['other_cpu_percent']:.0f}")
    row("the load client: last EOF after the kill / its timers late, max (ms)",
        lambda f: f"{f['eof_after_kill_max_ms']:.0f} / {f['client_lateness_max_ms']:.0f}")  # fmt: skip
    row(f"goal: every killed stream caught up within {result['goal_s']:g} s", lambda f: _verdict(f, result["goal_s"]))
    out.append("")
    return out


def _failures(failures: dict[str, int]) -> str:
    if not failures:
        return "0"
    return ", ".join(f"{kind}: {count}" for kind, count in sorted(failures.items()))


def _verdict(figures: dict[str, Any], goal: float) -> str:
    caught = figures["all_caught_up_s"]
    lost = figures["victim_missing"] + figures["victim_doubled"] + figures["kept_missing"] + figures["kept_doubled"]
    if caught is None:
        return "missed (not every stream caught up)"
    verdict = "met" if caught <= goal else f"missed by {caught - goal:.2f} s"
    return verdict + ("" if not lost else f", but {lost} events missing or doubled")


# --- alone: python -m bench.storm --------------------------------------------------------


def main(argv: list[str] | None = None) -> None:
    from bench import run as bench_run

    parser = argparse.ArgumentParser(prog="python -m bench.storm", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the product servers")
    parser.add_argument("--client-sched", choices=["idle", "batch", "normal"], default="batch")
    parser.add_argument("--out", type=Path, default=None, help="also write the result JSON here")
    mine = parser.parse_args(argv)
    # The run's own context (private redis-server, migrated database, publisher), as in make bench.
    args = bench_run.parse_args(["--systems", "product", "--modes", "storm"])
    vars(args).update({k: v for k, v in vars(mine).items() if k != "env"})
    args.product_env = dict(item.split("=", 1) for item in mine.env)
    procs.raise_file_limit()
    workdir = Path(tempfile.mkdtemp(prefix="sse-storm-"))
    print(f"bench.storm: logs in {workdir}", flush=True)
    run = bench_run.Run(args, workdir)
    try:
        run.migrate()
        result = measure(run, args)
    finally:
        run.close()
    path = mine.out or workdir / "storm.json"
    path.write_text(json.dumps(result, indent=1))
    print("\n" + "\n".join(markdown(result)))
    print(f"result: {path}")


if __name__ == "__main__":
    main()
