"""What the bench's own child processes share: reads stamped with the kernel's arrival time, the
JSON-lines control channel with the run, and how a load process sets itself up.

The load clients (bench/client.py, bench/storm_client.py, bench/centre_load.py) and the bot
(bench/centre_bot.py) are driven by the run over stdin/stdout, one JSON object per line each
way (bench/run.py's `Controlled`).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

from bench.procs import raise_file_limit

# One read buffer for all sockets (one thread): no 256 KiB allocation per read.
BUFFER = bytearray(256 * 1024)
VIEW = memoryview(BUFFER)
BUFFERS = [BUFFER]
# SO_TIMESTAMPNS (Linux; the socket module does not name it): the kernel stamps each read with
# the time the bytes arrived in the socket, as a struct timespec. A load process's own delays
# in getting round to thousands of sockets are then not counted against the servers.
SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("qq")
CMSG_SPACE = socket.CMSG_SPACE(TIMESPEC.size)


def stamp_arrivals(sock: socket.socket) -> None:
    """Ask the kernel for the arrival time of what `sock` receives (see `receive`)."""
    sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)


def receive(sock: socket.socket, kernel_clock: bool = True) -> tuple[int, float] | None:
    """Read what `sock` has into BUFFER: (bytes read, when they arrived); (0, now) at its end or
    on an error; None when nothing is there yet. The time is the kernel's stamp when asked for
    (`stamp_arrivals`) and `kernel_clock`, else `time.time()`."""
    try:
        size, ancillary, _, _ = sock.recvmsg_into(BUFFERS, CMSG_SPACE)
    except (BlockingIOError, InterruptedError):
        return None
    except OSError:
        return 0, time.time()
    if ancillary and kernel_clock:
        seconds, nanoseconds = TIMESPEC.unpack_from(ancillary[0][2])
        return size, seconds + nanoseconds * 1e-9
    return size, time.time()


def prepare(loop: str = "uvloop", sched: str = "normal", nice: int = 0, files: int = 0) -> None:
    """A load process's set-up: its scheduling class, the descriptors it may open, its loop.

    SCHED_BATCH (`sched="batch"`): the process never preempts a server on wake-up. Otherwise each
    byte a server sends on loopback wakes it, and it takes the core from the server in the middle
    of its fan-out: the instrument would slow down what it measures."""
    if sched == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    elif sched == "batch":
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    if nice:
        os.nice(nice)
    limit = raise_file_limit()
    if files and limit < files:
        print(f"warning: RLIMIT_NOFILE is {limit}; {files} connections need more", file=sys.stderr)
    if loop == "uvloop":
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            print("uvloop is not installed; using the stock asyncio loop", file=sys.stderr)


async def control(commands: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
    """Answer the run's commands until `quit` (or stdin closes): one JSON object a line each
    way. `commands` maps a command's `cmd` to a function of the command, plain or async, whose
    answer goes back; `quit` answers {"bye": true} after its own function, if any."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=1 << 30)  # a bot's whole log can come in one line
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(value: Any) -> None:
        sys.stdout.write(json.dumps(value) + "\n")
        sys.stdout.flush()

    while True:
        line = await reader.readline()
        if not line:
            return
        command = json.loads(line)
        name = command.get("cmd")
        handler = commands.get(name)
        if handler is None and name != "quit":
            reply({"error": f"unknown command {name!r}"})
            continue
        answer = handler(command) if handler is not None else None
        if inspect.isawaitable(answer):
            answer = await answer
        if name == "quit":
            reply({"bye": True})
            return
        reply(answer)
