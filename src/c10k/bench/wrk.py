"""Run wrk (Debian package ``wrk``) for the high-rate runs, when it is installed.

Theory of operation
-------------------
A Python generator spends a few tens of microseconds per request; a server that answers in a
few microseconds per request would then be measured at the generator's speed, not its own.
wrk (C, epoll, one thread per core) is the ceiling-free generator the field uses, so the
keep-alive, new-connection and big-file runs use it when it is on ``PATH`` and fall back to
``client.py`` otherwise.  Every result records which generator produced it.

wrk's ``-d`` takes whole seconds (``units.c`` scans an integer), so durations are rounded up.
``-t1``: one thread, pinned with taskset to the generator core, like vs-nginx.  The Lua
``done()`` hook in ``stats.WRK_LUA`` adds p99.9 and exact counts to the text output.

TLS (``--tls``): an ``https://`` URL is all wrk needs (its OpenSSL build does a handshake on
every new connection).  wrk accepts any certificate (it has no option to verify one); the
run's readiness probe has verified the server's before wrk starts.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

from c10k.bench.machine import pin_argv
from c10k.bench.stats import WRK_LUA, parse_wrk_output


def wrk_binary() -> str | None:
    return shutil.which("wrk")


def wrk_missing_note() -> str:
    return (
        "wrk not found (apt-get install wrk): figures come from the Python generator, "
        "which may be the bottleneck at high request rates"
    )


def wrk_argv(
    binary: str,
    url: str,
    conns: int,
    secs: int,
    timeout: float,
    hook: Path,
    close: bool = False,
    threads: int = 1,
) -> list[str]:
    """wrk's command line (unpinned).

    >>> wrk_argv("wrk", "https://h:1/s", 4, 1, 5.0, Path("/h.lua"), close=True)[:3]
    ['wrk', '-t1', '-c4']
    >>> wrk_argv("wrk", "https://h:1/s", 4, 1, 5.0, Path("/h.lua"), close=True)[-3:]
    ['-H', 'Connection: close', 'https://h:1/s']
    """
    argv = [
        binary,
        f"-t{max(1, min(threads, conns))}",
        f"-c{conns}",
        f"-d{secs}s",
        "--timeout",
        f"{max(1, math.ceil(timeout))}s",
        "--latency",
        "-s",
        str(hook),
    ]
    if close:
        argv += ["-H", "Connection: close"]
    return [*argv, url]


def run_wrk(
    url: str,
    conns: int,
    duration: float,
    workdir: Path,
    close: bool = False,
    timeout: float = 5.0,
    threads: int = 1,
    cpus: list[int] | None = None,
) -> dict[str, Any]:
    """Run one wrk measurement and return the parsed figures plus the command line.

    Raises:
        RuntimeError: wrk is missing, failed, or printed nothing parseable.
    """
    binary = wrk_binary()
    if binary is None:
        raise RuntimeError(wrk_missing_note())
    hook = workdir / "c10k-wrk-hook.lua"
    if not hook.exists():
        hook.write_text(WRK_LUA)
    secs = max(1, math.ceil(duration))
    argv = pin_argv(wrk_argv(binary, url, conns, secs, timeout, hook, close, threads), cpus)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=secs + 60)
    except subprocess.TimeoutExpired as e:
        raise RuntimeError(f"wrk did not finish: {' '.join(argv)}") from e
    try:
        out = parse_wrk_output(p.stdout)
    except ValueError as e:
        raise RuntimeError(
            f"wrk failed (exit {p.returncode}): {p.stderr.strip()[-300:]} {p.stdout.strip()[-300:]}"
        ) from e
    out["argv"] = argv
    result: dict[str, Any] = out
    return result
