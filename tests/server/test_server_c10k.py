"""The C10K test: 10,000 concurrent keep-alive connections from a separate client process
against one server process on epoll; a new client is still answered; afterwards the
server's open-fd count returns to its baseline."""

from __future__ import annotations

import http.client
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ServerProcess

N = 10_000


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["epoll", "epoll-et"])
def test_server_holds_10k_connections(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend)
    client = None
    try:
        baseline = srv.fd_count()
        client = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("c10k_client.py")),
                str(srv.port),
                str(N),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdin is not None
        line = client.stdout.readline().strip()
        assert line == f"held {N}"
        assert srv.fd_count() >= baseline + N  # all held at once, server side
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/small.txt")
        resp = conn.getresponse()
        assert resp.status == 200
        assert len(resp.read()) == 512
        conn.close()
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "closed"
        assert client.wait(timeout=30) == 0
        assert srv.wait_fd_count(baseline, timeout=30) == baseline
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        if client is not None:
            for f in (client.stdin, client.stdout):
                if f is not None:
                    f.close()
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]
