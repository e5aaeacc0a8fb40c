"""Kind ``modem``: Kegel's test 2 ("Measuring Server Performance").

Theory of operation
-------------------
How many 28.8 kbit/s clients can download at once "before performance goes to pot".  Scored
like dkftpbench: users are started one after another, each downloading a big file in a loop
at 3,600 B/s (28,800 bit/s / 8); a user fails if it cannot connect or if, after its first 10
packets, its rate is below 3/4 of the target; no users are added after the first failure (or
at ``max_users``); the score is the number still alive after a settle time.  Why pace in
packets and announce a 1,460-byte MSS: see ``client.py``.

What gives out first is recorded with its evidence (``bound``): the kernel's TCP memory
(``/proc/net/sockstat`` sampled every 0.5 s against ``net.ipv4.tcp_mem``: past its middle
value the kernel is under memory pressure and shrinks every socket's buffers, so slow users
starve), the CPU of either side, or neither.  CPU is judged where it matters, over the
``CPU_WINDOW_S`` before the first failure (or the end of the ramp): a run-wide average over a
ramp from zero says little about its top.  At that moment ``ss`` splits the kernel's TCP
memory between the server's sockets and the generator's (``machine.tcp_memory_by_side``):
on loopback both ends of every connection are charged to the one ``tcp_mem`` budget.  The
kernel's pressure flag (``/proc/net/protocols``) is sampled beside the page count: it stays
on until usage falls below ``tcp_mem``'s first value, and a user stalled under pressure may
fail later, so a failure is judged by when its data stopped (``stalled_s``).  A user the
server closed while it was still receiving is named as such (nginx's ``send_timeout`` after
a pressure episode, in docs/BENCHMARKS.md's 50,000-user run).

Scale (``modem_plan``).  One process may hold 20,000 fds here (a hard limit), so more users
than ~19,000 start the server with one worker, and one port, per 19,000 (the same for every
server: nginx one process per port, c10k ``--workers N`` with every port); the generator
runs one process per ``client.PER_PROCESS_MAX`` users (all on the generator's core), and
127.0.0.x sources keep each (source, port) pair to ``client.PER_SOURCE_MAX``.  A user reads
``read_packets`` packets' worth per wake-up (client.py, "Why pace in packets"): the same
3,600 B/s, a quarter of the generator's wake-ups.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from c10k.bench import client as gen
from c10k.bench.machine import (
    CpuSnapshot,
    nofile_soft,
    sockstat_tcp,
    tcp_mem_limits,
    tcp_memory_counters,
    tcp_memory_pressure,
    tcp_memory_sides,
)
from c10k.bench.peers import RunningServer
from c10k.bench.scenarios.common import (
    Context,
    MiB,
    Options,
    _cpu_figures,
    sources_for,
    tls_config,
)

# Sockets per generator process and users per server worker: the hard NOFILE limit here is
# 20,000 and cannot be raised, so ~1,000 fds stay free (epoll, pipes, logs, the served
# file); SO_REUSEPORT hashes users over a c10k's workers unevenly (+-3 sqrt(share)), which
# 19,000 leaves room for.  The same figures as the idle scenario's.
PER_PROCESS_FDS = 19000
PER_WORKER_MAX = 19000
# CPU is judged over this many seconds before the first failure (module doc).
CPU_WINDOW_S = 5.0
# A user closed by the server that had data less than this long before (a read tick is
# 1.6 s at 3,600 B/s) was still receiving: the server closed it, nothing starved it.
SERVER_CLOSE_STALL_S = 5.0


@dataclass(frozen=True)
class ModemPlan:
    """How a modem run is spread: generator processes, server workers (= ports)."""

    users: int
    procs: int
    workers: int

    def to_json(self) -> dict[str, Any]:
        return {
            "generator_processes": self.procs,
            "server_workers": self.workers,
            "server_ports": self.workers,
            "users_per_process": math.ceil(self.users / self.procs),
            "users_per_worker": math.ceil(self.users / self.workers),
        }


def modem_plan(
    users: int,
    procs: int | None = None,
    server_workers: int | None = None,
    nofile: int | None = None,
) -> ModemPlan:
    """Generator processes and server workers for ``users`` modem users (the module doc).

    >>> p = modem_plan(50_000, nofile=20_000)
    >>> p.procs, p.workers
    (7, 3)
    >>> modem_plan(3_000, nofile=20_000)
    ModemPlan(users=3000, procs=1, workers=1)
    >>> modem_plan(40_000, procs=1, nofile=20_000)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: modem: 40,000 users need at least 3 generator processes ... is too few
    """
    if users < 1:
        raise ValueError(f"modem: --max-users must be at least 1, not {users}")
    nofile = nofile or nofile_soft()
    per_fds = max(64, min(PER_PROCESS_FDS, nofile - 1000 if nofile > 2000 else nofile // 2))
    per_worker = max(64, min(PER_WORKER_MAX, nofile - 1000 if nofile > 2000 else nofile // 2))
    need_procs = math.ceil(users / per_fds)
    if procs is not None and procs < need_procs:
        raise ValueError(
            f"modem: {users:,} users need at least {need_procs} generator processes "
            f"({per_fds:,} sockets each at most, RLIMIT_NOFILE {nofile:,}); --procs {procs} "
            "is too few"
        )
    need_workers = math.ceil(users / per_worker)
    if server_workers is not None and server_workers < need_workers:
        raise ValueError(
            f"modem: {users:,} users need at least {need_workers} server workers "
            f"({per_worker:,} users each at most, RLIMIT_NOFILE {nofile:,}); "
            f"--server-workers {server_workers} is too few"
        )
    # CPU, not fds, sets the default process count: PER_PROCESS_MAX sockets each.
    k = procs or max(need_procs, math.ceil(users / gen.PER_PROCESS_MAX))
    return ModemPlan(users, min(k, users), server_workers or need_workers)


def plan_of(scen: dict[str, Any], opts: Options) -> ModemPlan:
    """The plan of this run (its options over the scenario's defaults)."""
    users = opts.max_users if opts.max_users is not None else scen["max_users"]
    return modem_plan(users, opts.procs, opts.server_workers)


def measure_modem(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Kegel test 2, dkftpbench rules (see the module doc)."""
    plan = plan_of(scen, ctx.opts)
    max_users, k = plan.users, plan.procs
    sources = sources_for(srv, max_users)
    label = scen["variations"][0]["label"]
    ramp = max_users * scen["interval"]
    configs = [
        {
            "mode": "modem",
            "host": srv.host,
            "port": srv.port,
            "ports": srv.ports,
            "mss": scen.get("mss", 0),
            "path": scen["path"],
            "rate": scen["rate"],
            "packet": scen["packet"],
            "read_packets": scen.get("read_packets", 1),
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
            **tls_config(srv),
        }
        for i, n in enumerate(gen.split_evenly(max_users, k))
    ]
    ctx.progress(
        f"modem {label} {srv.spec.name}: up to {max_users} users, "
        f"one every {scen['interval'] * 1000:.0f} ms"
    )
    first_fail: dict[str, Any] | None = None
    kernel: list[list[Any]] = []  # [t, TCP sockets in use, TCP memory pages, pressure]
    # [t, server process CPU s, server core busy s, generator core busy s] since "go"
    cpu_tl: list[list[float]] = []
    sides: dict[str, Any] | None = None  # TCP memory by side at the bound (module doc)
    server_ports = set(srv.ports or [srv.port])
    n_gen = len(ctx.pin.generator_cpus or [0])
    with gen.LoadGenerator(configs, ctx.workdir / "logs") as lg:
        lg.wait_all("ready", 30.0 + k)
        before = CpuSnapshot.take(srv.sid, ctx.pin)
        counters_before = tcp_memory_counters()
        lg.send({"cmd": "go"})
        t_go = time.perf_counter()
        done_adding: set[int] = set()
        settle_end: float | None = None
        hard_end = t_go + ramp + scen["settle"] + 60.0
        next_sample = t_go
        while True:
            now = time.perf_counter()
            if (settle_end is not None and now >= settle_end) or now >= hard_end:
                break
            if now >= next_sample:
                tcp = sockstat_tcp()
                press = tcp_memory_pressure()
                kernel.append(
                    [
                        round(now - t_go, 3),
                        tcp.get("inuse", 0),
                        tcp.get("mem", 0),
                        None if press is None else int(press),
                    ]
                )
                c = CpuSnapshot.take(srv.sid, ctx.pin)
                cpu_tl.append(
                    [
                        round(c.t - t_go, 3),
                        round(c.server_proc - before.server_proc, 3),
                        round(c.server_core - before.server_core, 3),
                        round((c.generator_core - before.generator_core) / n_gen, 3),
                    ]
                )
                next_sample += 0.5
            item = lg.next_event(
                0.1 if settle_end is None else min(0.1, max(0.0, settle_end - now))
            )
            if item is None:
                continue
            i, msg = item
            ev = msg.get("event")
            if ev == "fail" and first_fail is None:
                first_fail = {**msg, "t": round(time.perf_counter() - t_go, 3)}
                first_fail.pop("event", None)
                first_fail["tcp_mem_pages"] = sockstat_tcp().get("mem", 0)
                first_fail["tcp_pressure"] = tcp_memory_pressure()
                lg.send({"cmd": "stop-adding"})
                sides = _sides(server_ports, ctx)
                settle_end = time.perf_counter() + scen["settle"]
            elif ev == "done-adding":
                done_adding.add(i)
                if len(done_adding) == k and settle_end is None:
                    sides = _sides(server_ports, ctx)
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
        "reads": sum(r.get("reads", 0) for r in results),
        "mib_s": sum(r["bytes"] for r in results) / elapsed / MiB,
        "elapsed_s": elapsed,
        "timeline": timeline,
        "max_users": max_users,
        "rate_bytes_s": scen["rate"],
    }
    _cpu_figures(run, before, after, ctx.pin, run["downloads"])
    counters_after = tcp_memory_counters()
    run["kernel"] = {
        "tcp_mem_limits": tcp_mem_limits(),
        # [t, TCP sockets in use, TCP memory pages, under memory pressure (1/0)]
        "timeline": kernel,
        "sides": sides,
        "counters": {k: v - counters_before.get(k, 0) for k, v in counters_after.items()},
        "pressure_episodes": pressure_episodes(kernel, timeline),
    }
    run["plan"] = plan.to_json()
    run["read_packets"] = scen.get("read_packets", 1)
    run["cpu_timeline"] = cpu_tl
    t_bound = first_fail["t"] if first_fail else _ramp_end(timeline, max_users)
    run["cpu_at_bound"] = cpu_window(cpu_tl, t_bound)
    run["bound"] = modem_bound(run)
    # Per "request" here means per completed download; keep only the CPU-second figures.
    run["downloads_per_server_cpu_s"] = run.pop("req_per_server_cpu_s")
    run.pop("req_per_busy_core_s", None)
    run["server_cpu_per_user_ms"] = (
        run["cpu"]["server_cpu_s"] / run["started"] * 1000 if run["started"] else None
    )
    return {label: run}


def _sides(server_ports: set[int], ctx: Context) -> dict[str, Any] | None:
    ctx.progress("  modem: TCP memory by side (ss)")
    return tcp_memory_sides(server_ports)


def _ramp_end(timeline: list[list[float]], users: int) -> float:
    """When the merged timeline first shows every user started (else its last point)."""
    for t, _alive, started in timeline:
        if started >= users:
            return t
    return timeline[-1][0] if timeline else 0.0


def cpu_window(
    cpu_tl: list[list[float]], t_end: float, span: float = CPU_WINDOW_S
) -> dict[str, float] | None:
    """Busy fractions over the ``span`` seconds up to ``t_end`` of a CPU timeline
    (``[t, server process s, server core s, generator core s]``, cumulative; the
    generator's is per core when it has several).

    >>> tl = [[0.0, 0, 0, 0], [5.0, 1.0, 1.5, 4.0], [10.0, 3.0, 4.0, 9.0]]
    >>> cpu_window(tl, 10.0)
    {'from_s': 5.0, 'to_s': 10.0, 'server_process': 0.4, 'server_core': 0.5, 'generator_core': 1.0}
    """
    upto = [p for p in cpu_tl if p[0] <= t_end + 0.5] or cpu_tl[:1]
    if not upto:
        return None
    b = upto[-1]
    a = next((p for p in reversed(upto) if p[0] <= b[0] - span), upto[0])
    w = b[0] - a[0]
    if w <= 0:
        return None
    return {
        "from_s": a[0],
        "to_s": b[0],
        "server_process": round((b[1] - a[1]) / w, 3),
        "server_core": round((b[2] - a[2]) / w, 3),
        "generator_core": round((b[3] - a[3]) / w, 3),
    }


def pressure_episodes(kernel: list[list[Any]], timeline: list[list[float]]) -> list[dict[str, Any]]:
    """Spans of the kernel timeline under TCP memory pressure: when each began and ended
    (None: still on at the end), with the users started and the pages in use as it began.

    >>> k = [[0.0, 2, 10, 0], [0.5, 4, 30, 1], [1.0, 4, 20, 1], [1.5, 4, 5, 0], [2.0, 4, 31, 1]]
    >>> for e in pressure_episodes(k, [[0.0, 1, 1], [0.5, 2, 2]]):
    ...     print(e)
    {'from_s': 0.5, 'to_s': 1.5, 'users': 2, 'pages': 30}
    {'from_s': 2.0, 'to_s': None, 'users': 2, 'pages': 31}
    """
    out: list[dict[str, Any]] = []
    for p in kernel:
        on = len(p) > 3 and p[3] == 1
        if on and (not out or out[-1]["to_s"] is not None):
            users = max((int(s) for t, _a, s in timeline if t <= p[0] + 0.5), default=0)
            out.append({"from_s": p[0], "to_s": None, "users": users, "pages": p[2]})
        elif not on and out and out[-1]["to_s"] is None:
            out[-1]["to_s"] = p[0]
    return out


def _under_pressure(episodes: list[dict[str, Any]], t: float) -> dict[str, Any] | None:
    for e in episodes:
        if e["from_s"] - 0.5 <= t and (e["to_s"] is None or t <= e["to_s"]):
            return e
    return None


def modem_bound(run: dict[str, Any]) -> str:
    """What gave out first, from the run's evidence (the module doc).

    >>> base = {"max_users": 100, "score": 100, "first_failure": None,
    ...         "kernel": {"tcp_mem_limits": [10, 20, 30], "timeline": [[1.0, 4, 12]]}}
    >>> modem_bound(base)
    'not reached: all 100 users kept (raise --max-users); peak TCP memory 12 pages (pressure at 20)'
    >>> modem_bound({**base, "first_failure": {"reason": "slow", "t": 5.0,
    ...              "tcp_mem_pages": 25}})[:40]
    'kernel TCP memory: 25 pages in use at th'
    >>> modem_bound({**base, "generator_saturated": True, "first_failure": {"reason": "slow",
    ...              "t": 5.0, "tcp_mem_pages": 2}})[:13]
    'generator CPU'
    >>> eps = [{"from_s": 85.0, "to_s": 170.0, "users": 8500, "pages": 383414}]
    >>> ff = {"reason": "eof", "t": 189.6, "stalled_s": 60.0, "tcp_mem_pages": 15}
    >>> modem_bound({**base, "kernel": {**base["kernel"], "pressure_episodes": eps},
    ...              "first_failure": ff})  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    'kernel TCP memory: the first failure (eof at 189.6 s, no data for 60.0 s before it) began
    under TCP memory pressure (entered at 85.0 s with 8,500 users ... left at 170.0 s; ...)'
    >>> ff = {"reason": "eof", "t": 189.7, "stalled_s": 0.0, "tcp_mem_pages": 15}
    >>> modem_bound({**base, "kernel": {**base["kernel"], "pressure_episodes": eps},
    ...              "first_failure": ff})  # doctest: +ELLIPSIS +NORMALIZE_WHITESPACE
    'server closed users that were still receiving: first failure eof at 189.7 s, data until
    0.0 s before it, after TCP memory pressure (entered at 85.0 s ... left at 170.0 s; ...)'
    >>> modem_bound({**base, "cpu_at_bound": {"from_s": 0.0, "to_s": 5.0,
    ...              "server_process": 0.2, "server_core": 0.95, "generator_core": 0.5},
    ...              "first_failure": {"reason": "slow", "t": 5.0, "tcp_mem_pages": 2}})
    "server CPU: the server's core 95% busy in the 5 s before the first failure (slow)"
    """
    limits = run["kernel"]["tcp_mem_limits"]
    pressure = limits[1] if len(limits) == 3 else None
    win = run.get("cpu_at_bound")
    if win:
        span = f"{win['to_s'] - win['from_s']:.0f} s"
        gen_busy, srv_busy = win["generator_core"], win["server_core"]
        gen_hot = gen_busy >= 0.9
    else:
        span = "run"
        gen_busy, srv_busy = None, run.get("server_core_busy_fraction")
        gen_hot = bool(run.get("generator_saturated"))
    cores = (
        f"; cores in the last {span}: server {srv_busy:.0%}, generator {gen_busy:.0%}"
        if win
        else ""
    )
    ff = run.get("first_failure")
    if not ff:
        peak = max((p[2] for p in run["kernel"]["timeline"]), default=0)
        return (
            f"not reached: all {run['max_users']} users kept (raise --max-users); peak TCP "
            f"memory {peak} pages (pressure at {pressure if pressure else '?'}){cores}"
        )
    mem = ff.get("tcp_mem_pages", 0)
    if pressure is not None and mem >= pressure:
        return (
            f"kernel TCP memory: {mem} pages in use at the first failure ({ff.get('reason')}), "
            f"past tcp_mem pressure ({pressure} pages){cores}"
        )
    # The kernel leaves pressure only below tcp_mem's first value, and a user stalled
    # under pressure may be failed later (by its rate, or by the server's send timeout):
    # judge the moment its data stopped.
    episodes = run["kernel"].get("pressure_episodes") or []
    stall_t = ff["t"] - ff.get("stalled_s", 0.0)
    ep = _under_pressure(episodes, stall_t) or _under_pressure(episodes, ff["t"])
    stalled_s = ff.get("stalled_s")
    if ff.get("reason") == "eof" and stalled_s is not None and stalled_s < SERVER_CLOSE_STALL_S:
        # The user had data until the server closed: the server's own decision (a send
        # time-out: nginx closes a connection it could not write to for send_timeout, 60 s),
        # named with the pressure episode that preceded it, if one did.
        before = [e for e in episodes if e["from_s"] <= ff["t"]]
        after_pressure = ""
        if before:
            e = before[-1]
            left = "still on" if e["to_s"] is None else f"left at {e['to_s']:.1f} s"
            after_pressure = (
                f", after TCP memory pressure (entered at {e['from_s']:.1f} s with "
                f"{e['users']:,} users and {e['pages']} pages, {left}; pressure line "
                f"{pressure} pages)"
            )
        return (
            f"server closed users that were still receiving: first failure eof at "
            f"{ff['t']:.1f} s, data until {stalled_s:.1f} s before it{after_pressure}{cores}"
        )
    if ep is not None or ff.get("tcp_pressure"):
        since = "flagged at the failure"
        if ep is not None:
            left = "the end" if ep["to_s"] is None else f"{ep['to_s']:.1f} s"
            since = (
                f"entered at {ep['from_s']:.1f} s with {ep['users']:,} users and "
                f"{ep['pages']} pages, left at {left}"
            )
        stalled = f", no data for {ff['stalled_s']:.1f} s before it" if ff.get("stalled_s") else ""
        return (
            f"kernel TCP memory: the first failure ({ff.get('reason')} at {ff['t']:.1f} s"
            f"{stalled}) began under TCP memory pressure ({since}; pressure line "
            f"{pressure} pages){cores}"
        )
    if gen_hot:
        return f"generator CPU: the generator's core was saturated{cores}"
    if srv_busy is not None and srv_busy >= 0.9:
        where = f"in the {span} before the first failure ({ff.get('reason')})" if win else ""
        return f"server CPU: the server's core {srv_busy:.0%} busy {where}".rstrip()
    return (
        f"not identified: first failure {ff.get('reason')} at {ff.get('t')} s with "
        f"{mem} TCP memory pages (pressure at {pressure if pressure else '?'}), server core "
        f"{srv_busy if srv_busy is None else f'{srv_busy:.0%}'} busy{cores}"
    )
