"""Helpers for the attack tests: a legitimate client, pipe draining, /proc accounting."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from helpers import REPO, ServerProcess, make_docroot

HUNDRED_K = b"".join(b"L%08d\n" % i for i in range(10_000))  # 100,000 bytes
SMALL = b"0123456789" * 51 + b"AB"


def attack_docroot(root: Path) -> Path:
    make_docroot(root)
    (root / "100k.bin").write_bytes(HUNDRED_K)
    return root


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


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for {pid}")


def wait_fds(srv: ServerProcess, target: int, timeout: float) -> int:
    return srv.wait_fd_count(target, timeout=timeout)


def cli_accepts(flag: str) -> bool:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run(
        [sys.executable, "-m", "c10k", "serve", "--help"],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    return flag in out.stdout


class Drained:
    """Reads a ServerProcess's stdout and stderr in threads, so a chatty server under
    attack can never block on a full pipe (ServerProcess reads them only at stop)."""

    def __init__(self, srv: ServerProcess) -> None:
        self.srv = srv
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.threads = [
            threading.Thread(target=self._pump, args=(srv.proc.stdout, self.out), daemon=True),
            threading.Thread(target=self._pump, args=(srv.proc.stderr, self.err), daemon=True),
        ]
        for t in self.threads:
            t.start()

    @staticmethod
    def _pump(stream: object, sink: list[bytes]) -> None:
        read = stream.read1  # type: ignore[attr-defined]
        while chunk := read(65536):
            sink.append(chunk)

    def stop(self) -> tuple[int, str, str]:
        proc = self.srv.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for t in self.threads:
            t.join(timeout=5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
        return (
            proc.returncode,
            b"".join(self.out).decode(errors="replace"),
            b"".join(self.err).decode(errors="replace"),
        )


class LegitClient(threading.Thread):
    """A well-behaved user: http.client GETs of /small.txt and /100k.bin in turn, each on
    a new connection (so accepting under attack is measured too), checking every byte.
    Latency is connect-to-last-byte."""

    def __init__(self, port: int, pause: float = 0.01) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.pause = pause
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.total = 0  # requests sent, never reset
        self._stop_event = threading.Event()

    def run(self) -> None:
        paths = (("/small.txt", SMALL), ("/100k.bin", HUNDRED_K))
        i = 0
        while not self._stop_event.is_set():
            path, want = paths[i % 2]
            i += 1
            self.total += 1
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status != 200 or body != want:
                    self.failures.append(f"{path}: {resp.status}, {len(body)} bytes")
                else:
                    self.latencies.append(time.perf_counter() - t0)
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append(f"{path}: {exc!r}")
            finally:
                conn.close()
            self._stop_event.wait(self.pause)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)

    def reset(self) -> None:
        self.latencies = []
        self.failures = []

    def p99(self) -> float:
        lat = sorted(self.latencies)
        if not lat:
            return float("inf")
        return lat[min(len(lat) - 1, int(len(lat) * 0.99))]
