"""What every scenario kind shares: the run's options and context, the Python generator's
closed or open loop run, and the figures each run records.

Theory of operation
-------------------
Each run records: the generator (``wrk`` or ``python``), the measured window, requests,
errors by kind, req/s, MiB/s, latency percentiles, and the CPU figures of ``machine.py``:
``req_per_server_cpu_s`` (server process user+sys, children included) and
``req_per_busy_core_s`` (busy time of the server's pinned core: the efficiency figure).
``generator_saturated`` is set when the generator's core was over 90 % busy, i.e. the figure
may be the generator's ceiling rather than the server's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c10k.bench import client as gen
from c10k.bench.certs import TLSFiles
from c10k.bench.cpucap import CpuCap
from c10k.bench.machine import CpuSnapshot, Pinning
from c10k.bench.peers import RunningServer
from c10k.bench.stats import Histogram

KiB, MiB = 1 << 10, 1 << 20


@dataclass
class Options:
    """Run-wide settings (the CLI's options)."""

    duration: float = 10.0
    warmup: float = 2.0
    rounds: int = 2
    quick: bool = False
    generator: str = "auto"  # auto | wrk | h2load | python
    procs: int | None = None
    timeout: float = gen.DEFAULT_TIMEOUT
    connections: list[int] | None = None
    max_users: int | None = None
    idle_counts: list[int] | None = None
    poller_sizes: list[int] | None = None
    server_workers: int | None = None
    idle_time_limit: float | None = None
    multipliers: list[float] | None = None
    slow_conns: int | None = None
    slow_duration: float | None = None
    slow_modes: list[str] | None = None
    # Fraction of one core for the server (cgroup quota); None: the scenario's default,
    # 0: no cap.
    server_cpu: float | None = None
    # Every server over HTTPS with the run's certificate, every generator over TLS.
    tls: bool = False
    # --url-ca: the CA file that https --url endpoints are checked against (None: the
    # system's trust store).
    url_ca: str | None = None
    # --generator-on-server-core: overload's generator may also run on the capped server's
    # core, in the time its cap leaves (when one generator core cannot offer 3x the peak).
    generator_on_server_core: bool = False
    # --repeat-peak: overload measures each server's closed-loop peak again after its last
    # level (the row "peak again": how far the server's speed moved during the round).
    repeat_peak: bool = False


@dataclass
class Context:
    opts: Options
    pin: Pinning
    workdir: Path
    root: Path
    progress: Callable[[str], None] = lambda msg: None
    notes: list[str] = field(default_factory=list)
    cap: CpuCap | None = None
    tls: TLSFiles | None = None  # the run's certificate when ``opts.tls``

    def sleep(self, seconds: float) -> None:
        end = time.perf_counter() + seconds
        while (left := end - time.perf_counter()) > 0:
            time.sleep(min(left, 0.25))

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)


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


def tls_config(srv: RunningServer) -> dict[str, Any]:
    """What a Python generator process needs to reach ``srv`` beyond host and port: over
    TLS the CA it checks the certificate against (client.py, "TLS"); for a --url endpoint
    also the Host header and the TLS server name of its URL (``endpoint.py``)."""
    return srv.generator_target()


def sources_for(srv: RunningServer, n_conns: int, churn: bool = False) -> list[str]:
    """Source addresses for ``n_conns`` connections (client.py says why several): 127.0.0.x,
    so only towards an IPv4 loopback server; ``churn`` (a new connection per request)
    spreads the 4-tuples over 4 even when few are open at once.  [] (the kernel picks)
    for a --url endpoint elsewhere."""
    if not srv.host.startswith("127."):
        return []
    sources = gen.source_addresses(n_conns)
    if churn and len(sources) < 4:
        sources = [f"127.0.0.{2 + i}" for i in range(4)]
    return sources


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
    discard: bool = False,
) -> tuple[dict[str, Any], CpuSnapshot, CpuSnapshot]:
    """Run the Python generator; returns (merged result, cpu before, cpu after).
    ``discard``: bodies dropped in the kernel (client.py)."""
    inflight = conns if mode == "closed" else max(1, int(rate * (timeout or ctx.opts.timeout)))
    k = gen.plan_processes(inflight, ctx.opts.procs)
    if mode == "open":
        k = min(k, 4)
    sources = sources_for(srv, inflight, churn=close)
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
                "discard": discard,
                **tls_config(srv),
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
        # Over TLS: handshakes in the window, and how many resumed a session (tlswire.py).
        **(
            {"tls_handshakes": m["tls_handshakes"], "tls_resumed": m["tls_resumed"]}
            if m["tls_handshakes"]
            else {}
        ),
        "histogram": hist.to_json(),
    }
