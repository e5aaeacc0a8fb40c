"""PNG plots rendered from a results JSON document (``c10k bench plot results.json``).

Theory of operation
-------------------
Plots are a view of the JSON, never of a live run, so they can be redrawn, restyled or made
on another machine without measuring again (vmbench keeps its data and renders its charts
from it).  matplotlib is an optional dependency (``pip install 'c10k[plot]'``); it is
imported lazily, with the non-interactive Agg backend, and without it the bench still writes
JSON and Markdown.

One figure per question the issue asks:
- ``<http scenario>-rps.png``: req/s (and req per busy-core second) per server, vs.
  connections when there are several variations;
- ``<http scenario>-latency.png``: p50/p90/p99/p99.9 per server and variation;
- ``poller-time-per-event.png``: µs per wait vs. watched fds, log-log, one line per backend;
- ``modem-users.png``: users alive over time, one line per server (first round);
- ``idle-memory.png``, ``idle-latency.png`` and ``idle-held.png``: RSS per connection and
  the active client's p99 vs. idle connections, and connections held over time;
- ``overload-goodput.png``: goodput vs. offered load.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from c10k.bench.report import get_metric

MISSING = "plots need matplotlib: pip install 'c10k[plot]'"


def have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _num(label: str) -> float:
    m = re.search(r"([\d.]+)", label)
    return float(m.group(1)) if m else 0.0


def render(doc: dict[str, Any], out_dir: Path) -> list[str]:
    """Write the PNGs for every scenario in ``doc``; returns their file names.

    Raises:
        ImportError: matplotlib is not installed (the message says how to install it).
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError(MISSING) from e
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[str] = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=110)
        plt.close(fig)
        written.append(name)

    subtitle = f"{doc['machine'].get('cpu_count')} CPUs, {doc['pinning']['note']}"
    for entry in doc["scenarios"]:
        name, kind, variations = entry["name"], entry["kind"], entry["variations"]
        order = entry.get("order", [])
        if not variations:
            continue
        labels = list(variations)
        if kind == "http":
            metrics = [
                ("rps", "requests/s"),
                ("req_per_busy_core_s", "requests per busy server-core second"),
            ]
            if name == "bigfile":
                metrics = [
                    ("mib_s", "MiB/s"),
                    ("req_per_busy_core_s", "requests per busy server-core second"),
                ]
            fig, axes = plt.subplots(1, 2, figsize=(11, 4))
            for ax, (metric, ylabel) in zip(axes, metrics, strict=True):
                if len(labels) > 1:
                    xs = [_num(lb) for lb in labels]
                    for server in order:
                        ys = [
                            variations[lb]["summary"].get(server, {}).get(metric) for lb in labels
                        ]
                        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
                        if pts:
                            ax.plot(*zip(*pts, strict=True), marker="o", label=server)
                    ax.set_xscale("log")
                    ax.set_xticks(xs, [f"{x:g}" for x in xs])
                    ax.minorticks_off()
                    ax.set_xlabel("connections")
                else:
                    s = variations[labels[0]]["summary"]
                    vals = [s.get(sv, {}).get(metric) or 0 for sv in order]
                    ax.bar(order, vals, color=[f"C{i}" for i in range(len(order))])
                    ax.set_xlabel(labels[0])
                ax.set_ylabel(ylabel)
                ax.grid(alpha=0.3)
                if len(labels) > 1:
                    ax.legend()
            fig.suptitle(f"{name}: {entry['title']}\n{subtitle}", fontsize=9)
            save(fig, f"{name}-rps.png")
            fig, ax = plt.subplots(figsize=(11, 4))
            pcts = ["p50", "p90", "p99", "p99.9"]
            groups = [(lb, sv) for lb in labels for sv in order if sv in variations[lb]["summary"]]
            width = 0.8 / len(pcts)
            for j, p in enumerate(pcts):
                ys = [
                    variations[lb]["summary"][sv].get(f"latency_ms.{p}") or 0 for lb, sv in groups
                ]
                ax.bar([i + j * width for i in range(len(groups))], ys, width, label=p)
            ax.set_xticks([i + 0.4 - width / 2 for i in range(len(groups))])
            ax.set_xticklabels([f"{sv}\n{lb}" for lb, sv in groups], fontsize=8)
            ax.set_yscale("log")
            ax.set_ylabel("latency, ms (log)")
            ax.legend()
            ax.grid(alpha=0.3, axis="y")
            ax.set_title(f"{name}: latency percentiles\n{subtitle}", fontsize=9)
            save(fig, f"{name}-latency.png")
        elif kind == "poller":
            fig, ax = plt.subplots(figsize=(7, 5))
            backends = order
            for b in backends:
                pts = []
                for lb in labels:
                    s = variations[lb]["summary"].get(b)
                    if s and s.get("wait_us") is not None:
                        pts.append((_num(lb), s["wait_us"]))
                if pts:
                    ax.plot(*zip(*pts, strict=True), marker="o", label=b)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("watched fds (1 active)")
            ax.set_ylabel("µs per wait call")
            ax.grid(alpha=0.3, which="both")
            ax.legend()
            ax.set_title(f"poller: time per event vs. idle fds\n{subtitle}", fontsize=9)
            save(fig, "poller-time-per-event.png")
        elif kind == "modem":
            fig, ax = plt.subplots(figsize=(8, 4.5))
            for server in order:
                runs = [
                    r
                    for v in variations.values()
                    for r in v["runs"]
                    if r.get("server") == server and r.get("timeline")
                ]
                if runs:
                    t = runs[0]["timeline"]
                    ax.plot(
                        [p[0] for p in t],
                        [p[1] for p in t],
                        label=f"{server} (score {runs[0]['score']})",
                    )
            ax.set_xlabel("seconds")
            ax.set_ylabel("users alive")
            ax.grid(alpha=0.3)
            ax.legend()
            ax.set_title(
                f"modem: simulated slow users over time (first round)\n{subtitle}", fontsize=9
            )
            save(fig, "modem-users.png")
        elif kind == "idle":
            for metric, ylabel, fname in (
                ("rss_per_conn_bytes", "server RSS per idle connection, bytes", "memory"),
                ("latency_ms.p99", "active client p99 latency, ms", "latency"),
            ):
                fig, ax = plt.subplots(figsize=(7, 4.5))
                for server in order:
                    pts = [
                        (_num(lb), variations[lb]["summary"].get(server, {}).get(metric))
                        for lb in labels
                    ]
                    pts = [(x, y) for x, y in pts if y is not None and x > 0]
                    if pts:
                        ax.plot(*zip(*pts, strict=True), marker="o", label=server)
                ax.set_xscale("log")
                ax.set_xlabel("idle connections held")
                ax.set_ylabel(ylabel)
                ax.grid(alpha=0.3)
                ax.legend()
                ax.set_title(f"idle: {ylabel}\n{subtitle}", fontsize=9)
                save(fig, f"idle-{fname}.png")
            fig, ax = plt.subplots(figsize=(7, 4.5))
            drawn = False
            for server in order:
                zero = next(
                    (r for r in variations.get("N=0", {}).get("runs", []) if r["server"] == server),
                    None,
                )
                if zero and zero.get("timeline"):
                    tx, ty = zip(*zero["timeline"], strict=True)
                    ax.plot(tx, ty, drawstyle="steps-post", label=server)
                    drawn = True
            if drawn:
                ax.set_xlabel("seconds since the run started")
                ax.set_ylabel("connections held")
                ax.grid(alpha=0.3)
                ax.legend()
                ax.set_title(
                    f"idle: connections held over time (first round)\n{subtitle}", fontsize=9
                )
                save(fig, "idle-held.png")
            else:
                plt.close(fig)
        elif kind == "overload":
            # Goodput as a share of the server's own (median) peak, against the offered
            # multiple: the goal reads straight off it. Medians joined by a line,
            # every round as a faint dot (rounds move by several points).
            fig, ax = plt.subplots(figsize=(7, 4.5))
            levels = [
                lb for lb in labels if lb.endswith("x") and lb[:-1].replace(".", "").isdigit()
            ]
            for server in order:
                peak = get_metric(
                    variations.get("peak", {}).get("summary", {}).get(server, {}), "goodput_rps"
                )
                if not peak:
                    continue
                mults: list[float] = []
                shares: list[float] = []
                dots: list[tuple[float, float]] = []
                for lb in levels:
                    mult = float(lb[:-1])
                    med = variations[lb].get("summary", {}).get(server, {}).get("goodput_vs_peak")
                    if med is not None:
                        mults.append(mult)
                        shares.append(100 * med)
                    dots.extend(
                        (mult, 100 * r["goodput_rps"] / peak)
                        for r in variations[lb]["runs"]
                        if r.get("server") == server and r.get("goodput_rps") is not None
                    )
                if mults:
                    (line,) = ax.plot(mults, shares, marker="o", label=f"{server} (median)")
                    if dots:
                        dx = [d[0] for d in dots]
                        dy = [d[1] for d in dots]
                        ax.scatter(dx, dy, s=12, alpha=0.35, color=line.get_color())
            goal = (entry.get("params") or {}).get("goal") or {}
            if goal.get("fraction"):
                ax.axhline(100 * goal["fraction"], color="grey", linestyle="--", linewidth=1)
                ax.annotate(
                    f"goal at {goal.get('multiplier', 3):g}x: {100 * goal['fraction']:.0f} %",
                    (ax.get_xlim()[0], 100 * goal["fraction"]),
                    fontsize=8,
                    color="grey",
                    xytext=(4, 3),
                    textcoords="offset points",
                )
            ax.set_xticks([float(lb[:-1]) for lb in levels], [str(lb) for lb in levels])
            ax.set_xlabel("offered load, multiple of the server's own closed-loop peak")
            ax.set_ylabel("goodput (2xx within the deadline), % of peak")
            ax.set_ylim(bottom=0)
            ax.grid(alpha=0.3)
            ax.legend()
            ax.set_title(f"overload: goodput vs. offered load\n{subtitle}", fontsize=9)
            save(fig, "overload-goodput.png")
    return written
