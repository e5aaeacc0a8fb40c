"""Kind ``idle``: idle keep-alive connections up to C1M, memory per connection, and the
latency of one active client among them.

Theory of operation
-------------------
From issue 3: idle connections (latency of one active client and memory per idle connection
as N grows).

C1M (issue 4).  ``idle`` climbs checkpoints (10k, 100k, 500k, 1M) of held keep-alive
connections, each having completed one request.  No process here may hold more than 20,000
fds, and one (source address, server port) pair has one ephemeral port range, so
``idle_plan`` spreads the top level over generator processes (<= 19,000 sockets each),
server workers and as many server ports (<= 19,000 each: SO_REUSEPORT hashes unevenly),
and 127.0.0.x sources (<= 10,000 per pair).  At each checkpoint: the count held, the time
to get there, memory per connection (the server tree's VmRSS, the generators' VmRSS, kernel
Slab and the TCP slab caches for both sides together), and one active client's latency
against its own p99 with no idle connections (goal: <= 2x).  The first level not reached
ends the run, with the reason named (``stop_reason``); the run is bounded by
``max_seconds``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from c10k.bench import client as gen
from c10k.bench import pingpong
from c10k.bench.machine import (
    nofile_soft,
    pids_fd_count,
    pids_rss_bytes,
    session_pids,
    slab_snapshot,
)
from c10k.bench.peers import RunningServer
from c10k.bench.scenarios.common import (
    Context,
    Options,
    _cpu_figures,
    _http_run_from_python,
    _python_http,
    tls_config,
)
from c10k.bench.scenarios.modem import plan_of as modem_plan_of

# Sockets per idle-holder process: the hard NOFILE limit here is 20,000 and cannot be
# raised, so ~1,000 stay free for the epoll fd, pipes, logs and the odd file.
PER_CLIENT_MAX = 19000
# Connections per server worker when the bench picks the worker count: a c10k worker caps
# itself at ~19,900 (RLIMIT_NOFILE minus its reserve), and SO_REUSEPORT hashes 4-tuples,
# so workers get unequal shares (about +-3 sqrt(share)); 19,000 leaves that headroom.
PER_WORKER_MAX = 19000


@dataclass(frozen=True)
class IdlePlan:
    """How an idle run is spread: generator processes, server workers and ports, sources.

    ``pairs`` (sources x ports) keeps each (source address, server port) pair at or below
    ``client.PER_SOURCE_MAX`` connections, so ``connect()`` always finds a free port fast.
    """

    levels: list[int]
    clients: int
    workers: int
    ports: int
    sources: list[str]
    notes: list[str]

    @property
    def top(self) -> int:
        return self.levels[-1]

    @property
    def pairs(self) -> int:
        return len(self.sources) * self.ports

    def to_json(self) -> dict[str, Any]:
        return {
            "levels": self.levels,
            "client_processes": self.clients,
            "server_workers": self.workers,
            "server_ports": self.ports,
            "sources": self.sources,
            "per_pair": math.ceil(self.top / self.pairs),
            "per_client": math.ceil(self.top / self.clients),
            "per_worker": math.ceil(self.top / self.workers),
        }


def idle_plan(
    levels: list[int],
    procs: int | None = None,
    server_workers: int | None = None,
    nofile: int | None = None,
) -> IdlePlan:
    """Spread ``max(levels)`` held connections over processes, ports and source addresses.

    >>> p = idle_plan([10_000, 100_000, 500_000, 1_000_000], nofile=20_000)
    >>> p.clients, p.workers, p.ports, len(p.sources), p.pairs * 10_000 >= 1_000_000
    (53, 53, 53, 2, True)
    >>> p = idle_plan([30_000], procs=2, server_workers=2, nofile=20_000)
    >>> p.clients, p.workers, p.ports, p.sources
    (2, 2, 2, ['127.0.0.2', '127.0.0.3'])
    >>> p = idle_plan([10, 50], nofile=20_000)
    >>> p.clients, p.workers, p.ports
    (1, 1, 1)
    """
    levels = sorted({n for n in levels if n > 0})
    if not levels:
        raise ValueError("idle: no connection count to hold")
    top = levels[-1]
    nofile = nofile or nofile_soft()
    per_client = max(64, min(PER_CLIENT_MAX, nofile - 1000 if nofile > 2000 else nofile // 2))
    per_worker = max(64, min(PER_WORKER_MAX, nofile - 1000 if nofile > 2000 else nofile // 2))
    notes = []
    need_clients = math.ceil(top / per_client)
    clients = max(procs or 0, need_clients)
    if procs and procs < need_clients:
        notes.append(
            f"idle: --procs {procs} raised to {clients}: {top} connections at most "
            f"{per_client} per process (RLIMIT_NOFILE {nofile})"
        )
    workers = server_workers or math.ceil(top / per_worker)
    ports = workers if workers > 1 else 1
    n_src = max(1, math.ceil(math.ceil(top / gen.PER_SOURCE_MAX) / ports))
    if n_src > 253:
        raise ValueError(f"idle: {top} connections need {n_src} source addresses (> 253)")
    sources = [f"127.0.0.{2 + i}" for i in range(n_src)]
    return IdlePlan(levels, clients, workers, ports, sources, notes)


def _idle_plan_of(scen: dict[str, Any], opts: Options) -> IdlePlan:
    return idle_plan(opts.idle_counts or scen["counts"], opts.procs, opts.server_workers)


def server_shape(scen: dict[str, Any], opts: Options) -> tuple[int, int]:
    """(ports, workers) the server of this scenario must be started with."""
    if scen["kind"] == "idle":
        plan = _idle_plan_of(scen, opts)
        return plan.ports, plan.workers
    if scen["kind"] == "modem":
        # One process holds at most ~19,000 users' fds (modem.py's module doc).
        n = modem_plan_of(scen, opts).workers
        return n, n
    return 1, 1


def stop_reason(
    errors: dict[str, int], pending: int, closed_by_server: int, server_error: str | None
) -> str:
    """Why a level was not reached, most specific first.

    >>> stop_reason({"eaddrnotavail": 3, "connect": 1}, 0, 0, None)
    'EADDRNOTAVAIL (no free source port: add source addresses or server ports)'
    >>> stop_reason({}, 12, 0, None)
    'timeout (12 connections still being set up at the deadline)'
    >>> stop_reason({"connect": 5}, 0, 0, "exited with -9")
    'server error: exited with -9'
    """
    if server_error:
        return f"server error: {server_error}"
    for kind, why in (
        ("emfile", "EMFILE (generator process out of fds)"),
        ("enfile", "ENFILE (system-wide file table full: fs.file-max)"),
        (
            "eaddrnotavail",
            "EADDRNOTAVAIL (no free source port: add source addresses or server ports)",
        ),
        ("enomem", "ENOMEM/ENOBUFS (kernel memory)"),
    ):
        if errors.get(kind):
            return why
    if pending:
        return f"timeout ({pending} connections still being set up at the deadline)"
    refused = {k: v for k, v in errors.items() if v}
    if refused or closed_by_server:
        parts = [f"{k} {v}" for k, v in sorted(refused.items())]
        if closed_by_server:
            parts.append(f"{closed_by_server} closed by the server (no keep-alive?)")
        return "server error: " + ", ".join(parts)
    return "unknown (fewer held than asked, no error seen)"


def _wait_stable_tree(sid: int, timeout: float, still: float = 1.0) -> int:
    """Wait until the session's process count has not changed for ``still`` seconds."""
    deadline = time.perf_counter() + timeout
    last, since = -1, time.perf_counter()
    while time.perf_counter() < deadline:
        n = len(session_pids(sid, live=True))
        now = time.perf_counter()
        if n != last:
            last, since = n, now
        elif now - since >= still:
            break
        time.sleep(0.2)
    return last


def _memory(srv: RunningServer, client_pids: list[int]) -> dict[str, Any]:
    pids = session_pids(srv.sid, live=True)
    return {
        "server_rss": pids_rss_bytes(pids),
        "server_processes": len(pids),
        "server_fds": pids_fd_count(pids),
        "client_rss": pids_rss_bytes(client_pids),
        "slab": slab_snapshot(),
    }


def _per_conn(now: dict[str, Any], base: dict[str, Any], held: int) -> dict[str, Any]:
    """Memory per held connection between two ``_memory`` snapshots."""
    if held <= 0:
        return {}

    def d(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else (a - b) / held

    sn, sb = now["slab"], base["slab"]
    caches = None
    if sn.get("caches") is not None and sb.get("caches") is not None:
        caches = {k: round((v - sb["caches"].get(k, 0)) / held, 1) for k, v in sn["caches"].items()}
    return {
        "rss_per_conn_bytes": d(now["server_rss"], base["server_rss"]),
        "client_rss_per_conn_bytes": d(now["client_rss"], base["client_rss"]),
        "slab_per_conn_bytes": d(sn.get("Slab"), sb.get("Slab")),
        "kernel_tcp_mem_per_conn_bytes": d(sn.get("tcp_mem_bytes"), sb.get("tcp_mem_bytes")),
        "slab_caches_per_conn_bytes": caches,
    }


def measure_idle(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Hold N idle keep-alive connections at each level; at each checkpoint measure memory
    per connection (server tree RSS, generator RSS, kernel slab) and an active client's
    latency.  Stops at the first level not reached and says why (``stop_reason``)."""
    plan = _idle_plan_of(scen, ctx.opts)
    for text in plan.notes:
        ctx.note(text)
    k = plan.clients
    limit_s = ctx.opts.idle_time_limit or scen["max_seconds"]
    configs = [
        {
            "mode": "idle",
            "host": srv.host,
            "port": srv.port,
            "ports": srv.ports,
            "path": scen["path"],
            "sources": plan.sources,
            "timeout": ctx.opts.timeout,
            "keepalive": True,
            "cpus": ctx.pin.generator_cpus,
            "index": i,
            "max_lifetime": limit_s + 300.0,
            **tls_config(srv),
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

    def control() -> dict[str, float]:
        # The machine's own round trip, pinned as the server and the active client are
        # (c10k.bench.pingpong): what the idle connections do to any wakeup, not c10k's.
        cpus = ctx.pin.generator_cpus
        return pingpong.round_trips(ctx.pin.server_cpu, cpus[0] if cpus else None, active_dur)

    t_start = time.perf_counter()
    deadline = t_start + limit_s
    ctx.progress(
        f"idle N=0 {srv.spec.name} ({plan.workers} server workers on {plan.ports} ports, "
        f"{k} client processes, {len(plan.sources)} source addresses)"
    )
    if plan.workers > 1:
        # A supervisor answers the probe as soon as its first worker listens; the baseline
        # RSS is taken once the rest are up too.
        _wait_stable_tree(srv.sid, 60.0 + plan.workers)
    ctx.sleep(scen["settle"])
    procs0 = len(session_pids(srv.sid, live=True))
    base = active_client()
    base_p99 = base["latency_ms"].get("p99")
    base_control = control()
    zero: dict[str, Any] = {
        "n": 0,
        "held": 0,
        "active": base,
        "control": base_control,
        "generator": "python",
        "latency_ms": base["latency_ms"],
        "rps": base["rps"],
        "plan": plan.to_json(),
    }
    out["N=0"] = zero
    timeline: list[list[float]] = [[0.0, 0]]
    latest: dict[int, int] = {}
    max_held = 0
    stopped_by: str | None = None
    with gen.LoadGenerator(configs, ctx.workdir / "logs") as lg:
        lg.wait_all("ready", 30.0 + k)
        lg.send({"cmd": "go"})
        client_pids = [p.pid for p in lg.procs]
        mem0 = _memory(srv, client_pids)
        zero.update(rss_bytes=mem0["server_rss"], memory=mem0)
        prev = 0
        for n in plan.levels:
            left = deadline - time.perf_counter()
            if left <= 1:
                stopped_by = f"time limit ({limit_s:.0f} s, --idle-time-limit)"
                break
            ctx.progress(f"idle N={n} {srv.spec.name}")
            shares = gen.split_evenly(n, k)
            setup = min(left, 60.0 + (n - prev) / scen["min_rate"])
            t0 = time.perf_counter()
            for i, share in enumerate(shares):
                lg.send({"cmd": "hold", "n": share, "timeout": setup}, only=i)
            try:
                msgs = _wait_held(lg, shares, setup + 30.0, timeline, t_start, latest)
            except gen.WorkerError as e:
                # A generator that died (the OOM killer, say) or hung: keep what was measured.
                stopped_by = f"generator error at N={n}: {str(e)[:300]}"
                break
            establish = time.perf_counter() - t0
            held = sum(m["held"] for m in msgs)
            max_held = max(max_held, held)
            errors: dict[str, int] = {}
            for m in msgs:
                for key, v in m["errors"].items():
                    errors[key] = errors.get(key, 0) + v
            pending = sum(m.get("pending", 0) for m in msgs)
            closed = sum(m["closed_by_server"] for m in msgs)
            ctx.sleep(scen["settle"])
            mem = _memory(srv, client_pids)
            server_error = None
            if not srv.alive():
                server_error = f"exited with {srv.proc.returncode}: {srv.log_tail(300)}"
            elif mem["server_processes"] < procs0:
                server_error = (
                    f"{procs0 - mem['server_processes']} of {procs0} server processes exited: "
                    f"{srv.log_tail(300)}"
                )
            rec: dict[str, Any] = {
                "n": n,
                "held": held,
                "served": sum(m.get("ok", 0) for m in msgs),
                "errors": errors,
                "pending": pending,
                "closed_by_server": closed,
                "establish_s": round(establish, 3),
                "conn_per_s": (held - prev) / establish if establish > 0 else None,
                "rss_bytes": mem["server_rss"],
                "memory": mem,
                **_per_conn(mem, mem0, held),
                "generator": "python",
            }
            if held < n or server_error:
                stopped_by = stop_reason(errors, pending, closed, server_error)
            if server_error is None:
                act = active_client()
                p99 = act["latency_ms"].get("p99")
                ctl = control()
                rec.update(
                    active=act,
                    latency_ms=act["latency_ms"],
                    rps=act["rps"],
                    p99_vs_zero=(p99 / base_p99) if p99 and base_p99 else None,
                    control=ctl,
                    control_p99_vs_zero=ctl["p99_ms"] / base_control["p99_ms"],
                )
                ctx.note(
                    f"idle {srv.spec.name} N={n}: control (a loopback ping-pong of two "
                    f"processes that are not c10k, pinned as the server and the active "
                    f"client): p99 {ctl['p99_ms']:.3f} ms, "
                    f"{rec['control_p99_vs_zero']:.2f}x its {base_control['p99_ms']:.3f} ms "
                    f"at N=0 (the active client: "
                    + (f"{rec['p99_vs_zero']:.2f}x)" if rec["p99_vs_zero"] else "-)")
                )
            out[f"N={n}"] = rec
            if stopped_by:
                break
            prev = held
        lg.send({"cmd": "stop"})
        try:
            lg.wait_all("result", 60.0 + plan.top / 20000)
        except gen.WorkerError as e:
            if stopped_by is None:
                raise
            ctx.note(f"idle {srv.spec.name}: after the stop: {str(e)[:200]}")
    zero.update(timeline=timeline, max_held=max_held, stopped_by=stopped_by)
    ctx.note(
        f"idle {srv.spec.name}: held at most {max_held} connections"
        + (f"; stopped by {stopped_by}" if stopped_by else f" (all {plan.top} asked)")
        + f"; {plan.workers} server workers on {plan.ports} ports, {k} generator processes, "
        f"{len(plan.sources)} source addresses"
    )
    last = out[list(out)[-1]]
    if last.get("slab_caches_per_conn_bytes"):
        caches = sorted(last["slab_caches_per_conn_bytes"].items(), key=lambda kv: -kv[1])
        ctx.note(
            f"idle {srv.spec.name} N={last['n']}: kernel slab per connection, both sides: "
            + ", ".join(f"{name} {v:.0f} B" for name, v in caches if v >= 1)
        )
    return out


def _wait_held(
    lg: gen.LoadGenerator,
    shares: list[int],
    timeout: float,
    timeline: list[list[float]] | None = None,
    t_start: float = 0.0,
    latest: dict[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Wait for every holder's ``held`` report of its share; ``progress`` reports (held per
    process, kept in ``latest`` across levels) extend ``timeline`` with [t, total held]."""
    got: dict[int, dict[str, Any]] = {}
    latest = {} if latest is None else latest
    deadline = time.perf_counter() + timeout
    while len(got) < len(shares):
        left = deadline - time.perf_counter()
        if left <= 0:
            raise gen.WorkerError("idle holders did not report in time")
        item = lg.next_event(left)
        if item is None:
            continue
        i, msg = item
        ev = msg.get("event")
        if ev == "progress" or (ev == "held" and msg.get("target") == shares[i]):
            latest[i] = msg["held"]
            if timeline is not None:
                timeline.append([round(time.perf_counter() - t_start, 2), sum(latest.values())])
        if ev == "held" and msg.get("target") == shares[i]:
            got[i] = msg
    return [got[i] for i in range(len(shares))]
