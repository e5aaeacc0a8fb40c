"""Where CPU 0's time goes while a server sends big files: kernel, interpreter, idle (issue 15).

Each server in turn (nginx, then ``c10k serve --workers 1`` plus any ``--c10k-arg``, then with
``--bare`` scripts/bare_sendfile.py and its ``--bare-variant``s, started
as scripts/files_vs_nginx.py starts them, pinned to CPU 0) serves one file to wrk (CPU 1)
for 8 s; from the 2nd second ``perf record -e cpu-clock`` samples CPU 0 for 4 s (a software
clock: this machine's VM has no PMU). Printed per server: wrk's rate, CPU 0's idle share,
then the server process's samples as shares of CPU 0's busy ones, split into the kernel and
each user-space object (libpython, nginx's own binary, libc, ...), and what other tasks
(ksoftirqd, kworkers) took. The kernel's share against the user share says how much of a
response's cost a faster user space could still save.

    .venv/bin/python scripts/files_profile.py                     # 1 MiB, 1,000 connections
    .venv/bin/python scripts/files_profile.py --size 1g --conns 1 --symbols 12
    .venv/bin/python scripts/files_profile.py --client trunc      # CPU 0 full, not wrk's pace

Needs perf (Debian: linux-perf). One run, no rounds: quote it beside files_vs_nginx.py.
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from files_wakeups import options, recorded

CLOCK = ["-e", "cpu-clock", "-F", "4999"]
SERVERS = {"nginx": "nginx"}  # the server's task name (comm): python for the others


def shares(data: Path, comm: str) -> str:
    """CPU 0's idle share, then the server's kernel and user objects as shares of busy."""
    txt = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--sort", "comm,dso"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows: collections.Counter[tuple[str, str]] = collections.Counter()
    for line in txt.splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[0].endswith("%"):
            rows[(cols[1], cols[2])] += float(cols[0][:-1])
    idle = sum(v for (c, _), v in rows.items() if c == "swapper")
    busy = max(sum(rows.values()) - idle, 1e-9)
    mine = {d: v for (c, d), v in rows.items() if c == comm}
    kernel = mine.pop("[kernel.kallsyms]", 0.0)
    others = busy - kernel - sum(mine.values())
    user = ", ".join(
        f"{d} {100 * v / busy:.1f} %" for d, v in collections.Counter(mine).most_common(4)
    )
    return (
        f"CPU 0 idle {idle:.1f} %; of busy: server kernel {100 * kernel / busy:.1f} %, "
        f"server user {100 * sum(mine.values()) / busy:.1f} % ({user}), "
        f"other tasks {100 * others / busy:.1f} %"
    )


def symbols(data: Path, comm: str, top: int) -> str:
    """The server's ``top`` symbols (kernel and user), as shares of all CPU 0 samples."""
    txt = subprocess.run(
        ["perf", "report", "-i", str(data), "--stdio", "--comm", comm, "--sort", "sym"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [line.split(None, 2) for line in txt.splitlines() if line.strip()[:1].isdigit()]
    return "\n".join(f"      {r[0]:>7} {r[2]}" for r in rows[:top])


def main() -> int:
    ap = options(__doc__)
    ap.add_argument("--symbols", type=int, default=0, help="also print the top N symbols")
    args = ap.parse_args()
    for name, rate, data in recorded(args, "files-profile-", CLOCK):
        comm = SERVERS.get(name, "python")
        print(f"{name:5} {rate}; {shares(data, comm)}", flush=True)
        if args.symbols:
            print(symbols(data, comm, args.symbols), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
