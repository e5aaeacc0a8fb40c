"""h2load (Debian package ``nghttp2-client``) as the overload scenario's generator.

Theory of operation
-------------------
The overload scenario offers multiples of a server's measured peak in an open loop, a new
connection per request.  A Python generator on one core cannot offer that much; h2load (C,
libev) can, in two modes:

- *peak*, closed loop: ``h2load --h1 -n N -c 64 -H 'Connection: close' URL``.  h2load
  reconnects after every ``Connection: close`` response (one accept per request).
- *rate*, open loop: ``-r R --rate-period 10ms -c C -n C -T D -N D``: R new connections every
  period (10 ms: a burst of SYNs all pass the kernel's "accept queue not full" check
  before their ACKs find one free slot, so bursts of R every 100 ms, as at first, made
  more connections half-open; independent clients do not arrive in bursts), C in all, one
  request each (``-n == -c``); ``-T``/``-N`` close a connection D seconds after its request
  was written or after D seconds without activity.

Pitfalls of h2load 1.52 this module avoids: ``-D`` (timing mode) with ``Connection: close``
never ends, so runs are sized with ``-n``; ``--rate-period`` needs a unit; and every run is
bounded by a time-out (a connection whose SYN the server drops is not covered by ``-T``,
which starts when the request is written, so h2load can wait for SYN retransmits for minutes).
A run stopped at the time-out prints no summary; its figures then come from the log alone.

Figures.  ``--log-file`` has one line per completed response: start (µs since the epoch,
taken when the request is written, i.e. *after* connect), status (``-1``: the stream ended
without a response) and µs until the response ended.  Failures and time-outs appear only in
the summary (``requests: N total, S started, D done, K succeeded, F failed, E errored, T
timeout``).  Goodput counts the 2xx responses that completed within the deadline while the
overload stood: from the warm-up (2 s) after the first request to the end of the offering
window (first request start + C / rate), per second of that span.
``goodput_from_start_rps`` counts from the first request (a server's standing queue then
costs it its last entries, answered after the window); ``goodput_all_rps`` counts every 2xx
within the deadline, also those completed after the window (a deep queue drained after the
load stopped).  Admitted
latency (the p50/p99 reported) is of the goodput responses; h2load's latency excludes the time
to connect, which the summary gives per connection (``connect_ms``).

TLS (``--tls``): the URL is ``https://``; ``--h1`` is ``--npn-list=http/1.1`` as well, so
h2load offers ALPN http/1.1 and nothing else.  It accepts any certificate (it has no
option to verify one) and resumes the previous connection's session on a new one.

fd budget.  h2load holds up to rate x deadline connections; when rate x deadline x 1.2 is more
than the fd soft limit (minus a margin), the rate is split over several h2load processes, all
pinned to the generator core(s), each with its own log, and their figures are merged.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c10k.bench.machine import pin_argv
from c10k.bench.stats import Histogram

MISSING_NOTE = (
    "h2load not found: the overload figures come from the Python generator, which cannot "
    "offer 3x a fast server from one core; apt install nghttp2-client gives the C generator"
)
FD_MARGIN = 256
PERIOD_MS = 10
MIN_PER_PERIOD = 20  # rounding R to an integer then moves the rate by at most 2.5 %


def h2load_binary() -> str | None:
    return shutil.which("h2load")


@dataclass(frozen=True)
class RatePlan:
    """An open-loop run: ``per_period`` new connections every ``period_ms``, for ``ticks``
    periods, split over processes (``shares``: each one's connections per period)."""

    per_period: int
    period_ms: int
    ticks: int
    shares: tuple[int, ...]

    @property
    def rate(self) -> float:
        """Offered connections (= requests) per second."""
        return self.per_period * 1000.0 / self.period_ms

    @property
    def total(self) -> int:
        return self.per_period * self.ticks

    @property
    def window_s(self) -> float:
        return self.ticks * self.period_ms / 1000.0

    def conns(self, i: int) -> int:
        """Connections process ``i`` makes (its share of each period, every period)."""
        return self.shares[i] * self.ticks


def plan_rate(
    target_rps: float,
    duration_s: float,
    deadline_s: float,
    fd_soft: int,
    margin: int = FD_MARGIN,
    period_ms: int = PERIOD_MS,
) -> RatePlan:
    """How to offer ``target_rps`` for about ``duration_s`` within the fd budget.

    The period is 10 ms unless that would start fewer than ``MIN_PER_PERIOD`` connections
    per period (the rounding of R to an integer would then move the rate by more than
    2.5 %).

    >>> p = plan_rate(5220, 8.0, 2.0, 20000)
    >>> p.per_period, p.period_ms, p.ticks, p.total, p.window_s, p.shares
    (52, 10, 800, 41600, 8.0, (52,))
    >>> plan_rate(8310, 10.0, 2.0, 20000).shares  # 8310 x 2 x 1.2 > 20000 - 256
    (42, 41)
    >>> p = plan_rate(1668, 10.0, 2.0, 20000)
    >>> p.per_period, p.period_ms, round(p.rate)
    (20, 12, 1667)
    >>> p = plan_rate(30, 2.0, 1.0, 1024)
    >>> p.per_period, p.period_ms, p.rate, p.total
    (20, 667, 29.985007496251875, 60)
    """
    if target_rps <= 0:
        raise ValueError(f"offered rate must be > 0: {target_rps}")
    if target_rps * period_ms / 1000.0 < MIN_PER_PERIOD:
        period_ms = min(10_000, math.ceil(MIN_PER_PERIOD * 1000.0 / target_rps))
    per_period = max(1, round(target_rps * period_ms / 1000.0))
    ticks = max(1, round(duration_s * 1000.0 / period_ms))
    rate = per_period * 1000.0 / period_ms
    budget = max(64, fd_soft - margin)
    procs = min(per_period, max(1, math.ceil(rate * deadline_s * 1.2 / budget)))
    base, extra = divmod(per_period, procs)
    shares = tuple(base + (1 if i < extra else 0) for i in range(procs))
    return RatePlan(per_period, period_ms, ticks, shares)


def peak_argv(
    binary: str, url: str, requests: int, conns: int, log_file: Path | None = None
) -> list[str]:
    """Closed loop, a new connection per request (h2load reconnects after each close).

    >>> peak_argv("h2load", "http://h:1/s", 100, 64)
    ['h2load', '--h1', '-n', '100', '-c', '64', '-H', 'Connection: close', 'http://h:1/s']
    """
    argv = [binary, "--h1", "-n", str(max(requests, conns)), "-c", str(conns)]
    argv += ["-H", "Connection: close"]
    if log_file is not None:
        argv.append(f"--log-file={log_file}")
    return [*argv, url]


def rate_argv(
    binary: str,
    url: str,
    per_period: int,
    period_ms: int,
    conns: int,
    deadline_s: float,
    log_file: Path,
) -> list[str]:
    """Open loop: ``per_period`` new connections every ``period_ms``, ``conns`` in all.

    >>> rate_argv("h2load", "http://h:1/s", 522, 100, 41760, 2.0, Path("/t/l.tsv"))[1:12]
    ['--h1', '-r', '522', '--rate-period', '100ms', '-c', '41760', '-n', '41760', '-T', '2']
    """
    t = f"{deadline_s:g}"
    return [
        binary,
        "--h1",
        "-r",
        str(per_period),
        "--rate-period",
        f"{period_ms}ms",
        "-c",
        str(conns),
        "-n",
        str(conns),
        "-T",
        t,
        "-N",
        t,
        "-H",
        "Connection: close",
        f"--log-file={log_file}",
        url,
    ]


_REQ_RE = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
    r"(\d+) failed, (\d+) errored, (\d+) timeout"
)
_STATUS_RE = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_FINISHED_RE = re.compile(r"finished in ([\d.]+)(us|ms|s)\b")
_CONNECT_RE = re.compile(
    r"time for connect:\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)\s+([\d.]+)(us|ms|s)"
)
_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def parse_summary(text: str) -> dict[str, Any] | None:
    """h2load's stdout -> counts (None if it printed no ``requests:`` line).

    >>> s = parse_summary("finished in 1.91s, 524.20 req/s, 0B/s\\n"
    ...     "requests: 1000 total, 990 started, 985 done, 900 succeeded, 85 failed, "
    ...     "15 errored, 10 timeout\\n"
    ...     "status codes: 900 2xx, 0 3xx, 0 4xx, 70 5xx\\n"
    ...     "time for connect:       92us      3.21ms       985us       601us    71.00%\\n")
    >>> s["started"], s["timeout"], s["status"]["5xx"], s["finished_s"], s["connect_ms"]
    (990, 10, 70, 1.91, {'min': 0.092, 'max': 3.21, 'mean': 0.985})
    """
    m = _REQ_RE.search(text)
    if m is None:
        return None
    keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
    out: dict[str, Any] = dict(zip(keys, map(int, m.groups()), strict=True))
    st = _STATUS_RE.search(text)
    out["status"] = dict(
        zip(("2xx", "3xx", "4xx", "5xx"), map(int, st.groups()) if st else (0,) * 4, strict=True)
    )
    f = _FINISHED_RE.search(text)
    out["finished_s"] = round(float(f.group(1)) * _UNIT[f.group(2)] / 1e3, 6) if f else None
    c = _CONNECT_RE.search(text)
    if c:
        g = c.groups()
        out["connect_ms"] = {
            k: round(float(g[2 * i]) * _UNIT[g[2 * i + 1]], 6)
            for i, k in enumerate(("min", "max", "mean"))
        }
    return out


def merge_summaries(summaries: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    """Add up the summaries of several processes (None if any is missing).

    >>> a = {"total": 2, "started": 2, "status": {"2xx": 2}, "finished_s": 1.0}
    >>> merge_summaries([a, {**a, "finished_s": 1.5}])
    {'total': 4, 'started': 4, 'status': {'2xx': 4}, 'finished_s': 1.5}
    """
    if not summaries or any(s is None for s in summaries):
        return None
    out: dict[str, Any] = {}
    for s in summaries:
        assert s is not None
        for k, v in s.items():
            if k == "status":
                st = out.setdefault("status", {})
                for code, n in v.items():
                    st[code] = st.get(code, 0) + n
            elif k == "finished_s":
                out[k] = max(out.get(k) or 0.0, v or 0.0)
            elif k == "connect_ms":
                prev = out.get(k)
                out[k] = (
                    dict(v)
                    if prev is None
                    else {
                        "min": min(prev["min"], v["min"]),
                        "max": max(prev["max"], v["max"]),
                        "mean": (prev["mean"] + v["mean"]) / 2,
                    }
                )
            else:
                out[k] = out.get(k, 0) + v
    return out


def parse_log(text: str) -> list[tuple[int, int, int]]:
    """``--log-file`` TSV -> [(start µs since the epoch, status, µs to the end)].

    >>> parse_log("1795777491585305\\t200\\t1773\\n1795777491585319\\t-1\\t9\\nbad\\n")
    [(1795777491585305, 200, 1773), (1795777491585319, -1, 9)]
    """
    out = []
    for line in text.splitlines():
        f = line.split("\t")
        if len(f) == 3:
            try:
                out.append((int(f[0]), int(f[1]), int(f[2])))
            except ValueError:
                continue
    return out


def _non_2xx_kind(status: int) -> str:
    """The error class of a logged response that is not a 2xx (``-1``: no response)."""
    return "503" if status == 503 else ("eof" if status < 0 else "status")


def _run_shape(
    hist: Histogram, errors: dict[str, int], window: float, rps: float, reconnects: int
) -> dict[str, Any]:
    """The keys every run of the bench has (``scenarios.common._http_run_from_python``'s shape)."""
    return {
        "generator": "h2load",
        "window_s": round(window, 4),
        "requests": hist.count,
        "errors": errors,
        "error_total": sum(errors.values()),
        "rps": rps,
        "mib_s": None,
        "latency_ms": hist.summary_ms(),
        "reconnects": reconnects,
        "histogram": hist.to_json(),
    }


def peak_figures(
    entries: list[tuple[int, int, int]], summary: dict[str, Any] | None, elapsed_s: float
) -> dict[str, Any]:
    """Figures of a closed-loop run, in the shape of ``scenarios.common._http_run_from_python``.

    >>> f = peak_figures([(0, 200, 1000), (1, 200, 3000), (2, 503, 10)], None, 2.0)
    >>> f["requests"], f["rps"], f["errors"], f["latency_ms"]["max"]
    (2, 1.0, {'503': 1}, 3.0)
    """
    hist = Histogram()
    errors: dict[str, int] = {}
    for _start, status, lat in entries:
        if 200 <= status < 300:
            hist.record(lat)
        else:
            kind = _non_2xx_kind(status)
            errors[kind] = errors.get(kind, 0) + 1
    if summary is not None:
        other = summary["errored"] - errors.get("eof", 0)
        if summary["timeout"]:
            errors["timeout"] = summary["timeout"]
        if other - summary["timeout"] > 0:
            errors["error"] = other - summary["timeout"]
    window = (summary or {}).get("finished_s") or elapsed_s or 1e-9
    return _run_shape(hist, errors, window, hist.count / window, hist.count)


def rate_figures(
    entries: list[tuple[int, int, int]],
    summary: dict[str, Any] | None,
    plan: RatePlan,
    deadline_s: float,
    peak_rps: float,
    t_launch_us: int | None = None,
    settle_s: float = 0.0,
) -> dict[str, Any]:
    """Figures of an open-loop run: the keys ``scenarios.overload.overload_figures`` gives (offered,
    goodput, shares, unfinished...) plus requests/errors/latency in the usual shape.

    Every rate is of the connections h2load was asked to make (it makes them all, on time
    unless its core saturates, which the caller checks).  A connection that never got to send
    its request (refused, reset, or still waiting for a SYN-ACK when h2load gave up) is a
    ``connect`` error; ``connected_rps`` is what did connect.

    Goodput is the rate of good completions (2xx within the deadline) while the overload
    stands: those that completed between ``settle_s`` after the first request and the end
    of the offering window, per second of that span. Counting from the first request
    instead (``goodput_from_start_rps``) charges a server for its standing queue, whose
    last entries are answered after the window whatever its rate; counting past the window
    (``goodput_all_rps``) credits a deep queue drained after the load stopped.

    >>> log = [(0, 200, 1_000), (100, 200, 3_000_000), (200, 503, 500), (9_999_999, 200, 10)]
    >>> s = {"total": 10, "started": 8, "done": 4, "succeeded": 3, "failed": 7,
    ...      "errored": 6, "timeout": 2, "status": {}}
    >>> plan = RatePlan(per_period=1, period_ms=1000, ticks=10, shares=(1,))
    >>> f = rate_figures(log, s, plan, 2.0, 0.5)
    >>> f["offered_rps"], f["connected_rps"], f["goodput_rps"], f["goodput_all_rps"]
    (1.0, 0.8, 0.1, 0.2)
    >>> f["goodput_vs_peak"], f["share_503"], f["error_rate"], f["not_served_rate"]
    (0.2, 0.1, 0.6, 0.8)
    >>> f["errors"], f["unfinished"]
    ({'late': 1, '503': 1, 'timeout': 2, 'connect': 2, 'error': 2}, 0)
    """
    deadline_us = int(deadline_s * 1e6)
    starts = [e[0] for e in entries]
    t0 = min(starts) if starts else (t_launch_us or 0)
    t_end = t0 + int(plan.window_s * 1e6)
    settle_s = min(max(settle_s, 0.0), plan.window_s / 2)
    t_settled = t0 + int(settle_s * 1e6)
    hist = Histogram()
    errors: dict[str, int] = {}
    in_deadline = after_window = from_start = 0

    def err(kind: str, n: int = 1) -> None:
        if n > 0:
            errors[kind] = errors.get(kind, 0) + n

    for start, status, lat in entries:
        if 200 <= status < 300:
            if lat > deadline_us:
                err("late")
                continue
            in_deadline += 1
            if start + lat > t_end:
                after_window += 1
                continue
            from_start += 1
            if start + lat >= t_settled:
                hist.record(lat)
        else:
            err(_non_2xx_kind(status))
    total = plan.total
    logged = len(entries)
    if summary is None:
        # Stopped at the time-out: only the log is left; the rest never completed.
        started = total
        unfinished = max(0, total - logged)
    else:
        started = int(summary["started"])
        err("timeout", summary["timeout"])
        err("connect", total - started)
        err(
            "error",
            summary["errored"] - summary["timeout"] - (total - started) - errors.get("eof", 0),
        )
        unfinished = max(0, total - summary["done"] - summary["errored"])
    window = plan.window_s
    shed = errors.get("503", 0)
    failures = sum(errors.values()) - shed - errors.get("late", 0)
    goodput = hist.count / (window - settle_s)
    return {
        **_run_shape(hist, errors, window, goodput, logged),
        "offered_target_rps": plan.rate,
        "offered_rps": total / window,
        "connected_rps": started / window,
        "goodput_rps": goodput,
        "goodput_all_rps": in_deadline / window,
        "goodput_from_start_rps": from_start / window,
        "settle_s": settle_s,
        "served_after_window": after_window,
        "goodput_vs_peak": goodput / peak_rps if peak_rps > 0 else None,
        "dropped_by_generator": 0,
        "unfinished": unfinished,
        "share_503": shed / total if total else None,
        "error_rate": failures / total if total else None,
        "not_served_rate": (total - in_deadline) / total if total else None,
        "h2load_summary": summary,
        "h2load_stopped_at_timeout": summary is None,
        "connect_ms": (summary or {}).get("connect_ms"),
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM then SIGKILL the process group of one h2load we started."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=2.0)


def run_many(
    argvs: list[list[str]], timeout: float, workdir: Path, cpus: list[int] | None
) -> tuple[list[str | None], float]:
    """Run h2load processes at once, each pinned to ``cpus`` and bounded by ``timeout``.

    Returns (each one's stdout, or None if it had to be stopped at the time-out; wall
    seconds).  Raises RuntimeError if one exits non-zero by itself.
    """
    procs: list[subprocess.Popen[bytes]] = []
    outs = []
    t0 = time.perf_counter()
    try:
        for i, argv in enumerate(argvs):
            out_path = workdir / f"h2load-{os.getpid()}-{i}.out"
            with open(out_path, "wb") as out:
                procs.append(
                    subprocess.Popen(
                        pin_argv(argv, cpus),
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
            outs.append(out_path)
        deadline = t0 + timeout
        results: list[str | None] = []
        for p, path in zip(procs, outs, strict=True):
            try:
                p.wait(timeout=max(0.0, deadline - time.perf_counter()))
            except subprocess.TimeoutExpired:
                _stop(p)
                results.append(None)
                continue
            text = path.read_bytes().decode(errors="replace")
            if p.returncode != 0:
                raise RuntimeError(
                    f"h2load exited with {p.returncode}: {' '.join(argvs[len(results)])}: "
                    + text.strip()[-300:]
                )
            results.append(text)
        return results, time.perf_counter() - t0
    finally:
        for p in procs:
            _stop(p)
        for path in outs:
            with contextlib.suppress(OSError):
                path.unlink()
