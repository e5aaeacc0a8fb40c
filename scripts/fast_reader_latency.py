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

With ``--size 1m --conns 1000`` the load is a thousand clients downloading a 1 MiB file
over and over instead (c10k bench bigfile's load): what a visitor on a kept connection sees
beside them, and whether the server sheds anyone (the prober's and the readers' errors
are printed).

    .venv/bin/python scripts/fast_reader_latency.py --size 1m --conns 1000
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import free_port, start, stop
from files_vs_nginx import make_docroot, server_argv, size_arg, trunc_argv, warm
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
    lat.sort()
    ms = [lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3, lat[-1] * 1e3]
    failed = f", {len(errors)} failed (first: {errors[0]})" if errors else ""
    return (
        f"{len(lat):4} requests, p50 {ms[0]:6.1f} ms, p99 {ms[1]:6.1f} ms, "
        f"worst {ms[2]:6.1f} ms{failed}"
    )


def measure(name: str, argv: list[str], port: int, root: Path, conns: int) -> None:
    proc = start(argv, port)
    try:
        warm(root / "big.bin")
        print(f"{name:24} alone:  {probe(port)}", flush=True)
        reader = ["taskset", "-c", "1", *trunc_argv(port, conns, int(PROBE_SECS) + 3)]
        load = subprocess.Popen(
            [*reader, "--path", "/big.bin"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        time.sleep(1 + conns / 1000)  # the readers' first responses are under way
        print(f"{name:24} beside: {probe(port)}", flush=True)
        out, err = load.communicate()
        if load.returncode:
            sys.exit(f"trunc_client failed: {err.decode().strip()}")
        got = json.loads(out)
        if got["errors"] or got["warm_errors"]:
            print(f"{name:24} the readers: {got['errors']}, {got['warm_errors']} while warming")
    finally:
        stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mode", action="append", help="c10k --backend (repeatable; default auto)")
    ap.add_argument("--extra-src", action="append", default=[], help="also c10k from this src")
    ap.add_argument("--no-nginx", action="store_true", help="leave nginx out")
    ap.add_argument("--size", type=size_arg, default="1g", help="the big file (k/m/g; 1g)")
    ap.add_argument("--conns", type=int, default=1, help="clients reading it (default 1)")
    args = ap.parse_args()
    work, root = make_docroot("fast-reader-", args.size)
    (root / "small.txt").write_bytes(SMALL)
    servers: list[tuple[str, str, list[str]]] = [] if args.no_nginx else [("nginx", "nginx", [])]
    for name in ["c10k", *(f"c10k@{src}" for src in args.extra_src)]:
        servers += [(f"{name} {mode}", name, ["--backend", mode]) for mode in args.mode or ["auto"]]
    try:
        for label, name, extra in servers:
            port = free_port()
            argv = server_argv(name, port, root, work, extra)
            measure(label, argv, port, root, args.conns)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
