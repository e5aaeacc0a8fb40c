"""10,000 idle TLS keep-alive connections held by one process, all still served after
(issue 14). Memory per connection is measured by the benchmark, not asserted here."""

from __future__ import annotations

import resource
import socket
import ssl
from pathlib import Path

import pytest

from helpers import ServerProcess, local_ca, tls_args

N = 10_000


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_tls_idle_ten_thousand_keepalive_connections(docroot: Path) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < N + 100:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {N + 100}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    srv = ServerProcess(docroot, "epoll", *tls_args())
    ctx: ssl.SSLContext = local_ca()["client"]
    conns: list[ssl.SSLSocket] = []
    try:
        before = rss_kib(srv.pid)
        request = b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        for i in range(N):
            raw = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
            s = ctx.wrap_socket(raw, server_hostname="localhost")
            if i % 1000 == 0:  # some have served a request and sit idle after it
                s.sendall(request)
                assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")
            conns.append(s)
        after = rss_kib(srv.pid)
        print(f"server RSS per idle TLS connection: {(after - before) * 1024 / N:,.0f} B")
        # Every one is still open and answers (the first, the last, and a sample).
        for s in [*conns[:: N // 50], conns[-1]]:
            s.sendall(request)
            assert s.recv(65536).startswith(b"HTTP/1.1 200 OK")
    finally:
        for s in conns:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        code, _out, err = srv.stop()
    assert code == 0, err[-3000:]
