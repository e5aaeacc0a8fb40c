"""The scenario table: every scenario as a dict, and what the runner asks of one.

Theory of operation
-------------------
The runner knows a scenario only through this module: its dict (``SCENARIOS``, run in
``ORDER``; ``scenario()`` applies the ``quick`` overrides), the function its ``kind`` names
(``MEASURE``; the poller kind starts no server and is ``poller.run_poller``), the files its
paths name (``FILES``, ``extra_files``) and a rough duration (``expected_seconds``).  The one
kind that changes how the server is started, idle, answers ``idle.server_shape``.  What each
scenario measures, and how, is the opening comment of its kind's module.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from c10k.bench.peers import RunningServer
from c10k.bench.poller import plan_sizes
from c10k.bench.scenarios.common import Context, KiB, MiB, Options
from c10k.bench.scenarios.http_load import measure_http
from c10k.bench.scenarios.idle import measure_idle
from c10k.bench.scenarios.modem import measure_modem
from c10k.bench.scenarios.overload import PEAK_AGAIN_PAUSE, measure_overload
from c10k.bench.scenarios.slowhttp import measure_slowhttp

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
        # The Python generator, bodies dropped in the kernel (http_load.py says why).
        "generator": "python",
        "discard": True,
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
        # Packets a user reads per wake-up (client.py, "Why pace in packets"): 4 is one
        # read every 1.6 s, well inside the ~11 KiB its 8 KiB SO_RCVBUF lets queue.
        "read_packets": 4,
        "grace_packets": 10,
        "min_fraction": 0.75,
        "max_users": 3000,
        "interval": 0.01,
        "settle": 10.0,
        "rcvbuf": 8 * KiB,
        # An Ethernet MSS, not loopback's 64 KiB one (client.py's module doc says why).
        "mss": 1460,
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
        "title": "Idle connections (C1M): held keep-alive connections, memory, active latency",
        "measures": "connections held, memory per connection (server RSS, generator RSS, "
        "kernel slab), time to establish, active client's p50/p99 vs. no idle connections",
        "kind": "idle",
        "path": "/small.bin",
        "active_conns": 1,
        "settle": 1.0,
        # Issue 4's checkpoints.  Above one process's fds, idle_plan spreads them.
        "counts": [10_000, 100_000, 500_000, 1_000_000],
        # Slowest acceptable set-up rate (connections/s) before a level counts as timed out,
        # and the bound on the whole idle run.
        "min_rate": 500,
        "max_seconds": 1800.0,
        "p99_goal": 2.0,
        "quick": {"counts": [10, 50], "settle": 0.2, "max_seconds": 120.0},
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
        "measures": "goodput (2xx within the deadline per second), share of 503s, latency "
        "of admitted requests, errors",
        "kind": "overload",
        "path": "/small.bin",
        "peak_conns": 64,
        "levels": [1, 2, 3],
        "timeout": 2.0,
        # Issue 7: at 3x the peak, goodput stays at or above 90 % of the peak.
        "goal": {"multiplier": 3.0, "fraction": 0.9},
        # Fraction of one core the server (every server alike) may use (cpucap.py): on
        # loopback the generator's core does most of the per-connection kernel work, so one
        # generator core can offer 3x only a server capped well below a full core.
        "server_cpu": 0.1,
        "server_cpu_purpose": "so that a one-core generator can offer 3x its peak",
        "quick": {"peak_conns": 4, "levels": [1, 2, 3], "timeout": 1.0},
    },
    "slowhttp": {
        "title": "Slow and hostile clients: slowhttptest slowloris, slow read, range attack",
        "measures": "a legitimate client's success rate and p99 during each attack; the "
        "server's fds and RSS before, during and after",
        "kind": "slowhttp",
        "path": "/small.bin",
        "modes": ["slowloris", "slowread", "range"],
        "conns": 4000,
        "rate": 1000,
        "attack_s": 30.0,
        # The legitimate client: an open loop (a fixed rate whatever the server does), a new
        # connection per request, so an attack that holds every connection slot shows.
        "legit_rate": 100.0,
        "legit_timeout": 5.0,
        "settle": 3.0,
        # Issue 7: 100 % success, p99 under 100 ms, fds back to the baseline after.
        "goal": {"success": 1.0, "p99_ms": 100.0},
        "quick": {"conns": 100, "rate": 100, "attack_s": 4.0, "settle": 0.5},
    },
}


ORDER = ["conn-rate", "keepalive", "bigfile", "modem", "idle", "poller", "overload", "slowhttp"]


def scenario(name: str, quick: bool = False) -> dict[str, Any]:
    """A deep copy of the scenario with its quick overrides applied when ``quick``."""
    s = copy.deepcopy(SCENARIOS[name])
    s["name"] = name
    q = s.pop("quick", {})
    if quick:
        s.update(q)
    return s


def _and(values: Sequence[object], unit: str = "") -> str:
    """``_and([100, 1000, 10000])`` -> ``'100, 1,000 and 10,000'``."""
    words = [
        f"{v:,g}{unit}"
        if isinstance(v, float)
        else f"{v:,}{unit}"
        if isinstance(v, int)
        else str(v)
        for v in values
    ]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def title(scen: dict[str, Any], opts: Options) -> str:
    """The scenario's title with the counts this run used, not the full configuration's:
    ``--quick`` shrinks them, and ``--connections``, ``--idle-counts``, ``--poller-sizes``,
    ``--max-users``, ``--multipliers`` and ``--slow-conns`` replace them.  The counts are
    the ones asked for; the table's rows say which were reached.  A ``--tls`` run says
    "over TLS" (not the poller's: it has no server), so plain and TLS figures are never
    taken for one another.

    >>> title(scenario("keepalive", quick=True), Options(quick=True))
    'Keep-alive: 512-byte file at 4 and 16 connections (--quick)'
    >>> title(scenario("keepalive"), Options())
    'Keep-alive: 512-byte file at 100, 1,000 and 10,000 connections'
    >>> title(scenario("keepalive", quick=True), Options(quick=True, tls=True))
    'Keep-alive: 512-byte file at 4 and 16 connections over TLS (--quick)'
    """
    kind, name = scen["kind"], scen["name"]
    if kind == "http":
        conns = opts.connections or [v["conns"] for v in scen["variations"]]
        text = {
            "conn-rate": f"Kegel test 1: a new TCP connection per 512-byte file, "
            f"{_and(conns)} concurrent connections",
            "keepalive": f"Keep-alive: 512-byte file at {_and(conns)} connections",
            "bigfile": f"Big file: 1 MiB at {_and(conns)} keep-alive connections",
        }.get(name, f"{scen['title']} ({_and(conns)} connections)")
    elif kind == "modem":
        users = opts.max_users or scen["max_users"]
        text = (
            f"Kegel test 2: up to {users:,} simulated {scen['rate'] * 8 / 1000:g} kbit/s "
            "users, dkftpbench scoring"
        )
    elif kind == "idle":
        counts = opts.idle_counts or scen["counts"]
        text = (
            f"Idle connections (C1M test): {_and(counts)} held keep-alive connections, "
            "memory, active latency"
        )
    elif kind == "poller":
        # The sizes the fd limit lets it measure (poller.plan_sizes, as run_poller does).
        sizes, _notes = plan_sizes(opts.poller_sizes or scen["sizes"], scen["active"])
        text = f"Poller bench: time per event at {_and(sizes)} watched fds, per backend"
    elif kind == "overload":
        levels = [float(x) for x in opts.multipliers or scen["levels"]]
        text = (
            f"Overload: offer {_and(levels, 'x')} the peak measured with "
            f"{scen['peak_conns']:,} connections (open loop, new connections)"
            + (", then the peak again" if opts.repeat_peak else "")
        )
    elif kind == "slowhttp":
        slow: int = opts.slow_conns or scen["conns"]
        modes = opts.slow_modes or scen["modes"]
        text = f"Slow and hostile clients: slowhttptest {_and(modes)}, {slow:,} connections each"
    else:
        text = scen["title"]
    over_tls = opts.tls and kind != "poller"
    return text + (" over TLS" if over_tls else "") + (" (--quick)" if opts.quick else "")


def make_docroot(root: Path, extra: dict[str, int] | None = None) -> None:
    """Write the test files (deterministic pseudo-random bytes) unless already there."""
    import random

    root.mkdir(parents=True, exist_ok=True)
    rnd = random.Random(1)
    for name, size in {**FILES, **(extra or {})}.items():
        p = root / name
        if not p.exists() or p.stat().st_size != size:
            p.write_bytes(rnd.randbytes(size))


MEASURE: dict[str, Callable[[RunningServer, dict[str, Any], Context], dict[str, Any]]] = {
    "http": measure_http,
    "modem": measure_modem,
    "idle": measure_idle,
    "overload": measure_overload,
    "slowhttp": measure_slowhttp,
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
        peaks = 2 if opts.repeat_peak else 1
        total = (len(opts.multipliers or scen["levels"]) + peaks) * per * n_servers * opts.rounds
        if opts.repeat_peak:
            total += PEAK_AGAIN_PAUSE * n_servers * opts.rounds
        return total
    if kind == "slowhttp":
        modes = len(opts.slow_modes or scen["modes"])
        each = float(opts.slow_duration or scen["attack_s"]) + 2 * scen["settle"] + 2
        total = modes * each * n_servers * opts.rounds
        return total
    total = len(scen["sizes"]) * 6 * scen["seconds"]
    return total
