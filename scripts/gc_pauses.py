"""The cyclic GC's collections in a server under connection churn: how many per generation,
their total and their longest (the loop stalls for the longest).

Starts ``c10k serve`` (one process, pinned to CPU 0) with a ``gc.callbacks`` timer in it,
runs wrk on CPU 1 with ``Connection: close`` (a new connection per 512-byte request) for
``--secs``, stops the server and prints what the callback saw, beside wrk's rate and p99.
The first full collection is the server's own at start (``supervisor.keep_heap``).

    flock /tmp/c10k-cpu.lock .venv/bin/python scripts/gc_pauses.py [--secs 8] [--conns 200] \\
        [-- --backend asyncio]

Needs wrk (Debian package). With ``--src DIR`` another source tree runs (a ``git worktree``
of an older commit, to compare).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import free_port, start, stop

SERVER = """
import gc, sys, time
seen = {0: [0, 0.0, 0.0], 1: [0, 0.0, 0.0], 2: [0, 0.0, 0.0]}
began = [0.0]
def timed(phase, info):
    if phase == "start":
        began[0] = time.perf_counter()
        return
    took = time.perf_counter() - began[0]
    s = seen[info["generation"]]
    s[0] += 1
    s[1] += took
    s[2] = max(s[2], took)
gc.callbacks.append(timed)
from c10k.cli import main
try:
    main(sys.argv[1:])
finally:
    for gen, (n, total, most) in seen.items():
        print(f"GC gen{gen}: {n} collections, {total * 1e3:.1f} ms in all, longest "
              f"{most * 1e3:.2f} ms", file=sys.stderr)
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--secs", type=int, default=8)
    ap.add_argument("--conns", type=int, default=200)
    ap.add_argument("--src", default=str(Path(__file__).resolve().parents[1] / "src"))
    ap.add_argument("serve_args", nargs="*", help="extra c10k serve flags (after --)")
    args = ap.parse_args()
    root = Path(tempfile.mkdtemp(prefix="gc-pauses-"))
    (root / "f").write_bytes(b"x" * 512)
    port = free_port()
    argv = [sys.executable, "-c", SERVER, "serve", str(root), "--bind", "127.0.0.1"]
    argv += ["--port", str(port), "--workers", "1", *args.serve_args]
    os.environ["PYTHONPATH"] = args.src
    proc = start(argv, port)
    load = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.conns}", f"-d{args.secs}s"]
    load += ["--latency", "-H", "Connection: close", f"http://127.0.0.1:{port}/f"]
    try:
        wrk = subprocess.run(
            load,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        stop(proc)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    rate = re.search(r"Requests/sec:\s+(\S+)", wrk)
    p99 = re.search(r"99%\s+(\S+)", wrk)
    print(f"wrk: {rate.group(1) if rate else '?'} req/s, p99 {p99.group(1) if p99 else '?'}")
    for line in err.splitlines():
        if line.startswith("GC gen"):
            print(line[3:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
