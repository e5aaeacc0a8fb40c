"""Kind ``http``: conn-rate, keepalive and bigfile, a closed loop driven by wrk or the Python
generator.

Theory of operation
-------------------
``conn-rate`` is Kegel's test 1 ("Measuring Server Performance"): how many 512-byte files per
second, a new TCP connection each.  From issue 3: keep-alive throughput at 100 / 1,000 /
10,000 connections (``keepalive``) and big files (``bigfile``).

``bigfile`` runs the Python generator with bodies dropped in the kernel (``discard``,
client.py) unless ``--generator wrk`` asks for wrk: wrk copies every body byte and its core
saturated before any server's at 1 MiB here, so the server idled half the time and its
cost per byte followed how the two interleaved (rounds 0.7-1.1x nginx); dropping the bytes
lets the server set the pace (docs/BENCHMARKS.md, issue 15).
"""

from __future__ import annotations

from typing import Any

from c10k.bench.machine import CpuSnapshot
from c10k.bench.peers import RunningServer
from c10k.bench.scenarios.common import (
    Context,
    MiB,
    _cpu_figures,
    _http_run_from_python,
    _python_http,
)
from c10k.bench.wrk import run_wrk, wrk_binary, wrk_missing_note


def _pick_generator(scen: dict[str, Any], ctx: Context) -> str:
    """``--generator`` if it names wrk or python, else the scenario's own choice."""
    want = ctx.opts.generator
    if (want if want in ("wrk", "python") else scen.get("generator")) != "wrk":
        return "python"
    if wrk_binary() is None:
        if want == "wrk":
            raise RuntimeError(wrk_missing_note())
        ctx.note(wrk_missing_note())
        return "python"
    return "wrk"


def measure_http(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """conn-rate, keepalive, bigfile: closed loop, wrk or the Python generator."""
    out: dict[str, Any] = {}
    opts = ctx.opts
    generator = _pick_generator(scen, ctx)
    variations = scen["variations"]
    if opts.connections:
        variations = [{"label": f"c={c}", "conns": c} for c in opts.connections]
    for var in variations:
        conns, close, path = var["conns"], scen["close"], scen["path"]
        ctx.progress(f"{scen['name']} {var['label']} {srv.spec.name}")
        if generator == "wrk":
            cpus = ctx.pin.generator_cpus
            if opts.warmup > 0:
                run_wrk(
                    srv.url(path),
                    conns,
                    opts.warmup,
                    ctx.workdir,
                    close=close,
                    timeout=opts.timeout,
                    cpus=cpus,
                )
            before = CpuSnapshot.take(srv.sid, ctx.pin)
            w = run_wrk(
                srv.url(path),
                conns,
                opts.duration,
                ctx.workdir,
                close=close,
                timeout=opts.timeout,
                cpus=cpus,
            )
            after = CpuSnapshot.take(srv.sid, ctx.pin)
            ok = w["requests"] - w["errors"]["status"]
            errors = {k: v for k, v in w["errors"].items() if v}
            run: dict[str, Any] = {
                "generator": "wrk",
                "window_s": w["duration_s"],
                "requests": ok,
                "errors": errors,
                "error_total": sum(errors.values()),
                "rps": ok / w["duration_s"],
                "mib_s": w["bytes"] / w["duration_s"] / MiB,
                "latency_ms": w["latency_ms"],
                "argv": w["argv"],
            }
        else:
            discard = bool(scen.get("discard")) and srv.scheme == "http"
            m, before, after = _python_http(
                srv, ctx, path, conns, close, opts.duration, opts.warmup, discard=discard
            )
            run = _http_run_from_python(m)
            run["discard"] = discard
        run["conns"] = conns
        _cpu_figures(run, before, after, ctx.pin, run["requests"])
        out[var["label"]] = run
    return out
