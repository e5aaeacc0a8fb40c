"""Kind ``overload``: offer 1x, 2x, 3x the measured peak in an open loop and see what
survives (issue 3; the goal is issue 7's).

Theory of operation
-------------------
The peak is a closed loop with a new connection per request; each multiple of it is then
offered in an open loop, by h2load when installed (``c10k.bench.h2load``), else by the Python
generator.  The runner caps every server alike to a fraction of one core (``cpucap.py``,
``--server-cpu`` else the scenario's ``server_cpu``) so that one generator core can offer 3x;
when a cap is in force each run records how much its cgroup throttled the server
(``cgroup_throttled``).  At a share where one generator core cannot offer 3x (0.25 on this
box), ``--generator-on-server-core`` lets the generator use the server's core beyond the
cap too (``_generator_context``).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from c10k.bench import admtrace, h2load
from c10k.bench.machine import CpuSnapshot, Pinning, nofile_soft
from c10k.bench.peers import RunningServer
from c10k.bench.scenarios.common import (
    Context,
    _cpu_figures,
    _http_run_from_python,
    _python_http,
)

# --repeat-peak: the variation of the peak measured again, and by how much (a share of the
# first) it must differ for a note.
PEAK_AGAIN = "peak again"
PEAK_MOVED = 0.1
# Seconds between the last level and the peak again: the last flood's leftovers (a full
# accept queue of clients that gave up, SYN retries) are served or gone first, so the
# figure is the server's speed, not its recovery (nginx at a twentieth of a core measured
# 58-78 % of its first peak without the pause, c10k 93-107 %).
PEAK_AGAIN_PAUSE = 5.0


def overload_label(mult: float) -> str:
    """Variation label of a multiple of the peak.

    >>> overload_label(3.0), overload_label(1.5)
    ('3x', '1.5x')
    """
    return f"{mult:g}x"


def _overload_generator(ctx: Context) -> str:
    """h2load when installed (``auto``/``h2load``), else the Python generator."""
    want = ctx.opts.generator
    if want in ("python", "wrk"):  # wrk has no open loop: the Python generator, as before
        return "python"
    if h2load.h2load_binary() is None:
        if want == "h2load":
            raise RuntimeError(h2load.MISSING_NOTE)
        ctx.note("overload: " + h2load.MISSING_NOTE)
        return "python"
    return "h2load"


def measure_overload(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Closed-loop peak with new connections, then an open loop at multiples of it.

    Goodput is 2xx responses completed within the deadline (``timeout``) per second of the
    window; a 503 (shedding) and a late 2xx are not goodput but are counted apart from
    failures, since a server that sheds with 503 under overload does what issue 7 asks.
    Latency percentiles are of admitted requests only (the 2xx in time).  The generator is
    h2load when installed (``h2load.py``), else the Python one.
    """
    ctx = _generator_context(ctx)
    if _overload_generator(ctx) == "h2load":
        return _overload_h2load(srv, scen, ctx)
    opts = ctx.opts
    out: dict[str, Any] = {}
    timeout = scen["timeout"]

    def measure_peak() -> dict[str, Any]:
        m, before, after = _python_http(
            srv,
            ctx,
            scen["path"],
            scen["peak_conns"],
            True,
            opts.duration,
            opts.warmup,
            timeout=timeout,
        )
        run = _http_run_from_python(m)
        _cpu_figures(run, before, after, ctx.pin, run["requests"])
        return {**run, "goodput_rps": run["rps"], "offered_rps": None}

    ctx.progress(f"overload peak {srv.spec.name}")
    peak = measure_peak()
    out["peak"] = {**peak, "goodput_vs_peak": 1.0}
    peak_rps = max(peak["rps"], 1.0)
    for level in opts.multipliers or scen["levels"]:
        label = overload_label(float(level))
        target = peak_rps * level
        ctx.progress(f"overload {label} {srv.spec.name}: offering {target:.0f} req/s")
        m, before, after = _python_http(
            srv,
            ctx,
            scen["path"],
            0,
            True,
            opts.duration,
            0.0,
            mode="open",
            rate=target,
            timeout=timeout,
        )
        run = _http_run_from_python(m)
        run.update(overload_figures(m, run, target, peak["rps"]))
        if run["offered_rps"] < 0.9 * target:
            ctx.note(
                f"overload: the Python generator offered only {run['offered_rps']:.0f} of "
                f"{target:.0f} req/s to {srv.spec.name} ({label}): generator-limited"
            )
        _cpu_figures(run, before, after, ctx.pin, run["requests"])
        out[label] = run
        _note_peak_too_low(run, label, srv, scen, ctx)
    if opts.repeat_peak:
        out[PEAK_AGAIN] = _peak_again(measure_peak, peak["rps"], srv, ctx)
    return out


def _peak_again(
    measure: Callable[[], dict[str, Any]], first_rps: float, srv: RunningServer, ctx: Context
) -> dict[str, Any]:
    """The peak measured again after the last level (``--repeat-peak``), as a share of the
    first: a server whose speed moved during the round was offered multiples of a peak it
    no longer had (or no longer than it had)."""
    ctx.progress(f"overload peak again {srv.spec.name}")
    time.sleep(PEAK_AGAIN_PAUSE)
    run = measure()
    share = run["rps"] / first_rps if first_rps > 0 else None
    if share is not None and abs(share - 1) > PEAK_MOVED:
        ctx.note(
            f"overload: {srv.spec.name}'s closed-loop peak moved from {first_rps:.0f} to "
            f"{run['rps']:.0f} req/s ({(share - 1) * 100:+.0f} %) during the round: its "
            "levels were multiples of the first"
        )
    return {**run, "goodput_vs_peak": share}


def _generator_context(ctx: Context) -> Context:
    """The context the levels run in: with ``--generator-on-server-core`` and a cap in force,
    the generator's processes may run on the server's core too (the scheduler spreads them
    over both; the cgroup quota still bounds the server), and since that core's busy time
    then includes the generator, no busy-core figure is the server's: the pinning records
    no server core and the generator's busy share is of both cores."""
    pin = ctx.pin
    if not ctx.opts.generator_on_server_core or pin.server_cpu is None or not pin.generator_cpus:
        return ctx
    if ctx.cap is None:
        ctx.note(
            "overload: --generator-on-server-core not applied: no CPU cap is in force, and an "
            "uncapped server would share its core with the generator"
        )
        return ctx
    cpus = [*pin.generator_cpus, pin.server_cpu]
    note = (
        f"overload: server on CPU {pin.server_cpu} under its cap, the generator on CPUs "
        f"{', '.join(map(str, cpus))} (--generator-on-server-core): busy-core figures include "
        "the generator; generator-bound means both cores were over 90 % busy"
    )
    ctx.note(note)
    return dataclasses.replace(ctx, pin=Pinning(None, cpus, note))


def _note_peak_too_low(
    run: dict[str, Any], label: str, srv: RunningServer, scen: dict[str, Any], ctx: Context
) -> None:
    if run["goodput_vs_peak"] and run["goodput_vs_peak"] > 1.2:
        ctx.note(
            f"overload: {srv.spec.name} served {run['goodput_vs_peak'] * 100:.0f}% of the "
            f"'peak' at {label}: the closed-loop peak with {scen['peak_conns']} connections "
            "was latency- or generator-bound, not the server's peak; ratios overstate"
        )


def _throttled(ctx: Context, before: dict[str, float]) -> dict[str, float] | None:
    """The CPU cap's cgroup throttling since ``before`` (None when uncapped)."""
    if ctx.cap is None:
        return None
    now = ctx.cap.throttling()
    return {k: round(v - before.get(k, 0), 3) for k, v in now.items()}


def _overload_h2load(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """measure_overload with h2load: peak sized from a short calibration run, then one
    open-loop run per multiple (split over processes when the fd budget needs it)."""
    binary = h2load.h2load_binary()
    assert binary is not None
    opts = ctx.opts
    cpus = ctx.pin.generator_cpus
    deadline = float(scen["timeout"])
    conns = int(scen["peak_conns"])
    url = srv.url(scen["path"])  # https:// over TLS (--h1 then offers ALPN http/1.1)
    tag = f"{srv.spec.name.replace('/', '_')}-{srv.port}"
    out: dict[str, Any] = {}

    def closed(n: int, limit: float, log: Path | None = None) -> tuple[dict[str, Any], float]:
        argv = h2load.peak_argv(binary, url, n, conns, log)
        outs, wall = h2load.run_many([argv], limit, ctx.workdir, cpus)
        summary = h2load.parse_summary(outs[0] or "")
        if summary is None or not summary["succeeded"]:
            raise RuntimeError(
                f"h2load closed loop against {srv.spec.name} "
                + ("did not finish in time" if outs[0] is None else "had no successes")
                + f": {' '.join(argv)}: {(outs[0] or '').strip()[-300:]}"
            )
        return summary, wall

    ctx.progress(f"overload peak {srv.spec.name} (h2load)")
    s0, wall0 = closed(conns * 4, 30.0)
    rate0 = s0["succeeded"] / (s0["finished_s"] or wall0 or 1e-9)
    if opts.warmup > 0:
        s0, wall0 = closed(max(conns, round(rate0 * opts.warmup)), opts.warmup * 3 + 30.0)
        rate0 = s0["succeeded"] / (s0["finished_s"] or wall0 or 1e-9)
    n = max(conns * 4, round(rate0 * opts.duration))

    def measure_peak(name: str) -> dict[str, Any]:
        log = ctx.workdir / f"h2load-{tag}-{name}.tsv"
        log.unlink(missing_ok=True)
        thr = ctx.cap.throttling() if ctx.cap else {}
        before = CpuSnapshot.take(srv.sid, ctx.pin)
        summary, wall = closed(n, n / max(rate0, 1.0) * 3 + 30.0, log)
        after = CpuSnapshot.take(srv.sid, ctx.pin)
        run = h2load.peak_figures(h2load.parse_log(log.read_text()), summary, wall)
        run["argv"] = h2load.peak_argv(binary, url, n, conns, log)
        run["h2load_summary"] = summary
        run["generator_cpus"] = cpus
        run["cgroup_throttled"] = _throttled(ctx, thr)
        _cpu_figures(run, before, after, ctx.pin, run["requests"])
        return {**run, "goodput_rps": run["rps"], "offered_rps": None}

    peak = measure_peak("peak")
    out["peak"] = {**peak, "goodput_vs_peak": 1.0}
    peak_rps = max(peak["rps"], 1.0)
    for level in opts.multipliers or scen["levels"]:
        label = overload_label(float(level))
        target = peak_rps * level
        plan = h2load.plan_rate(target, opts.duration, deadline, nofile_soft())
        ctx.progress(
            f"overload {label} {srv.spec.name}: offering {plan.rate:.0f} req/s (h2load"
            + (f", {len(plan.shares)} processes)" if len(plan.shares) > 1 else ")")
        )
        logs = [ctx.workdir / f"h2load-{tag}-{label}-{i}.tsv" for i in range(len(plan.shares))]
        argvs = [
            h2load.rate_argv(binary, url, share, plan.period_ms, plan.conns(i), deadline, logs[i])
            for i, share in enumerate(plan.shares)
        ]
        for p in logs:
            p.unlink(missing_ok=True)
        thr = ctx.cap.throttling() if ctx.cap else {}
        t_launch_us = int(time.time() * 1e6)
        before = CpuSnapshot.take(srv.sid, ctx.pin)
        # Past the window plus twice the deadline nothing more can count: stop h2load then
        # (connections whose SYNs were dropped would otherwise keep it waiting for minutes).
        outs, _wall = h2load.run_many(argvs, plan.window_s + 2 * deadline + 3.0, ctx.workdir, cpus)
        after = CpuSnapshot.take(srv.sid, ctx.pin)
        entries = [e for p in logs if p.exists() for e in h2load.parse_log(p.read_text())]
        merged = h2load.merge_summaries([h2load.parse_summary(o) if o else None for o in outs])
        run = h2load.rate_figures(
            entries, merged, plan, deadline, peak["rps"], t_launch_us, settle_s=ctx.opts.warmup
        )
        run["argv"] = argvs
        run["offered_target_rps"] = target
        run["h2load_rate_rps"] = plan.rate
        run["h2load_processes"] = len(argvs)
        run["generator_cpus"] = cpus
        run["cgroup_throttled"] = _throttled(ctx, thr)
        _cpu_figures(run, before, after, ctx.pin, run["requests"])
        _attach_trace(run, entries, srv, ctx, deadline, t_launch_us)
        out[label] = run
        busy = run.get("generator_core_busy_fraction")
        if busy is not None and busy > 0.9:
            # h2load's core saturated: its ticks ran late, so what it offered is known only
            # as a lower bound, the connections that got to send a request.
            run["offered_rps"] = run["connected_rps"]
            ctx.note(
                f"overload: h2load's core was {busy * 100:.0f} % busy offering {target:.0f} "
                f"req/s to {srv.spec.name} ({label}): generator-limited; offered/s is the "
                f"connected rate ({run['offered_rps']:.0f}/s), a lower bound"
            )
        if run["errors"].get("connect"):
            ctx.note(
                f"overload: {srv.spec.name} ({label}): {run['errors']['connect']} of "
                f"{plan.total} connections never got to send their request (refused, reset "
                "or no SYN-ACK before h2load gave up)"
            )
        if merged is None:
            ctx.note(
                f"overload: h2load against {srv.spec.name} ({label}) was stopped at its "
                "time-out (connections still waiting to connect: SYN retransmits after the "
                "accept queue overflowed); requests without a response count as not served"
            )
        cm = run.get("connect_ms") or {}
        if cm.get("max", 0) >= 1000:
            ctx.note(
                f"overload: {srv.spec.name} ({label}): some connections took "
                f"{cm['max'] / 1000:.1f} s to connect (SYN retransmits: the accept queue "
                "overflowed); h2load's latency starts after connect, so the admitted "
                "latency leaves that wait out"
            )
        _note_peak_too_low(run, label, srv, scen, ctx)
    if opts.repeat_peak:
        again = functools.partial(measure_peak, "peak-again")
        out[PEAK_AGAIN] = _peak_again(again, peak["rps"], srv, ctx)
    return out


def _attach_trace(
    run: dict[str, Any],
    entries: list[tuple[int, int, int]],
    srv: RunningServer,
    ctx: Context,
    deadline: float,
    t_launch_us: int,
) -> None:
    """The goodput timeline of the level and, for c10k started with --admission-trace,
    its controller's checks over the same window (``admtrace.py``)."""
    t0 = t_launch_us / 1e6
    run["timeline"] = admtrace.goodput_timeline(entries, deadline, t_launch_us)
    t1 = t0 + (run["timeline"]["t"][-1] if run["timeline"]["t"] else 0.0) + 1.0
    trace = admtrace.read_trace(admtrace.trace_path(ctx.workdir, srv.port), t0, t1)
    if trace:
        for rec in trace:
            rec["t"] = round(rec["t"] - t0, 3)  # seconds since the level's launch
        run["admission_trace"] = trace


def overload_figures(
    m: dict[str, Any], run: dict[str, Any], target: float, peak_rps: float
) -> dict[str, Any]:
    """Goodput, shares and the unfinished count of one open-loop window.

    >>> errors = {"503": 10, "late": 5, "timeout": 5}
    >>> f = overload_figures({"attempted": 100, "ok": 75, "dropped": 0},
    ...     {"window_s": 1.0, "rps": 75.0, "error_total": 20, "errors": errors}, 100.0, 100.0)
    >>> f["goodput_vs_peak"], f["share_503"], f["error_rate"], f["unfinished"]
    (0.75, 0.1, 0.05, 5)
    """
    attempted = m["attempted"]
    measured = run["window_s"] or 1e-9
    errors = run["errors"]
    shed = errors.get("503", 0)
    failures = run["error_total"] - shed - errors.get("late", 0)
    # Still in flight when the window closed: neither served nor failed in time.
    unfinished = max(0, attempted - m["ok"] - run["error_total"] - m["dropped"])
    return {
        "offered_target_rps": target,
        "offered_rps": attempted / measured,
        "goodput_rps": run["rps"],
        "goodput_vs_peak": run["rps"] / peak_rps if peak_rps > 0 else None,
        "dropped_by_generator": m["dropped"],
        "unfinished": unfinished,
        "share_503": shed / attempted if attempted else None,
        "error_rate": failures / attempted if attempted else None,
        "not_served_rate": (attempted - m["ok"]) / attempted if attempted else None,
    }
