"""On-the-fly gzip against nginx's, judged per busy CPU-0 second (issue 16).

nginx (1 worker, sendfile, tcp_nopush, open_file_cache, access_log off, as
shared/tools/vs-nginx, plus ``gzip on; gzip_comp_level 6; gzip_static off;``) and c10k
(``c10k serve --workers 1``, compression on by default, plus any ``--c10k-arg``) each pinned
to CPU 0 in turn, wrk pinned to CPU 1 and sending ``Accept-Encoding: gzip``, rounds
interleaved (nginx, c10k, c10k, nginx, ...), each server started fresh. Before a server is
measured, a probe checks that it answers gzip and that the body decodes to the file. The
figure is requests per busy second of CPU 0 (/proc/stat user+nice+system+irq+softirq: the
kernel's work for a server is charged to it), its median over rounds, and the median of
the per-round ratios c10k/nginx. ``--identity`` adds c10k answering requests without
Accept-Encoding (the file as it is) to each round: a compressed hit should cost what an
identity hit costs.

    .venv/bin/python scripts/compress_vs_nginx.py                       # 40 KB, 100 conns
    .venv/bin/python scripts/compress_vs_nginx.py --size 200k --identity

The file is generated HTML (a seeded word list, so it compresses like prose: about 4x).
"""

from __future__ import annotations

import argparse
import gzip
import http.client
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import busy0, free_port, start, stop

NGINX_CONF = """worker_processes 1; daemon off; master_process off; pid {d}/nginx.pid;
error_log {d}/error.log; worker_rlimit_nofile 20000;
events {{ worker_connections 20000; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  open_file_cache max=1000 inactive=60s; open_file_cache_valid 60s;
  keepalive_timeout 120s; keepalive_requests 100000000;
  gzip on; gzip_comp_level 6; gzip_static off; gzip_vary on;
  server {{ listen 127.0.0.1:{port} backlog=4096; root {root}; }} }}
"""
_TEXT = (
    "the server answers every request from memory once the file was compressed and kept in "
    "its cache while nginx compresses each response again with zlib at level six so a page "
    "of forty kilobytes costs it a millisecond of one core per request"
)
WORDS = _TEXT.split(" ")


def page(size: int) -> bytes:
    rnd = random.Random(16)
    parts = [b"<!doctype html><html><head><title>compress</title></head><body>\n"]
    n = len(parts[0])
    while n < size:
        line = f"<p class=c{rnd.randrange(40)}>{' '.join(rnd.choices(WORDS, k=14))}</p>\n"
        parts.append(line.encode())
        n += len(line)
    return b"".join(parts)[:size]


def probe(port: int, content: bytes, gzipped: bool) -> int:
    """Check the answer (gzip or identity, decoding to the file); its body size."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Accept-Encoding": "gzip" if gzipped else "identity"}
        conn.request("GET", "/page.html", headers=headers)
        r = conn.getresponse()
        body = r.read()
        coding = r.getheader("Content-Encoding")
    finally:
        conn.close()
    if r.status != 200 or coding != ("gzip" if gzipped else None):
        sys.exit(f"probe: status {r.status}, Content-Encoding {coding!r}")
    if (gzip.decompress(body) if gzipped else body) != content:
        sys.exit("probe: the body does not decode to the file")
    return len(body)


def wrk(port: int, conns: int, secs: int, gzipped: bool) -> tuple[float, float]:
    """(requests/s, requests per busy CPU-0 second) of one wrk run."""
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "5s"]
    cmd += ["-H", "Accept-Encoding: gzip"] if gzipped else []
    b0 = busy0()
    out = subprocess.run(
        [*cmd, f"http://127.0.0.1:{port}/page.html"], capture_output=True, text=True, check=True
    ).stdout
    busy = busy0() - b0
    m = re.search(r"(\d+) requests in", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None or rps is None:
        sys.exit(f"wrk said: {out}")
    if re.search(r"Non-2xx or 3xx responses", out) or "Socket errors" in out:
        print(f"  wrk reported errors: {out.splitlines()[-6:]}", file=sys.stderr)
    return float(rps.group(1)), int(m.group(1)) / max(busy, 1e-9)


def server_argv(name: str, port: int, root: Path, work: Path, extra: list[str]) -> list[str]:
    if name == "nginx":
        d = Path(tempfile.mkdtemp(dir=work))
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, port=port, root=root))
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        return [nginx, "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")]
    argv = [sys.executable, "-m", "c10k", "serve", str(root), "--bind", "127.0.0.1"]
    return [*argv, "--port", str(port), "--workers", "1", *extra]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=40_000, help="HTML file size in bytes")
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--identity", action="store_true", help="also c10k without gzip")
    ap.add_argument("--c10k-arg", action="append", default=[], help="extra c10k serve flag")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="compress-vs-nginx-"))
    root = work / "www"
    root.mkdir()
    content = page(args.size)
    (root / "page.html").write_bytes(content)
    rows: dict[str, list[tuple[float, float]]] = {"nginx": [], "c10k": []}
    if args.identity:
        rows["c10k-identity"] = []
    order = list(rows)
    try:
        for r in range(args.rounds):
            for name in order if r % 2 == 0 else order[::-1]:
                gzipped = name != "c10k-identity"
                port = free_port()
                argv = server_argv(name.split("-")[0], port, root, work, args.c10k_arg)
                proc = start(argv, port)
                try:
                    size = probe(port, content, gzipped)
                    wrk(port, min(args.conns, 10), 1, gzipped)  # warm-up
                    rps, per_busy = wrk(port, args.conns, args.secs, gzipped)
                finally:
                    stop(proc)
                rows[name].append((rps, per_busy))
                print(
                    f"round {r + 1} {name:13} {rps:9.0f} req/s  {per_busy:9.0f} req per busy "
                    f"CPU-0 second  (body {size} bytes of {len(content)})",
                    flush=True,
                )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for name, got in rows.items():
        print(f"{name}: median {statistics.median(x[1] for x in got):.0f} req per busy CPU-0 s")
    ratios = [c[1] / n[1] for c, n in zip(rows["c10k"], rows["nginx"], strict=True)]
    print(f"efficiency ratio c10k/nginx, gzip (median of rounds): {statistics.median(ratios):.2f}")
    if args.identity:
        same = [c[1] / i[1] for c, i in zip(rows["c10k"], rows["c10k-identity"], strict=True)]
        print(f"c10k gzip / c10k identity (median of rounds): {statistics.median(same):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
