#!/usr/bin/env python3
"""How many idle keep-alive clients the thread-per-connection mode holds, and at what memory.

Starts ``c10k serve --backend threads`` in a subprocess, then opens keep-alive clients
one after another (connect, one GET, read the response, keep the socket) until one of:
``--max-clients``, a client that cannot connect or is not answered within 5 s, or the
``--seconds`` budget. Every ``--step`` clients it samples the server's VmRSS and thread
count from /proc. Memory per thread = (RSS now - RSS with no client) / (threads now -
threads with no client). Finally it checks that a sample of the held clients is still
served, and kills the server (see the comment at the end for why not SIGTERM).

Bounded (default 45 s of opening clients) and loopback only. Run it under the shared
benchmark lock, at most once or twice:

    flock /tmp/c10k-bench.lock .venv/bin/python scripts/thread_ceiling.py

It prints one JSON object (the figures) on its last line.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"


def proc_status(pid: int) -> tuple[int, int]:
    """(VmRSS in bytes, Threads) of a process."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
    return rss, threads


def read_response(sock: socket.socket) -> bool:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = sock.recv(4096)
        if not data:
            return False
        buf += data
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"Content-Length: (\d+)", head)
    length = int(m.group(1)) if m else 0
    while len(body) < length:
        data = sock.recv(4096)
        if not data:
            return False
        body += data
    return head.startswith(b"HTTP/1.1 200")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-clients", type=int, default=20000)
    ap.add_argument("--seconds", type=float, default=45.0)
    ap.add_argument("--step", type=int, default=1000)
    args = ap.parse_args()

    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    max_clients = min(args.max_clients, hard - 100)

    root = Path(tempfile.mkdtemp(prefix="c10k-threads-"))
    (root / "small.txt").write_bytes(b"x" * 512)
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    argv = [sys.executable, "-m", "c10k", "serve", str(root), "--port", "0"]
    argv += ["--backend", "threads", "--keepalive-timeout", "600"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert proc.stdout is not None
    banner = proc.stdout.readline().decode() + proc.stdout.readline().decode()
    m = re.search(r"http://127\.0\.0\.1:(\d+)/", banner)
    if m is None:
        proc.kill()
        print(banner, proc.communicate()[1].decode(), file=sys.stderr)
        return 1
    port = int(m.group(1))
    print(banner.strip(), flush=True)
    time.sleep(0.5)
    rss0, threads0 = proc_status(proc.pid)
    clients: list[socket.socket] = []
    samples = []
    stop_reason = f"--max-clients {max_clients}"
    start = time.monotonic()
    try:
        while len(clients) < max_clients:
            if time.monotonic() - start > args.seconds:
                stop_reason = f"time budget {args.seconds:.0f} s"
                break
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(GET)
                ok = read_response(s)
            except OSError as exc:
                stop_reason = f"client {len(clients) + 1}: {exc}"
                break
            if not ok:
                s.close()
                stop_reason = f"client {len(clients) + 1}: not answered"
                break
            clients.append(s)
            if len(clients) % args.step == 0:
                rss, threads = proc_status(proc.pid)
                samples.append(
                    {
                        "clients": len(clients),
                        "threads": threads,
                        "rss_mib": round(rss / 2**20, 1),
                        "seconds": round(time.monotonic() - start, 1),
                    }
                )
                print(json.dumps(samples[-1]), flush=True)
        elapsed = time.monotonic() - start
        rss, threads = proc_status(proc.pid)
        alive = 0
        sample = clients[:: max(1, len(clients) // 50)]
        try:
            for s in sample:
                s.settimeout(2)
                s.sendall(GET)
                alive += read_response(s)
        except OSError as exc:
            print(f"sampled client failed: {exc}", flush=True)
        extra = threads - threads0
        result = {
            "held_clients": len(clients),
            "stopped_by": stop_reason,
            "seconds_to_open": round(elapsed, 1),
            "server_threads": threads,
            "rss_idle_mib": round(rss0 / 2**20, 1),
            "rss_held_mib": round(rss / 2**20, 1),
            "rss_per_thread_kib": round((rss - rss0) / max(extra, 1) / 1024, 1),
            "sampled_clients_still_served": f"{alive}/{len(sample)}",
            "banner": banner.strip().splitlines()[-1].strip(),
        }
        print(json.dumps(result), flush=True)
    finally:
        # Kill first, then close: a graceful stop wakes every client thread at once, and
        # thousands of runnable Python threads convoy on the GIL for minutes (observed
        # with ~19,700 threads: ~200 exited in 3 minutes at 128% CPU). That teardown is
        # not what this script measures.
        proc.kill()
        proc.communicate()
        for s in clients:
            s.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
