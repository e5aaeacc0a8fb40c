"""System calls per MiB and CPU-0 cost of a big-file load, nginx against c10k (issue 15).

Each server in turn pinned to CPU 0 (as scripts/files_vs_nginx.py starts them), wrk on CPU 1
for 8 s; from the 2nd to the 6th second ``perf stat`` counts the server's syscalls on their
tracepoints, printed per MiB served, beside MiB/s and MiB per busy CPU-0 second. With
``--record`` it runs ``perf record -g -C 0`` over the same window instead and leaves
``nginx.data``/``c10k.data`` in the current directory for ``perf report``.

With ``--placement`` it records instead which CPU put each data segment on the loopback
device (``net:net_dev_xmit`` above 1,000 bytes, all CPUs): a segment the socket could send
at once leaves from the sender's own call, on CPU 0; one that waited for the client's
window leaves when the client's window update is processed, on the client's CPU 1. That
split is part of the server's CPU-0 figure on loopback (docs/BENCHMARKS.md, issue 15).
Recording every segment slows both CPUs and outlasts its 4 s: read the split, not the
rates printed beside it.

    .venv/bin/python scripts/files_syscalls.py --size 1m --conns 1000
    .venv/bin/python scripts/files_syscalls.py --size 1g --conns 1 --record
    .venv/bin/python scripts/files_syscalls.py --size 1m --conns 1000 --placement
    .venv/bin/python scripts/files_syscalls.py --size 1m --conns 1000 --client trunc

``--client trunc`` loads with scripts/trunc_client.py instead of wrk (bodies dropped in the
kernel, so the server sets the pace); its rate is over its own counted window, which starts
after its warm-up and so runs past perf's 4 s.

Needs perf (Debian: linux-perf) and root (tracepoints). One run, no rounds: read it beside
files_vs_nginx.py's medians, not instead of them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import busy0, free_port, start, stop
from files_vs_nginx import server_argv, size_arg, trunc_argv, wrk

CALLS = ("epoll_wait", "sendfile64", "setsockopt", "preadv2", "ioctl", "write", "writev", "read")
EVENTS = ",".join(f"syscalls:sys_enter_{c}" for c in CALLS)
SCALE = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30}


def make_root(work: Path, size: int) -> Path:
    root = work / "www"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        for _ in range(0, size, 1 << 20):
            f.write(os.urandom(min(1 << 20, size - f.tell())))
    with open(root / "big.bin", "rb") as f:  # into the page cache
        while f.read(1 << 24):
            pass
    return root


def measure(
    name: str, port: int, conns: int, pids: list[str], record: bool, place: bool, client: str
) -> None:
    if client == "trunc":
        argv = trunc_argv(port, conns, 8)
    else:
        argv = ["wrk", "-t1", f"-c{conns}", "-d8s", "--timeout", "30s"]
        argv.append(f"http://127.0.0.1:{port}/big.bin")
    load = subprocess.Popen(["taskset", "-c", "1", *argv], stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    b0 = busy0()
    stem = re.sub(r"\W+", "-", name)  # (c10k@DIR: a file name, not a path)
    if record:
        perf = ["perf", "record", "-q", "-g", "-C", "0", "-o", f"{stem}.data", "--", "sleep", "4"]
    elif place:
        xmit = ["-e", "net:net_dev_xmit", "--filter", "len > 1000"]
        perf = ["perf", "record", "-q", "-a", *xmit, "-o", f"{stem}.xmit", "--", "sleep", "4"]
    else:
        perf = ["perf", "stat", "-x,", "-e", EVENTS, "-p", ",".join(pids), "--", "sleep", "4"]
    counts = subprocess.run(perf, capture_output=True, text=True).stderr
    busy = busy0() - b0
    mib_s = load_rate(load.communicate()[0], client)
    mib = mib_s * 4
    print(
        f"{name}: {mib_s:.0f} MiB/s, CPU 0 {busy / 4:.0%} busy, "
        f"{mib / busy:.0f} MiB per busy second"
    )
    if place:
        print_placement(f"{stem}.xmit", mib)
        return
    for line in counts.splitlines() if not record else []:
        fields = line.split(",")
        if len(fields) > 3 and fields[0].strip().isdigit() and int(fields[0]):
            print(f"   {fields[2].split('sys_enter_')[-1]:12} {int(fields[0]) / mib:8.2f} per MiB")


def load_rate(out: str, client: str) -> float:
    """MiB/s over the load's run, from wrk's summary or trunc_client's JSON."""
    if client == "trunc":
        got = json.loads(out)
        if got["errors"]:
            sys.exit(f"trunc_client said: {out}")
        return float(got["bytes"]) / (1 << 20) / got["seconds"]
    m = re.search(r"requests in [\d.]+\w+, ([\d.]+)(\w+) read", out)
    if m is None:
        sys.exit(f"wrk said: {out}")
    return float(m.group(1)) * SCALE[m.group(2)] / (1 << 20) / 8


def print_placement(data: str, mib: float) -> None:
    """Bytes of data segments put on loopback per CPU, per MiB served."""
    script = ["perf", "script", "-i", data, "-F", "cpu,trace"]
    lines = subprocess.run(script, capture_output=True, text=True).stdout.splitlines()
    per_cpu: dict[int, int] = {}
    for line in lines:
        m = re.match(r"\s*\[(\d+)\].*\blen=(\d+)", line)
        if m:
            per_cpu[int(m.group(1))] = per_cpu.get(int(m.group(1)), 0) + int(m.group(2))
    total = sum(per_cpu.values()) or 1
    for cpu, nbytes in sorted(per_cpu.items()):
        share = nbytes / total
        print(f"   CPU {cpu}: {nbytes / mib / (1 << 20):.2f} MiB per MiB served ({share:.0%})")
    os.unlink(data)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=size_arg, default="1m", help="file size (1m; k/m/g)")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--record", action="store_true", help="perf record -g -C 0 instead of counts")
    ap.add_argument(
        "--placement", action="store_true", help="which CPU sends the data segments, instead"
    )
    ap.add_argument("--c10k-arg", action="append", default=[], help="extra c10k serve flag")
    ap.add_argument(
        "--bare-variant", action="append", default=[], help="also bare_sendfile.py with these"
    )
    ap.add_argument("--extra-src", action="append", default=[], help="also c10k from this src")
    ap.add_argument(
        "--client", choices=("wrk", "trunc"), default="wrk", help="trunc: scripts/trunc_client.py"
    )
    args = ap.parse_args()
    if shutil.which("perf") is None:
        sys.exit("perf not found: apt-get install linux-perf")
    work = Path(tempfile.mkdtemp(prefix="files-syscalls-"))
    try:
        root = make_root(work, args.size)
        names = ["nginx", "c10k", "bare", *(f"bare {v}" for v in args.bare_variant)]
        for name in names + [f"c10k@{d}" for d in args.extra_src]:
            port = free_port()
            proc = start(server_argv(name, port, root, work, args.c10k_arg), port)
            try:
                wrk(port, min(args.conns, 10), 1, 30)  # warm-up
                pids = subprocess.run(
                    ["pgrep", "-g", str(proc.pid)], capture_output=True, text=True
                ).stdout.split()
                measure(name, port, args.conns, pids, args.record, args.placement, args.client)
            finally:
                stop(proc)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
