"""Admission's SYN-drop controller in the model of its tests, load by load (issue 20).

Runs ``simulate`` from tests/server/test_server_admission_control.py (a listener whose
server accepts ``--capacity`` a second in CPU-quota slices, a dropped SYN retried after 1 s
and 2 s more, the controller stepped every 100 ms) at each offered load, for three seeds,
and prints the medians: the clients lost (their second try dropped too: 3 s late), the
SYNs dropped (retries included) per new client, the admitted p99 wait, the share of the
capacity served, the connections reset as stale, and the SYNs the kernel dropped because
the queue (its limit 4096) was full. ``--target-only`` holds the wait at the target at
every load (``SLIGHT`` = 1: the controller before the slight-overload aim); ``--room R``
caps the aim where the queue holds R of its limit (``ROOM``; 1e9: no cap, as before it).

    .venv/bin/python scripts/admission_model.py
    .venv/bin/python scripts/admission_model.py --target-only
    .venv/bin/python scripts/admission_model.py --capacity 8000 --room 1e9
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent.parent / "tests" / "server"))
import test_server_admission_control as model

from c10k.server import admission

LOADS = (1.0, 1.05, 1.1, 1.15, 1.2, 1.5, 2.0, 3.0)
SLICES = ((1, 10), (5, 100), (10, 10))  # ms running in every period: 10 %, 5 %, uncapped


def row(load: float, capacity: float, seconds: float, slice_ms: int, period_ms: int) -> str:
    runs = []
    for seed in (1, 2, 3):
        out = model.simulate(
            capacity * load, capacity, seconds, slice_ms=slice_ms, period_ms=period_ms, seed=seed
        )
        waits = sorted(out.waits)
        p99 = waits[int(len(waits) * 0.99)] if waits else 0.0
        served = out.accepted / (capacity * (seconds - model.SETTLE))
        n = out.offered
        runs.append((out.lost / n, out.dropped / n, p99, served, out.stale, out.overflowed))
    lost, dropped, p99, served, stale, full = (
        statistics.median(col) for col in zip(*runs, strict=True)
    )
    return (
        f"  {load:5.2f}x  {slice_ms:2d}/{period_ms:<3d} ms  lost {lost * 100:5.1f} %  "
        f"SYNs dropped {dropped * 100:5.1f} %  p99 {p99 * 1e3:4.0f} ms  "
        f"served {served * 100:5.1f} %  stale {stale:.0f}  full-queue drops {full:.0f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--capacity", type=float, default=2000.0, help="accepts a second")
    ap.add_argument("--seconds", type=float, default=12.0, help="per load (3 s not counted)")
    ap.add_argument("--target-only", action="store_true", help="no slight-overload aim")
    ap.add_argument("--room", type=float, help="ROOM: the share of the queue's limit the aim fills")
    args = ap.parse_args()
    if args.target_only:
        admission.SLIGHT = 1.0
    if args.room is not None:
        admission.ROOM = args.room
    print(
        f"slight-overload aim: {admission.SLIGHT:g} targets, at most where the queue holds "
        f"{admission.ROOM:g} of its limit; medians of 3 seeds"
    )
    for load in LOADS:
        for slice_ms, period_ms in SLICES:
            print(row(load, args.capacity, args.seconds, slice_ms, period_ms))


if __name__ == "__main__":
    main()
