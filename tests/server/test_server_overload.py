"""Overload tiers, in-process: a handler that burns 5 ms of CPU per request makes the loop
lag while the process keeps a core busy (a sleeping handler would not: that is not CPU
overload, see SHED_MIN_BUSY).

Thresholds are set low so a few dozen clients push the server through the tiers; the
benchmark (`c10k bench overload`) measures the same policy at 1-3x real peak load.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from c10k.http.events import Request
from c10k.http.writers import Response, build_response
from c10k.server import ServerConfig
from helpers import ForkedServer, backend_params, read_response

# timed: see conftest.SIBLING_MODES; alone: the tiers follow the loop's measured lag.
pytestmark = [pytest.mark.timed, pytest.mark.alone]

OK = build_response(200, [(b"Content-Type", b"text/plain")], b"ok\n")
GET = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"


def _slow(req: Request, now: float) -> Response:
    end = time.process_time() + 0.005  # a handler burning 5 ms of CPU on the loop
    while time.process_time() < end:
        pass
    return OK


def forked_server(root: Path, **overrides: object) -> ForkedServer:
    """The server with the CPU-burning handler in a child process (see ForkedServer).

    The accept-queue policy is off (``max_accept_wait=0``): these tests are about the
    loop-lag tiers, and the clients' reconnects queue up in the kernel, where admission
    would drop some of their SYNs (each then waits 1 s), changing the load the tiers see
    (tests/server/test_server_acceptq.py covers the queue)."""
    settings: dict[str, object] = {"max_accept_wait": 0.0, **overrides}
    config = ServerConfig(
        root=str(root),
        port=0,
        status_path="/_c10k/status",
        **settings,  # type: ignore[arg-type]
    )
    return ForkedServer(config, _slow)


def _round(clients: list[socket.socket], bufs: list[bytearray]) -> Counter[int]:
    """One request on each client, then read every answer; reconnect closed ones."""
    seen: Counter[int] = Counter()
    sent = []
    for c in clients:
        try:
            c.sendall(GET)
            sent.append(True)
        except OSError:  # closed at accept (tier 3) before the request went out
            sent.append(False)
    for i, c in enumerate(clients):
        try:
            if not sent[i]:
                raise ConnectionResetError
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


WAVE = 50  # newcomers at a time, every WAVE_GAP seconds
WAVE_GAP = 0.05


def _newcomers(address: tuple[str, int], count: int, seen: Counter[int]) -> None:
    """``count`` new clients, WAVE of them every WAVE_GAP, each a GET on its own
    connection, while kept ones load the server. Spread over turns of half a second and
    more, so that more than an accept batch gather at the door between two turns (a
    burst all at once is taken in by the next turn: the edge-triggered loop accepts until
    EAGAIN)."""
    waiting: list[socket.socket | None] = []
    try:
        for i in range(count):
            if i and not i % WAVE:
                time.sleep(WAVE_GAP)
            c = socket.create_connection(address, timeout=20)
            try:
                c.sendall(GET)
            except OSError:  # closed at accept (tier 3)
                c.close()
                c = None
            waiting.append(c)
        for c in waiting:
            try:
                if c is None:
                    raise ConnectionResetError
                seen[read_response(c, bytearray())[0]] += 1
            except (ConnectionError, OSError):
                seen[0] += 1  # closed at accept (tier 3)
    finally:
        for c in waiting:
            if c is not None:
                c.close()


def _closed_loop(
    server: ForkedServer, clients: list[socket.socket], count: int, rounds: int
) -> list[bytearray]:
    """``count`` kept clients (appended to ``clients``, which the caller closes) run
    ``rounds`` rounds with nobody else coming: every answer a 200 and every connection
    kept, whatever the lag. Returns their read buffers."""
    # (extend appends one by one: those made before a failure are closed by the caller)
    clients.extend(socket.create_connection(server.address, timeout=10) for _ in range(count))
    bufs = [bytearray() for _ in clients]
    # Their connecting was a burst of newcomers waiting at the door while the first
    # requests lagged the loop, and may have been shed; the tiers' rotation then halves
    # at each check until it stops.
    _round(clients, bufs)
    deadline = time.monotonic() + 10
    while server.status()["shed_level"] and time.monotonic() < deadline:
        time.sleep(0.1)
    first = list(clients)
    alone: Counter[int] = Counter()
    for _ in range(rounds):
        alone += _round(clients, bufs)
    assert alone == Counter({200: count * rounds})
    assert clients == first  # every one kept (_round replaces a closed one)
    return bufs


def _with_newcomers(
    count: int, rounds: int, clients: list[socket.socket], bufs: list[bytearray]
) -> tuple[Counter[int], Counter[int]]:
    """``rounds`` rounds of the kept ``clients`` while ``count`` new ones come at once:
    the kept clients' statuses and the newcomers'."""
    kept: Counter[int] = Counter()
    new: Counter[int] = Counter()
    newcomers = threading.Thread(target=_newcomers, args=(ADDR[0], count, new))
    newcomers.start()
    try:
        for _ in range(rounds):
            kept += _round(clients, bufs)
    finally:
        newcomers.join()
    return kept, new


@contextlib.contextmanager
def _shedding(
    root: Path, backend: str, lags: tuple[float, float, float]
) -> Iterator[tuple[ForkedServer, list[socket.socket]]]:
    """The forked server with these tier lags (keep-alive, 503, accept), and a list for
    the test's clients; both closed after."""
    keepalive, lag_503, accept = lags
    server = forked_server(
        root,
        backend=backend,
        shed_keepalive_lag=keepalive,
        shed_503_lag=lag_503,
        shed_accept_lag=accept,
    )
    ADDR[:] = [server.address]
    clients: list[socket.socket] = []
    try:
        yield server, clients
    finally:
        for c in clients:
            c.close()
        server.stop()


@pytest.mark.parametrize("backend", backend_params())
def test_server_overload_sheds_with_503_then_recovers(tmp_path: Path, backend: str) -> None:
    # 100 kept clients load the server past the 503 tier's lag. Alone they are a closed
    # loop: nothing is shed. While 400 new ones come (50 every 50 ms) and wait at the door,
    # 503s.
    with _shedding(tmp_path, backend, (0.02, 0.06, 1000.0)) as (server, clients):
        bufs = _closed_loop(server, clients, 100, 4)
        kept, new = _with_newcomers(400, 8, clients, bufs)
        total = kept + new
        for c in clients:
            c.close()
        assert total[503] > 0, total  # shed with a clear status...
        assert total[200] > 0, total  # ...while still serving
        assert set(total) <= {200, 503}, total
        deadline = time.monotonic() + 10  # pressure gone: back to tier 0
        while server.status()["shed_level"] and time.monotonic() < deadline:
            time.sleep(0.2)
        st = server.status()
        assert st["shed_level"] == 0
        assert st["shed_503"] >= total[503]  # (+ status requests shed while retrying)
        with socket.create_connection(server.address, timeout=5) as c:
            c.sendall(GET)
            status, headers, _ = read_response(c, bytearray())
            assert status == 200
            assert "connection" not in headers  # keep-alive again


@pytest.mark.parametrize("backend", backend_params())
def test_server_overload_tier_1_closes_kept_connections_only_for_newcomers(
    tmp_path: Path, backend: str
) -> None:
    # 50 kept clients with a 5 ms handler make 250 ms turns, past tier 1's lag. Alone
    # they are never closed: closing makes the server no faster and nobody waits to get
    # in. With new clients waiting in the accept queue, tier 1 closes kept connections to
    # make room for them, and only while they wait.
    with _shedding(tmp_path, backend, (0.02, 100.0, 1000.0)) as (server, clients):
        bufs = _closed_loop(server, clients, 50, 8)
        assert server.status()["shed_keepalive"] == 0
        _, new = _with_newcomers(400, 8, clients, bufs)
        closed = server.status()["shed_keepalive"]
        assert new == Counter({200: 400})
        assert 0 < closed < 700, closed  # (closing every response would be 800)


@pytest.mark.parametrize("backend", backend_params())
def test_server_overload_closes_at_accept_in_tier_3(tmp_path: Path, backend: str) -> None:
    # No 503 tier in between: 503s cost so little that the lag would fall below the accept
    # tier's before it is reached (1 run in 3 before this).
    with _shedding(tmp_path, backend, (0.01, 0.04, 0.04)) as (server, clients):
        clients.extend(socket.create_connection(server.address, timeout=10) for _ in range(100))
        bufs = [bytearray() for _ in clients]
        _, new = _with_newcomers(400, 8, clients, bufs)
        assert new[0] > 0, new  # newcomers closed at accept (tier 3)
        assert server.status()["shed_accepts"] > 0


@pytest.mark.parametrize("backend", backend_params())
def test_server_no_shedding_with_few_clients(tmp_path: Path, backend: str) -> None:
    # Lag alone is not overload: 4 clients with a 5 ms handler stay at tier 0
    # (SHED_MIN_READY), however low the thresholds.
    server = forked_server(
        tmp_path, backend=backend, shed_keepalive_lag=0.0001, shed_503_lag=0.0002
    )
    ADDR[:] = [server.address]
    try:
        clients = [socket.create_connection(server.address, timeout=10) for _ in range(4)]
        bufs = [bytearray() for _ in clients]
        total: Counter[int] = Counter()
        for _ in range(20):
            total += _round(clients, bufs)
        assert total == Counter({200: 80})
        for c in clients:
            c.close()
        assert server.status()["shed_level"] == 0
    finally:
        server.stop()
