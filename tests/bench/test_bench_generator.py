"""The Python load generator (``c10k.bench.client``) against a real loopback server."""

from __future__ import annotations

import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from c10k.bench import client

SLOW = 0.3  # seconds each response takes


class _Slow(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = self.request.recv(4096)
            if not chunk:
                return
            data += chunk
        time.sleep(SLOW)
        self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")


@pytest.fixture
def slow_server() -> Iterator[tuple[str, int]]:
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Slow) as srv:
        srv.daemon_threads = True
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        try:
            yield srv.server_address[0], srv.server_address[1]
        finally:
            srv.shutdown()
            thread.join(timeout=5)


def test_open_loop_waits_for_what_arrived_in_the_window(
    slow_server: tuple[str, int], tmp_path: Path
) -> None:
    # 20 arrivals a second for 1 s against responses that take 0.3 s: the last six
    # arrive within a response time of the window's end. They are waited for and count
    # as served; closed at the window's end they counted as not served.
    host, port = slow_server
    cfg = {
        "mode": "open",
        "host": host,
        "port": port,
        "path": "/",
        "conns": 1,
        "keepalive": False,
        "rate": 20.0,
        "duration": 1.0,
        "warmup": 0.0,
        "timeout": 2.0,
        "max_lifetime": 30.0,
    }
    with client.LoadGenerator([cfg], tmp_path / "logs") as lg:
        lg.wait_all("ready", 10.0)
        lg.send({"cmd": "go"})
        (result,) = lg.wait_all("result", 20.0)
    assert result["attempted"] == 20, result
    assert result["ok"] == result["attempted"], result
    assert not result["errors"], result
