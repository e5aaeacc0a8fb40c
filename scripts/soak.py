#!/usr/bin/env python3
"""Soak test: steady load against ``c10k serve`` for N minutes; RSS and fds must stay flat.

Usage (from the repository root; not part of CI, it runs for minutes):

    flock /tmp/c10k-bench.lock .venv/bin/python scripts/soak.py --minutes 10
    .venv/bin/python scripts/soak.py --minutes 1 --backend epoll-et -- --workers 2

The load is steady, not maximal: paced client threads in this process, each doing one
kind of thing for the whole run:
- keep-alive clients: GET a small (cached) and a large (sendfile) file in turn on one
  persistent connection;
- new-connection clients: one GET per connection, small and large in turn;
- slow clients: a reader that takes a large file 16 KiB at a time, and a client that
  sends its head one byte every 50 ms. Both must still succeed (200, every byte).

Warm-up: the slopes leave out the first ``--warmup-seconds`` (90). Until the server's
longest timeout has passed once, RSS grows with the connection rate, because a closed
connection stays referenced from its one-second deadline bucket until that bucket comes
due (c10k.core.timers.Deadlines cancels lazily): new connections x header_timeout (60 s)
x ~180 bytes, ~10 MB at 1,000 connections/s, then flat. Short runs should pass short
timeouts (``-- --header-timeout 5 --keepalive-timeout 5``).

Every ``--interval`` seconds the script samples the server's RSS and open fds (summed over
the server and its children, so ``--workers`` is covered) and prints a row. At the end:

- RSS is "flat" when the least-squares slope over the samples after warm-up, projected
  over that window, is below max(2 MiB, 5% of the mean RSS). Why not zero: pymalloc and
  glibc keep freed memory in arenas and heap fragments, and the 1-second wire memo and the
  file cache fill and empty, so RSS moves by a few hundred KiB sample to sample. A leak of
  even 100 bytes per request (~100,000 requests per minute here) would be ~10 MiB per
  minute, far above the bound.
- fds are "flat" when their slope, projected over the window, is below half the number
  of client threads (the count moves with connections in flight), and, once the load has
  stopped, the count returns exactly to its value before the load started.
- Any failed request (wrong status, wrong bytes, error) also fails the run.

Exit status: 0 when flat and error-free, 1 otherwise, 2 if the server did not start.
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SMALL = b"0123456789" * 51 + b"AB"  # 512 bytes: served from the cache
BIG = b"".join(b"S%08d\n" % i for i in range(100_000))  # 1,000,000 bytes: sendfile


# -- the server, from the outside ---------------------------------------------------------
def process_tree(pid: int) -> list[int]:
    pids = [pid]
    for p in pids:  # grows while iterating: breadth-first over /proc children
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    pids.extend(int(x) for x in f.read().split())
        except FileNotFoundError:
            continue
    return pids


def rss_kib(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except FileNotFoundError:
            pass
    return total


def fd_count(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except FileNotFoundError:
            pass
    return total


def start_server(
    root: Path, backend: str, extra: list[str], logdir: Path
) -> tuple[subprocess.Popen[bytes], int]:
    argv = [sys.executable, "-m", "c10k", "serve", str(root), "--bind", "127.0.0.1"]
    argv += ["--port", "0", "--backend", backend, *extra]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    # Files, not pipes: a pipe nobody reads fills up and blocks the server.
    with open(logdir / "server.out", "wb") as out, open(logdir / "server.err", "wb") as err:
        proc = subprocess.Popen(argv, stdout=out, stderr=err, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", (logdir / "server.out").read_text())
        if m:
            return proc, int(m.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    proc.wait()
    raise RuntimeError("server did not start: " + (logdir / "server.err").read_text()[-2000:])


# -- load --------------------------------------------------------------------------------
class Load:
    def __init__(self, port: int) -> None:
        self.port = port
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.requests = 0
        self.errors: list[str] = []
        self.threads: list[threading.Thread] = []

    def ok(self) -> None:
        with self.lock:
            self.requests += 1

    def fail(self, what: str) -> None:
        with self.lock:
            self.errors.append(what)

    def check(self, kind: str, status: int, body: bytes, want: bytes) -> None:
        if status == 200 and body == want:
            self.ok()
        else:
            self.fail(f"{kind}: status {status}, {len(body)} bytes")

    def keepalive(self, pause: float) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        i = 0
        while not self.stop.is_set():
            path, want = ("/small.txt", SMALL) if i % 4 else ("/big.bin", BIG)
            i += 1
            try:
                conn.request("GET", path)
                resp = conn.getresponse()
                self.check("keep-alive", resp.status, resp.read(), want)
            except (OSError, http.client.HTTPException) as exc:
                self.fail(f"keep-alive: {exc!r}")
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            self.stop.wait(pause)
        conn.close()

    def new_connections(self, pause: float) -> None:
        i = 0
        while not self.stop.is_set():
            path, want = ("/small.txt", SMALL) if i % 4 else ("/big.bin", BIG)
            i += 1
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", path, headers={"Connection": "close"})
                resp = conn.getresponse()
                self.check("new-connection", resp.status, resp.read(), want)
            except (OSError, http.client.HTTPException) as exc:
                self.fail(f"new-connection: {exc!r}")
            finally:
                conn.close()
            self.stop.wait(pause)

    def slow_reader(self) -> None:
        while not self.stop.is_set():
            try:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
                    s.settimeout(30)
                    s.connect(("127.0.0.1", self.port))
                    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n")
                    data = bytearray()
                    while chunk := s.recv(16384):
                        data += chunk
                        time.sleep(0.01)  # ~1.5 MB/s at most: the server waits on us
                head, _, body = bytes(data).partition(b"\r\n\r\n")
                self.check("slow-reader", int(head.split(b" ")[1]), body, BIG)
            except (OSError, ValueError, IndexError) as exc:
                self.fail(f"slow-reader: {exc!r}")

    def slow_header(self) -> None:
        head = b"GET /small.txt HTTP/1.1\r\nHost: soak\r\nConnection: close\r\n\r\n"
        while not self.stop.is_set():
            try:
                with socket.socket() as s:
                    s.settimeout(30)
                    s.connect(("127.0.0.1", self.port))
                    for i in range(len(head)):
                        s.send(head[i : i + 1])
                        time.sleep(0.05)  # ~3 s per head: well inside the header timeout
                    data = bytearray()
                    while chunk := s.recv(65536):
                        data += chunk
                top, _, body = bytes(data).partition(b"\r\n\r\n")
                self.check("slow-header", int(top.split(b" ")[1]), body, SMALL)
            except (OSError, ValueError, IndexError) as exc:
                self.fail(f"slow-header: {exc!r}")

    def start(self, keepalive: int, new: int, slow: int, pause: float) -> None:
        targets: list[tuple[object, tuple[float, ...]]] = []
        targets += [(self.keepalive, (pause,))] * keepalive
        targets += [(self.new_connections, (pause,))] * new
        for i in range(slow):
            targets.append((self.slow_reader if i % 2 == 0 else self.slow_header, ()))
        for target, args in targets:
            t = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
            t.start()
            self.threads.append(t)

    def finish(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)


# -- verdict -----------------------------------------------------------------------------
def slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope of ys over xs (units of y per unit of x)."""
    n = len(xs)
    if n < 2:
        return 0.0
    mx = sum(xs) / n
    my = sum(ys) / n
    var = sum((x - mx) ** 2 for x in xs)
    if var == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / var


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (10)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds per sample (5)")
    parser.add_argument("--backend", default="epoll")
    parser.add_argument("--keepalive-clients", type=int, default=4)
    parser.add_argument("--new-clients", type=int, default=2)
    parser.add_argument("--slow-clients", type=int, default=2)
    parser.add_argument(
        "--pause", type=float, default=0.002, help="seconds between one client's requests"
    )
    parser.add_argument(
        "--warmup-seconds",
        type=float,
        default=90.0,
        help="samples in the first this many seconds are left out of the slopes (90: longer "
        "than the server's default timeouts, 60 s header and 75 s keep-alive)",
    )
    parser.add_argument("server_args", nargs="*", help="extra `c10k serve` flags, after --")
    ns = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="c10k-soak-") as tmp:
        tmpdir = Path(tmp)
        root = tmpdir / "www"
        root.mkdir()
        (root / "small.txt").write_bytes(SMALL)
        (root / "big.bin").write_bytes(BIG)
        try:
            proc, port = start_server(root, ns.backend, ns.server_args, tmpdir)
        except RuntimeError as exc:
            print(f"soak: {exc}", file=sys.stderr)
            return 2
        try:
            return _run(ns, proc, port, tmpdir)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _run(ns: argparse.Namespace, proc: subprocess.Popen[bytes], port: int, tmpdir: Path) -> int:
    time.sleep(0.5)
    fds_idle = fd_count(process_tree(proc.pid))
    clients = ns.keepalive_clients + ns.new_clients + ns.slow_clients
    load = Load(port)
    load.start(ns.keepalive_clients, ns.new_clients, ns.slow_clients, ns.pause)
    print(
        f"soak: {ns.minutes:g} min against {ns.backend} (pid {proc.pid}, port {port}); "
        f"{ns.keepalive_clients} keep-alive, {ns.new_clients} new-connection, "
        f"{ns.slow_clients} slow clients; sample every {ns.interval:g} s"
    )
    print(f"{'t (s)':>7} {'RSS KiB':>9} {'fds':>5} {'requests':>10} {'req/s':>7} {'errors':>6}")
    t0 = time.monotonic()
    end = t0 + ns.minutes * 60
    times: list[float] = []
    rss: list[float] = []
    fds: list[float] = []
    last_req, last_t = 0, t0
    next_sample = t0 + ns.interval
    while True:
        time.sleep(max(0.0, next_sample - time.monotonic()))
        now = time.monotonic()
        if proc.poll() is not None:
            print(f"soak: the server exited with status {proc.returncode}")
            load.finish()
            return 1
        pids = process_tree(proc.pid)
        r, f = rss_kib(pids), fd_count(pids)
        reqs = load.requests
        rate = (reqs - last_req) / (now - last_t)
        last_req, last_t = reqs, now
        times.append(now - t0)
        rss.append(r)
        fds.append(f)
        print(f"{now - t0:7.0f} {r:9d} {f:5d} {reqs:10d} {rate:7.0f} {len(load.errors):6d}")
        sys.stdout.flush()
        next_sample += ns.interval
        if next_sample > end:
            break
    load.finish()
    fds_after = fds_idle
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        fds_after = fd_count(process_tree(proc.pid))
        if fds_after == fds_idle:
            break
        time.sleep(0.1)

    skip = sum(1 for t in times if t <= ns.warmup_seconds)
    if len(times) - skip < 3:
        # Too short a run for the warm-up: keep the last 80% and say what that means.
        skip = min(len(times) - 2, max(1, len(times) // 5))
        print(
            f"note: the run is shorter than the {ns.warmup_seconds:g} s warm-up; RSS grows "
            "until the server's longest timeout has passed once (closed connections stay "
            "in their deadline bucket until it comes due), so pass short timeouts, e.g. "
            "-- --header-timeout 5 --keepalive-timeout 5"
        )
    xs, rs, fs = times[skip:], rss[skip:], fds[skip:]
    window_min = (xs[-1] - xs[0]) / 60 if len(xs) > 1 else 0.0
    rss_slope = slope(xs, rs) * 60  # KiB per minute
    fd_slope = slope(xs, fs) * 60
    mean_rss = sum(rs) / len(rs)
    rss_drift = rss_slope * window_min
    fd_drift = fd_slope * window_min
    rss_bound = max(2048.0, 0.05 * mean_rss)
    fd_bound = clients / 2
    rss_flat = abs(rss_drift) <= rss_bound
    fd_flat = abs(fd_drift) <= fd_bound and fds_after == fds_idle
    print(
        f"RSS: slope {rss_slope:+.0f} KiB/min over {window_min:.1f} min after warm-up "
        f"(drift {rss_drift:+.0f} KiB, bound {rss_bound:.0f}): {'flat' if rss_flat else 'NOT flat'}"
    )
    print(
        f"fds: slope {fd_slope:+.2f}/min (drift {fd_drift:+.1f}, bound {fd_bound:.1f}); "
        f"{fds_idle} before the load, {fds_after} after: {'flat' if fd_flat else 'NOT flat'}"
    )
    print(f"requests: {load.requests:,}, errors: {len(load.errors)}")
    for e in load.errors[:10]:
        print(f"  {e}")
    err = (tmpdir / "server.err").read_text(errors="replace")
    traceback = "Traceback" in err
    if traceback:
        print("server stderr has a traceback:\n" + err[-3000:])
    flat = rss_flat and fd_flat and not load.errors and not traceback
    print(f"verdict: {'flat' if flat else 'NOT flat'}")
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
