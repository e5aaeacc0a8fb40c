"""TLS keep-alive against nginx, the way the project's figures are judged (issue 14).

Each server on CPU 0, wrk on CPU 1, rounds interleaved (nginx, c10k, nginx, ...); the
figure is requests per busy second of CPU 0 (/proc/stat user+nice+system+irq+softirq),
so the kernel work a server causes is charged to it. Same certificate (trustme, P-256),
same 512-byte file, TLS 1.3, keep-alive. ``--close``: a new connection per request, which
wrk resumes from the previous connection's ticket (PSK + ECDHE, no certificate signature).
``--full``: a full handshake per request, from ``openssl s_time -new`` processes (``--conns``
of them, HTTP/1.0, no session offered): the certificate's signature every time.

    .venv/bin/python scripts/tls_vs_nginx.py [--rounds 3] [--secs 5] [--conns 100] [--close|--full]
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme


def cpu0_busy() -> float:
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu0 "):
            v = [int(x) for x in line.split()[1:]]
            return (v[0] + v[1] + v[2] + v[5] + v[6]) / 100.0  # USER_HZ ticks
    raise RuntimeError("no cpu0 in /proc/stat")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def nginx_conf(d: Path, port: int, cert: Path, key: Path, root: Path) -> Path:
    conf = d / "nginx.conf"
    conf.write_text(
        f"""daemon off; master_process off; worker_processes 1; error_log {d}/error.log;
pid {d}/nginx.pid;
events {{ worker_connections 4096; }}
http {{ access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  keepalive_timeout 75s; open_file_cache max=100;
  client_body_temp_path {d}; proxy_temp_path {d}; fastcgi_temp_path {d};
  uwsgi_temp_path {d}; scgi_temp_path {d};
  ssl_session_cache shared:SSL:10m; ssl_protocols TLSv1.2 TLSv1.3;
  server {{ listen 127.0.0.1:{port} ssl; ssl_certificate {cert};
    ssl_certificate_key {key}; root {root}; }} }}
"""
    )
    return conf


def wrk(port: int, conns: int, secs: int, close: bool) -> int:
    """Requests wrk completed in ``secs`` (after a 1 s warm-up)."""
    url = f"https://127.0.0.1:{port}/small.bin"
    extra = ["-H", "Connection: close"] if close else []
    subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c", str(conns), "-d1s", url],
                   capture_output=True, check=True)  # fmt: skip
    out = subprocess.run(
        ["taskset", "-c", "1", "wrk", "-t1", "-c", str(conns), f"-d{secs}s", *extra, url],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    m = re.search(r"^\s*(\d+) requests in", out, re.M)
    assert m is not None, out
    return int(m.group(1))


def s_time(port: int, procs: int, secs: int) -> int:
    """Full handshakes (each with one HTTP/1.0 GET) that ``procs`` s_time processes made."""
    cmd = ["taskset", "-c", "1", "openssl", "s_time", "-connect", f"127.0.0.1:{port}",
           "-new", "-time", str(secs), "-www", "/small.bin"]  # fmt: skip
    runs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(procs)]
    total = 0
    for run in runs:
        out, _ = run.communicate(timeout=secs + 30)
        m = re.search(r"^(\d+) connections in [\d.]+s", out, re.M)
        assert m is not None, out
        total += int(m.group(1))
    return total


def measure(cmd: list[str], port: int, args: argparse.Namespace) -> tuple[float, float]:
    server = subprocess.Popen(
        ["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        busy0 = cpu0_busy()
        if args.full:
            reqs = s_time(port, args.conns, args.secs)
        else:
            reqs = wrk(port, args.conns, args.secs, args.close)
        busy = cpu0_busy() - busy0
    finally:
        server.terminate()
        server.wait(timeout=15)
    return reqs / args.secs, reqs / busy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--backend", default="epoll")
    ap.add_argument("--close", action="store_true", help="a new TLS connection per request")
    full_help = "a full handshake per request (openssl s_time -new, --conns processes)"
    ap.add_argument("--full", action="store_true", help=full_help)
    args = ap.parse_args()
    d = Path(tempfile.mkdtemp(prefix="c10k-tls-bench-"))
    root = d / "www"
    root.mkdir()
    (root / "small.bin").write_bytes(b"x" * 512)
    leaf = trustme.CA().issue_cert("localhost", "127.0.0.1")
    cert, key = d / "cert.pem", d / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    ratios = []
    for r in range(args.rounds):
        port = free_port()
        ng = measure(["nginx", "-c", str(nginx_conf(d, port, cert, key, root))], port, args)
        port = free_port()
        ck = measure(
            [sys.executable, "-m", "c10k", "serve", str(root), "-p", str(port),
             "--workers", "1", "--backend", args.backend, "--tls-cert", str(cert),
             "--tls-key", str(key)],
            port, args,
        )  # fmt: skip
        ratios.append(ck[1] / ng[1])
        print(
            f"round {r + 1}: nginx {ng[0]:,.0f} req/s, {ng[1]:,.0f} per busy CPU-0 s; "
            f"c10k {ck[0]:,.0f} req/s, {ck[1]:,.0f} per busy CPU-0 s; ratio {ratios[-1]:.2f}"
        )
    print(f"median ratio (c10k / nginx, per busy CPU-0 second): {statistics.median(ratios):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
