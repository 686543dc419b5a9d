"""The contact centre: people and a bot talking through the commands, the database and many
small channels, on the product and on the naive Django way, on SQLite and on PostgreSQL.

    python -m bench.run --modes centre            # as a part of `make bench`
    python -m bench.centre --people <db url> N M  # (internal) accounts and signed-in sessions

For each database and system: a fresh database (SQLite file, or a scratch PostgreSQL
database), two server processes on the run's Redis, the bot process (bench/centre_bot.py) and
the people's process (bench/centre_load.py: 500 agents' workbench streams and commands, 20
supervisors on `sse:broadcast`). A warm-up escalates enough sessions for every agent to have
one, then the message rate goes up step by step (the customers' messages are half of it, the
agents' answers the other half) until the p99 of an agent's message passes 100 ms. Each step
reports the latencies, the HTTP round trip of each command, the servers' CPU per message, the
database's query time per command (product: its /metrics), the outbox's lag (product: its
rows), and the bot's and the people's errors. At the end, every stream is audited: every copy
it should have had, once.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench import procs
from bench.procs import CHATBOT_TOKEN, ROOT

if TYPE_CHECKING:
    from bench.run import Run

P99_LIMIT_MS = 100.0
GOAL_RATE = 200.0  # messages/s at which p99 must be <= 50 ms
METRICS_TOKEN = "bench-metrics-token-0123456789abcdef"
PASSWORD = "bench-centre-password-not-secret"


# --- accounts: made once per database, in a child process with the product's settings -----


def people(count_agents: int, count_supervisors: int) -> dict[str, list[dict[str, str]]]:
    """Agents and supervisors with a signed-in Django session each (no password hashing per
    account: one hash shared, bulk-created), and each one's CSRF secret."""
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.db import SessionStore

    from dashboard.accounts import supervisors_group

    user_model = get_user_model()
    hashed = make_password(PASSWORD)
    names = [f"cc_agent_{i:03d}" for i in range(count_agents)] + [f"cc_super_{i:02d}" for i in range(count_supervisors)]
    user_model.objects.bulk_create(
        [user_model(username=name, password=hashed, is_staff=name.startswith("cc_super")) for name in names]
    )
    group = supervisors_group()
    users = {u.username: u for u in user_model.objects.filter(username__in=names)}
    group.user_set.add(*[u for name, u in users.items() if name.startswith("cc_super")])
    out: dict[str, list[dict[str, str]]] = {"agents": [], "supervisors": []}
    for name in names:
        user = users[name]
        store = SessionStore()
        store[SESSION_KEY] = str(user.pk)
        store[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        store[HASH_SESSION_KEY] = user.get_session_auth_hash()
        store.create()
        kind = "supervisors" if name.startswith("cc_super") else "agents"
        out[kind].append({"name": name, "cookie": str(store.session_key), "csrf": secrets.token_hex(16)})
    return out


# --- one system on one database -----------------------------------------------------------


def servers_for(system: str, run: Run, db_url: str, label: str) -> list[procs.Server]:
    made = []
    env = {"METRICS_TOKEN": METRICS_TOKEN, "SSE_MAX_STREAMS_PER_USER": "20", **run.args.product_env}
    for index in range(2):
        log = run.workdir / f"{label}-{index}.log"
        if system == "naive":
            server = procs.naive_centre_server(run.redis.url, db_url, log)
        else:
            server = procs.product_server(run.redis.url, db_url, log, env)
        made.append(server.start())
    for server in made:
        server.wait_ready()
    return made


def scrape(port: int) -> dict[str, float]:
    """The product's API database counters from one server's /metrics."""
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(
            (
                "helpdesk_api_calls_total{",
                "helpdesk_api_db_seconds_total{",
                "helpdesk_api_db_queries_total{",
                "helpdesk_db_requests_",
            )
        ):
            key, _, value = line.rpartition(" ")
            out[key] = out.get(key, 0.0) + float(value)
    return out


def database_per_command(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Per view: calls, queries per call and query time per call (ms), over both servers."""
    totals: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for key, value in a.items():
            totals[key] = totals.get(key, 0.0) + value - b.get(key, 0.0)
    out: dict[str, dict[str, float]] = {}
    for key, calls in totals.items():
        if not key.startswith("helpdesk_api_calls_total") or not calls:
            continue
        view = key.split('view="', 1)[1].split('"', 1)[0]
        if view not in ("accept", "messages", "leave", "close"):
            continue
        seconds = totals.get(key.replace("helpdesk_api_calls_total", "helpdesk_api_db_seconds_total"), 0.0)
        queries = totals.get(key.replace("helpdesk_api_calls_total", "helpdesk_api_db_queries_total"), 0.0)
        out[view] = {"calls": calls, "queries": queries / calls, "ms": seconds / calls * 1000}
    return out


def pool_waits(before: list[dict[str, float]], after: list[dict[str, float]]) -> dict[str, float]:
    """The PostgreSQL pool over the step, both servers: connections asked, how many waited, how long."""
    out: dict[str, float] = {}
    for b, a in zip(before, after, strict=True):
        for key, value in a.items():
            if key.startswith("helpdesk_db_requests_"):
                name = key.removeprefix("helpdesk_db_").split("{")[0].removesuffix("_total")
                out[name] = out.get(name, 0.0) + value - b.get(key, 0.0)
    return out


def outbox_lag(db_url: str, since: float, until: float) -> dict[str, Any]:
    """The outbox's lag (published_at - created_at) of the rows written in [since, until)."""
    code = (
        "import django,json,sys,datetime as dt;django.setup();"
        "from realtime.models import OutboxEvent;"
        "lo,hi=(dt.datetime.fromtimestamp(float(x),dt.timezone.utc) for x in sys.argv[1:3]);"
        "rows=OutboxEvent.objects.filter(created_at__gte=lo,created_at__lt=hi).values_list('created_at','published_at');"
        "lags=sorted(((p-c).total_seconds() if p else float('inf')) for c,p in rows);"
        "n=len(lags);"
        "print(json.dumps({'rows':n,'unpublished':sum(1 for x in lags if x==float('inf')),"
        "'p50_ms':lags[n//2]*1000 if n else None,'p99_ms':lags[min(n-1,int(.99*n))]*1000 if n else None}))"
    )
    env = procs.base_env(DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="sse_project.settings")
    done = subprocess.run(
        [sys.executable, "-c", code, str(since), str(until)], cwd=ROOT, env=env, capture_output=True, timeout=120
    )
    if done.returncode != 0:
        return {"error": done.stderr.decode(errors="replace")[-300:]}
    return dict(json.loads(done.stdout.decode().strip().splitlines()[-1]))


def one(run: Run, args: argparse.Namespace, system: str, database: str, db_url: str) -> dict[str, Any]:
    """One system on one fresh database: warm-up, the rate steps, the audit."""
    from bench.run import Controlled

    label = f"centre-{system}-{database}"
    print(f"\n== contact centre: {system} on {database}", flush=True)
    run.redis.command("FLUSHALL")  # the run's own private redis-server: nothing else is on it
    env = procs.base_env(REDIS_URL=run.redis.url, DATABASE_URL=db_url, DJANGO_SETTINGS_MODULE="sse_project.settings")
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, env=env, check=True)
    made = subprocess.run(
        [sys.executable, "-m", "bench.centre", "--people", str(args.centre_agents), str(args.centre_supervisors)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=True,
        timeout=600,
    )
    crowd = json.loads(made.stdout.decode().strip().splitlines()[-1])
    servers = servers_for(system, run, db_url, label)
    ports = [s.port for s in servers]
    for index, person in enumerate(crowd["agents"] + crowd["supervisors"]):
        person["port"] = ports[index % 2]
    bot_env = dict(env)
    if system == "naive":
        bot_env["DJANGO_SETTINGS_MODULE"] = "bench.naive.centre_settings"
    bot = Controlled(
        "bot", [sys.executable, "-m", "bench.centre_bot", "--system", system], bot_env, run.workdir / f"{label}-bot.log"
    )
    load = Controlled(
        "people", [sys.executable, "-m", "bench.centre_load"], procs.base_env(), run.workdir / f"{label}-people.log"
    )
    result: dict[str, Any] = {"system": system, "database": database, "steps": []}
    try:
        opened = load.call(
            {"cmd": "start", "system": system, **crowd, "leave_share": args.centre_leave_share}, timeout=300
        )
        result["setup"] = opened
        print(f"   {opened['opened']} streams open in {opened['seconds']:.1f}s ({opened['failed']} failed)", flush=True)
        bot_person = crowd["supervisors"][-1]
        auth = (
            f"Authorization: Bearer {CHATBOT_TOKEN}"
            if system == "product"
            else f"Cookie: sessionid={bot_person['cookie']}"
        )
        bot.call(
            {
                "cmd": "start",
                "port": ports[0],
                "auth": auth,
                "sessions": args.centre_sessions,
                "messages_per_session": args.centre_messages_per_session,
            }
        )
        # Warm-up: a session for every agent, at a pace both systems keep up with (each
        # escalation and each accept reaches every stream on sse:broadcast), then a little talk.
        warm = args.centre_warm_rate
        bot.call({"cmd": "rate", "escalations": warm, "messages": 0.0, "chatter": args.centre_chatter})
        time.sleep(args.centre_agents / warm + 5)
        bot.call({"cmd": "rate", "escalations": 0.0, "messages": min(args.centre_rates) / 2})
        time.sleep(3)
        for rate in args.centre_rates:
            step = measure_step(run, args, load, bot, servers, db_url, system, rate)
            result["steps"].append(step)
            print(
                f"   {rate:6.0f} msg/s: sent {step['messages_per_s']:.0f}/s  agent p50/p99/max "
                f"{fmt(step['agent'])}  customer {fmt(step['customer'])}  busy {step['busy_agents']}  "
                f"people's loop lag {fmt(step['people_loop_lag'])}  pool {step['pool'] or '-'}  "
                f"errors {step['statuses'] or '-'} {step['bot_errors'] or ''}",
                flush=True,
            )
            # Past the line by far twice running (once can be a moment of the machine's), or
            # nothing got through: the next rates would only say so again.
            over = [s["agent"].get("p99_ms", 1e9) > P99_LIMIT_MS * 3 for s in result["steps"][-2:]]
            if (len(over) == 2 and all(over)) or not step["agent"].get("count"):
                break
        # Quiet, then the audit: every stream, every copy, once nothing more arrives (a system
        # far behind delivers for a while after the last message was sent).
        bot.call({"cmd": "rate", "escalations": 0.0, "messages": 0.0, "chatter": 0.0})
        result["drain_s"] = drain(load)
        log = bot.call({"cmd": "log"}, timeout=120)
        result["bot"] = {"done": log["done"], "errors": log["errors"]}
        result["audit"] = load.call({"cmd": "audit", "customer": log["customer"]}, timeout=600)
        print(f"   audit: {result['audit']}", flush=True)
    finally:
        load.stop()
        bot.stop()
        for server in servers:
            server.stop()
    result["throughput"] = throughput(result["steps"])
    return result


def measure_step(
    run: Run,
    args: argparse.Namespace,
    load: Any,
    bot: Any,
    servers: list[procs.Server],
    db_url: str,
    system: str,
    rate: float,
) -> dict[str, Any]:
    """One rate for `args.centre_step_seconds`: half customers, half agents' answers."""
    # A little more than the sessions the agents close, so none waits for work.
    escalations = max(1.0, 1.5 * rate / 2 / args.centre_messages_per_session)
    bot.call({"cmd": "rate", "messages": rate / 2, "escalations": escalations, "chatter": args.centre_chatter})
    time.sleep(2)  # the agents' answers catch up with the new rate
    lo = time.time()
    load.call({"cmd": "window", "lo": lo})
    cpu0 = sum(procs.cpu_seconds(s.pid) for s in servers)
    busy0 = procs.machine_busy_seconds()
    metrics0 = [scrape(s.port) for s in servers] if system != "naive" else []
    time.sleep(args.centre_step_seconds)
    hi = time.time()
    cpu = sum(procs.cpu_seconds(s.pid) for s in servers) - cpu0
    busy = procs.machine_busy_seconds() - busy0
    metrics1 = [scrape(s.port) for s in servers] if system != "naive" else []
    bot_state = bot.call({"cmd": "rate"})
    time.sleep(1.5)  # the last copies of the window's messages arrive
    stats = load.call({"cmd": "stats", "hi": hi})
    seconds = hi - lo
    messages = stats["sent"] + stats["heard"]
    return {
        "rate": rate,
        "seconds": seconds,
        "messages_per_s": messages / seconds,
        "agent": stats["agent"],
        "customer": stats["customer"],
        "commands": stats["commands"],
        "statuses": stats["statuses"],
        "busy_agents": stats["busy_agents"],
        "queue": stats["queue"],
        "people_loop_lag": stats["loop_lag"],
        "server_cpu_s": cpu,
        "server_cpu_us_per_message": cpu / messages * 1e6 if messages else None,
        "machine_busy_cores": busy / seconds,
        "database": database_per_command(metrics0, metrics1) if metrics1 else {},
        "pool": pool_waits(metrics0, metrics1) if metrics1 else {},
        "outbox": outbox_lag(db_url, lo, hi) if system != "naive" else {},
        "bot_errors": bot_state.get("errors", {}),
    }


def drain(load: Any, quiet: float = 3.0, limit: float = 90.0) -> float:
    """Wait until no copy has arrived on any stream for `quiet` seconds (at most `limit`)."""
    began = time.monotonic()
    last, since = -1, time.monotonic()
    while time.monotonic() - began < limit:
        copies = load.call({"cmd": "copies"})["copies"]
        if copies != last:
            last, since = copies, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
        time.sleep(0.5)
    return time.monotonic() - began


def throughput(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The highest rate whose agent messages held p99 <= 100 ms (and the rate reached)."""
    held = [s for s in steps if s["agent"].get("p99_ms", 1e9) <= P99_LIMIT_MS]
    best = max(held, key=lambda s: s["messages_per_s"], default=None)
    return {
        "messages_per_s": best["messages_per_s"] if best else 0.0,
        "rate": best["rate"] if best else 0.0,
        "p99_ms": best["agent"]["p99_ms"] if best else None,
    }


def fmt(summary: dict[str, Any]) -> str:
    if not summary.get("count"):
        return "-"
    return f"{summary['p50_ms']:.1f}/{summary['p99_ms']:.1f}/{summary['max_ms']:.0f} ms"


def measure(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    """The contact-centre part: each system on SQLite and (when one answers) PostgreSQL."""
    from bench import dblimit, search

    out: dict[str, Any] = {"runs": [], "skipped": []}
    wanted = args.centre_databases.split(",")
    databases: list[tuple[str, str, Any]] = [("sqlite", "", None)] if "sqlite" in wanted else []
    admin = search._postgres(args.search_postgres) if args.search_postgres and "postgresql" in wanted else None
    if admin is not None:
        databases.append(("postgresql", args.search_postgres, admin))
    elif "postgresql" in wanted:
        out["skipped"].append("postgresql")
    out["limits"] = {}
    try:
        for database, admin_url, _ in databases:
            # The database's own limit first, on a fresh database of its own (bench/dblimit.py).
            print(f"\n== the database's own limit: {database}", flush=True)
            out["limits"][database] = (
                dblimit.measure(f"sqlite:///{run.workdir / 'dblimit.sqlite3'}")
                if database == "sqlite"
                else dblimit.measure_on_postgres(admin_url)
            )
            print(f"   {out['limits'][database]['tx_per_s']:.0f} message transactions/s", flush=True)
            for system in args.centre_systems.split(","):
                if database == "sqlite":
                    db_url = f"sqlite:///{run.workdir / f'centre-{system}.sqlite3'}"
                    out["runs"].append(one(run, args, system, database, db_url))
                    continue
                scratch = f"bench_centre_{system}_{os.getpid()}"
                assert admin is not None
                admin.execute(f'DROP DATABASE IF EXISTS "{scratch}"')
                admin.execute(f'CREATE DATABASE "{scratch}"')
                try:
                    out["runs"].append(one(run, args, system, database, f"{admin_url.rpartition('/')[0]}/{scratch}"))
                finally:
                    admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    finally:
        if admin is not None:
            admin.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--people", nargs=2, type=int, metavar=("AGENTS", "SUPERVISORS"))
    args = parser.parse_args()
    if args.people:
        print(json.dumps(people(*args.people)))


if __name__ == "__main__":
    main()


# --- the report -----------------------------------------------------------------------------

SYSTEM_LABELS = {"product": "product", "naive": "naive Django"}


def _at_rate(run: dict[str, Any], rate: float) -> dict[str, Any] | None:
    return next((s for s in run["steps"] if s["rate"] == rate), None)


def _ms(summary: dict[str, Any] | None, key: str) -> float | None:
    return summary.get(key) if summary and summary.get("count") else None


def summary_rows(
    product: dict[str, Any], naive: dict[str, Any] | None, limit: float | None
) -> list[tuple[str, Any, Any]]:
    """(label, product's figure, naive's) for a database's summary table."""

    def goal(run: dict[str, Any] | None) -> dict[str, Any] | None:
        return _at_rate(run, GOAL_RATE) if run else None

    def cpu(run: dict[str, Any] | None) -> float | None:
        step = goal(run)
        return step["server_cpu_us_per_message"] / 1000 if step and step["server_cpu_us_per_message"] else None

    def command_ms(run: dict[str, Any] | None, key: str) -> float | None:
        step = goal(run)
        return _ms(step["commands"].get("messages"), key) if step else None

    def audit(run: dict[str, Any] | None, key: str) -> float | None:
        return run.get("audit", {}).get(key) if run else None

    rows: list[tuple[str, Any, Any]] = [
        (
            "command throughput: messages/s with p99 <= 100 ms",
            product["throughput"]["messages_per_s"],
            naive["throughput"]["messages_per_s"] if naive else None,
        ),
    ]
    for label, key in (("p50", "p50_ms"), ("p99", "p99_ms"), ("max", "max_ms")):
        rows.append(
            (
                f"agent's message {label} at {GOAL_RATE:g} messages/s (ms)",
                _ms((goal(product) or {}).get("agent"), key),
                _ms((goal(naive) or {}).get("agent"), key),
            )
        )
    for label, key in (("p50", "p50_ms"), ("p99", "p99_ms")):
        rows.append(
            (
                f"bot's message -> agent {label} at {GOAL_RATE:g} messages/s (ms)",
                _ms((goal(product) or {}).get("customer"), key),
                _ms((goal(naive) or {}).get("customer"), key),
            )
        )
    rows += [
        ("POST messages round trip p99 (ms)", command_ms(product, "p99_ms"), command_ms(naive, "p99_ms")),
        ("server CPU per message (ms)", cpu(product), cpu(naive)),
        (
            "database queries per message command",
            ((goal(product) or {}).get("database", {}).get("messages") or {}).get("queries"),
            None,
        ),
        (
            "database query time per message command (ms)",
            ((goal(product) or {}).get("database", {}).get("messages") or {}).get("ms"),
            None,
        ),
        ("outbox lag p99 (ms)", ((goal(product) or {}).get("outbox") or {}).get("p99_ms"), None),
        ("copies missing / doubled (all streams)", _pair(product), _pair(naive) if naive else None),
        ("streams reconnected by the client / resets", _reconnects(product), _reconnects(naive) if naive else None),
    ]
    if limit:
        rows.append(
            (
                "throughput / the database's own limit",
                f"{product['throughput']['messages_per_s'] / limit:.0%}",
                f"{naive['throughput']['messages_per_s'] / limit:.0%}" if naive else None,
            )
        )
    return rows


def _pair(run: dict[str, Any]) -> str:
    audit = run.get("audit") or {}
    return f"{audit.get('missing', '-')} / {audit.get('doubled', '-')}"


def _reconnects(run: dict[str, Any]) -> str:
    audit = run.get("audit") or {}
    return f"{audit.get('reconnects', '-')} / {audit.get('resets', '-')}"


def _cell(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return f"{value:,.{digits}f}"


def report_part(results: dict[str, Any]) -> list[str]:
    """The markdown of the contact-centre part: per database, product against naive."""
    part = results.get("centre")
    if not part or not part.get("runs"):
        return []
    args = results.get("args", {})
    out = [
        f"### Contact centre: {args.get('centre_agents')} agents, {args.get('centre_supervisors')} supervisors, "
        f"{args.get('centre_sessions')} customers on the bot",
        "",
        "Agents' streams carry `sse:broadcast`, their own channel and the session they have open; supervisors' "
        "`sse:broadcast`. Half the messages are the customers' (the bot process, through the publish path, on the "
        "session's channel, `sse:broadcast` and the agent's channel); the other half the agents' answers "
        "(`POST /api/sessions/{name}/messages`). Latency of an agent's message: its HTTP request sent -> each copy "
        "received on every other stream; of a customer's: the bot's publish -> the handling agent's stream.",
        "",
    ]
    for database in ("sqlite", "postgresql"):
        runs = {r["system"]: r for r in part["runs"] if r["database"] == database}
        if "product" not in runs:
            continue
        limit = (part.get("limits") or {}).get(database, {}).get("tx_per_s")
        name = "SQLite" if database == "sqlite" else "PostgreSQL"
        naive = runs.get("naive")
        figures = (part.get("limits") or {}).get(database, {})
        marked = (figures.get("with_publish_marks") or {}).get("messages_per_s")
        out += [
            f"#### {name}"
            + (
                f": its own limit {limit:,.0f} message transactions/s"
                + (f", {marked:,.0f} messages/s with the outbox's marks" if marked else "")
                if limit
                else ""
            ),
            "",
        ]
        heads = ["product"] + (["naive Django", "product / naive"] if naive else [])
        out += ["| metric | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(heads)]
        for label, ours, theirs in summary_rows(runs["product"], naive, limit):
            cells = [_cell(ours)]
            if naive:
                ratio = (
                    f"{ours / theirs:.2f}x"
                    if isinstance(ours, float | int) and isinstance(theirs, float | int) and theirs
                    else "-"
                )
                cells += [_cell(theirs), ratio]
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        out += [
            "",
            "| system | rate asked | messages/s | agent p50 / p99 / max (ms) | customer p50 / p99 (ms) "
            "| server CPU (cores) | machine busy (cores) | errors |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for system, run in runs.items():
            for step in run["steps"]:
                agent, customer = step["agent"], step["customer"]
                errors = {**step.get("statuses", {}), **step.get("bot_errors", {})}
                out.append(
                    f"| {SYSTEM_LABELS[system]} | {step['rate']:g} | {step['messages_per_s']:.0f} | "
                    f"{_cell(_ms(agent, 'p50_ms'))} / {_cell(_ms(agent, 'p99_ms'))} / "
                    f"{_cell(_ms(agent, 'max_ms'), 0)} | "
                    f"{_cell(_ms(customer, 'p50_ms'))} / {_cell(_ms(customer, 'p99_ms'))} | "
                    f"{step['server_cpu_s'] / step['seconds']:.2f} | {step['machine_busy_cores']:.2f} | "
                    f"{', '.join(f'{k}: {v}' for k, v in errors.items()) or '-'} |"
                )
        out.append("")
    return out


def chart(results: dict[str, Any], path: Path) -> Path | None:
    """p99 (and p50) of an agent's message against the message rate, product and naive, per database."""
    part = results.get("centre")
    if not part or not part.get("runs"):
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    # Only what has latencies to draw: a system that let no message through at any rate is in
    # the tables, not on a log-scaled axis.
    drawn = [r for r in part["runs"] if any(s["agent"].get("count") for s in r["steps"])]
    databases = [d for d in ("sqlite", "postgresql") if any(r["database"] == d for r in drawn)]
    if not databases:
        return None
    fig, axes = plt.subplots(1, len(databases), figsize=(6 * len(databases), 4.2), squeeze=False, sharey=True)
    colours = {"product": "tab:blue", "naive": "tab:red"}
    for col, database in enumerate(databases):
        ax = axes[0][col]
        for run in (r for r in drawn if r["database"] == database):
            steps = [s for s in run["steps"] if s["agent"].get("count")]
            x = [s["messages_per_s"] for s in steps]
            for key, style in (("p50_ms", ":"), ("p99_ms", "-")):
                ax.plot(
                    x,
                    [max(s["agent"][key], 0.1) for s in steps],
                    style,
                    marker="o",
                    markersize=3,
                    color=colours[run["system"]],
                    label=f"{SYSTEM_LABELS[run['system']]} {key.split('_')[0]}",
                )
        ax.axhline(P99_LIMIT_MS, color="grey", linewidth=0.8)
        ax.axhline(50, color="grey", linewidth=0.8, linestyle="--")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"contact centre, {'SQLite' if database == 'sqlite' else 'PostgreSQL'}")
        ax.set_xlabel("messages/s (half customers', half agents')")
        ax.set_ylabel("agent's message: request -> others' streams (ms)")
        ax.grid(True, which="both", alpha=0.3)
    from bench.report import save_chart

    return save_chart(plt, fig, axes, path)
