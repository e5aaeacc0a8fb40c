"""Helpers for the fault tests: process accounting from /proc, limits, self-describing files.

Everything here reads the server from the outside (``/proc/PID/...``, ``prlimit``), the way
an operator would, so the tests work on any server mode that runs as a subprocess.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from helpers import REPO, ServerProcess

CLK_TCK = os.sysconf("SC_CLK_TCK")
# 10-byte records that name their own index (nginx-tests range.t style), 7 digits so a
# file can hold 10,000,000 records (100 MB) and any byte range says where it came from.
RECORD = b"X%07dX\n"
RECORD_BYTES = 10


def records(first: int, count: int) -> bytes:
    return b"".join(RECORD % i for i in range(first, first + count))


def make_big_file(path: Path, size_bytes: int) -> bytes:
    """Write a self-describing file of ``size_bytes`` (a multiple of 10); return it."""
    assert size_bytes % RECORD_BYTES == 0
    data = records(0, size_bytes // RECORD_BYTES)
    path.write_bytes(data)
    return data


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), from /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def open_paths(pid: int) -> list[str]:
    """Targets of the process's fds (files show their path, sockets 'socket:[inode]')."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except FileNotFoundError:
            pass  # closed meanwhile
    return out


def wait_until(pred: object, timeout: float = 10.0, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if pred():  # type: ignore[operator]
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def set_nofile(pid: int, limit: int) -> None:
    """Lower a running process's RLIMIT_NOFILE (soft and hard) with prlimit(1).

    The server raises its soft limit to the hard one at start and derives its connection
    cap from it (cap = limit - 64 reserved), so a process started under a low limit never
    reaches EMFILE on accept: it pauses at the cap first. Lowering the limit of the running
    process stands for "something else took the fds" and does reach EMFILE.
    """
    subprocess.run(["prlimit", "--pid", str(pid), f"--nofile={limit}:{limit}"], check=True)


@functools.cache
def cli_accepts(flag: str) -> bool:
    """Whether ``c10k serve`` knows ``flag`` (flags being added by other work in progress)."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run(
        [sys.executable, "-m", "c10k", "serve", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    return flag in out.stdout


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def slow_socket(port: int, rcvbuf: int = 4096, timeout: float = 10.0) -> socket.socket:
    """A client socket with a small receive buffer (set before connect, so the advertised
    window stays small): the server's sends block after a few hundred KB at most."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    return s


def read_head(s: socket.socket) -> tuple[int, dict[str, str], bytearray]:
    """Read a response head; return status, headers and the body bytes read past it."""
    buf = bytearray()
    while b"\r\n\r\n" not in buf:
        data = s.recv(4096)
        if not data:
            raise ConnectionError(f"closed before a full head: {bytes(buf)!r}")
        buf += data
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, bytearray(rest)


def read_until_close(s: socket.socket, buf: bytearray, limit: int, timeout: float = 20.0) -> bool:
    """Read into ``buf`` until EOF/reset (returns True) or until ``limit`` bytes are in
    ``buf`` and nothing more comes for 0.5 s (returns False: still open)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        s.settimeout(0.5 if len(buf) >= limit else 5.0)
        try:
            data = s.recv(1 << 20)
        except TimeoutError:
            if len(buf) >= limit:
                return False
            continue
        except ConnectionResetError:
            return True
        if not data:
            return True
        buf += data
    raise AssertionError(f"neither closed nor complete after {timeout}s: {len(buf)} bytes")


def stop_clean(srv: ServerProcess) -> str:
    """Stop the server; assert exit 0 and no traceback; return its stderr."""
    code, _, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "Traceback" not in err, err[-5000:]
    return err
