"""scripts/overload_rounds.py, which reads an overload bench run round by round (issue 20):
the 1x/2x/3x table with the goal per round, and a line per level for a run with other
``--multipliers``, with the stale counted from the admission trace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "overload_rounds.py"


def run(server: str, rnd: int, share: float, lost: float, p99: float) -> dict[str, Any]:
    trace = [{"t": 1.0, "stale": 5}, {"t": 2.0, "stale": 12}] if server == "c10k" else []
    return {
        "server": server,
        "round": rnd,
        "goodput_vs_peak": share,
        "not_served_rate": lost,
        "latency_ms": {"p99": p99},
        "admission_trace": trace,
    }


def write(tmp: Path, levels: dict[str, list[dict[str, Any]]]) -> Path:
    variations = {name: {"runs": runs} for name, runs in levels.items()}
    doc = {"scenarios": [{"name": "overload", "variations": variations}]}
    (tmp / "results.json").write_text(json.dumps(doc))
    return tmp


def report(path: Path) -> list[str]:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, check=True
    )
    return out.stdout.splitlines()


def test_the_goal_per_round(tmp_path: Path) -> None:
    levels = {
        "1x": [run("c10k", 1, 0.99, 0.0, 300), run("c10k", 2, 0.9, 0.03, 300)],
        "2x": [run("c10k", 1, 0.95, 0.4, 600), run("c10k", 2, 0.95, 0.4, 600)],
        "3x": [run("c10k", 1, 0.92, 0.6, 700), run("c10k", 2, 0.92, 0.6, 700)],
    }
    lines = report(write(tmp_path, levels))
    first, second = lines[1].split(), lines[2].split()
    assert first[:5] == ["c10k", "1", "99.0", "95.0", "92.0"]
    assert first[-2:] == ["met", "-"]  # (no peak measured again)
    assert first[-4:-2] == ["7", "7"]  # stale: 12 - 5 in each level's trace
    assert second[-2:] == ["-", "-"]  # 3 % not served at 1x
    assert lines[-1].split() == ["c10k", "median", "94.5", "/", "95.0", "/", "92.0"]


def test_other_multipliers_get_a_line_per_level(tmp_path: Path) -> None:
    levels = {
        "peak": [run("old", 1, 1.0, 0.0, 40)],
        "1.1x": [run("c10k", 1, 1.01, 0.022, 639.4), run("old", 1, 0.939, 0.108, 557)],
        "1.2x": [run("c10k", 1, 1.127, 0.0, 434)],
    }
    lines = report(write(tmp_path, levels))
    assert "level" in lines[0]
    assert [line.split() for line in lines[1:]] == [
        ["c10k", "1", "1.1x", "101.0", "2.2", "639", "7"],
        ["c10k", "1", "1.2x", "112.7", "0.0", "434", "7"],
        ["old", "1", "1.1x", "93.9", "10.8", "557", "-"],
    ]
