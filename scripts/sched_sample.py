"""Who waits for a core during a benchmark: CPU and run-queue wait of every c10k process.

Samples ``/proc/PID/schedstat`` (time on a CPU, time runnable but waiting for one, slices)
of every process whose command line names c10k (server workers, bench generators, the
bench) every 0.5 s into a JSON-lines file, until stopped; ``--report`` then prints, per
interval, the active client and the busiest server worker (run and wait in ms, slices) and
how many of the other processes ran, for the intervals given. Issue 18's C1M latency:

    python3 scripts/sched_sample.py /tmp/sched.jsonl &
    flock /tmp/c10k-cpu.lock .venv/bin/python -m c10k bench idle --levels 100000,1000000 \\
        --rounds 1 --idle-time-limit 900
    kill %1
    python3 scripts/sched_sample.py /tmp/sched.jsonl --report 17:23 903:910

(times are seconds since the first sample; the active-client windows are where one
generator and one worker run ~200 ms per 0.5 s). Reads /proc only: no perf, no root.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any


def kind(cmd: str) -> str:
    if "c10k serve" in cmd:
        return "server"
    if "c10k.bench.client" in cmd:
        return "generator"
    return "other"


def sample(path: str) -> None:
    with open(path, "w") as out:
        while True:
            rows = []
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
                    if "sched_sample" in cmd:
                        continue
                    if "c10k" in cmd:
                        what = kind(cmd)
                    else:  # anything else that runs (kernel threads too): by its name
                        with open(f"/proc/{pid}/comm") as f:
                            what = "other:" + f.read().strip()
                    with open(f"/proc/{pid}/schedstat") as f:
                        run, wait, slices = (int(x) for x in f.read().split())
                except (OSError, ValueError):
                    continue  # gone meanwhile
                rows.append([int(pid), what, run, wait, slices])
            with open("/proc/stat") as f:  # per CPU: user nice system idle iowait irq softirq steal
                cpus = {
                    line.split()[0]: [int(x) for x in line.split()[1:9]]
                    for line in f
                    if line.startswith("cpu") and line[3].isdigit()
                }
            out.write(json.dumps({"t": time.time(), "p": rows, "cpu": cpus}) + "\n")
            out.flush()
            time.sleep(0.5)


def report(path: str, windows: list[tuple[float, float]]) -> None:
    with open(path) as f:
        samples = [json.loads(line) for line in f]
    t0 = samples[0]["t"]
    prev: dict[int, Any] = {}
    prev_cpu: dict[str, list[int]] | None = None
    for s in samples:
        t = s["t"] - t0
        cur = {p[0]: p[1:] for p in s["p"]}
        if prev and any(a <= t <= b for a, b in windows):
            by_kind: dict[str, list[tuple[float, float, int]]] = {"server": [], "generator": []}
            for pid, (k, run, wait, slices) in cur.items():
                if pid in prev and k in by_kind:
                    _, run0, wait0, slices0 = prev[pid]
                    by_kind[k].append(((run - run0) / 1e6, (wait - wait0) / 1e6, slices - slices0))
            line = [f"{t:7.1f} s"]
            for k, rows in by_kind.items():
                rows.sort(reverse=True)
                top = rows[0] if rows else (0.0, 0.0, 0)
                others = [r for r in rows[1:] if r[0] > 0.2]
                rest = sum(r[0] for r in others)
                line.append(
                    f"{k}: busiest run {top[0]:6.1f} ms wait {top[1]:6.1f} ms ({top[2]} slices);"
                    f" {len(others)} others ran {rest:5.1f} ms"
                )
            print(" | ".join(line))
            print("          " + _elsewhere(prev, cur, prev_cpu, s.get("cpu")))
        prev, prev_cpu = cur, s.get("cpu")


CPU_FIELDS = ("user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal")


def _elsewhere(prev: dict[int, Any], cur: dict[int, Any], cpu0: Any, cpu1: Any) -> str:
    """What the c10k columns do not show: CPU 0's time by kind (ms, from /proc/stat) and
    the other processes (kernel threads too) that ran, busiest first."""
    parts = []
    if cpu0 and cpu1 and "cpu0" in cpu0:
        tick = 1000 / os.sysconf("SC_CLK_TCK")
        delta = [(b - a) * tick for a, b in zip(cpu0["cpu0"], cpu1["cpu0"], strict=True)]
        parts.append(
            "cpu0 " + " ".join(f"{n} {d:.0f}" for n, d in zip(CPU_FIELDS, delta, strict=True) if d)
        )
    ran = []
    for pid, (k, run, *_rest) in cur.items():
        if k.startswith("other:") and pid in prev:
            ms = (run - prev[pid][1]) / 1e6
            if ms >= 0.5:
                ran.append((ms, k[6:]))
    ran.sort(reverse=True)
    parts.append("others: " + (", ".join(f"{n} {ms:.1f}" for ms, n in ran[:6]) or "-"))
    return " | ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("file")
    ap.add_argument("--report", nargs="+", metavar="FROM:TO", help="print these intervals")
    args = ap.parse_args()
    if not args.report:
        sample(args.file)
        return 0
    windows = [(float(a), float(b)) for a, b in (w.split(":") for w in args.report)]
    report(args.file, windows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
