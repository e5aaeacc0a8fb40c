"""How fast a capped c10k accepted, second by second, from an overload bench's admission
traces (issue 20).

``c10k bench overload`` starts c10k with ``--admission-trace``; each check's line holds the
accepts since the last check and the worker's CPU time so far (``cpu``, process time). Per
second of each trace this prints the accepts, the server's CPU microseconds per accept, the
longest of the checks' shortest waits and the largest share of SYNs dropped. Under a CPU cap
the accept rate is the cap divided by the CPU per accept, so a second whose CPU per accept is
higher than in the peak's seconds is one in which the server could not take the peak's rate.

    .venv/bin/python scripts/admission_cost.py bench-results/RUN/work
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any


def per_second(recs: list[dict[str, Any]]) -> list[tuple[int, int, float, int | None, float]]:
    """(second since the first check, accepts, CPU us per accept, longest shortest wait in
    ms or None, largest drop share) for every second with accepts.

    >>> recs = [{"t": 0.0, "cpu": 1.0, "accepted": 5, "wait_min_ms": None, "drop": 0.0},
    ...         {"t": 0.5, "cpu": 1.01, "accepted": 400, "wait_min_ms": 3, "drop": 0.0},
    ...         {"t": 1.2, "cpu": 1.02, "accepted": 500, "wait_min_ms": None, "drop": 0.2}]
    >>> per_second(recs)
    [(0, 400, 25.0, 3, 0.0), (1, 500, 20.0, None, 0.2)]
    """
    buckets: dict[int, list[Any]] = {}
    for prev, rec in itertools.pairwise(recs):
        b = buckets.setdefault(int(rec["t"] - recs[0]["t"]), [0, 0.0, None, 0.0])
        b[0] += rec["accepted"]
        b[1] += rec["cpu"] - prev["cpu"]
        if rec["wait_min_ms"] is not None:
            b[2] = max(b[2] or 0, rec["wait_min_ms"])
        b[3] = max(b[3], rec["drop"])
    return [
        (sec, n, round(cpu * 1e6 / n, 1), wait, drop)
        for sec, (n, cpu, wait, drop) in sorted(buckets.items())
        if n
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("workdir", type=Path, help="the bench run's work/ directory")
    args = ap.parse_args()
    traces = sorted(args.workdir.glob("c10k-admission-*.jsonl"))
    if not traces:
        raise SystemExit(f"no c10k-admission-*.jsonl in {args.workdir}")
    for path in traces:
        recs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        recs = [r for r in recs if "cpu" in r and r.get("listener", 0) == 0]
        print(f"{path.name}: second, accepts, CPU us per accept, shortest wait ms, drop")
        for sec, n, us, wait, drop in per_second(recs):
            print(f"  {sec:3d} {n:6d} {us:6.1f} {'-' if wait is None else wait:>5} {drop:.2f}")


if __name__ == "__main__":
    main()
