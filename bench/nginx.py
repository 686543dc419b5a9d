"""Streams through nginx against the same streams direct: the `nginx` part of `make bench`.

    python -m bench.run --modes nginx           # this part alone (about a minute)

Two product servers on the run's private Redis, and in front of them nginx running the shipped
docs/deploy/nginx/nginx.conf (rendered by tests/support/deploy.py, as the deployment tests
render it: a self-signed certificate, free ports, logs in the run's work directory). The load
client holds N streams on `sse:broadcast`, all of them either straight to the two servers
(`direct`) or over TLS to nginx (`nginx`: HTTP/1.1, one connection per stream, as the worst
case; browsers multiplex over HTTP/2), and the publisher publishes at a fixed rate, as in the
`broadcast` mode. The two routes take turns, one step each per round, on the same servers, in
the same run: `--nginx-rounds` rounds kept, a round being measured again when the rest of the
machine was busy (`--nginx-quiet`). Reported: the latency through nginx, its ratio to direct,
and nginx's own CPU per delivery. The latency is measured as everywhere in the bench (kernel receive time of the
client's socket minus the envelope's timestamp); through nginx that includes TLS and
nginx's copy, not the client's decryption.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from typing import TYPE_CHECKING, Any

from bench.procs import BENCH_TOKEN, free_port

if TYPE_CHECKING:
    from bench.run import Run

ROUTES = ("direct", "nginx")


def check_nginx() -> None:
    """Stop the run at once, before any other part, when nginx is missing."""
    from tests.support.deploy import nginx_binary

    try:
        nginx_binary()
    except RuntimeError as exc:
        raise SystemExit(f"bench: the nginx part needs Debian's nginx: {exc}") from None


def measure(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """The rounds of the part, on servers and an nginx of its own (stopped at the end)."""
    from tests.support.deploy import Nginx, render_nginx, self_signed_certificate

    n, rate = args.nginx_size, args.nginx_rate
    print(f"\n== nginx: N = {n} on sse:broadcast at {rate:g} events/s, direct and through nginx", flush=True)
    home = run.workdir / "nginx"
    (home / "static").mkdir(parents=True, exist_ok=True)
    servers = run.servers("product", "nginx-product")
    proxy: Nginx | None = None
    result: dict[str, Any] = {"n": n, "rate": rate, "steps": {route: [] for route in ROUTES}}
    try:
        cert, key = self_signed_certificate(home)
        https_port, http_port = free_port(), free_port()
        config = render_nginx(
            prefix=home / "run",
            https_port=https_port,
            http_port=http_port,
            upstreams=[s.port for s in servers],
            certificate=cert,
            key=key,
            static_root=home / "static",
        )
        proxy = Nginx(home / "run", config, https_port, http_port).start()
        version = subprocess.run([*proxy.args(), "-v"], capture_output=True, text=True).stderr.strip()
        result["nginx"] = version.removeprefix("nginx version: ")
        publisher = run.publisher("product")
        warm = publisher.call(
            {"cmd": "run", "mode": "broadcast", "sessions": n, "rate": 200.0, "seconds": 0.25, "seq0": run.seq},
            timeout=60,
        )
        run.seq = warm["seq_hi"]
        run.extra_pids = {"nginx": proxy.pids()}
        result["quiet_limit"] = args.nginx_quiet
        result["kept"] = []
        # Rounds of one step per route, back to back; a round in which the rest of the machine
        # took more than --nginx-quiet % of a core in either step is measured again (at most
        # four times as many rounds in all), since nginx's figures follow a neighbour's load.
        for number in range(args.nginx_rounds * 4):
            if len(result["kept"]) == args.nginx_rounds:
                break
            for route in ROUTES:
                ports = [https_port] if route == "nginx" else [s.port for s in servers]
                setup = run.client.call(
                    {
                        "cmd": "connect",
                        "ports": ports,
                        "mode": "broadcast",
                        "n": n,
                        "token": BENCH_TOKEN,
                        "concurrency": args.connect_concurrency,
                        "clock": args.clock,
                        "tls": route == "nginx",
                    },
                    timeout=300,
                )
                try:
                    if setup["opened"] < n:
                        raise SystemExit(f"bench: only {setup['opened']} of {n} streams opened {route}: {setup}")
                    print(f"   round {number + 1}, {route}: {n} streams open in {setup['seconds']:.2f}s", flush=True)
                    time.sleep(args.settle)
                    step = run.step(publisher, servers, "broadcast", n, rate, fixed=True)
                    step["setup_rate_per_s"] = n / setup["seconds"] if setup["seconds"] else 0.0
                    result["steps"][route].append(step)
                finally:
                    run.client.call({"cmd": "close"}, timeout=60)
            others = [result["steps"][route][-1]["cpu_percent"]["other"] for route in ROUTES]
            if max(others) <= args.nginx_quiet:
                result["kept"].append(number)
            else:
                print(f"   (round {number + 1} measured again: the rest of the machine took {max(others):.0f} %)")
        result["errors"] = proxy.error_log().count("[error]") + proxy.error_log().count("[alert]")
    finally:
        run.extra_pids = {}
        if proxy is not None:
            proxy.stop()
        for server in servers:
            server.stop()
    return result


def summary(result: dict[str, Any]) -> dict[str, dict[str, float]]:
    """Per route, the median over the rounds kept (all, when none was quiet) of each figure
    (events lost: the sum)."""
    out: dict[str, dict[str, float]] = {}
    kept = result.get("kept") or range(len(result["steps"]["nginx"]))
    for route in ROUTES:
        steps = [result["steps"][route][number] for number in kept if number < len(result["steps"][route])]
        if not steps:
            continue
        out[route] = {
            key: float(statistics.median(s.get(field, 0.0) for s in steps))
            for key, field in (
                ("p50_ms", "p50_ms"),
                ("p99_ms", "p99_ms"),
                ("max_ms", "max_ms"),
                ("server_us", "server_us_per_delivery"),
                ("nginx_us", "nginx_us_per_delivery"),
                ("setup_rate", "setup_rate_per_s"),
            )
        }
        out[route]["lost"] = float(sum(s["lost"] for s in steps))
        out[route]["steps"] = float(len(steps))
    return out


def report_part(results: dict[str, Any]) -> list[str]:
    """The markdown of the nginx part: direct against through nginx, in one run."""
    result = results.get("nginx")
    if not result:
        return []
    from bench.report import _fmt, _ratio

    figures = summary(result)
    if set(figures) != set(ROUTES):
        return []
    direct, proxied = figures["direct"], figures["nginx"]
    rounds = int(direct["steps"])
    out = [
        f"### Through nginx, N = {result['n']} `sse:broadcast` subscribers, {result['rate']:g} events/s",
        "",
        f"The shipped docs/deploy/nginx/nginx.conf ({result.get('nginx', 'nginx')}) in front of the two product "
        "servers; the load client's streams over TLS (HTTP/1.1, one connection each) to nginx, or straight to the "
        f"servers, in turns: medians of {rounds} round(s) of one step each"
        + (
            f" in which the rest of the machine took at most {result['quiet_limit']:g} % of a core"
            if result.get("kept")
            else f" (none was as quiet as {result.get('quiet_limit', 0):g} % of a core from the rest of the machine: "
            "all are shown)"
        )
        + ". Latency as everywhere here: from the envelope's timestamp to the kernel's receive time at the client.",
        "",
        "| metric | direct | through nginx | nginx / direct |",
        "|---|---:|---:|---:|",
    ]
    rows = (
        ("p50 latency (ms)", "p50_ms", 2),
        ("p99 latency (ms)", "p99_ms", 2),
        ("max latency (ms)", "max_ms", 2),
        ("server CPU per delivery (us)", "server_us", 1),
        ("nginx CPU per delivery (us)", "nginx_us", 1),
        ("connection set-up rate (streams/s)", "setup_rate", 0),
    )
    for label, key, digits in rows:
        ratio = _ratio(proxied[key], direct[key]) if key != "nginx_us" else "-"
        out.append(f"| {label} | {_fmt(direct[key], digits)} | {_fmt(proxied[key], digits)} | {ratio} |")
    out.append(f"| events lost | {direct['lost']:.0f} | {proxied['lost']:.0f} | - |")
    # Each step on its own, with what else the machine did meanwhile: nginx needs CPU of its own
    # on the same cores, so its figures move with a neighbour's load far more than direct's.
    out += [
        "",
        "| round | direct p50 / p99 (ms) | other CPU | nginx p50 / p99 (ms) | other CPU | nginx CPU | kept |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for number, (plain, tls) in enumerate(zip(result["steps"]["direct"], result["steps"]["nginx"], strict=False)):
        out.append(
            f"| {number + 1} | {plain['p50_ms']:.2f} / {plain['p99_ms']:.2f} | {plain['cpu_percent']['other']:.0f} % "
            f"| {tls['p50_ms']:.2f} / {tls['p99_ms']:.2f} | {tls['cpu_percent']['other']:.0f} % "
            f"| {tls['cpu_percent'].get('nginx', 0.0):.0f} % | {'yes' if number in result.get('kept', []) else 'no'} |"
        )
    if result.get("errors"):
        out.append(f"\nnginx logged {result['errors']} error(s): see nginx/run/error.log in the run's work directory.")
    out.append("")
    return out
