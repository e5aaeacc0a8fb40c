"""Kind ``modem``: Kegel's test 2 ("Measuring Server Performance").

Theory of operation
-------------------
How many 28.8 kbit/s clients can download at once "before performance goes to pot".  Scored
like dkftpbench: users are started one after another, each downloading a big file in a loop
at 3,600 B/s (28,800 bit/s / 8); a user fails if it cannot connect or if, after its first 10
packets, its rate is below 3/4 of the target; no users are added after the first failure (or
at ``max_users``); the score is the number still alive after a settle time.  Why pace in
packets: see ``client.py``.
"""

from __future__ import annotations

import time
from typing import Any

from c10k.bench import client as gen
from c10k.bench.machine import CpuSnapshot
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
