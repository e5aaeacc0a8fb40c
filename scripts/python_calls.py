"""Python calls per response inside ``c10k serve`` under a big-file load (issue 15).

Runs ``c10k serve ROOT --workers 1`` (plus any ``--c10k-arg``) in this interpreter with a
``sys.setprofile`` hook that counts every Python function call and every call of a C
function from Python, by name; wrk (CPU 1) fetches the file for ``--secs``; then the server
is stopped (SIGTERM) and the counts are printed per response (wrk's count), largest first.
The hook makes the server several times slower, so read the counts, not the rate, and
mind that a slower server finds its sockets full more often than at full speed.

    .venv/bin/python scripts/python_calls.py --size 1m --conns 50
    .venv/bin/python scripts/python_calls.py --size 1g --conns 1 --secs 5

Internal: ``--serve`` is how the script runs the server in a child process.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import free_port
from files_vs_nginx import make_docroot, size_arg


def serve(out: str, argv: list[str]) -> None:
    """The child: c10k serve with the counting hook; the counts go to ``out`` as JSON."""
    counts: collections.Counter[str] = collections.Counter()

    def hook(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            counts[f"{os.path.basename(code.co_filename)}:{code.co_name}"] += 1
        elif event == "c_call":
            counts[f"C:{getattr(arg, '__qualname__', arg)}"] += 1

    from c10k.cli import main

    sys.argv = ["c10k", *argv]
    sys.setprofile(hook)
    try:
        main()
    finally:
        sys.setprofile(None)
        Path(out).write_text(json.dumps(counts))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=size_arg, default="1m", help="file size (1m; k/m/g)")
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--secs", type=int, default=3)
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--c10k-arg", action="append", default=[], help="extra c10k serve flag")
    ap.add_argument("--serve", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        serve(args.serve[0], args.serve[1:])
        return 0
    work, root = make_docroot("python-calls-", args.size)
    port = free_port()
    out = work / "counts.json"
    serve_argv = [str(root), "--bind", "127.0.0.1", "--port", str(port), "--workers", "1"]
    cmd = [sys.executable, __file__, "--serve", str(out), "serve", *serve_argv, *args.c10k_arg]
    proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL)
    try:
        time.sleep(3)  # (the hook slows start-up too)
        url = f"http://127.0.0.1:{port}/big.bin"
        wrk = ["taskset", "-c", "1", "wrk", "-t1", f"-c{args.conns}", f"-d{args.secs}s"]
        text = subprocess.run(
            [*wrk, "--timeout", "30s", url], capture_output=True, text=True, check=True
        ).stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    m = re.search(r"(\d+) requests in", text)
    if m is None or not out.exists():
        sys.exit(f"no counts: wrk said {text}")
    responses = int(m.group(1))
    counts: dict[str, int] = json.loads(out.read_text())
    shutil.rmtree(work, ignore_errors=True)
    py = sum(n for k, n in counts.items() if not k.startswith("C:"))
    print(f"{responses} responses (start-up and stop counted too, so read large loads)")
    c_calls = sum(counts.values()) - py
    print(f"per response: {py / responses:.1f} Python calls, {c_calls / responses:.1f} C calls")
    for name, n in sorted(counts.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"{n / responses:8.2f}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
