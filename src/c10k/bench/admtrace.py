"""The overload scenario's view of c10k's admission controller over time (issue 20).

c10k is started with ``--admission-trace FILE`` (``peers.c10k_spec``, when its ``serve
--help`` lists the flag): the server appends one JSON line per check and listener (time,
queue length and limit, accepts since the last check, the shortest and longest wait it
sampled, the share of SYNs dropped, the backlog, the stale resets so far; see
``c10k.server.admission``). The bench reads that file after each offered level, as it
reads the server's log, and keeps the lines of the level's window beside a goodput
timeline built from h2load's per-request log, so ``plot.py`` can draw both on one time
axis (``overload-trace-*.png``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

# The timeline's bin (s): the controller checks every 0.1 s.
BIN_S = 0.1
# The trace keys kept in the JSON (the rest is for reading the file by hand).
KEYS = (
    "t",
    "qlen",
    "limit",
    "accepted",
    "sampled",
    "wait_min_ms",
    "wait_max_ms",
    "drop",
    "aim_ms",
    "backlog",
    "stale",
    "span",
)


def trace_path(workdir: Path, port: int) -> Path:
    """Where the bench asks c10k on ``port`` to write its admission trace."""
    return workdir / f"c10k-admission-{port}.jsonl"


def read_trace(path: Path, t0: float, t1: float) -> list[dict[str, Any]]:
    """The trace lines with ``t0 <= t < t1`` (seconds since the epoch), keys in ``KEYS``.

    >>> import tempfile, os
    >>> d = tempfile.mkdtemp(); p = Path(d) / "t.jsonl"
    >>> _ = p.write_text('{"t": 1.0, "qlen": 3, "pid": 9}\\n{"t": 5.0}\\nbad\\n')
    >>> read_trace(p, 0.0, 2.0)
    [{'t': 1.0, 'qlen': 3}]
    """
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        t = rec.get("t") if isinstance(rec, dict) else None
        if isinstance(t, (int, float)) and t0 <= t < t1:
            out.append({k: rec[k] for k in KEYS if k in rec})
    return out


def goodput_timeline(
    entries: list[tuple[int, int, int]], deadline_s: float, t0_us: int, bin_s: float = BIN_S
) -> dict[str, list[float]]:
    """Per ``bin_s`` from ``t0_us``: good completions (2xx within the deadline, at their end
    time), other outcomes, and connections started, each as a rate per second.

    >>> tl = goodput_timeline([(0, 200, 50_000), (10_000, 503, 1), (20_000, -1, 5)], 1.0, 0)
    >>> tl["t"], tl["good_rps"], tl["bad_rps"], tl["started_rps"]
    ([0.0], [10.0], [20.0], [30.0])
    """
    if not entries:
        return {"t": [], "good_rps": [], "bad_rps": [], "started_rps": []}
    deadline_us = deadline_s * 1e6
    last = max(start + dur for start, _s, dur in entries)
    nbins = int((last - t0_us) / 1e6 / bin_s) + 1
    good, bad, started = [0] * nbins, [0] * nbins, [0] * nbins
    for start, status, dur in entries:
        b = int((start - t0_us) / 1e6 / bin_s)
        if 0 <= b < nbins:
            started[b] += 1
        e = int((start + dur - t0_us) / 1e6 / bin_s)
        if not 0 <= e < nbins:
            continue
        if 200 <= status < 300 and dur <= deadline_us:
            good[e] += 1
        else:
            bad[e] += 1
    return {
        "t": [round(i * bin_s, 3) for i in range(nbins)],
        "good_rps": [g / bin_s for g in good],
        "bad_rps": [x / bin_s for x in bad],
        "started_rps": [s / bin_s for s in started],
    }
