"""`make bench`: the product against two baselines, on this machine, in one run.

    python -m bench.run                 # full run (N = 1000 and 5000, both channel kinds), ~10 min
    python -m bench.run --quick         # N = 1000, short steps: 1-2 minutes, for development
    python -m bench.run --systems product --sizes 1000 --modes broadcast --profile

Systems (each as two server processes on one private redis-server):
  product  this project: daphne + realtime (hub, one subscription per channel per process)
  split    this project with the outbox relay and the recorder in a process of their own
           (daphne with SSE_BACKGROUND=false, plus `manage.py run_background`): the streaming
           processes' cost alone, and the record's cost apart
  before   this project at an earlier version (--before-ref, from git): what a change costs
  raw      baseline (a): redis-py Pub/Sub fan-out to plain asyncio sockets (bench/raw_server.py)
  naive    baseline (b): an AsyncHttpConsumer per connection on channels-redis's stock pub/sub
           layer, one group_send per event (bench/naive/)

Modes: `broadcast` and `session` publish events; `command` (product and before only) runs
escalations, whose events reach N subscribers of sse:broadcast: the latency from the event's
write in the command's transaction, through the commit, to the SSE bytes. `search` times the
history search at 100,000 stored messages (bench/search.py; no servers, about a minute).
`reports` times the Reports page's figures at 100,000 sessions (bench/reports.py; no servers).
`nginx` measures the same broadcast latency through the shipped nginx config and direct, in
turns, on the same servers (bench/nginx.py; needs Debian's nginx).

One load-client process holds the N connections (split over the two servers), a publisher
process publishes timestamped events. See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from bench import centre, procs, report, search, storm
from bench import nginx as nginx_bench
from bench import reports as report_bench
from bench.procs import BENCH_TOKEN, ROOT

# The line the targets and the saturation point are drawn at.
SATURATION_P99_MS = 100.0
# The version `before` runs by default: the bus before the outbox, the recorder and the owned
# pub/sub link (the last commit before them).
BEFORE_REF = "ae0c745"
# Systems that are the product (they run commands).
PRODUCTS = ("product", "split", "before")


class Controlled:
    """A child process driven by JSON lines on stdin/stdout, with a timeout on every answer."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.name = name
        self.log = open(log, "ab")  # noqa: SIM115
        self.popen = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            preexec_fn=procs.raise_file_limit,
        )
        self.lines: queue.Queue[bytes] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.put(line)
        self.lines.put(b"")

    @property
    def pid(self) -> int:
        return self.popen.pid

    def call(self, command: dict[str, Any], timeout: float = 120) -> dict[str, Any]:
        assert self.popen.stdin is not None
        self.popen.stdin.write(json.dumps(command).encode() + b"\n")
        self.popen.stdin.flush()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"{self.name} did not answer {command['cmd']} within {timeout}s") from None
        if not line:
            raise RuntimeError(f"{self.name} exited; see {self.log.name}")
        return dict(json.loads(line))

    def stop(self) -> None:
        if self.popen.poll() is None:
            try:
                assert self.popen.stdin is not None
                self.popen.stdin.write(b'{"cmd": "quit"}\n')
                self.popen.stdin.flush()
                self.popen.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.popen.kill()
                self.popen.wait(5)
        self.log.close()


class Run:
    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        self.args = args
        self.workdir = workdir
        self.redis = procs.Redis(log=workdir / "redis.log").start()
        self.db_url = f"sqlite:///{workdir / 'bench.sqlite3'}"
        # `before` runs its own tree on its own database (another schema).
        self.before_root: Path | None = None
        self.before_db_url = f"sqlite:///{workdir / 'before.sqlite3'}"
        if "before" in args.systems.split(","):
            try:
                self.before_root = procs.export_tree(args.before_ref, workdir / "before")
            except subprocess.CalledProcessError as exc:
                raise SystemExit(
                    f"bench: cannot export {args.before_ref!r} for the `before` system (a clone with its history "
                    f"is needed; or pass --systems without before): {exc.stderr.decode(errors='replace')[:200]}"
                ) from None
        self.client = Controlled(
            "client",
            [sys.executable, "-m", "bench.client", "--loop", args.client_loop, "--sched", args.client_sched]
            + ["--nice", str(args.client_nice)],
            procs.base_env(),
            workdir / "client.log",
        )
        self.publishers: dict[str, Controlled] = {}
        self.background: procs.Proc | None = None  # the `split` system's relay and recorder
        self.seq = 0
        self.scenarios: list[dict[str, Any]] = []
        # More processes whose CPU each step reports, such as nginx in the nginx part.
        self.extra_pids: dict[str, list[int]] = {}

    # --- processes -------------------------------------------------------------------

    def publisher(self, system: str) -> Controlled:
        kind = {"naive": "naive", "before": "before"}.get(system, "product")
        if kind not in self.publishers:
            env = procs.base_env(REDIS_URL=self.redis.url, DATABASE_URL=self.db_url)
            args = [sys.executable, "-m", "bench.publisher", "--system", "naive" if kind == "naive" else "product"]
            cwd = ROOT
            if kind == "before":
                # This publisher script, the earlier version's product (its tree first on the path).
                assert self.before_root is not None
                env.update(DATABASE_URL=self.before_db_url, PYTHONPATH=str(self.before_root))
                args = [sys.executable, str(ROOT / "bench" / "publisher.py"), "--system", "product"]
                cwd = self.before_root
            self.publishers[kind] = Controlled(
                f"publisher-{kind}", args, env, self.workdir / f"publisher-{kind}.log", cwd=cwd
            )
        return self.publishers[kind]

    def migrate(self) -> None:
        trees = [(ROOT, self.db_url)]
        if self.before_root is not None:
            trees.append((self.before_root, self.before_db_url))
        for root, db_url in trees:
            env = procs.base_env(
                REDIS_URL=self.redis.url, DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="sse_project.settings"
            )
            env["PYTHONPATH"] = str(root)
            subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=root, env=env, check=True)

    def servers(self, system: str, label: str) -> list[procs.Server]:
        made = []
        for index in range(2):
            log = self.workdir / f"{label}-{index}.log"
            if system == "product":
                server = procs.product_server(self.redis.url, self.db_url, log, self.args.product_env)
            elif system == "split":
                env = {**self.args.product_env, "SSE_BACKGROUND": "false"}
                server = procs.product_server(self.redis.url, self.db_url, log, env, name="split")
            elif system == "before":
                assert self.before_root is not None
                server = procs.product_server(
                    self.redis.url, self.before_db_url, log, self.args.product_env, self.before_root, "before"
                )
            elif system == "naive":
                server = procs.naive_server(self.redis.url, log)
            else:
                server = procs.raw_server(self.redis.url, log)
            made.append(server.start())
        for server in made:
            server.wait_ready()
        if system == "split":
            self.background = procs.background_process(
                self.redis.url, self.db_url, self.workdir / f"{label}-background.log", self.args.product_env
            ).start()
        return made

    def stop_background(self) -> None:
        if self.background is not None:
            self.background.stop()
            self.background = None

    def close(self) -> None:
        for publisher in self.publishers.values():
            publisher.stop()
        self.client.stop()
        self.redis.stop()

    # --- one scenario: a system, a kind of channel, N connections ----------------------

    def scenario(self, system: str, mode: str, n: int) -> dict[str, Any]:
        label = f"{system}-{mode}-{n}"
        print(f"\n== {label}", flush=True)
        # What the last scenario's recorders had not stored yet must not become this one's work.
        self.redis.command("DEL", "sse:record", "sse:recorder:raw")
        publisher = self.publisher(system)
        servers = self.servers(system, label)
        ports = [s.port for s in servers]
        streams = client_mode(mode)
        result: dict[str, Any] = {"system": system, "mode": mode, "n": n, "steps": []}
        try:
            # Warm-up: the publisher's connections and script load are a one-time cost of
            # that process, not of the servers: publish a few events before anything counts.
            warm_rate = 20.0 if mode == "command" else 200.0
            warm_up = publisher.call(
                {"cmd": "run", "mode": mode, "sessions": n, "rate": warm_rate, "seconds": 0.25, "seq0": self.seq},
                timeout=60,
            )
            self.seq = warm_up["seq_hi"]
            # One stream per server, so imports and first subscriptions are not counted as
            # per-connection memory.
            warm = self.client.call({"cmd": "connect", "ports": ports, "mode": streams, "n": 2, "token": BENCH_TOKEN})
            self.client.call({"cmd": "close"})
            if warm["opened"] != 2:
                raise RuntimeError(f"{label}: warm-up streams did not open: {warm}")
            time.sleep(0.5)
            rss_before = sum(procs.rss_kib(s.pid) for s in servers)
            setup = self.client.call(
                {
                    "cmd": "connect",
                    "ports": ports,
                    "mode": streams,
                    "n": n,
                    "token": BENCH_TOKEN,
                    "concurrency": self.args.connect_concurrency,
                    "clock": self.args.clock,
                },
                timeout=300,
            )
            opened = setup["opened"]
            result["setup"] = {**setup, "rate_per_s": opened / setup["seconds"] if setup["seconds"] else 0.0}
            print(f"   {opened} streams open in {setup['seconds']:.2f}s ({setup['failed']} failed)", flush=True)
            time.sleep(self.args.settle)
            rss_after = sum(procs.rss_kib(s.pid) for s in servers)
            result["rss_kib_before"] = rss_before
            result["rss_kib_after"] = rss_after
            result["rss_kib_per_conn"] = (rss_after - rss_before) / max(opened, 1)
            print(
                f"   RSS {rss_before} -> {rss_after} KiB: {result['rss_kib_per_conn']:.1f} KiB per stream", flush=True
            )
            if opened < n:
                result["error"] = f"only {opened} of {n} streams opened: {setup['errors']}"
                return result
            self.steps(result, publisher, servers, mode, n)
        finally:
            self.client.call({"cmd": "close"}, timeout=60)
            for server in servers:
                server.stop()
            self.stop_background()
        return result

    def steps(
        self, result: dict[str, Any], publisher: Controlled, servers: list[procs.Server], mode: str, n: int
    ) -> None:
        fixed = self.fixed_rates(mode, n)
        steps = result["steps"]
        for rate in fixed:
            steps.append(self.step(publisher, servers, mode, n, rate, fixed=True))
            if steps[-1]["backlog"]:
                result["note"] = f"still delivering a backlog {self.args.drain_timeout:g}s after the {rate:g}/s step"
                self.finish(result, steps)
                return
        if mode == "command":
            self.finish(result, steps)  # a figure at the fixed rate, no saturation search
            return
        # Never below an eighth of the lowest fixed rate: a system that misses the line there
        # has no saturation point worth the minutes a further search would take.
        floor = max(self.args.min_rate, min(fixed) / 8)
        # Saturation search: double while p99 stays under the line, halve while it does not,
        # then one step between the last rate that held and the first that did not.
        good = [s["rate"] for s in steps if s["ok"]]
        bad = [s["rate"] for s in steps if not s["ok"]]
        rate = max(good) * 2 if good else min(bad) / 2
        if good and mode == "session":
            # One delivery per event: start where fan-out to N starts to matter.
            rate = max(rate, self.args.session_ramp_start)
        for _ in range(self.args.max_steps):
            if (good and rate <= max(good)) or (bad and rate >= min(bad)) or rate < floor:
                break
            if rate > self.args.max_rate:
                break
            step = self.step(publisher, servers, mode, n, rate)
            steps.append(step)
            if step["backlog"] or step["lost"]:
                break  # what is still queued would pollute any further step
            if step["publisher_bound"]:
                break  # the publisher, not the servers, is the limit here
            (good if step["ok"] else bad).append(rate)
            if good and bad:
                middle = math.sqrt(max(good) * min(bad))
                if middle / max(good) > 1.15 and all(s["rate"] != round(middle, 2) for s in steps):
                    rate = round(middle, 2)
                    continue
                break
            rate = rate * 2 if step["ok"] else rate / 2
        self.finish(result, steps)

    def finish(self, result: dict[str, Any], steps: list[dict[str, Any]]) -> None:
        """The saturation point and the capacity of a scenario, from its steps."""
        # Capacity: the most deliveries/s that arrived in full with p99 under a second.
        result["steps"] = steps
        result["capacity_deliveries_per_s"] = report.capacity(result)
        held = [s for s in steps if s["ok"] or s["publisher_bound"]]
        if held:
            best = max(held, key=lambda s: s["deliveries_per_s"])
            bound = "p99" if any(not (s["ok"] or s["publisher_bound"]) for s in steps) else "rate cap"
            if any(s["publisher_bound"] for s in steps):
                bound = "publisher"  # the servers held every rate the publisher reached
            result["saturation"] = {
                "events_per_s": best["achieved_rate"],
                "deliveries_per_s": best["deliveries_per_s"],
                "p99_ms": best["p99_ms"],
                "bounded_by": bound,
            }
        else:
            result["saturation"] = {"events_per_s": 0.0, "deliveries_per_s": 0.0, "p99_ms": None, "bounded_by": "p99"}

    def fixed_rates(self, mode: str, n: int) -> list[float]:
        # The targets: 20 events/s at N = 1000 and 5 events/s at N = 5000 (and 20 there too).
        if self.args.fixed:
            return [float(x) for x in self.args.fixed.split(",")]
        if mode == "command":
            return [self.args.command_rate]
        if mode == "broadcast" and n >= 5000:
            return [5.0, 20.0]
        return [20.0]

    def step(
        self,
        publisher: Controlled,
        servers: list[procs.Server],
        mode: str,
        n: int,
        rate: float,
        fixed: bool = False,
    ) -> dict[str, Any]:
        seconds = self.args.step_seconds
        seq0 = self.seq
        self.client.call({"cmd": "window", "lo": seq0})
        pids = {"servers": [s.pid for s in servers], "client": [self.client.pid], "redis": [self.redis.pid]}
        pids["publisher"] = [publisher.pid]
        if self.background is not None:
            pids["background"] = [self.background.pid]
        pids.update(self.extra_pids)
        cpu0 = {role: sum(procs.cpu_seconds(p) for p in ps) for role, ps in pids.items()}
        busy0 = procs.machine_busy_seconds()
        wall0 = time.monotonic()
        self.log(f"step {mode} n={n} rate={rate} starts at {time.time():.2f}")
        profiler = self.start_profile(servers[0], mode, n, rate) if self.args.profile else None
        sent = publisher.call(
            {"cmd": "run", "mode": mode, "sessions": n, "rate": rate, "seconds": seconds, "seq0": seq0},
            timeout=seconds * 10 + 60,
        )
        self.seq = sent["seq_hi"]
        per_event = 1 if mode == "session" else n
        want = sent["published"] * per_event
        drained, backlog = self.drain(want)
        wall = time.monotonic() - wall0
        cpu = {role: (sum(procs.cpu_seconds(p) for p in ps) - cpu0[role]) / wall * 100 for role, ps in pids.items()}
        # Everything else the machine did meanwhile (other people's work on a shared box).
        cpu["other"] = max(0.0, (procs.machine_busy_seconds() - busy0) / wall * 100 - sum(cpu.values()))
        # Server CPU time per delivery: what one copy of one event costs the servers.
        server_us = cpu["servers"] / 100 * wall / max(want, 1) * 1e6
        background_us = cpu["background"] / 100 * wall / max(want, 1) * 1e6 if "background" in cpu else None
        if profiler is not None:
            profiler.wait(60)
        stats = self.client.call({"cmd": "stats", "hi": self.seq}, timeout=120)
        deliveries_per_s = sent["achieved_rate"] * per_event
        held = stats["p99_ms"] <= SATURATION_P99_MS and stats["lost"] == 0 and not sent["errors"]
        ok = held and sent["achieved_rate"] >= 0.9 * rate
        # The servers kept up with everything the publisher managed to send.
        publisher_bound = held and not ok
        step = {
            "rate": rate,
            "fixed": fixed,
            "achieved_rate": sent["achieved_rate"],
            "published": sent["published"],
            "deliveries_per_s": deliveries_per_s,
            "publisher_errors": sent["errors"],
            "drain_seconds": drained,
            "backlog": backlog,
            "cpu_percent": cpu,
            "server_us_per_delivery": server_us,
            "background_us_per_delivery": background_us,
            **{f"{role}_us_per_delivery": cpu[role] / 100 * wall / max(want, 1) * 1e6 for role in self.extra_pids},
            "ok": ok,
            "publisher_bound": publisher_bound,
            **stats,
        }
        print(
            f"   {rate:8.2f} ev/s ({deliveries_per_s:9.0f} deliveries/s): p50 {stats['p50_ms']:7.2f}  "
            f"p99 {stats['p99_ms']:8.2f}  max {stats['max_ms']:8.2f} ms  lost {stats['lost']}  "
            f"cpu srv {cpu['servers']:.0f}% cli {cpu['client']:.0f}% redis {cpu['redis']:.0f}% "
            f"pub {cpu['publisher']:.0f}% "
            + (f"background {cpu['background']:.0f}% " if "background" in cpu else "")
            + f"other {cpu['other']:.0f}%; server {server_us:.1f} us/delivery"
            + ("" if ok else ("  <- publisher-bound" if publisher_bound else "  <- over")),
            flush=True,
        )
        print(
            f"              first copy p50 {stats['first_copy_p50_ms']:.2f} p99 {stats['first_copy_p99_ms']:.2f} ms; "
            f"fan-out spread p50 {stats['spread_p50_ms']:.2f} p99 {stats['spread_p99_ms']:.2f} "
            f"max {stats['spread_max_ms']:.2f} ms",
            flush=True,
        )
        return step

    def log(self, text: str) -> None:
        with open(self.workdir / "run.log", "a") as f:
            f.write(text + "\n")

    def drain(self, want: int) -> tuple[float, bool]:
        """Wait until every expected delivery arrived, or nothing more arrives for a while."""
        started = time.monotonic()
        last, last_change = -1, started
        while True:
            got = self.client.call({"cmd": "count"})["received"]
            now = time.monotonic()
            if got >= want:
                return now - started, False
            if got != last:
                last, last_change = got, now
            if now - last_change > self.args.drain_idle or now - started > self.args.drain_timeout:
                return now - started, now - last_change <= self.args.drain_idle
            time.sleep(0.05)

    def start_profile(self, server: procs.Server, mode: str, n: int, rate: float) -> subprocess.Popen[bytes] | None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if not Path(spy).exists():
            print("   (py-spy is not installed: no profile)", flush=True)
            return None
        out = self.args.out / "profiles"
        out.mkdir(parents=True, exist_ok=True)
        name = out / f"{server.name}-{mode}-{n}-{rate:g}.txt"
        args = [spy, "record", "--pid", str(server.pid), "--duration", str(int(self.args.step_seconds))]
        args += ["--rate", "250", "--format", "raw", "--output", str(name), "--nonblocking"]
        return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def client_mode(mode: str) -> str:
    """What the load client's streams listen to: a command's event goes to sse:broadcast."""
    return "broadcast" if mode == "command" else mode


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    redis_version = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": redis_version.split(" sha=")[0],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 1000 only, short steps (1-2 minutes)")
    parser.add_argument("--systems", default="product,split,before,raw,naive")
    parser.add_argument("--modes", default="broadcast,session,command,search,reports,nginx,centre,storm")
    parser.add_argument(
        "--before-ref", "--baseline", dest="before_ref", default=BEFORE_REF, help="the git ref the `before` system runs"
    )
    parser.add_argument("--command-rate", type=float, default=20.0, help="commands per second in `command` mode")
    parser.add_argument(
        "--search-postgres",
        default=search.POSTGRES_URL,
        help="`search` and `reports` modes: a PostgreSQL admin URL to measure on too, in a scratch database "
        "('' for SQLite only)",
    )
    parser.add_argument("--command-sizes", default="1000", help="N for `command` mode")
    parser.add_argument("--nginx-size", type=int, default=1000, help="N for the `nginx` part")
    parser.add_argument("--nginx-rate", type=float, default=20.0, help="events per second in the `nginx` part")
    parser.add_argument(
        "--nginx-rounds", type=int, default=None, help="rounds kept in the `nginx` part (3; --quick: 1)"
    )
    parser.add_argument(
        "--nginx-quiet",
        type=float,
        default=50.0,
        help="`nginx` part: a round in which the rest of the machine took more CPU than this (%% of a core) is redone",
    )
    parser.add_argument("--centre-systems", default="product,naive", help="`centre` part: the systems it runs")
    parser.add_argument(
        "--centre-databases", default="sqlite,postgresql", help="`centre` part: sqlite, postgresql (--search-postgres)"
    )
    parser.add_argument("--centre-agents", type=int, default=500)
    parser.add_argument("--centre-supervisors", type=int, default=20)
    parser.add_argument("--centre-sessions", type=int, default=2000, help="customers talking to the bot")
    parser.add_argument(
        "--centre-rates", default="10,25,50,100,200,400,800", help="`centre` part: messages/s of each step"
    )
    parser.add_argument(
        "--centre-warm-rate", type=float, default=10.0, help="`centre` part: escalations/s of the warm-up"
    )
    parser.add_argument("--centre-step-seconds", type=float, default=None, help="`centre` part (10; --quick: 5)")
    parser.add_argument("--centre-messages-per-session", type=int, default=6, help="a customer's messages to an agent")
    parser.add_argument("--centre-leave-share", type=float, default=0.05, help="sessions an agent leaves, not closes")
    parser.add_argument(
        "--centre-chatter", type=float, default=33.0, help="bot-phase lines/s over the customers the bot talks to"
    )
    storm.add_arguments(parser)
    parser.add_argument("--sizes", default=None, help="comma-separated N (default 1000,5000; --quick: 1000)")
    parser.add_argument("--step-seconds", type=float, default=None, help="seconds of publishing per step")
    parser.add_argument("--max-steps", type=int, default=None, help="saturation-search steps per scenario")
    parser.add_argument("--min-rate", type=float, default=0.5)
    parser.add_argument("--max-rate", type=float, default=20000.0)
    parser.add_argument("--fixed", default="", help="comma-separated fixed rates instead of the targets' ones")
    parser.add_argument("--session-ramp-start", type=float, default=1000.0)
    parser.add_argument("--settle", type=float, default=2.0, help="seconds idle before RSS is read")
    parser.add_argument("--drain-idle", type=float, default=2.0)
    parser.add_argument("--drain-timeout", type=float, default=30.0)
    parser.add_argument("--connect-concurrency", type=int, default=64)
    parser.add_argument(
        "--clock",
        choices=["kernel", "user"],
        default="kernel",
        help="arrival time: the kernel's receive timestamp of the socket, or time.time() when read",
    )
    parser.add_argument("--client-sched", choices=["idle", "batch", "normal"], default="batch")
    parser.add_argument("--client-nice", type=int, default=0)
    parser.add_argument("--client-loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--profile", action="store_true", help="py-spy record one product server at every step")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE for the product servers")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--tag", default="", help="appended to the result file names")
    args = parser.parse_args(argv)
    args.sizes = [int(x) for x in (args.sizes or ("1000" if args.quick else "1000,5000")).split(",")]
    args.step_seconds = args.step_seconds or (2.0 if args.quick else 4.0)
    args.max_steps = args.max_steps if args.max_steps is not None else (4 if args.quick else 6)
    args.nginx_rounds = args.nginx_rounds or (1 if args.quick else 3)
    args.centre_step_seconds = args.centre_step_seconds or (5.0 if args.quick else 10.0)
    args.centre_rates = [float(x) for x in args.centre_rates.split(",")]
    args.product_env = dict(item.split("=", 1) for item in args.env)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    procs.raise_file_limit()
    args.out.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="sse-bench-"))
    started = dt.datetime.now()
    print(f"bench: logs in {workdir}", flush=True)
    modes = args.modes.split(",")
    # `search` and `reports` (bench/search.py, bench/reports.py) need neither Redis nor the
    # servers: the rest run only when asked for. `nginx` runs servers of its own, on the run's
    # Redis, client and publisher.
    streaming = [mode for mode in modes if mode not in ("search", "reports", "nginx", "centre", "storm")]
    if "nginx" in modes:
        nginx_bench.check_nginx()
    run = Run(args, workdir) if streaming or {"nginx", "centre", "storm"} & set(modes) else None
    searched = None
    reported = None
    proxied = None
    centred = None
    stormed = None
    try:
        if run is not None:
            run.migrate()
        for mode in streaming:
            assert run is not None
            sizes = [int(x) for x in args.command_sizes.split(",")] if mode == "command" else args.sizes
            for n in sizes:
                for system in args.systems.split(","):
                    if mode == "command" and system not in PRODUCTS:
                        continue  # the baselines have no commands
                    run.scenarios.append(run.scenario(system, mode, n))
        if "search" in modes:
            searched = search.measure(workdir, args.search_postgres or None)
        if "reports" in modes:
            reported = report_bench.measure(workdir, args.search_postgres or None)
        if "nginx" in modes:
            assert run is not None
            proxied = nginx_bench.measure(run, args)
        if "centre" in modes:
            assert run is not None
            centred = centre.measure(run, args)
        if "storm" in modes:
            assert run is not None
            stormed = storm.measure(run, args)
    finally:
        if run is not None:
            run.close()
    results = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": (dt.datetime.now() - started).total_seconds(),
        "machine": machine(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "scenarios": run.scenarios if run is not None else [],
        **({"search": searched} if searched is not None else {}),
        **({"reports": reported} if reported is not None else {}),
        **({"nginx": proxied} if proxied is not None else {}),
        **({"centre": centred} if centred is not None else {}),
        **({"storm": stormed} if stormed is not None else {}),
    }
    stem = started.strftime("%Y-%m-%d") + (f"-{args.tag}" if args.tag else "")
    path = args.out / f"{stem}.json"
    path.write_text(json.dumps(results, indent=1))
    table = report.markdown(results)
    (args.out / f"{stem}.md").write_text(table)
    chart = report.chart(results, args.out / f"{stem}.png") if results["scenarios"] else None
    if centred is not None:
        chart = centre.chart(results, args.out / f"{stem}-centre.png") or chart
    print("\n" + table)
    no_chart = " (no chart: matplotlib is not installed)" if results["scenarios"] else " (no streams, no chart)"
    print(f"results: {path}" + (f", chart: {chart}" if chart else no_chart))


if __name__ == "__main__":
    main()
