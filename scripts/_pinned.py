"""What the *_vs_nginx scripts share: CPU 0's busy time, a free port, a server started
pinned to CPU 0 in its own process group (so stopping it stops every process it forked),
and the TCP congestion control a run uses."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path


def busy0() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu0 "):
            v = [int(x) for x in line.split()[1:]]
            return (v[0] + v[1] + v[2] + v[5] + v[6]) / os.sysconf("SC_CLK_TCK")
    raise RuntimeError("no cpu0 line in /proc/stat")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        ["taskset", "-c", "0", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    for _ in range(200):
        if proc.poll() is not None:
            assert proc.stderr is not None
            sys.exit(f"server exited: {proc.stderr.read().decode()[-500:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.1)
    sys.exit("server did not start")


def stop(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


CC_SYSCTL = Path("/proc/sys/net/ipv4/tcp_congestion_control")


def tcp_line() -> str:
    """This machine's TCP congestion control and default qdisc, for a run's first line
    (worded as the bench's results.md words them)."""
    from c10k.bench.report import tcp_line as worded

    keys = ("net.ipv4.tcp_congestion_control", "net.core.default_qdisc")
    sysctl = {k: (Path("/proc/sys") / k.replace(".", "/")).read_text().strip() for k in keys}
    return worded({"sysctl": sysctl})


@contextlib.contextmanager
def congestion_control(name: str | None) -> Iterator[None]:
    """With ``name``, new sockets use that congestion control (the machine-wide sysctl,
    root only) until the block ends, then the old one is put back; None leaves it."""
    if name is None:
        yield
        return
    allowed = Path("/proc/sys/net/ipv4/tcp_available_congestion_control").read_text().split()
    if name not in allowed:
        sys.exit(f"congestion control {name!r} not available here (have: {' '.join(allowed)})")
    old = CC_SYSCTL.read_text().strip()
    try:
        CC_SYSCTL.write_text(name)
    except PermissionError:
        sys.exit("setting net.ipv4.tcp_congestion_control needs root")
    try:
        yield
    finally:
        CC_SYSCTL.write_text(old)
