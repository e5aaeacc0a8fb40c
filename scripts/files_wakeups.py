"""How often a big-file server wakes, and how much work each wakeup finds (issue 15).

Each server in turn (nginx, then ``c10k serve --workers 1`` plus any ``--c10k-arg``, then with
``--bare`` scripts/bare_sendfile.py and its ``--bare-variant``s, started
as scripts/files_vs_nginx.py starts them, pinned to CPU 0) serves one file to wrk (CPU 1)
for 8 s; from the 2nd second ``perf record`` takes 4 s of CPU 0's ``epoll_wait`` returns and
context switches. Printed per server: wrk's rate, epoll_wait returns a second, the events
each return carried (mean), the returns with none (timeouts) and CPU 0's context switches
a second. Fewer, fuller wakeups are cheaper per response: the kernel's and the
interpreter's caches stay warm across a batch (a loop that wakes for every few events pays
the wakeup and the cold caches each time).

    .venv/bin/python scripts/files_wakeups.py                       # 1 MiB, 1,000 connections
    .venv/bin/python scripts/files_wakeups.py --c10k-arg=--backend --c10k-arg=epoll-et
    .venv/bin/python scripts/files_wakeups.py --client trunc   # the server sets the pace

``--client trunc`` serves scripts/trunc_client.py instead of wrk (it drops bodies in the
kernel, so CPU 0 runs full: scripts/files_vs_nginx.py's docstring says why that matters);
scripts/files_profile.py takes the same flag, and ``--cc NAME`` as files_vs_nginx.py does
(the congestion control while the load runs).

io_uring's mode makes no epoll_wait calls (its returns read 0). Needs perf (Debian:
linux-perf) and root (tracepoints). One run, no rounds.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import congestion_control, free_port, start, stop
from files_vs_nginx import make_docroot, server_argv, size_arg, trunc_argv, warm

WINDOW = 4  # seconds recorded, from the 2nd of wrk's 8


WAKEUPS = ["-e", "syscalls:sys_exit_epoll_wait", "-e", "sched:sched_switch"]


def record(
    port: int, conns: int, data: Path, events: list[str] = WAKEUPS, client: str = "wrk"
) -> str:
    """The client's rate while ``perf record`` samples CPU 0's ``events``: wrk's
    Requests/sec line, or with ``client`` "trunc" scripts/trunc_client.py's responses a
    second (it runs 10 s: its connects and warm-up come before the window)."""
    if client == "trunc":
        argv = trunc_argv(port, conns, 10)
        settle = 4.0
    else:
        url = f"http://127.0.0.1:{port}/big.bin"
        argv = ["wrk", "-t1", f"-c{conns}", "-d8s", "--timeout", "30s", url]
        settle = 2.0
    gen = subprocess.Popen(["taskset", "-c", "1", *argv], stdout=subprocess.PIPE, text=True)
    time.sleep(settle)
    perf = ["perf", "record", "-q", *events, "-C", "0", "-o", str(data), "--", "sleep"]
    subprocess.run(["taskset", "-c", "1", *perf, str(WINDOW)], check=True, capture_output=True)
    out = gen.communicate()[0]
    if client == "trunc":
        got = json.loads(out)
        return f"trunc_client: {got['responses'] / got['seconds']:.0f} responses/s"
    return next((line.strip() for line in out.splitlines() if "Requests/sec" in line), out)


def summary(data: Path) -> str:
    """epoll_wait returns/s, mean events per return, empty returns, switches/s."""
    txt = subprocess.run(
        ["perf", "script", "-i", str(data)], capture_output=True, text=True, check=True
    ).stdout
    rets: list[int] = []
    switches = 0
    for line in txt.splitlines():
        if "sys_exit_epoll_wait" in line:
            rets.append(int(line.rsplit("0x", 1)[1], 16) if "0x" in line else 0)
        elif "sched_switch" in line:
            switches += 1
    mean = statistics.mean(rets) if rets else 0.0
    return (
        f"epoll_wait returns/s {len(rets) / WINDOW:.0f}, events per return {mean:.1f}, "
        f"empty returns {sum(1 for r in rets if r == 0)}, "
        f"CPU 0 context switches/s {switches / WINDOW:.0f}"
    )


def options(doc: str) -> argparse.ArgumentParser:
    """The flags of the scripts that record each server with perf (this one, files_profile)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--size", type=size_arg, default="1m", help="file size (1m; k/m/g)")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--c10k-arg", action="append", default=[], help="extra c10k serve flag")
    ap.add_argument(
        "--client", choices=("wrk", "trunc"), default="wrk", help="trunc: scripts/trunc_client.py"
    )
    ap.add_argument("--cc", help="TCP congestion control for the run (the sysctl; put back after)")
    ap.add_argument("--bare", action="store_true", help="also scripts/bare_sendfile.py")
    ap.add_argument("--bare-variant", action="append", default=[], help="bare with these args")
    return ap


def recorded(
    args: argparse.Namespace, prefix: str, events: list[str]
) -> Iterator[tuple[str, str, Path]]:
    """Each server in turn, nginx then c10k, serving ``args.size`` to wrk while perf
    records CPU 0's ``events``: (name, wrk's rate line, the perf data file). The files are
    removed once the caller has gone past the last."""
    work, root = make_docroot(prefix, args.size)
    try:
        bare = ["bare"] if args.bare else []
        for name in ("nginx", "c10k", *bare, *(f"bare {v}" for v in args.bare_variant)):
            port = free_port()
            proc = start(server_argv(name, port, root, work, args.c10k_arg), port)
            try:
                warm(root / "big.bin")
                with congestion_control(args.cc):
                    rate = record(port, args.conns, work / f"{name}.data", events, args.client)
            finally:
                stop(proc)
            yield name, rate, work / f"{name}.data"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    args = options(__doc__).parse_args()
    for name, rate, data in recorded(args, "files-wakeups-", WAKEUPS):
        print(f"{name:5} {rate}; {summary(data)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
