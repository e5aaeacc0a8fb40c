"""A capped server's CPU per request under and over its peak, open loop (issue 20).

Starts one server capped like the overload bench's (a cgroup quota on CPU 0, h2load on
CPU 1; ``peak_drift.py``'s set-up), measures its closed-loop peak twice, then offers each
``--loads`` multiple of the second reading for ``--secs`` seconds, a new connection per
request, h2load giving up on a connection after ``--deadline`` seconds. Per level: requests
served of those offered, and the server process's user and system CPU per request served
(/proc/PID/stat; the quota charges both). Whether a standing accept queue makes each
request dearer is read here with and without admission (``--c10k-arg=--max-accept-wait=0``).
``--rates`` offers the same rates a second to every server instead (the bench offers
multiples of each server's own peak reading, which moves by 10-20 % between readings, so
two servers compared there were offered different loads): an A/B of two trees runs this
once per tree, ``PYTHONPATH=TREE/src`` for the other.

    flock /tmp/c10k-cpu.lock .venv/bin/python scripts/queue_cost.py
    flock /tmp/c10k-cpu.lock .venv/bin/python scripts/queue_cost.py --c10k-arg=--max-accept-wait=0
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from peak_drift import capped_server, peak, run_h2load

from c10k.bench import h2load


def cpu_ticks(pid: int) -> tuple[int, int]:
    """User and system clock ticks of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]), int(fields[12])


def level(url: str, pid: int, rate: int, secs: int, deadline: float) -> str:
    total = rate * secs
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "h2load.tsv"
        argv = h2load.rate_argv("h2load", url, max(1, rate // 10), 100, total, deadline, log)
        before = cpu_ticks(pid)
        served = int(run_h2load(argv, secs + 60)["succeeded"])  # type: ignore[call-overload]
        after = cpu_ticks(pid)
    tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
    user, system = ((a - b) * tick_us / max(1, served) for a, b in zip(after, before, strict=True))
    return (
        f"{rate}/s: served {served} of {total} ({served / total * 100:5.1f} %); "
        f"CPU per request {user + system:5.1f} us (user {user:4.1f}, system {system:4.1f})"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", choices=["c10k", "nginx"], default="c10k")
    ap.add_argument("--c10k-arg", action="append", default=[], help="more `c10k serve` args")
    ap.add_argument("--server-cpu", type=float, default=0.1)
    ap.add_argument("--loads", default="0.7,1.15,0.7,1.15", help="multiples of the peak")
    ap.add_argument("--rates", default="", help="offer these rates a second instead")
    ap.add_argument("--secs", type=int, default=8, help="seconds per level")
    ap.add_argument("--deadline", type=float, default=5.0, help="h2load -T, seconds")
    ap.add_argument("--port", type=int, default=18556)
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.port}/index.html"
    extra = tuple(args.c10k_arg) if args.server == "c10k" else ()
    with capped_server(args.server, args.server_cpu, args.port, extra) as srv:
        peak(url, 20000)  # (the first reading after start is the lowest: a warm-up)
        top = peak(url, 20000)
        print(f"{args.server} {' '.join(extra)} capped to {args.server_cpu}: peak {top:.0f}/s")
        rates = [int(x) for x in args.rates.split(",")] if args.rates else []
        rates = rates or [int(top * float(x)) for x in args.loads.split(",")]
        for rate in rates:
            print(f"  {rate / top:4.2f}x  {level(url, srv.pid, rate, args.secs, args.deadline)}")
            time.sleep(3)


if __name__ == "__main__":
    main()
