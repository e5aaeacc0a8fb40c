"""Big files against nginx, judged per busy CPU-0 second (issue 15).

nginx (1 worker, sendfile on, tcp_nopush on, open_file_cache, access_log off) and c10k
(``c10k serve --workers 1`` plus any ``--c10k-arg``) each pinned to CPU 0 in turn, wrk pinned
to CPU 1, rounds interleaved (nginx, c10k, c10k, nginx, ...), each server started fresh.
The figure is bytes served per busy second of CPU 0 (/proc/stat user+nice+system+irq+
softirq), so the kernel's work for a server (sendfile, TCP, the loopback's softirq) is
charged to it; reported as MiB per busy CPU-0 second, its median over rounds, and the
median of the per-round ratios c10k/nginx.

    .venv/bin/python scripts/files_vs_nginx.py --size 1m --conns 1000     # issue 15's bigfile
    .venv/bin/python scripts/files_vs_nginx.py --size 1g --conns 1        # one 1 GiB stream
    .venv/bin/python scripts/files_vs_nginx.py --base-src ../old/src      # a change, A/B
    .venv/bin/python scripts/files_vs_nginx.py --bare          # + the Python floor, same run
    .venv/bin/python scripts/files_vs_nginx.py --client trunc  # the server sets the pace
    .venv/bin/python scripts/files_vs_nginx.py --client trunc --cc cubic  # no BBR pacing

``--bare`` adds a third server to every round: scripts/bare_sendfile.py, the least Python
a keep-alive file server can run per response (its docstring says what it leaves out), and
prints its ratio to the peer too: how near the peer Python gets when it does almost nothing.
``--bare-variant "ARGS"`` adds it once more with those arguments (``--lowat 262144``,
``--extra-calls 100``), and ``--extra-src DIR`` adds c10k run from another tree (a patched
experiment), each as one more server in the same rounds.

``--client trunc`` replaces wrk with scripts/trunc_client.py, which drops bodies in the
kernel (recv MSG_TRUNC): wrk's core saturates first at 1 MiB (CPU 0 then idles half the
time, and its busy figure follows how the two interleave), this client's does not, so each
server runs its core full and the figure is what it can do. The client reads CPU 0 itself,
after every connection's first response; each round line shows how busy CPU 0 was.

The first line names the TCP congestion control and default qdisc. With BBR and no fq
qdisc (this box's setting) the kernel paces every socket with its own timers, and on
loopback that is most of a big file's cost: both servers sent 2.3-2.7x more per busy second
under cubic, and their ratio moved with it (docs/BENCHMARKS.md, issue 15). ``--cc NAME``
sets ``net.ipv4.tcp_congestion_control`` for the run (root; the old value is put back).

``--base-src DIR`` puts c10k run from another source tree (``PYTHONPATH=DIR``: the code
before a change) where nginx was: the ratio is then this tree's c10k over that one's,
measured the same way, which separates a change's effect from the machine's drift.

Beside it, the server process's own user-space CPU per MiB (/proc/PID/stat utime: Python
and libc for c10k, C for nginx): tick-sampled too, but free of the kernel's share, which
drifts with the machine, so it shows a change to c10k's Python that the busy figure's
noise hides (with ``--base-src``).

The file is random bytes in a temporary docroot, read into the page cache before each
server's round; each round line says how much of it was still in memory at its end
(``fincore``: this VM pages cold page cache out, and a round that found part of the file on
disk would measure the disk).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import busy0, congestion_control, free_port, start, stop, tcp_line

NGINX_CONF = """worker_processes 1; daemon off; master_process off; pid {d}/nginx.pid;
error_log {d}/error.log; worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;
  keepalive_timeout 120s; keepalive_requests 100000000;
  server {{ listen 127.0.0.1:{port} backlog=4096; root {root}; }} }}
"""
UNITS = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def size_arg(text: str) -> int:
    t = text.lower()
    return int(t[:-1]) * UNITS[t[-1]] if t[-1:] in UNITS else int(t)


def wrk(port: int, conns: int, secs: int, timeout: int) -> tuple[float, int, float]:
    """(requests/s, bytes read, busy CPU-0 seconds) of one wrk run."""
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{secs}s"]
    cmd += ["--timeout", f"{timeout}s", f"http://127.0.0.1:{port}/big.bin"]
    b0 = busy0()
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    busy = busy0() - b0
    m = re.search(r"(\d+) requests in [\d.]+\w+, ([\d.]+)(\w+) read", out)
    if m is None:
        sys.exit(f"wrk said: {out}")
    scale = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}[m.group(3)]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if re.search(r"Non-2xx or 3xx responses", out) or "Socket errors" in out:
        print(f"  wrk reported errors: {out.splitlines()[-6:]}", file=sys.stderr)
    return rps, int(float(m.group(2)) * scale), busy


def trunc_argv(port: int, conns: int, secs: int) -> list[str]:
    """scripts/trunc_client.py's command line against ``port``."""
    script = str(Path(__file__).parent / "trunc_client.py")
    return [sys.executable, script, "--port", str(port), "--conns", str(conns), "--secs", str(secs)]


def trunc(port: int, conns: int, secs: int) -> tuple[float, int, float]:
    """As ``wrk``, with scripts/trunc_client.py (CPU 1) as the client: it drops bodies in
    the kernel, so the server sets the pace, and reads CPU 0 over its counted window only
    (after every connection's first response). Exits on errors in that window (a reset or
    a short response is a broken server, not a figure)."""
    cmd = ["taskset", "-c", "1", *trunc_argv(port, conns, secs)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"trunc_client failed: {done.stderr.strip()}")
    out = done.stdout
    got = json.loads(out)
    if got["errors"]:
        sys.exit(f"trunc_client said: {out}")
    if got["reconnects"]:
        closed, responses = got["reconnects"], got["responses"]
        print(f"  the server closed the connection after {closed} of {responses} responses")
    return got["responses"] / got["seconds"], got["bytes"], got["cpu0_busy"]


def make_docroot(prefix: str, size: int) -> tuple[Path, Path]:
    """A temporary directory and its docroot ``www`` holding ``big.bin``, ``size`` random
    bytes (the caller removes the directory)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    root = work / "www"
    root.mkdir()
    with open(root / "big.bin", "wb") as f:
        for _ in range(0, size, 1 << 20):
            f.write(os.urandom(min(1 << 20, size - f.tell())))
    return work, root


def proc_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of process ``pid`` so far (/proc/PID/stat utime, stime)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def warm(path: Path) -> None:
    """Read the file into the page cache before each round: this VM's kernel pages cold
    page cache out (DAMON), and a round that finds part of the file on disk measures the
    disk, not the server."""
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def resident_share(path: Path) -> float | None:
    """The part of ``path`` in the page cache (util-linux fincore), or None without it."""
    try:
        out = subprocess.run(
            ["fincore", "--bytes", "--noheadings", "--output", "RES,SIZE", str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return None
    return int(out[0]) / max(int(out[1]), 1)


def server_argv(
    name: str, port: int, root: Path, work: Path, extra: list[str], base_src: str | None = None
) -> list[str]:
    if name.startswith("c10k@"):
        return ["env", f"PYTHONPATH={name[5:]}", *server_argv("c10k", port, root, work, extra)]
    if name.startswith("bare "):
        return [*server_argv("bare", port, root, work, extra), *name.split()[1:]]
    if name == "base":
        assert base_src is not None
        return [
            "env",
            f"PYTHONPATH={base_src}",
            *server_argv("c10k", port, root, work, extra, None),
        ]
    if name == "bare":
        script = str(Path(__file__).parent / "bare_sendfile.py")
        where = ["--root", str(root), "--port", str(port), "--file", "big.bin"]
        return [sys.executable, script, *where]
    if name == "nginx":
        d = Path(tempfile.mkdtemp(dir=work))
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port, root=root))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        return [nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")]
    argv = [sys.executable, "-m", "c10k", "serve", str(root), "--bind", "127.0.0.1"]
    return [*argv, "--port", str(port), "--workers", "1", *extra]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=size_arg, default="1m", help="file size (1m; k/m/g)")
    ap.add_argument("--conns", type=int, default=1000)
    ap.add_argument("--secs", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--c10k-arg", action="append", default=[], help="extra c10k serve flag")
    ap.add_argument("--base-src", help="compare with c10k from this src dir, not nginx")
    ap.add_argument("--bare", action="store_true", help="add scripts/bare_sendfile.py")
    ap.add_argument("--bare-variant", action="append", default=[], help="bare with these args")
    ap.add_argument("--extra-src", action="append", default=[], help="add c10k from this src")
    ap.add_argument(
        "--client", choices=("wrk", "trunc"), default="wrk", help="trunc: scripts/trunc_client.py"
    )
    ap.add_argument("--cc", help="TCP congestion control for the run (the sysctl; put back after)")
    args = ap.parse_args()
    with congestion_control(args.cc):
        print(tcp_line(), flush=True)
        return run(args)


def run(args: argparse.Namespace) -> int:
    """Every round of every server, then the medians and ratios."""
    work, root = make_docroot("files-vs-nginx-", args.size)
    peer = "nginx" if args.base_src is None else "base"
    order = [peer, "c10k"] + (["bare"] if args.bare else [])
    order += [f"c10k@{d}" for d in args.extra_src] + [f"bare {v}" for v in args.bare_variant]
    rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in order}
    try:
        for r in range(args.rounds):
            for name in order[r % len(order) :] + order[: r % len(order)]:
                port = free_port()
                proc = start(
                    server_argv(name, port, root, work, args.c10k_arg, args.base_src), port
                )
                try:
                    warm(root / "big.bin")
                    wrk(port, min(args.conns, 10), 1, 30)  # warm-up
                    t0 = proc_times(proc.pid)
                    if args.client == "trunc":
                        rps, nbytes, busy = trunc(port, args.conns, args.secs)
                    else:
                        rps, nbytes, busy = wrk(port, args.conns, args.secs, 30)
                    user = proc_times(proc.pid)[0] - t0[0]
                    after = resident_share(root / "big.bin")
                finally:
                    stop(proc)
                mib_per_busy = nbytes / (1 << 20) / max(busy, 1e-9)
                user_per_mib = user * 1e6 / max(nbytes / (1 << 20), 1e-9)
                rows[name].append((rps, mib_per_busy, user_per_mib))
                rate = nbytes / (1 << 20) / args.secs
                print(
                    f"round {r + 1} {name:5} {rps:9.1f} req/s  {rate:8.0f} MiB/s  "
                    f"{mib_per_busy:8.0f} MiB per busy CPU-0 second ({busy / args.secs:4.0%})  "
                    f"user {user_per_mib:5.1f} us/MiB"
                    + ("" if after is None else f"  file {after:.0%} in memory after"),
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, got in rows.items():
        print(
            f"{name}: median {statistics.median(x[1] for x in got):.0f} MiB per busy CPU-0 s, "
            f"user {statistics.median(x[2] for x in got):.1f} us per MiB"
        )
    for name in order[1:]:
        ratios = [c[1] / n[1] for c, n in zip(rows[name], rows[peer], strict=True)]
        print(
            f"efficiency ratio {name}/{peer} (median of rounds): {statistics.median(ratios):.2f}"
            f"  rounds {' '.join(f'{x:.2f}' for x in ratios)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
