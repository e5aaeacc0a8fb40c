"""Kind ``slowhttp``: slow and hostile clients.

Theory of operation
-------------------
Hostile clients (issue 7).  ``slowhttp`` runs Debian's slowhttptest (slowloris, slow read,
range) against each server while a legitimate open-loop client fetches a file, and reads the
server's fds and RSS from /proc before, during and after each attack.  Over TLS
(``--tls``) the attacks and the legitimate client speak HTTPS (slowhttptest does a full
handshake per connection and checks no certificate; the client verifies it).
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

from c10k.bench.machine import pids_fd_count, pids_rss_bytes, pin_argv
from c10k.bench.peers import RunningServer, ServerError
from c10k.bench.scenarios.common import (
    Context,
    _cpu_figures,
    _http_run_from_python,
    _python_http,
)

# slowhttptest(1) arguments per attack (its man page's examples, with the probe timeout at
# 3 s).  Slowloris: unfinished heads, a follow-up header line every 10 s.  Slow read: a big
# file read 32 bytes every 5 s through a 512-1024 byte window, 3 requests pipelined.  Range:
# the "Apache killer" header of thousands of overlapping ranges (-a 10 -b 3000).
SLOWHTTP_MODES: dict[str, tuple[list[str], str]] = {
    "slowloris": (["-H", "-i", "10", "-x", "24"], "/small.bin"),
    "slowread": (["-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3"], "/big.bin"),
    "range": (["-R", "-a", "10", "-b", "3000", "-i", "10"], "/big.bin"),
}


def slowhttp_argv(
    mode: str,
    host: str,
    port: int,
    conns: int,
    rate: int,
    seconds: float,
    out_base: Path,
    scheme: str = "http",
    url: str | None = None,
) -> list[str]:
    """The slowhttptest command line of one attack (``scheme`` https: over TLS, which
    slowhttptest speaks without checking the certificate: it has no option to); ``url``
    replaces the attacked file's URL (a --url endpoint's own).

    >>> slowhttp_argv("slowloris", "127.0.0.1", 80, 100, 50, 5, Path("/t/s"))[:6]
    ['slowhttptest', '-H', '-i', '10', '-x', '24']
    >>> slowhttp_argv("range", "127.0.0.1", 80, 1, 1, 1, Path("/t/s"), "https")[-1]
    'https://127.0.0.1:80/big.bin'
    """
    args, path = SLOWHTTP_MODES[mode]
    return [
        "slowhttptest",
        *args,
        "-c",
        str(conns),
        "-r",
        str(rate),
        "-l",
        str(max(1, round(seconds))),
        "-p",
        "3",
        "-g",
        "-o",
        str(out_base),
        "-u",
        url or f"{scheme}://{host}:{port}{path}",
    ]


def parse_slowhttp_csv(text: str) -> dict[str, Any]:
    """slowhttptest's CSV (seconds, closed, pending, connected, service available: the
    connection count while available, 0 once its probe failed).

    >>> parse_slowhttp_csv("Seconds,Closed,Pending,Connected,Service Available\\n"
    ...                    "0,0,1,0,50\\n1,0,1,49,50\\n2,3,0,47,0\\n")
    {'max_connected': 49, 'max_closed': 3, 'seconds': 2, 'probe_unavailable_s': 1}
    """
    rows = []
    for line in text.splitlines()[1:]:
        f = line.split(",")
        if len(f) >= 5 and all(x.strip().isdigit() for x in f[:5]):
            rows.append([int(x) for x in f[:5]])
    return {
        "max_connected": max((r[3] for r in rows), default=0),
        "max_closed": max((r[1] for r in rows), default=0),
        "seconds": rows[-1][0] if rows else 0,
        "probe_unavailable_s": sum(1 for r in rows if r[4] == 0),
    }


def _server_footprint(srv: RunningServer) -> dict[str, int | None]:
    """The server's fds and RSS; None for a --url endpoint (its processes are not ours)."""
    if srv.external:
        return {"fds": None, "rss_bytes": None}
    pids = srv.pids()
    return {"fds": pids_fd_count(pids), "rss_bytes": pids_rss_bytes(pids)}


def _most(*values: int | None) -> int | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def _minus(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _attacked_path(srv: RunningServer, scen: dict[str, Any], mode: str) -> str:
    """The file an attack targets: the mode's own, or a --url endpoint's path (``url_path``)."""
    return str(scen.get("url_path") or SLOWHTTP_MODES[mode][1])


def measure_slowhttp(srv: RunningServer, scen: dict[str, Any], ctx: Context) -> dict[str, Any]:
    """Each slowhttptest attack while a legitimate client fetches files (see SLOWHTTP_MODES).

    Per attack: the legitimate client's success rate (2xx within ``legit_timeout`` of all
    requests it meant to send) and latency (a new connection per request at a fixed rate,
    so a server whose connection slots the attack holds cannot hide it), the
    server's fds and RSS before, during and after, and what slowhttptest itself saw.
    """
    binary = shutil.which("slowhttptest")
    if binary is None:
        ctx.note("slowhttp: skipped, slowhttptest is not installed: apt-get install slowhttptest")
        return {}
    opts = ctx.opts
    conns = opts.slow_conns or scen["conns"]
    seconds = opts.slow_duration or scen["attack_s"]
    rate = min(scen["rate"], conns)
    ramp = min(conns / rate + 1.0, seconds / 3)
    out: dict[str, Any] = {}
    for mode in opts.slow_modes or scen["modes"]:
        if mode not in SLOWHTTP_MODES:
            known = ", ".join(SLOWHTTP_MODES)
            raise ValueError(f"slowhttp: unknown mode {mode!r} (one of {known})")
        ctx.progress(f"slowhttp {mode} {srv.spec.name}: {conns} connections for {seconds:.0f} s")
        # Fetch the attacked file once first: a server's file cache (nginx open_file_cache
        # keeps the fd) then belongs to the baseline, not to the attack's leftovers.
        with contextlib.suppress(OSError, ServerError, ValueError):
            srv.probe(_attacked_path(srv, scen, mode), timeout=5.0)
        ctx.sleep(scen["settle"])
        before = _server_footprint(srv)
        # a --url's name holds its path ("127.0.0.1:80/x"): no "/" in a file name
        base = ctx.workdir / f"slowhttp-{srv.spec.name.replace('/', '_')}-{srv.port}-{mode}"
        url = srv.url(_attacked_path(srv, scen, mode))
        argv = slowhttp_argv(mode, srv.host, srv.port, conns, rate, seconds, base, url=url)
        argv[0] = binary
        argv = pin_argv(argv, ctx.pin.generator_cpus)  # the attacker shares the client's core
        with open(f"{base}.log", "wb") as log:
            attack = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ctx.workdir,
                start_new_session=True,
            )
            try:
                ctx.sleep(ramp)
                during = _server_footprint(srv)
                m, c0, c1 = _python_http(
                    srv,
                    ctx,
                    scen["path"],
                    0,
                    True,
                    max(1.0, seconds - ramp - 1.0),
                    0.0,
                    mode="open",
                    rate=scen["legit_rate"],
                    timeout=scen["legit_timeout"],
                )
                during2 = _server_footprint(srv)
                try:
                    attack.wait(timeout=seconds + 30.0)
                except subprocess.TimeoutExpired:
                    ctx.note(f"slowhttp {mode}: slowhttptest overran its -l; stopped")
            finally:
                if attack.poll() is None:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(attack.pid, signal.SIGKILL)
                    attack.wait()
        ctx.sleep(scen["settle"])
        after = _server_footprint(srv)
        legit = _http_run_from_python(m)
        _cpu_figures(legit, c0, c1, ctx.pin, legit["requests"])
        tried = m["attempted"]  # unfinished and dropped requests count as failures
        csv = Path(f"{base}.csv")
        seen = parse_slowhttp_csv(csv.read_text()) if csv.exists() else {}
        log_text = Path(f"{base}.log").read_bytes().decode(errors="replace")
        exit_line = re.findall(r"Exit status:\s*(?:\x1b\[[\d;]*m)*\s*([^\x1b\n]+)", log_text)
        out[mode] = {
            **legit,
            "mode": mode,
            "attack_argv": argv,
            "attack_conns": conns,
            "attack_seen": seen,
            "attack_exit": exit_line[-1].strip() if exit_line else None,
            "legit_success": legit["requests"] / tried if tried else None,
            "fds": {
                "before": before["fds"],
                "during": _most(during["fds"], during2["fds"]),
                "after": after["fds"],
            },
            "rss_bytes": {
                "before": before["rss_bytes"],
                "during": _most(during["rss_bytes"], during2["rss_bytes"]),
                "after": after["rss_bytes"],
            },
            "fds_during": _most(during["fds"], during2["fds"]),
            "fds_after_minus_before": _minus(after["fds"], before["fds"]),
            "rss_after_minus_before": _minus(after["rss_bytes"], before["rss_bytes"]),
        }
    return out
