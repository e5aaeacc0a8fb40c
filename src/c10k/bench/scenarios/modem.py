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
starve), the CPU of either side, or neither.  More users than one process may hold fds for
(about 19,000 here) start the server with one worker, and one port, per 19,000
(``server_shape``), the same for every server.
"""

from __future__ import annotations

import time
from typing import Any

from c10k.bench import client as gen
from c10k.bench.machine import CpuSnapshot, sockstat_tcp, tcp_mem_limits
from c10k.bench.peers import RunningServer
from c10k.bench.scenarios.common import Context, MiB, _cpu_figures, sources_for, tls_config


def measure_modem(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Kegel test 2, dkftpbench rules (see the module doc)."""
    max_users = ctx.opts.max_users or scen["max_users"]
    k = gen.plan_processes(max_users, ctx.opts.procs)
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
    kernel: list[list[float]] = []  # [t, TCP sockets in use, TCP memory pages]
    with gen.LoadGenerator(configs, ctx.workdir / "logs") as lg:
        lg.wait_all("ready", 30.0)
        before = CpuSnapshot.take(srv.sid, ctx.pin)
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
                kernel.append([round(now - t_go, 3), tcp.get("inuse", 0), tcp.get("mem", 0)])
                next_sample += 0.5
            item = lg.next_event(0.1 if settle_end is None else max(0.0, settle_end - now))
            if item is None:
                continue
            i, msg = item
            ev = msg.get("event")
            if ev == "fail" and first_fail is None:
                first_fail = {**msg, "t": round(time.perf_counter() - t_go, 3)}
                first_fail.pop("event", None)
                first_fail["tcp_mem_pages"] = sockstat_tcp().get("mem", 0)
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
    run["kernel"] = {"tcp_mem_limits": tcp_mem_limits(), "timeline": kernel}
    run["bound"] = modem_bound(run)
    # Per "request" here means per completed download; keep only the CPU-second figures.
    run["downloads_per_server_cpu_s"] = run.pop("req_per_server_cpu_s")
    run.pop("req_per_busy_core_s", None)
    run["server_cpu_per_user_ms"] = (
        run["cpu"]["server_cpu_s"] / run["started"] * 1000 if run["started"] else None
    )
    return {label: run}


def modem_bound(run: dict[str, Any]) -> str:
    """What gave out first, from the run's evidence (the module doc).

    >>> base = {"max_users": 100, "score": 100, "first_failure": None,
    ...         "kernel": {"tcp_mem_limits": [10, 20, 30], "timeline": []}}
    >>> modem_bound(base)
    'not reached: all 100 users kept (raise --max-users)'
    >>> modem_bound({**base, "first_failure": {"reason": "slow", "t": 5.0,
    ...              "tcp_mem_pages": 25}})[:40]
    'kernel TCP memory: 25 pages in use at th'
    >>> modem_bound({**base, "generator_saturated": True, "first_failure": {"reason": "slow",
    ...              "t": 5.0, "tcp_mem_pages": 2}})[:13]
    'generator CPU'
    """
    ff = run.get("first_failure")
    if not ff:
        return f"not reached: all {run['max_users']} users kept (raise --max-users)"
    limits = run["kernel"]["tcp_mem_limits"]
    mem = ff.get("tcp_mem_pages", 0)
    if len(limits) == 3 and mem >= limits[1]:
        return (
            f"kernel TCP memory: {mem} pages in use at the first failure, past tcp_mem "
            f"pressure ({limits[1]} pages)"
        )
    if run.get("generator_saturated"):
        return "generator CPU: the generator's core was saturated"
    busy = run.get("server_core_busy_fraction")
    if busy is not None and busy >= 0.9:
        return f"server CPU: the server's core {busy:.0%} busy"
    return (
        f"not identified: first failure {ff.get('reason')} at {ff.get('t')} s with "
        f"{mem} TCP memory pages (pressure at {limits[1] if limits else '?'}), server core "
        f"{busy if busy is None else f'{busy:.0%}'} busy"
    )
