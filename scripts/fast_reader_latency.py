"""A small file's latency while one client reads a 1 GiB file as fast as the server sends it.

A reader on loopback (or a proxy on the same host) takes bytes as fast as sendfile gives
them, so its socket never fills and a server that sends "until the socket is full" sends
the whole file in one go while every other client of that loop waits. nginx bounds a
connection's sendfile per turn (``sendfile_max_chunk``, 2 MiB); c10k's modes share a turn
the same way (core/transport.py ``TURN_SHARE``). This measures it: each server in turn
pinned to CPU 0, a prober on CPU 1 fetching a small file every 10 ms over one keep-alive
connection, first alone, then beside scripts/trunc_client.py (CPU 1) reading the big file
over and over. Printed per server: the prober's p50, p99 and worst, alone and beside.

    .venv/bin/python scripts/fast_reader_latency.py                      # c10k (auto), nginx
    .venv/bin/python scripts/fast_reader_latency.py --mode epoll-et --mode uring
    .venv/bin/python scripts/fast_reader_latency.py --extra-src /tmp/old/src  # before a change

One run, a few seconds per server: a worst case of hundreds of milliseconds against a few
is the finding, not the digits.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import free_port, start, stop
from files_vs_nginx import make_docroot, server_argv, trunc_argv, warm
from slowdisk_latency import SMALL, prober

PROBE_SECS = 5.0


def probe(port: int) -> str:
    """scripts/slowdisk_latency.py's prober (GET /small.txt every 10 ms on one connection)
    for PROBE_SECS: p50, p99, worst."""
    lat: list[float] = []
    errors: list[str] = []
    done = threading.Event()
    thread = threading.Thread(target=prober, args=(port, done, lat, errors))
    thread.start()
    time.sleep(PROBE_SECS)
    done.set()
    thread.join()
    if errors:
        sys.exit(f"the prober failed: {errors[:3]}")
    lat.sort()
    ms = [lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, lat[-1] * 1e3]
    return f"{len(lat):4} requests, p50 {ms[0]:6.1f} ms, p99 {ms[1]:6.1f} ms, worst {ms[2]:6.1f} ms"


def measure(name: str, argv: list[str], port: int, root: Path) -> None:
    proc = start(argv, port)
    try:
        warm(root / "big.bin")
        print(f"{name:24} alone:  {probe(port)}", flush=True)
        reader = ["taskset", "-c", "1", *trunc_argv(port, 1, int(PROBE_SECS) + 3)]
        load = subprocess.Popen(
            [*reader, "--path", "/big.bin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(1)  # the reader's first response is under way
        print(f"{name:24} beside: {probe(port)}", flush=True)
        err = load.communicate()[1]
        if load.returncode:
            sys.exit(f"trunc_client failed: {err.decode().strip()}")
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", action="append", help="c10k --backend (repeatable; default auto)")
    ap.add_argument("--extra-src", action="append", default=[], help="also c10k from this src")
    ap.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    args = ap.parse_args()
    work, root = make_docroot("fast-reader-", 1 << 30)
    (root / "small.txt").write_bytes(SMALL)
    servers: list[tuple[str, str, list[str]]] = [] if args.no_nginx else [("nginx", "nginx", [])]
    for name in ["c10k", *(f"c10k@{src}" for src in args.extra_src)]:
        servers += [(f"{name} {mode}", name, ["--backend", mode]) for mode in args.mode or ["auto"]]
    try:
        for label, name, extra in servers:
            port = free_port()
            measure(label, server_argv(name, port, root, work, extra), port, root)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
