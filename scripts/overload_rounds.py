"""Round by round, what an overload bench run gave each server (issue 20).

``c10k bench overload`` reports medians over rounds; the issue's goal is per round: at 1x
no more than 0.5 % not served, at 2x and 3x at least 90 % of the peak in goodput, and an
admitted p99 under a second. Per server and round this prints goodput as a share of that
round's peak at 1x, 2x and 3x, the share not served at 1x, the admitted p99 at 2x and 3x,
the connections reset as stale (from the admission trace the bench keeps for c10k),
whether the round met every part of the goal, and with ``--repeat-peak`` the peak measured
again after the last level as a share of the first; then each server's medians. A run with
other ``--multipliers`` gets a line per server, round and level instead: goodput as a share
of the round's peak, the share not served, the admitted p99 and the stale.

    .venv/bin/python scripts/overload_rounds.py bench-results/RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

LEVELS = ("1x", "2x", "3x")
AGAIN = "peak again"


def stale(run: dict[str, Any]) -> int | None:
    """Connections reset as stale during one level (the trace's counter is cumulative)."""
    trace = run.get("admission_trace") or []
    counts = [e["stale"] for e in trace if isinstance(e.get("stale"), int)]
    return counts[-1] - counts[0] if counts else None


def again(run: dict[str, Any] | None) -> str:
    """The peak measured again after the last level, as a share of the first."""
    share = run.get("goodput_vs_peak") if run else None
    return f"{share * 100:5.1f}" if share is not None else "    -"


def met(levels: dict[str, dict[str, Any]]) -> bool:
    """The issue's goal, for one server's round."""
    if levels["1x"]["not_served_rate"] > 0.005:
        return False
    return all(
        levels[x]["goodput_vs_peak"] >= 0.9 and levels[x]["latency_ms"]["p99"] < 1000
        for x in ("2x", "3x")
    )


def report(path: Path) -> list[str]:
    data = json.loads((path / "results.json").read_text())
    scenario = next((s for s in data["scenarios"] if s["name"] == "overload"), None)
    if scenario is None:
        return [f"{path}: no overload scenario in this run"]
    rounds: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for level, variation in scenario["variations"].items():
        for run in variation.get("runs", []):
            rounds.setdefault((run["server"], run["round"]), {})[level] = run
    if not any(set(LEVELS) <= set(levels) for levels in rounds.values()):
        return other_levels(path, rounds)
    out = [
        f"{path}: server, round, goodput/peak 1x 2x 3x %, not served at 1x %, "
        "p99 ms at 2x 3x, stale at 2x 3x, goal, peak again % (--repeat-peak)"
    ]
    shares: dict[str, list[list[float]]] = {}
    for (server, rnd), levels in sorted(rounds.items()):
        if not set(LEVELS) <= set(levels):
            continue  # (a run with other --multipliers)
        g = [levels[x]["goodput_vs_peak"] * 100 for x in LEVELS]
        shares.setdefault(server, []).append(g)
        p99 = " ".join(f"{levels[x]['latency_ms']['p99']:5.0f}" for x in ("2x", "3x"))
        st = " ".join(
            f"{stale(levels[x]) if stale(levels[x]) is not None else '-':>5}" for x in ("2x", "3x")
        )
        out.append(
            f"  {server:14s} {rnd}  {g[0]:6.1f} {g[1]:6.1f} {g[2]:6.1f}  "
            f"{levels['1x']['not_served_rate'] * 100:4.1f}  {p99}  {st}  "
            f"{'met' if met(levels) else '-':>3}  {again(levels.get(AGAIN))}"
        )
    for server, gs in shares.items():
        medians = " / ".join(f"{statistics.median(col):.1f}" for col in zip(*gs, strict=True))
        out.append(f"  {server:14s} median {medians}")
    return out


def other_levels(path: Path, rounds: dict[tuple[str, int], dict[str, dict[str, Any]]]) -> list[str]:
    """A line per server, round and level of a run with other --multipliers."""
    out = [f"{path}: server, round, level, goodput/peak %, not served %, p99 ms, stale"]
    for (server, rnd), levels in sorted(rounds.items()):
        for name, run in levels.items():
            if name in ("peak", AGAIN):
                continue
            st = stale(run)
            out.append(
                f"  {server:14s} {rnd}  {name:6s} {run['goodput_vs_peak'] * 100:6.1f} "
                f"{run['not_served_rate'] * 100:5.1f} {run['latency_ms']['p99']:6.0f} "
                f"{st if st is not None else '-':>5}"
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench --out directories")
    for path in parser.parse_args().runs:
        if not (path / "results.json").is_file():
            parser.error(f"{path}: no results.json (a `c10k bench overload --out` directory)")
        print("\n".join(report(path)))


if __name__ == "__main__":
    main()
