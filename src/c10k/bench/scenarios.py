"""The scenarios: data entries (vmbench style) plus one measuring function per kind.

Theory of operation
-------------------
A scenario is a dict: ``name``, ``title``, what it ``measures``, its ``kind`` (which function
measures it), its parameters, its ``variations`` (one row each in the reports) and a
``quick`` override for CI.  The runner starts a server, hands it to the kind's function, which
returns ``{variation label: run}``, and stops the server; the reports read the runs.  Adding a
scenario is adding a dict.

Kegel's two tests ("Measuring Server Performance"):

1. ``conn-rate``: how many 512-byte files per second, a new TCP connection each.
2. ``modem``: how many 28.8 kbit/s clients can download at once "before performance goes to
   pot".  Scored like dkftpbench: users are started one after another, each downloading a big
   file in a loop at 3,600 B/s (28,800 bit/s / 8); a user fails if it cannot connect or if,
   after its first 10 packets, its rate is below 3/4 of the target; no users are added after
   the first failure (or at ``max_users``); the score is the number still alive after a
   settle time.  Why pace in packets: see ``client.py``.

The rest, from issue 3: keep-alive throughput at 100 / 1,000 / 10,000 connections, big files,
idle connections (latency of one active client and memory per idle connection as N grows),
the poller curve (``poller.py``), and overload (offer 1x, 2x, 3x the measured peak in an open
loop and see what survives).

Each run records: the generator (``wrk`` or ``python``), the measured window, requests,
errors by kind, req/s, MiB/s, latency percentiles, and the CPU figures of ``machine.py``:
``req_per_server_cpu_s`` (server process user+sys, children included) and
``req_per_busy_core_s`` (busy time of the server's pinned core: the efficiency figure).
``generator_saturated`` is set when the generator's core was over 90 % busy, i.e. the figure
may be the generator's ceiling rather than the server's.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c10k.bench import client as gen
from c10k.bench.machine import CpuSnapshot, Pinning, nofile_soft, session_rss_bytes, tcp_mem_pages
from c10k.bench.peers import RunningServer
from c10k.bench.poller import all_backends, bench_one, plan_sizes
from c10k.bench.stats import Histogram
from c10k.bench.wrk import run_wrk, wrk_binary, wrk_missing_note

KiB, MiB = 1 << 10, 1 << 20

# Files of the generated docroot: name -> size.  Random bytes (no compression tricks).
FILES = {"small.bin": 512, "big.bin": MiB}

SCENARIOS: dict[str, dict[str, Any]] = {
    "conn-rate": {
        "title": "Kegel test 1: a new TCP connection per 512-byte file",
        "measures": "connections (= requests) per second, latency incl. connect",
        "kind": "http",
        "path": "/small.bin",
        "close": True,
        "generator": "wrk",
        "variations": [{"label": "c=100", "conns": 100}],
        "quick": {"variations": [{"label": "c=4", "conns": 4}]},
    },
    "keepalive": {
        "title": "Keep-alive: 512-byte file at 100, 1,000 and 10,000 connections",
        "measures": "requests per second and latency percentiles",
        "kind": "http",
        "path": "/small.bin",
        "close": False,
        "generator": "wrk",
        "variations": [{"label": f"c={c}", "conns": c} for c in (100, 1000, 10000)],
        "quick": {"variations": [{"label": "c=4", "conns": 4}, {"label": "c=16", "conns": 16}]},
    },
    "bigfile": {
        "title": "Big file: 1 MiB at 1,000 keep-alive connections",
        "measures": "MiB/s",
        "kind": "http",
        "path": "/big.bin",
        "close": False,
        "generator": "wrk",
        "variations": [{"label": "c=1000", "conns": 1000}],
        "quick": {"variations": [{"label": "c=4", "conns": 4}]},
    },
    "modem": {
        "title": "Kegel test 2: simulated 28.8 kbit/s users, dkftpbench scoring",
        "measures": "users still at >= 3/4 of 3,600 B/s after the ramp and a settle time",
        "kind": "modem",
        "path": "/modem.bin",
        "file_bytes": 4 * MiB,
        # 28,800 bit/s / 8; one Ethernet-MSS "packet" (1500 - 40 bytes of TCP/IP headers).
        "rate": 3600,
        "packet": 1460,
        "grace_packets": 10,
        "min_fraction": 0.75,
        "max_users": 3000,
        "interval": 0.01,
        "settle": 10.0,
        "rcvbuf": 8 * KiB,
        "variations": [{"label": "28.8k"}],
        # CI: 10x the rate so a user is judged within 0.4 s; same rules otherwise.
        "quick": {
            "rate": 36000,
            "max_users": 6,
            "interval": 0.05,
            "settle": 1.0,
            "file_bytes": 256 * KiB,
            "variations": [{"label": "288k"}],
        },
    },
    "idle": {
        "title": "Idle connections: one active client's latency and memory per idle connection",
        "measures": "active client's latency, server RSS delta / held connections",
        "kind": "idle",
        "path": "/small.bin",
        "active_conns": 1,
        "settle": 1.0,
        "counts": [1000, 4000, 10000, 16000],
        "quick": {"counts": [10, 50], "settle": 0.2},
    },
    "poller": {
        "title": "Poller bench: time per event vs. watched fds, per backend",
        "measures": "microseconds per wait call with 1 active fd among N",
        "kind": "poller",
        "sizes": [100, 1000, 10000, 100000],
        "active": 1,
        "seconds": 1.0,
        "quick": {"sizes": [10, 100, 1000], "seconds": 0.05},
    },
    "overload": {
        "title": "Overload: offer 1x, 2x, 3x the measured peak (open loop, new connections)",
        "measures": "goodput (2xx within the timeout per second) and the error mix",
        "kind": "overload",
        "path": "/small.bin",
        "peak_conns": 64,
        "levels": [1, 2, 3],
        "timeout": 2.0,
        "quick": {"peak_conns": 4, "levels": [1, 2, 3], "timeout": 1.0},
    },
}

ORDER = ["conn-rate", "keepalive", "bigfile", "modem", "idle", "poller", "overload"]


def scenario(name: str, quick: bool = False) -> dict[str, Any]:
    """A deep copy of the scenario with its quick overrides applied when ``quick``."""
    s = copy.deepcopy(SCENARIOS[name])
    s["name"] = name
    q = s.pop("quick", {})
    if quick:
        s.update(q)
    return s


@dataclass
class Options:
    """Run-wide settings (the CLI's options)."""

    duration: float = 10.0
    warmup: float = 2.0
    rounds: int = 2
    quick: bool = False
    generator: str = "auto"  # auto | wrk | python
    procs: int | None = None
    timeout: float = gen.DEFAULT_TIMEOUT
    connections: list[int] | None = None
    max_users: int | None = None
    idle_counts: list[int] | None = None
    poller_sizes: list[int] | None = None


@dataclass
class Context:
    opts: Options
    pin: Pinning
    workdir: Path
    root: Path
    progress: Callable[[str], None] = lambda msg: None
    notes: list[str] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            time.sleep(min(left, 0.25))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


def make_docroot(root: Path, extra: dict[str, int] | None = None) -> None:
    """Write the test files (deterministic pseudo-random bytes) unless already there."""
    import random

    root.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(1)
    for name, size in {**FILES, **(extra or {})}.items():
        p = root / name
        if not p.exists() or p.stat().st_size != size:
            p.write_bytes(rnd.randbytes(size))


def _cpu_figures(
    run: dict[str, Any], before: CpuSnapshot, after: CpuSnapshot, pin: Pinning, count: float
) -> None:
    cpu = after.delta(before)
    run["cpu"] = cpu
    run["req_per_server_cpu_s"] = count / cpu["server_cpu_s"] if cpu["server_cpu_s"] > 0 else None
    pinned = pin.server_cpu is not None
    busy = cpu["server_core_busy_s"]
    run["req_per_busy_core_s"] = count / busy if pinned and busy > 0 else None
    if pin.generator_cpus and cpu["window_s"] > 0:
        frac = cpu["generator_core_busy_s"] / (cpu["window_s"] * len(pin.generator_cpus))
        run["generator_core_busy_fraction"] = round(frac, 3)
        run["generator_saturated"] = frac > 0.9
    if pinned and cpu["window_s"] > 0:
        run["server_core_busy_fraction"] = round(busy / cpu["window_s"], 3)


def _pick_generator(scen: dict[str, Any], ctx: Context) -> str:
    want = ctx.opts.generator
    if want == "python" or scen.get("generator") != "wrk":
        return "python"
    if wrk_binary() is None:
        if want == "wrk":
            raise RuntimeError(wrk_missing_note())
        ctx.note(wrk_missing_note())
        return "python"
    return "wrk"


def _python_http(
    srv: RunningServer,
    ctx: Context,
    path: str,
    conns: int,
    close: bool,
    duration: float,
    warmup: float,
    mode: str = "closed",
    rate: float = 0.0,
    timeout: float | None = None,
) -> tuple[dict[str, Any], CpuSnapshot, CpuSnapshot]:
    """Run the Python generator; returns (merged result, cpu before, cpu after)."""
    inflight = conns if mode == "closed" else max(1, int(rate * (timeout or ctx.opts.timeout)))
    k = gen.plan_processes(inflight, ctx.opts.procs)
    if mode == "open":
        k = min(k, 4)
    sources = gen.source_addresses(inflight)
    if close and len(sources) < 4:
        # Churning connections: spread the 4-tuples even when few are open at once.
        sources = [f"127.0.0.{2 + i}" for i in range(4)]
    configs = []
    for i, n in enumerate(gen.split_evenly(conns, k)):
        configs.append(
            {
                "mode": mode,
                "host": srv.host,
                "port": srv.port,
                "path": path,
                "conns": n,
                "keepalive": not close,
                "duration": duration,
                "warmup": warmup,
                "timeout": timeout or ctx.opts.timeout,
                "sources": sources,
                "rate": rate / k,
                "max_inflight": max(1, inflight // k + 1),
                "cpus": ctx.pin.generator_cpus,
                "index": i,
                "max_lifetime": warmup + duration + 120.0,
            }
        )
    with gen.LoadGenerator(configs, ctx.workdir / "logs") as lg:
        ready = lg.wait_all("ready", 60.0 + conns / 200)
        opened = sum(r.get("conns", 0) for r in ready)
        if mode == "closed" and not close and opened < conns:
            ctx.note(
                f"{srv.spec.name}: only {opened} of {conns} keep-alive connections "
                "opened before the run"
            )
        lg.send({"cmd": "go"})
        t_go = time.perf_counter()
        ctx.sleep(warmup)
        before = CpuSnapshot.take(srv.sid, ctx.pin)
        ctx.sleep(max(0.0, t_go + warmup + duration - time.perf_counter()))
        after = CpuSnapshot.take(srv.sid, ctx.pin)
        results = lg.wait_all("result", 60.0 + timeout_or(timeout, ctx))
    merged = gen.merge_results(results)
    return merged, before, after


def timeout_or(timeout: float | None, ctx: Context) -> float:
    return timeout if timeout is not None else ctx.opts.timeout


def _http_run_from_python(m: dict[str, Any]) -> dict[str, Any]:
    hist: Histogram = m["hist"]
    measured = m["measured_s"] or 1e-9
    errors = m["errors"]
    return {
        "generator": "python",
        "window_s": round(measured, 4),
        "requests": m["ok"],
        "errors": errors,
        "error_total": sum(errors.values()),
        "rps": m["ok"] / measured,
        "mib_s": m["bytes"] / measured / MiB,
        "latency_ms": hist.summary_ms(),
        "reconnects": m["reconnects"],
        "histogram": hist.to_json(),
    }


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
                    srv.host,
                    srv.port,
                    path,
                    conns,
                    opts.warmup,
                    ctx.workdir,
                    close=close,
                    timeout=opts.timeout,
                    cpus=cpus,
                )
            before = CpuSnapshot.take(srv.sid, ctx.pin)
            w = run_wrk(
                srv.host,
                srv.port,
                path,
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
            m, before, after = _python_http(
                srv, ctx, path, conns, close, opts.duration, opts.warmup
            )
            run = _http_run_from_python(m)
        run["conns"] = conns
        _cpu_figures(run, before, after, ctx.pin, run["requests"])
        out[var["label"]] = run
    return out


def measure_modem(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Kegel test 2, dkftpbench rules (see the module doc)."""
    max_users = ctx.opts.max_users or scen["max_users"]
    k = gen.plan_processes(max_users, ctx.opts.procs)
    sources = gen.source_addresses(max_users)
    label = scen["variations"][0]["label"]
    ramp = max_users * scen["interval"]
    configs = [
        {
            "mode": "modem",
            "host": srv.host,
            "port": srv.port,
            "path": scen["path"],
            "rate": scen["rate"],
            "packet": scen["packet"],
            "grace_packets": scen["grace_packets"],
            "min_fraction": scen["min_fraction"],
            "rcvbuf": scen["rcvbuf"],
            "interval": scen["interval"],
            "max_users": n,
            "workers": k,
            "index": i,
            "sources": sources,
            "timeout": ctx.opts.timeout,
            "cpus": ctx.pin.generator_cpus,
            "max_lifetime": ramp + scen["settle"] + 120.0,
        }
        for i, n in enumerate(gen.split_evenly(max_users, k))
    ]
    ctx.progress(
        f"modem {label} {srv.spec.name}: up to {max_users} users, "
        f"one every {scen['interval'] * 1000:.0f} ms"
    )
    first_fail: dict[str, Any] | None = None
    with gen.LoadGenerator(configs, ctx.workdir / "logs") as lg:
        lg.wait_all("ready", 30.0)
        before = CpuSnapshot.take(srv.sid, ctx.pin)
        lg.send({"cmd": "go"})
        t_go = time.perf_counter()
        done_adding: set[int] = set()
        settle_end: float | None = None
        hard_end = t_go + ramp + scen["settle"] + 60.0
        while True:
            now = time.perf_counter()
            if (settle_end is not None and now >= settle_end) or now >= hard_end:
                break
            item = lg.next_event(0.1 if settle_end is None else max(0.0, settle_end - now))
            if item is None:
                continue
            i, msg = item
            ev = msg.get("event")
            if ev == "fail" and first_fail is None:
                first_fail = {**msg, "t": round(time.perf_counter() - t_go, 3)}
                first_fail.pop("event", None)
                lg.send({"cmd": "stop-adding"})
                settle_end = time.perf_counter() + scen["settle"]
            elif ev == "done-adding":
                done_adding.add(i)
                if len(done_adding) == k and settle_end is None:
                    settle_end = time.perf_counter() + scen["settle"]
        after = CpuSnapshot.take(srv.sid, ctx.pin)
        lg.send({"cmd": "stop"})
        results = lg.wait_all("result", 30.0)
    # Merge the timelines: each worker samples every 0.5 s from its own "go".
    length = max(len(r["timeline"]) for r in results)
    timeline = []
    for j in range(length):
        pts = [r["timeline"][min(j, len(r["timeline"]) - 1)] for r in results]
        timeline.append([max(p[0] for p in pts), sum(p[1] for p in pts), sum(p[2] for p in pts)])
    reasons: dict[str, int] = {}
    for r in results:
        for f in r["failures"]:
            reasons[f["reason"]] = reasons.get(f["reason"], 0) + 1
    elapsed = max(r["elapsed_s"] for r in results) or 1e-9
    score = sum(r["alive"] for r in results)
    run: dict[str, Any] = {
        "generator": "python",
        "score": score,
        "started": sum(r["started"] for r in results),
        "failed": sum(len(r["failures"]) for r in results),
        "failure_reasons": reasons,
        "first_failure": first_fail,
        "downloads": sum(r["downloads"] for r in results),
        "mib_s": sum(r["bytes"] for r in results) / elapsed / MiB,
        "elapsed_s": elapsed,
        "timeline": timeline,
        "max_users": max_users,
        "rate_bytes_s": scen["rate"],
    }
    _cpu_figures(run, before, after, ctx.pin, run["downloads"])
    # Per "request" here means per completed download; keep only the CPU-second figures.
    run["downloads_per_server_cpu_s"] = run.pop("req_per_server_cpu_s")
    run.pop("req_per_busy_core_s", None)
    run["server_cpu_per_user_ms"] = (
        run["cpu"]["server_cpu_s"] / run["started"] * 1000 if run["started"] else None
    )
    return {label: run}


def measure_idle(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Hold N idle connections; measure RSS per connection and an active client's latency."""
    counts = sorted(ctx.opts.idle_counts or scen["counts"])
    limit = nofile_soft() - 256  # the server inherits our soft NOFILE limit
    if counts[-1] > limit:
        ctx.note(
            f"idle: counts above {limit} skipped (RLIMIT_NOFILE {nofile_soft()} per "
            "process applies to the server too)"
        )
        counts = [c for c in counts if c <= limit] or [limit]
    top = counts[-1]
    k = gen.plan_processes(top, ctx.opts.procs)
    sources = gen.source_addresses(top)
    configs = [
        {
            "mode": "idle",
            "host": srv.host,
            "port": srv.port,
            "path": scen["path"],
            "sources": sources,
            "timeout": ctx.opts.timeout,
            "keepalive": True,
            "cpus": ctx.pin.generator_cpus,
            "index": i,
            "max_lifetime": 600.0 + top / 50,
        }
        for i in range(k)
    ]
    out: dict[str, Any] = {}
    active_dur = max(0.5, ctx.opts.duration / 2)

    def active_client() -> dict[str, Any]:
        m, before, after = _python_http(
            srv, ctx, scen["path"], scen["active_conns"], False, active_dur, 0.0
        )
        run = _http_run_from_python(m)
        _cpu_figures(run, before, after, ctx.pin, run["requests"])
        return run

    ctx.progress(f"idle N=0 {srv.spec.name}")
    ctx.sleep(scen["settle"])
    rss0, tcp0 = session_rss_bytes(srv.sid), tcp_mem_pages()
    base = active_client()
    out["N=0"] = {
        "n": 0,
        "held": 0,
        "rss_bytes": rss0,
        "active": base,
        "generator": "python",
        "latency_ms": base["latency_ms"],
        "rps": base["rps"],
    }
    with gen.LoadGenerator(configs, ctx.workdir / "logs") as lg:
        lg.wait_all("ready", 30.0)
        lg.send({"cmd": "go"})
        for n in counts:
            ctx.progress(f"idle N={n} {srv.spec.name}")
            for i, share in enumerate(gen.split_evenly(n, k)):
                lg.send({"cmd": "hold", "n": share}, only=i)
            msgs = _wait_held(lg, gen.split_evenly(n, k), 60.0 + n / 200)
            held = sum(m["held"] for m in msgs)
            errors: dict[str, int] = {}
            for m in msgs:
                for key, v in m["errors"].items():
                    errors[key] = errors.get(key, 0) + v
            ctx.sleep(scen["settle"])
            rss, tcp = session_rss_bytes(srv.sid), tcp_mem_pages()
            act = active_client()
            out[f"N={n}"] = {
                "n": n,
                "held": held,
                "errors": errors,
                "closed_by_server": sum(m["closed_by_server"] for m in msgs),
                "rss_bytes": rss,
                "rss_per_conn_bytes": (rss - rss0) / held if held else None,
                "kernel_tcp_mem_per_conn_bytes": ((tcp - tcp0) * 4096 / held) if held else None,
                "active": act,
                "latency_ms": act["latency_ms"],
                "rps": act["rps"],
                "generator": "python",
            }
        lg.send({"cmd": "stop"})
        lg.wait_all("result", 30.0)
    return out


def _wait_held(lg: gen.LoadGenerator, shares: list[int], timeout: float) -> list[dict[str, Any]]:
    got: dict[int, dict[str, Any]] = {}
    deadline = time.perf_counter() + timeout
    while len(got) < len(shares):
        left = deadline - time.perf_counter()
        if left <= 0:
            raise gen.WorkerError("idle holders did not report in time")
        item = lg.next_event(left)
        if item is None:
            continue
        i, msg = item
        if msg.get("event") == "held" and msg.get("target") == shares[i]:
            got[i] = msg
    return [got[i] for i in range(len(shares))]


def measure_overload(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Closed-loop peak with new connections, then an open loop at multiples of it."""
    opts = ctx.opts
    out: dict[str, Any] = {}
    timeout = scen["timeout"]
    ctx.progress(f"overload peak {srv.spec.name}")
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
    peak = _http_run_from_python(m)
    _cpu_figures(peak, before, after, ctx.pin, peak["requests"])
    out["peak"] = {**peak, "goodput_rps": peak["rps"], "offered_rps": None}
    peak_rps = max(peak["rps"], 1.0)
    for level in scen["levels"]:
        label = f"{level}x"
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
        measured = run["window_s"] or 1e-9
        # Still in flight when the window closed: neither served nor failed in time.
        unfinished = max(0, m["attempted"] - m["ok"] - run["error_total"] - m["dropped"])
        run.update(
            {
                "offered_target_rps": target,
                "offered_rps": m["attempted"] / measured,
                "goodput_rps": run["rps"],
                "dropped_by_generator": m["dropped"],
                "unfinished": unfinished,
                "error_rate": (run["error_total"] / m["attempted"]) if m["attempted"] else None,
                "not_served_rate": ((m["attempted"] - m["ok"]) / m["attempted"])
                if m["attempted"]
                else None,
            }
        )
        if run["offered_rps"] < 0.9 * target:
            ctx.note(
                f"overload: the Python generator offered only {run['offered_rps']:.0f} of "
                f"{target:.0f} req/s to {srv.spec.name} ({label}): generator-limited"
            )
        _cpu_figures(run, before, after, ctx.pin, run["requests"])
        out[label] = run
    return out


def run_poller(scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """The poller scenario: no server; rows are sizes, columns are backends."""
    sizes, notes = plan_sizes(ctx.opts.poller_sizes or scen["sizes"], scen["active"])
    backend_notes: list[str] = []
    backends = all_backends(backend_notes)
    for text in notes + backend_notes:
        ctx.note("poller: " + text)
    out: dict[str, Any] = {}
    for n in sizes:
        label = f"N={n}"
        runs = []
        for name, make in backends.items():
            ctx.progress(f"poller {label} {name}")
            try:
                r = bench_one(make, n, scen["active"], scen["seconds"])
            except ValueError as e:
                r = {"backend": name, "n": n, "skipped": str(e)}
            r["server"] = name
            r["round"] = 1
            runs.append(r)
        out[label] = runs
    return out


MEASURE: dict[str, Callable[[RunningServer, dict[str, Any], Context], dict[str, Any]]] = {
    "http": measure_http,
    "modem": measure_modem,
    "idle": measure_idle,
    "overload": measure_overload,
}


def extra_files(scen: dict[str, Any]) -> dict[str, int]:
    """Files a scenario needs beyond FILES."""
    if scen["kind"] == "modem":
        return {scen["path"].lstrip("/"): int(scen["file_bytes"])}
    return {}


def expected_seconds(scen: dict[str, Any], opts: Options, n_servers: int) -> float:
    """Rough duration of a scenario, for the progress line."""
    per = opts.warmup + opts.duration + 1.0
    kind = scen["kind"]
    total: float
    if kind == "http":
        n = len(opts.connections or scen["variations"])
        return n * per * n_servers * opts.rounds
    if kind == "modem":
        users = opts.max_users or scen["max_users"]
        total = (users * scen["interval"] + scen["settle"] + 2) * n_servers * opts.rounds
        return total
    if kind == "idle":
        n = len(opts.idle_counts or scen["counts"]) + 1
        total = n * (scen["settle"] + max(0.5, opts.duration / 2) + 1) * n_servers * opts.rounds
        return total
    if kind == "overload":
        return (len(scen["levels"]) + 1) * per * n_servers * opts.rounds
    total = len(scen["sizes"]) * 6 * scen["seconds"]
    return total
