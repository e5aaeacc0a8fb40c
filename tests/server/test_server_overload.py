"""Overload tiers, in-process: a handler that burns 5 ms per request makes the loop lag.

Thresholds are set low so a few dozen clients push the server through the tiers; the
benchmark (`c10k bench overload`) measures the same policy at 1-3x real peak load.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from c10k.http.events import Request
from c10k.http.writers import Response, build_response
from c10k.server import Server, ServerConfig
from helpers import read_response

OK = build_response(200, [(b"Content-Type", b"text/plain")], b"ok\n")
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def _slow(req: Request, now: float) -> Response:
    time.sleep(0.005)  # a handler doing 5 ms of work on the loop
    return OK


def _start(tmp_path: Path, **overrides: float) -> tuple[Server, threading.Thread]:
    config = ServerConfig(root=str(tmp_path), port=0, **overrides)  # type: ignore[arg-type]
    server = Server(config, handler=_slow)
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    thread.start()
    return server, thread


def _round(clients: list[socket.socket], bufs: list[bytearray]) -> Counter[int]:
    """One request on each client, then read every answer; reconnect closed ones."""
    seen: Counter[int] = Counter()
    for c in clients:
        c.sendall(GET)
    for i, c in enumerate(clients):
        try:
            status, headers, _ = read_response(c, bufs[i])
        except (ConnectionError, OSError):
            seen[0] += 1  # closed at accept (tier 3)
            status, headers = 0, {}
        seen[status] += 1 if status else 0
        if status == 503:
            assert headers["retry-after"] == "1"
        if status == 0 or headers.get("connection") == "close":
            c.close()
            clients[i] = socket.create_connection(ADDR[0], timeout=10)
            bufs[i] = bytearray()
    return seen


ADDR: list[tuple[str, int]] = []


@pytest.mark.parametrize("backend", ["epoll", "poll"])
def test_server_overload_sheds_with_503_then_recovers(tmp_path: Path, backend: str) -> None:
    server, thread = _start(
        tmp_path,
        backend=backend,  # type: ignore[arg-type]
        shed_keepalive_lag=0.02,
        shed_503_lag=0.06,
        shed_accept_lag=1000.0,
    )
    ADDR[:] = [server.address]
    try:
        clients = [socket.create_connection(server.address, timeout=10) for _ in range(40)]
        bufs = [bytearray() for _ in clients]
        total: Counter[int] = Counter()
        for _ in range(8):
            total += _round(clients, bufs)
        assert total[503] > 0, total  # shed with a clear status...
        assert total[200] > 0, total  # ...while still serving
        assert set(total) <= {200, 503}, total
        assert server.shed_503 == total[503]
        for c in clients:
            c.close()
        deadline = time.monotonic() + 10  # pressure gone: back to tier 0
        while server.shed_level and time.monotonic() < deadline:
            time.sleep(0.1)
        assert server.shed_level == 0
        with socket.create_connection(server.address, timeout=5) as c:
            c.sendall(GET)
            status, headers, _ = read_response(c, bytearray())
            assert status == 200
            assert "connection" not in headers  # keep-alive again
    finally:
        server.stop()
        thread.join(timeout=10)


def test_server_overload_closes_at_accept_in_tier_3(tmp_path: Path) -> None:
    server, thread = _start(
        tmp_path, shed_keepalive_lag=0.01, shed_503_lag=0.02, shed_accept_lag=0.04
    )
    ADDR[:] = [server.address]
    try:
        clients = [socket.create_connection(server.address, timeout=10) for _ in range(40)]
        bufs = [bytearray() for _ in clients]
        deadline = time.monotonic() + 20
        while server.shed_accepts == 0 and time.monotonic() < deadline:
            _round(clients, bufs)
        assert server.shed_accepts > 0
        for c in clients:
            c.close()
    finally:
        server.stop()
        thread.join(timeout=10)


def test_server_no_shedding_with_few_clients(tmp_path: Path) -> None:
    # Lag alone is not overload: 4 clients with a 5 ms handler stay at tier 0
    # (SHED_MIN_READY), however low the thresholds.
    server, thread = _start(tmp_path, shed_keepalive_lag=0.0001, shed_503_lag=0.0002)
    ADDR[:] = [server.address]
    try:
        clients = [socket.create_connection(server.address, timeout=10) for _ in range(4)]
        bufs = [bytearray() for _ in clients]
        total: Counter[int] = Counter()
        for _ in range(20):
            total += _round(clients, bufs)
        assert total == Counter({200: 80})
        assert server.shed_level == 0
        for c in clients:
            c.close()
    finally:
        server.stop()
        thread.join(timeout=10)
