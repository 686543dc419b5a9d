"""A private Redis Sentinel deployment for failover tests: a master, one replica, three sentinels.

Everything runs on free ports of 127.0.0.1 with its config files in a temporary directory that
`stop()` removes; no Redis keeps anything on disk (`--save "" --appendonly no`), and nothing
here touches the machine's shared Redis on 6379.

    sentinels = Sentinels.start()
    env = base_env(**sentinels.env())           # REDIS_SENTINELS and REDIS_SENTINEL_MASTER
    old = sentinels.kill_master()               # SIGKILL, as a crashed machine would
    new = sentinels.wait_for_failover(old, 15)  # the port of the promoted replica
    sentinels.stop()
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.support.procs import free_port, wait_until

HOST = "127.0.0.1"
MASTER_NAME = "helpdesk"
SHARED_REDIS_PORT = 6379  # the machine's own Redis: never ours to start, stop or write to
# Two of three sentinels must agree that the master is down: one sentinel's view (a pause of its
# own, say) never starts a failover, and a failover still happens with one sentinel gone.
QUORUM = 2
# A master silent this long is subjectively down. Sentinels PING every second, so 1 s is the
# shortest value that is not a hair trigger on localhost, and keeps a failover to a few seconds.
DOWN_AFTER_MS = 1000
# A failover that has not finished after this long is abandoned and retried (by any sentinel)
# after twice this; 3 s is far more than promoting a replica on localhost takes, and a split vote
# costs 6 s instead of the default's 6 minutes.
FAILOVER_TIMEOUT_MS = 3000


def _binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError(
            "redis-server is not on the PATH: the Sentinel tests start their own Redis master, replica "
            "and sentinels (`redis-server <conf> --sentinel`); install Debian's redis-server package"
        )
    return binary


@dataclass
class _Proc:
    """One redis-server process (a data node or a sentinel) with its config file and log."""

    name: str
    port: int
    conf: Path
    log: Path
    sentinel: bool = False
    proc: subprocess.Popen[bytes] | None = None

    def start(self, binary: str) -> None:
        if self.port == SHARED_REDIS_PORT:
            raise RuntimeError("refusing to start a test Redis on 6379, the machine's shared Redis")
        args = [binary, str(self.conf)] + (["--sentinel"] if self.sentinel else [])
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def client(self, timeout: float = 1.0) -> redis.Redis:
        # No retries: a harness question gets one answer or one error, at once, and the caller
        # decides whether to ask again (redis-py otherwise retries each command with backoff).
        return redis.Redis(
            HOST, self.port, socket_timeout=timeout, socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0)
        )

    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def ping(self, timeout: float = 1.0) -> bool:
        """True when *this* process answers on the port (not another server that holds it)."""
        with self.client(timeout) as client:
            return self.proc is not None and client.info("server").get("process_id") == self.proc.pid

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, chars: int = 3000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no log)"


@dataclass
class Sentinels:
    """A master, one replica and three sentinels monitoring MASTER_NAME; see the module docstring."""

    directory: Path
    binary: str
    master_name: str = MASTER_NAME
    nodes: list[_Proc] = field(default_factory=list)  # the data nodes, by start order (master first)
    sentinels: list[_Proc] = field(default_factory=list)
    killed_at: float | None = None
    failover_seconds: float | None = None  # kill_master() -> wait_for_failover() returned

    # --- starting ---------------------------------------------------------------------------------

    @classmethod
    def start(cls, replicas: int = 1, sentinels: int = 3, timeout: float = 20.0) -> Sentinels:
        """Master, replica(s) in sync, then sentinels that know the replica and each other."""
        deployment = cls(Path(tempfile.mkdtemp(prefix="sentinel-test-")), _binary())
        try:
            deployment._start(replicas, sentinels, timeout)
        except BaseException:
            deployment.stop()
            raise
        return deployment

    def _start(self, replicas: int, sentinels: int, timeout: float) -> None:
        # Nothing on disk, replication included: the master streams its snapshot to the socket
        # (the default) and a replica loads it from the socket instead of a dump.rdb (swapdb: the
        # old data set stays in memory until the new one has loaded). A diskless sync waits 5 s by
        # default for more replicas to join it: ours are all there, so it starts at once.
        data = ['save ""', "appendonly no", "repl-diskless-load swapdb", "repl-diskless-sync-delay 0"]
        master = self._launch("master", data, timeout)
        self.nodes.append(master)
        for n in range(replicas):
            self.nodes.append(self._launch(f"replica{n + 1}", [*data, f"replicaof {HOST} {master.port}"], timeout))
        # Sentinels learn the replicas from the master's INFO, which they ask for on connecting and
        # then only every 10 s: a replica must be attached before the first sentinel starts.
        wait_until(lambda: self._in_sync(master, self.nodes[1:]), timeout, what="the replicas to be in sync")
        monitor = [
            f"sentinel monitor {self.master_name} {HOST} {master.port} {QUORUM}",
            f"sentinel down-after-milliseconds {self.master_name} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {self.master_name} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {self.master_name} 1",
        ]
        for n in range(sentinels):
            self.sentinels.append(self._launch(f"sentinel{n + 1}", monitor, timeout, sentinel=True))
        # Sentinels find each other through hello messages on the master every 2 s; until they
        # have, none could gather a quorum to fail over.
        wait_until(
            lambda: all(self._knows_everyone(s, replicas, sentinels) for s in self.sentinels),
            timeout,
            what="every sentinel to know the master, the replicas and the other sentinels",
        )

    def _launch(self, name: str, lines: list[str], timeout: float, sentinel: bool = False) -> _Proc:
        """Start one process on a free port and wait for its PONG; a new port if another took it."""
        conf, log = self.directory / f"{name}.conf", self.directory / f"{name}.log"
        for _attempt in range(3):
            node = _Proc(name, free_port(), conf, log, sentinel=sentinel)
            # A sentinel rewrites its own config file (what it learns of replicas and peers): each
            # process has a file of its own in the temporary directory.
            conf.write_text("\n".join([*self._common(node), *lines]) + "\n")
            log.unlink(missing_ok=True)
            node.start(self.binary)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and node.alive():
                try:
                    if node.ping(timeout=0.2):
                        return node
                except (redis.RedisError, OSError):
                    pass
                time.sleep(0.02)
            if node.alive():
                node.kill()
                raise RuntimeError(f"{name} on {node.port} did not answer PING within {timeout}s:\n{node.log_tail()}")
            if "Address already in use" not in node.log_tail():
                raise RuntimeError(f"{name} on {node.port} exited with {node.returncode()}:\n{node.log_tail()}")
        raise RuntimeError(f"{name}: every free port was taken before redis-server could bind it")

    def _common(self, node: _Proc) -> list[str]:
        return [
            f"port {node.port}",
            f"bind {HOST}",
            "protected-mode no",
            "daemonize no",
            f'dir "{self.directory}"',
            f'logfile "{node.log}"',
        ]

    @staticmethod
    def _in_sync(master: _Proc, replicas: list[_Proc]) -> bool:
        with master.client() as client:
            info: dict[str, Any] = client.info("replication")
        online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)]
        if len([r for r in online if r.get("state") == "online"]) < len(replicas):
            return False
        for replica in replicas:
            with replica.client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def _knows_everyone(self, sentinel: _Proc, replicas: int, sentinels: int) -> bool:
        with sentinel.client() as client:
            state: dict[str, Any] = client.sentinel_master(self.master_name)
        return (
            int(state["num-slaves"]) >= replicas
            and int(state["num-other-sentinels"]) >= sentinels - 1
            and not state["is_sdown"]
            and not state["is_odown"]
        )

    # --- what the product is given ------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        """REDIS_SENTINELS and REDIS_SENTINEL_MASTER for a product process."""
        return {
            "REDIS_SENTINELS": ",".join(f"{HOST}:{s.port}" for s in self.sentinels),
            "REDIS_SENTINEL_MASTER": self.master_name,
        }

    def master_port(self) -> int:
        """The master's port as the first sentinel that answers sees it."""
        last_error: Exception | None = None
        for sentinel in self.sentinels:
            if not sentinel.alive():
                continue
            try:
                return self._ask(sentinel)
            except (redis.RedisError, OSError, LookupError) as exc:
                last_error = exc
        raise RuntimeError(f"no sentinel answered get-master-addr-by-name {self.master_name}: {last_error!r}")

    def _ask(self, sentinel: _Proc) -> int:
        with sentinel.client() as client:
            address = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.master_name)
        if not address:
            raise LookupError(f"{sentinel.name} does not know {self.master_name}")
        return int(address[1])

    def node(self, port: int) -> _Proc:
        for node in self.nodes:
            if node.port == port:
                return node
        raise LookupError(f"no data node of this deployment listens on {port}")

    def client(self, port: int | None = None) -> redis.Redis:
        """A client to a data node (the current master by default), for inspecting keys."""
        return self.node(port if port is not None else self.master_port()).client(timeout=2)

    # --- failing over -------------------------------------------------------------------------------

    def kill_master(self) -> int:
        """SIGKILL the current master (no shutdown, no last words to the replica); its port."""
        port = self.master_port()
        self.node(port).kill()
        self.killed_at = time.monotonic()
        return port

    def wait_for_failover(self, old_port: int, timeout: float = 15.0) -> int:
        """Wait until every live sentinel names one new master and it says it is a master; its port."""

        def promoted() -> int | None:
            ports = {self._ask(s) for s in self.sentinels if s.alive()}
            if len(ports) != 1:
                return None
            [port] = ports
            if port == old_port:
                return None
            with self.node(port).client() as client:
                role = client.execute_command("ROLE")
            return port if role[0] in (b"master", "master") else None

        try:
            port: int = wait_until(promoted, timeout, interval=0.05, what=f"a failover away from {old_port}")
        except AssertionError as exc:
            logs = "\n".join(f"--- {s.name}\n{s.log_tail(1500)}" for s in self.sentinels)
            raise AssertionError(f"{exc}\nsentinel logs:\n{logs}") from None
        if self.killed_at is not None:
            self.failover_seconds = time.monotonic() - self.killed_at
        return port

    # --- stopping -----------------------------------------------------------------------------------

    def stop(self) -> None:
        for proc in [*self.sentinels, *self.nodes]:
            proc.kill()
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> Sentinels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
