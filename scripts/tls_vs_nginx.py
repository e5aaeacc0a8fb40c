"""TLS keep-alive against nginx, the way the project's figures are judged (issue 14).

Each server on CPU 0, wrk on CPU 1, rounds interleaved (nginx, c10k, nginx, ...); the
figure is requests per busy second of CPU 0 (/proc/stat user+nice+system+irq+softirq),
so the kernel work a server causes is charged to it. Same certificate (trustme, P-256),
same 512-byte file, TLS 1.3, keep-alive (``--close``: a full handshake per request).
Until `c10k bench --tls` exists, this is the reproducible command:

    .venv/bin/python scripts/tls_vs_nginx.py [--rounds 3] [--secs 5] [--conns 100] [--close]
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


def measure(
    cmd: list[str], port: int, conns: int, secs: int, close: bool = False
) -> tuple[float, float]:
    server = subprocess.Popen(
        ["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port)
        url = f"https://127.0.0.1:{port}/small.bin"
        extra = ["-H", "Connection: close"] if close else []
        subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c", str(conns), "-d1s", url],
                       capture_output=True, check=True)  # fmt: skip
        busy0 = cpu0_busy()
        out = subprocess.run(
            ["taskset", "-c", "1", "wrk", "-t1", "-c", str(conns), f"-d{secs}s", *extra, url],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        busy = cpu0_busy() - busy0
    finally:
        server.terminate()
        server.wait(timeout=15)
    m = re.search(r"^\s*(\d+) requests in", out, re.M)
    assert m is not None, out
    reqs = int(m.group(1))
    return reqs / secs, reqs / busy


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--backend", default="epoll")
    ap.add_argument("--close", action="store_true", help="a new TLS connection per request")
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
        ng = measure(["nginx", "-c", str(nginx_conf(d, port, cert, key, root))], port,
                     args.conns, args.secs, args.close)  # fmt: skip
        port = free_port()
        ck = measure(
            [sys.executable, "-m", "c10k", "serve", str(root), "-p", str(port),
             "--workers", "1", "--backend", args.backend, "--tls-cert", str(cert),
             "--tls-key", str(key)],
            port, args.conns, args.secs, args.close,
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
