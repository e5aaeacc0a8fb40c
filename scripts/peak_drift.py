"""How far a capped server's closed-loop peak moves on its own, and after a 3x flood (issue 20).

The overload bench offers 1x, 2x and 3x of a peak measured once, a minute before the 1x
level; ``--repeat-peak`` found that peak 10-20 % lower after the levels in some rounds.
This measures the same closed loop (h2load, 64 connections, a new connection per request,
the bench's ``peak_argv``) back to back against one server capped like the bench's (a
cgroup quota on CPU 0, h2load on CPU 1): ``--before`` peaks, an open-loop flood at 3x the
first for 15 s, then peaks 5 s after it and again 30 s later. Beside each peak: the
machine's TIME_WAIT sockets before it (/proc/net/sockstat; a new connection per request
leaves one per request on the server side for 60 s, and the client ports wrap within
seconds, so every SYN then meets one).

    flock /tmp/c10k-cpu.lock .venv/bin/python scripts/peak_drift.py --server c10k
    flock /tmp/c10k-cpu.lock .venv/bin/python scripts/peak_drift.py --server nginx
"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from c10k.bench import h2load
from c10k.bench.cpucap import make_cap

NGINX_CONF = """worker_processes 1; daemon off; master_process off; pid {d}/nginx.pid;
error_log stderr error; worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{ access_log off; server {{ listen 127.0.0.1:{port} backlog=4096; root {root}; }} }}
"""


def server_argv(name: str, root: Path, port: int) -> list[str]:
    if name == "nginx":
        (root / "nginx.conf").write_text(NGINX_CONF.format(d=root, port=port, root=root))
        return ["/usr/sbin/nginx", "-c", str(root / "nginx.conf"), "-p", str(root)]
    serve = [sys.executable, "-m", "c10k", "serve", str(root), "--bind", "127.0.0.1"]
    return [*serve, "--port", str(port), "--workers", "1", "--keepalive-timeout", "3600"]


def wait_listening(port: int) -> None:
    for _ in range(300):  # a capped interpreter starts slowly: 10 % of a core
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on port {port}")


@contextlib.contextmanager
def capped_server(
    name: str, fraction: float, port: int, extra: tuple[str, ...] = ()
) -> Iterator[subprocess.Popen[bytes]]:
    """``name`` serving a 512-byte index.html on ``port``, pinned to CPU 0 and capped to
    ``fraction`` of it (a cgroup quota, as the overload bench caps it); stopped after."""
    root = Path(tempfile.mkdtemp())
    (root / "index.html").write_bytes(b"x" * 512)
    cap, why = make_cap(fraction)
    if cap is None:
        raise SystemExit(f"no CPU cap: {why}")
    cap.create()
    argv = ["taskset", "-c", "0", *server_argv(name, root, port), *extra]
    srv = subprocess.Popen(argv, preexec_fn=cap.preexec, stderr=subprocess.DEVNULL)
    try:
        wait_listening(port)
        yield srv
    finally:
        srv.terminate()
        srv.wait()
        cap.remove()


def time_wait() -> int:
    m = re.search(r"tw (\d+)", Path("/proc/net/sockstat").read_text())
    return int(m.group(1)) if m else -1


def run_h2load(argv: list[str], limit: float) -> dict[str, object]:
    out = subprocess.run(
        ["taskset", "-c", "1", *argv], capture_output=True, text=True, timeout=limit
    ).stdout
    summary = h2load.parse_summary(out)
    if summary is None:
        raise SystemExit(f"h2load printed no summary: {out[-400:]}")
    return summary


def peak(url: str, n: int) -> float:
    s = run_h2load(h2load.peak_argv("h2load", url, n, 64), 120)
    return float(s["succeeded"]) / max(float(s["finished_s"] or 0), 1e-9)  # type: ignore[arg-type]


def flood(url: str, rate: int, seconds: int) -> int:
    total = rate * seconds
    argv = h2load.rate_argv(
        "h2load", url, max(1, rate // 10), 100, total, 2.0, Path(tempfile.mktemp(suffix=".tsv"))
    )
    return int(run_h2load(argv, seconds + 60)["succeeded"])  # type: ignore[call-overload]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--server", choices=["c10k", "nginx"], default="c10k")
    ap.add_argument("--server-cpu", type=float, default=0.1)
    ap.add_argument("--before", type=int, default=3, help="peaks before the flood")
    ap.add_argument("--secs", type=float, default=6.0, help="seconds per peak (about)")
    ap.add_argument("--port", type=int, default=18555)
    args = ap.parse_args()
    url = f"http://127.0.0.1:{args.port}/index.html"
    peaks: dict[str, list[float]] = {}

    def show(tag: str, n: int) -> float:
        tw = time_wait()
        r = peak(url, n)
        peaks.setdefault(tag, []).append(r)
        print(
            f"t={time.monotonic() - t0:6.1f}s  {tag:14s} TIME_WAIT {tw:6d}  peak {r:6.0f}/s",
            flush=True,
        )
        return r

    with capped_server(args.server, args.server_cpu, args.port):
        t0 = time.monotonic()
        n = max(640, round(peak(url, 2000) * args.secs))
        print(f"{args.server} capped to {args.server_cpu} of CPU 0; {n} requests a peak")
        first = [show("before", n) for _ in range(args.before)]
        rate = round(3 * first[0])
        ok = flood(url, rate, 15)
        print(
            f"t={time.monotonic() - t0:6.1f}s  3x flood: {rate}/s for 15 s, {ok} served "
            f"({ok / 15:.0f}/s)",
            flush=True,
        )
        time.sleep(5)
        for _ in range(3):
            show("5 s after", n)
        time.sleep(30)
        for _ in range(2):
            show("35+ s after", n)
    base = statistics.median(peaks["before"])
    for tag, rs in peaks.items():
        print(
            f"{tag:14s} median {statistics.median(rs):6.0f}/s = "
            f"{statistics.median(rs) / base * 100:5.1f} % of before; range "
            f"{min(rs):.0f}-{max(rs):.0f}"
        )


if __name__ == "__main__":
    main()
