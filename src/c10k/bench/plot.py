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
- ``overload-goodput.png``: goodput vs. offered load;
- ``overload-trace-<level>.png``: per level (first round), every server's goodput over
  time above c10k's admission controller's readings and decisions (``admtrace.py``).

Axes, by rule:
- a rate (req/s, MiB/s, per CPU-second, goodput) or a count (users, connections, bytes)
  starts its y-axis at 0, so the height of a point reads as its size and two servers'
  distance as their ratio;
- an axis whose values span a decade or more (connections 100..10,000, fds 10..100,000) is
  logarithmic (``_scale``); latency percentiles are log too (p50 and p99.9 are often
  three decades apart) and so do not start at 0, nor does the poller's µs per wait (log-log:
  its growth with N is the question);
- a figure from a run whose generator was saturated (``report.saturated``: any round of the
  median) is drawn hollow (bars hatched) and named in the legend with ``report.MARK``: it
  is the generator's ceiling, not the server's figure.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from c10k.bench.report import MARK, get_metric, saturated

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


# The legend text of a hollow (or hatched) figure.
SATURATED_LABEL = (
    f"hollow/hatched {MARK}: generator-bound\n(its core >90 % busy), not a server figure"
)


def _scale(values: list[float]) -> str:
    """``"log"`` when the positive values span a decade or more, else ``"linear"``.

    >>> _scale([100, 1000, 10000]), _scale([4, 16]), _scale([1, 2, 3]), _scale([])
    ('log', 'linear', 'linear', 'linear')
    """
    pos = [v for v in values if v > 0]
    return "log" if pos and max(pos) >= 10 * min(pos) else "linear"


def _from_zero(ax: Any) -> None:
    # y from 0; the top keeps 5 % headroom over the autoscaled one, so points near a flat
    # top (two close values autoscale to a tight range) are not cut by the frame.
    top = ax.get_ylim()[1]
    ax.set_ylim(0, top * 1.05 if top > 0 else 1)


def render(
    doc: dict[str, Any], out_dir: Path, inspect: Callable[[str, Any], None] | None = None
) -> list[str]:
    """Write the PNGs for every scenario in ``doc``; returns their file names.

    ``inspect(name, figure)`` is called with each figure before it is closed (for tests).

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
        if inspect is not None:
            inspect(name, fig)
        plt.close(fig)
        written.append(name)

    def hollow(ax: Any, pts: list[tuple[float, float]], color: Any) -> None:
        # Generator-bound points: a white-filled marker over the line's own.
        if pts:
            ax.plot(
                *zip(*pts, strict=True),
                linestyle="none",
                marker="o",
                markersize=9,
                markerfacecolor="white",
                markeredgecolor=color,
                zorder=3,
            )

    def legend(ax: Any, marked: bool) -> None:
        if marked:
            ax.plot(
                [],
                [],
                linestyle="none",
                marker="o",
                markerfacecolor="white",
                markeredgecolor="grey",
                label=SATURATED_LABEL,
            )
        ax.legend(fontsize=8)

    machine = f"{doc['machine'].get('cpu_count')} CPUs, {doc['pinning']['note']}"
    for entry in doc["scenarios"]:
        name, kind, variations = entry["name"], entry["kind"], entry["variations"]
        order = entry.get("order", [])
        if not variations:
            continue
        # The scenario's title names the counts this run used (scenarios.table.title).
        subtitle = f"{entry['title']}\n{machine}"
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
                marked = False
                if len(labels) > 1:
                    xs = [_num(lb) for lb in labels]
                    for server in order:
                        ys = [
                            variations[lb]["summary"].get(server, {}).get(metric) for lb in labels
                        ]
                        pts = [(x, y) for x, y in zip(xs, ys, strict=True) if y is not None]
                        sat = [
                            (x, y)
                            for lb, x, y in zip(labels, xs, ys, strict=True)
                            if y is not None and saturated(entry, lb, server)
                        ]
                        if pts:
                            (line,) = ax.plot(*zip(*pts, strict=True), marker="o", label=server)
                            hollow(ax, sat, line.get_color())
                            marked = marked or bool(sat)
                    ax.set_xscale(_scale(xs))
                    ax.set_xticks(xs, [f"{x:g}" for x in xs])
                    ax.minorticks_off()
                    ax.set_xlabel("connections")
                else:
                    s = variations[labels[0]]["summary"]
                    vals = [s.get(sv, {}).get(metric) or 0 for sv in order]
                    sats = [saturated(entry, labels[0], sv) for sv in order]
                    marked = any(sats)
                    ax.bar(
                        [f"{sv}{MARK}" if sat else sv for sv, sat in zip(order, sats, strict=True)],
                        vals,
                        color=[f"C{i}" for i in range(len(order))],
                        hatch=["//" if sat else "" for sat in sats],
                        edgecolor="white",
                    )
                    ax.set_xlabel(labels[0])
                # A rate: from 0, so heights compare as ratios.
                _from_zero(ax)
                ax.set_ylabel(ylabel)
                ax.grid(alpha=0.3)
                if len(labels) > 1 or marked:
                    legend(ax, marked)
            fig.suptitle(f"{name}: {subtitle}", fontsize=9)
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
            ax.set_xticklabels(
                [f"{sv}{MARK if saturated(entry, lb, sv) else ''}\n{lb}" for lb, sv in groups],
                fontsize=8,
            )
            # Log, not from 0: p50 and p99.9 are often three decades apart.
            ax.set_yscale("log")
            ax.set_ylabel("latency, ms (log)")
            ax.legend()
            ax.grid(alpha=0.3, axis="y")
            if any(saturated(entry, lb, sv) for lb, sv in groups):
                ax.set_xlabel(f"{MARK}: generator-bound (its core >90 % busy), not a server figure")
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
            # Log-log: N spans decades and the question is how the time grows with it.
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
                    dashed = runs[0].get("generator_saturated") is True
                    ax.plot(
                        [p[0] for p in t],
                        [p[1] for p in t],
                        linestyle="--" if dashed else "-",
                        label=f"{server} (score {runs[0]['score']}"
                        + (
                            f"{MARK}, dashed: generator-bound, not a server figure)"
                            if dashed
                            else ")"
                        ),
                    )
            ax.set_xlabel("seconds")
            ax.set_ylabel("users alive")
            _from_zero(ax)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
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
                marked = False
                xs_all: list[float] = []
                for server in order:
                    triples = [
                        (lb, _num(lb), variations[lb]["summary"].get(server, {}).get(metric))
                        for lb in labels
                    ]
                    pts = [(x, y) for _lb, x, y in triples if y is not None and x > 0]
                    sat = [
                        (x, y)
                        for lb, x, y in triples
                        if y is not None and x > 0 and saturated(entry, lb, server)
                    ]
                    if pts:
                        (line,) = ax.plot(*zip(*pts, strict=True), marker="o", label=server)
                        hollow(ax, sat, line.get_color())
                        marked = marked or bool(sat)
                        xs_all += [x for x, _y in pts]
                ax.set_xscale(_scale(xs_all))
                # Bytes per connection and a latency: sizes, from 0.
                _from_zero(ax)
                ax.set_xlabel("idle connections held")
                ax.set_ylabel(ylabel)
                ax.grid(alpha=0.3)
                legend(ax, marked)
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
                _from_zero(ax)
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
            overload_marked = False
            for server in order:
                peak = get_metric(
                    variations.get("peak", {}).get("summary", {}).get(server, {}), "goodput_rps"
                )
                if not peak:
                    continue
                mults: list[float] = []
                shares: list[float] = []
                hollows: list[tuple[float, float]] = []
                dots: list[tuple[float, float]] = []
                for lb in levels:
                    mult = float(lb[:-1])
                    med = variations[lb].get("summary", {}).get(server, {}).get("goodput_vs_peak")
                    if med is not None:
                        mults.append(mult)
                        shares.append(100 * med)
                        if saturated(entry, lb, server):
                            hollows.append((mult, 100 * med))
                    dots.extend(
                        (mult, 100 * r["goodput_rps"] / peak)
                        for r in variations[lb]["runs"]
                        if r.get("server") == server and r.get("goodput_rps") is not None
                    )
                if mults:
                    (line,) = ax.plot(mults, shares, marker="o", label=f"{server} (median)")
                    hollow(ax, hollows, line.get_color())
                    overload_marked = overload_marked or bool(hollows)
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
            _from_zero(ax)
            ax.grid(alpha=0.3)
            legend(ax, overload_marked)
            ax.set_title(f"overload: goodput vs. offered load\n{subtitle}", fontsize=9)
            save(fig, "overload-goodput.png")
            for lb in levels:
                _overload_trace(plt, save, lb, variations[lb]["runs"], order, subtitle)
    return written


def _overload_trace(
    plt: Any,
    save: Callable[[Any, str], None],
    label: str,
    runs: list[dict[str, Any]],
    order: list[str],
    subtitle: str,
) -> None:
    """``overload-trace-<label>.png``: goodput over time per server (first round), and
    under it what c10k's admission controller read and decided at each check (queue
    length, shortest and longest wait sampled, share of SYNs dropped)."""
    first: dict[str, dict[str, Any]] = {}
    for r in runs:
        if r.get("server") in order and r.get("timeline"):
            first.setdefault(r["server"], r)
    traced = [(s, r) for s, r in first.items() if r.get("admission_trace")]
    if not traced:
        return
    fig, axes = plt.subplots(4, 1, figsize=(8, 9), sharex=True)
    ax = axes[0]
    for server in order:
        if server in first:
            tl = first[server]["timeline"]
            ax.plot(tl["t"], tl["good_rps"], drawstyle="steps-post", label=f"{server} goodput")
    server, r = traced[0]
    tl = r["timeline"]
    ax.plot(tl["t"], tl["started_rps"], color="grey", alpha=0.5, lw=0.8, label="offered")
    ax.set_ylabel("req/s (0.1 s bins)")
    _from_zero(ax)
    ax.legend(fontsize=7)
    tr = r["admission_trace"]
    t = [x["t"] for x in tr]
    axes[1].plot(t, [x["qlen"] for x in tr], marker=".", ms=3, lw=0.8, label="queue length")
    axes[1].plot(t, [x["backlog"] for x in tr], lw=0.8, label="backlog")
    axes[1].set_yscale("symlog", linthresh=10)
    axes[1].set_ylabel("connections")
    axes[1].legend(fontsize=7)
    for key, name in (("wait_min_ms", "shortest wait"), ("wait_max_ms", "longest wait")):
        pts = [(x["t"], x[key]) for x in tr if x.get(key) is not None]
        if pts:
            axes[2].plot(*zip(*pts, strict=True), marker=".", ms=3, lw=0.8, label=name)
    aims = [(x["t"], x["aim_ms"]) for x in tr if x.get("aim_ms") is not None]
    if aims:  # (traces before the slight-overload aim have none)
        axes[2].plot(*zip(*aims, strict=True), drawstyle="steps-post", lw=0.8, label="aim")
    axes[2].set_ylabel(f"{server}: accept wait, ms")
    axes[2].set_yscale("symlog", linthresh=10)
    axes[2].legend(fontsize=7)
    axes[3].plot(t, [100 * x["drop"] for x in tr], drawstyle="steps-post", lw=0.8)
    axes[3].set_ylabel("SYNs dropped, %")
    axes[3].set_ylim(0, 100)
    axes[3].set_xlabel("seconds since the level was launched")
    for a in axes:
        a.grid(alpha=0.3)
    axes[0].set_title(f"overload {label}: goodput and {server}'s admission\n{subtitle}", fontsize=9)
    save(fig, f"overload-trace-{label}.png")
