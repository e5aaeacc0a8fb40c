"""bind_socket and Acceptor on real loopback sockets (port 0), on every backend.

The EMFILE test lowers RLIMIT_NOFILE's soft limit to exactly the lowest free fd number, so
the next accept() must fail, and restores it in a finally. "Does not spin" is a count of
poll() calls over the paused period, never a duration.
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import socket
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from _core_support import BACKEND_PARAMS, PollCounter, Watchdog, run_loop

from c10k.core import Acceptor, Loop, bind_socket
from c10k.core.fdio import bare_accept_available
from c10k.core.listener import (
    ACCEPT_CAPACITY_ERRNOS,
    CAPACITY_SLEEP,
    NOTSENT_LOWAT_BYTES,
    TCP_NOTSENT_LOWAT,
    accept_queue,
    drop_syns,
    set_backlog,
    syn_drop_in_force,
)
from helpers import quick_handshakes


@pytest.fixture(params=BACKEND_PARAMS)
def loop(request: pytest.FixtureRequest) -> Iterator[Loop]:
    lp = Loop(request.param)
    yield lp
    lp.close()


class Accepted:
    """on_accept that keeps (and finally closes) every accepted socket."""

    def __init__(self, loop: Loop, stop_at: int | None = None) -> None:
        self.loop = loop
        self.stop_at = stop_at
        self.socks: list[socket.socket] = []

    def __call__(self, sock: socket.socket, addr: object) -> None:
        self.socks.append(sock)
        if self.stop_at is not None and len(self.socks) >= self.stop_at:
            self.loop.stop()

    def close(self) -> None:
        for s in self.socks:
            if isinstance(s, int):  # a bare fd (raw_fds)
                os.close(s)
            else:
                s.close()


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    sock = bind_socket("127.0.0.1", 0)
    yield sock
    sock.close()


@pytest.fixture
def clients() -> Iterator[list[socket.socket]]:
    socks: list[socket.socket] = []
    yield socks
    for s in socks:
        s.close()


def connect(addr: tuple[str, int], into: list[socket.socket], n: int = 1) -> None:
    # Blocking connect: the handshake completes in the kernel's backlog, no accept needed.
    # (extend appends as it goes, so a failure part-way still leaves them to be closed.)
    into.extend(socket.create_connection(addr, timeout=10) for _ in range(n))


# -- bind_socket -----------------------------------------------------------------------


def test_core_bind_socket_options(listener: socket.socket, clients: list[socket.socket]) -> None:
    assert not listener.getblocking()
    assert listener.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    assert listener.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    host, port = listener.getsockname()
    assert host == "127.0.0.1"
    assert port > 0
    connect((host, port), clients)
    conn, _ = listener.accept()
    with conn:
        # listener.py relies on Linux copying TCP_NODELAY to accepted sockets.
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        # ...and TCP_NOTSENT_LOWAT (the slow-read bound on unsent bytes per socket).
        assert conn.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT) == NOTSENT_LOWAT_BYTES


def test_core_bind_socket_reuse_port(clients: list[socket.socket]) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT on this OS")
    a = bind_socket("127.0.0.1", 0, reuse_port=True)
    try:
        # A second listener on the same port: the whole point of SO_REUSEPORT workers.
        b = bind_socket("127.0.0.1", a.getsockname()[1], reuse_port=True)
        b.close()
        assert a.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
    finally:
        a.close()


def test_core_acceptor_sockets_nonblocking_with_nodelay(
    loop: Loop, listener: socket.socket, clients: list[socket.socket]
) -> None:
    accepted = Accepted(loop, stop_at=1)
    acc = Acceptor(loop, listener, accepted)
    try:
        acc.start()
        connect(listener.getsockname(), clients)
        run_loop(loop)
        (conn,) = accepted.socks
        assert not conn.getblocking()
        assert conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        accepted.close()
        acc.close()


def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback here")
def test_core_bind_socket_ipv6(loop: Loop, clients: list[socket.socket]) -> None:
    sock = bind_socket("::1", 0)
    accepted = Accepted(loop, stop_at=1)
    acc = Acceptor(loop, sock, accepted)
    try:
        assert sock.family == socket.AF_INET6
        assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY)
        acc.start()
        c = socket.create_connection(sock.getsockname()[:2], timeout=10)
        clients.append(c)
        run_loop(loop)
        assert acc.accepted == 1
        accepted.socks[0].sendall(b"v6")
        assert c.recv(2) == b"v6"
    finally:
        accepted.close()
        acc.close()


# -- Acceptor --------------------------------------------------------------------------


def test_core_acceptor_batch_of_100(
    loop: Loop, listener: socket.socket, clients: list[socket.socket]
) -> None:
    counter = PollCounter(loop)
    accepted = Accepted(loop, stop_at=100)
    turns: list[int] = []
    acc = Acceptor(loop, listener, accepted, max_per_wakeup=16)

    def on_accept(sock: socket.socket, addr: object) -> None:
        turns.append(counter.calls)
        accepted(sock, addr)

    acc.on_accept = on_accept
    per_call: list[int] = []
    real_read_ready = acc._read_ready

    def read_ready(events: int) -> None:
        before = acc.accepted
        real_read_ready(events)
        per_call.append(acc.accepted - before)

    acc._read_ready = read_ready  # type: ignore[method-assign]
    try:
        connect(listener.getsockname(), clients, 100)  # all queued before the first wait
        acc.start()
        run_loop(loop)
        assert acc.accepted == 100
        assert len(accepted.socks) == 100
        # Bounded per readiness callback (bpo-27906), and on epoll-et the rest is not
        # lost for want of a new edge. Per loop turn it can be twice that on epoll-et: the
        # re-post made during I/O dispatch runs in the same turn's callback phase.
        assert max(per_call) <= 16
        assert max(Counter(turns).values()) <= 2 * 16
        # Every accepted socket is connected to one of ours.
        ours = {c.getsockname() for c in clients}
        assert {s.getpeername() for s in accepted.socks} == ours
    finally:
        accepted.close()
        acc.close()


@pytest.mark.skipif(not bare_accept_available(), reason="libc has no accept4 here")
def test_core_acceptor_bare_fds_come_nonblocking_without_address(
    loop: Loop, listener: socket.socket, clients: list[socket.socket]
) -> None:
    got: list[tuple[int, object]] = []

    def on_accept(fd: int, addr: object) -> None:
        got.append((fd, addr))
        if len(got) == 40:
            loop.stop()

    acc = Acceptor(loop, listener, on_accept, max_per_wakeup=16, raw_fds=True, peer=False)
    try:
        connect(listener.getsockname(), clients, 40)
        acc.start()
        run_loop(loop)
        assert acc.bare
        assert [addr for _, addr in got] == [None] * 40
        for fd, _ in got:
            assert not os.get_blocking(fd)
            assert not os.get_inheritable(fd)
        ours = {c.getsockname() for c in clients}
        peers = set()
        for fd, _ in got:
            with socket.socket(fileno=fd) as s:  # closes it
                peers.add(s.getpeername())
        assert peers == ours
    finally:
        acc.close()


def test_core_acceptor_bare_needs_raw_fds_and_no_peer(loop: Loop, listener: socket.socket) -> None:
    # A caller that wants the address, or socket objects, gets the stdlib accept.
    assert not Acceptor(loop, listener, print, raw_fds=True).bare
    assert not Acceptor(loop, listener, print, peer=False).bare


def test_core_acceptor_connections_arriving_while_running(
    loop: Loop, listener: socket.socket, clients: list[socket.socket]
) -> None:
    accepted = Accepted(loop, stop_at=100)
    acc = Acceptor(loop, listener, accepted, max_per_wakeup=8)
    addr = listener.getsockname()
    acc.start()
    t = threading.Thread(target=connect, args=(addr, clients, 100))
    try:
        t.start()
        run_loop(loop)
        assert acc.accepted == 100
    finally:
        t.join()
        accepted.close()
        acc.close()


def test_core_acceptor_pause_resume(
    loop: Loop, listener: socket.socket, clients: list[socket.socket]
) -> None:
    accepted = Accepted(loop)
    acc = Acceptor(loop, listener, accepted)
    fd = listener.fileno()
    try:
        acc.start()
        assert loop.watching(fd)
        acc.pause()
        assert acc.paused
        assert not loop.watching(fd)
        connect(listener.getsockname(), clients, 3)
        loop.call_later(0.05, loop.stop)  # a few turns with a pending connection
        run_loop(loop)
        assert acc.accepted == 0
        acc.resume()
        assert not acc.paused
        assert loop.watching(fd)
        accepted.stop_at = 3
        run_loop(loop)  # the connections queued while paused are taken (also on ET)
        assert acc.accepted == 3
    finally:
        accepted.close()
        acc.close()
    assert not loop.watching(fd)


def test_core_acceptor_pause_from_on_accept_stops_batch(
    loop: Loop, listener: socket.socket, clients: list[socket.socket]
) -> None:
    # The server pauses at its connection cap from inside on_accept: no more accepts.
    acc: Acceptor
    socks: list[socket.socket] = []

    def on_accept(sock: socket.socket, addr: object) -> None:
        socks.append(sock)
        if len(socks) == 2:
            acc.pause()
            loop.call_later(0.05, loop.stop)

    acc = Acceptor(loop, listener, on_accept)
    try:
        connect(listener.getsockname(), clients, 5)
        acc.start()
        run_loop(loop)
        assert acc.accepted == 2
        assert not loop.watching(listener.fileno())
    finally:
        for s in socks:
            s.close()
        acc.close()


@pytest.fixture
def restore_nofile() -> Iterator[tuple[int, int]]:
    limits = resource.getrlimit(resource.RLIMIT_NOFILE)
    yield limits
    resource.setrlimit(resource.RLIMIT_NOFILE, limits)


def _lowest_free_fd() -> int:
    fd = os.open(os.devnull, os.O_RDONLY)
    os.close(fd)
    return fd


@pytest.mark.parametrize("bare", [False, True])  # bare: fdio.accept_bare's errors
def test_core_acceptor_emfile_pauses_without_spinning(
    loop: Loop,
    listener: socket.socket,
    clients: list[socket.socket],
    restore_nofile: tuple[int, int],
    caplog: pytest.LogCaptureFixture,
    bare: bool,
) -> None:
    soft, hard = restore_nofile
    accepted = Accepted(loop)
    acc = Acceptor(loop, listener, accepted, raw_fds=bare, peer=not bare)
    assert acc.bare == (bare and bare_accept_available())
    fd = listener.fileno()
    observed: list[tuple[bool, bool]] = []
    with Watchdog(loop, 20.0) as dog:  # every fd this test needs exists before the limit
        try:
            acc.start()
            connect(listener.getsockname(), clients)
            counter = PollCounter(loop)
            # No fd below the limit is free: the next accept() fails with EMFILE.
            resource.setrlimit(resource.RLIMIT_NOFILE, (_lowest_free_fd(), hard))
            loop.call_later(0.05, lambda: observed.append((loop.watching(fd), acc.paused)))
            loop.call_later(0.3, loop.stop)
            with caplog.at_level(logging.WARNING, logger="c10k.listener"):
                loop.run()
            polls_while_starved = counter.calls
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        assert not dog.fired
        assert acc.capacity_errors > 0
        assert acc.accepted == 0
        assert observed == [(False, True)]  # listener not watched while backing off
        # ~0.3 s / CAPACITY_SLEEP retries, a couple of polls each; a level-triggered spin
        # would be thousands.
        assert CAPACITY_SLEEP >= 0.05
        assert polls_while_starved < 50
        assert any("pausing the listener" in r.getMessage() for r in caplog.records)
        # With fds available again, the next retry takes the pending connection.
        accepted.stop_at = 1
        try:
            loop.run()
        finally:
            accepted.close()
            acc.close()
    assert not dog.fired
    assert acc.accepted == 1


def test_core_acceptor_emfile_errno_group() -> None:
    assert {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS} <= ACCEPT_CAPACITY_ERRNOS


def test_core_acceptor_close_during_capacity_sleep(
    loop: Loop, listener: socket.socket, clients: list[socket.socket]
) -> None:
    # A retry timer pending at close() must not re-watch a closed socket later.
    acc = Acceptor(loop, listener, lambda s, a: s.close())
    acc.start()
    acc._unwatch()
    acc._retry = loop.call_later(0.01, acc._after_sleep)
    acc.close()
    loop.call_later(0.05, loop.stop)
    run_loop(loop)
    assert len(loop) == 1  # only the loop's own wakeup fd


def test_core_acceptor_on_accept_error_does_not_stall_backlog(
    loop: Loop,
    listener: socket.socket,
    clients: list[socket.socket],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # If on_accept raises for one connection, the ones queued behind it must still be
    # accepted. Level-triggered polling re-reports the listener anyway; on epoll-et no new
    # edge comes until another client connects, so the acceptor must not just give up.
    socks: list[socket.socket] = []

    def on_accept(sock: socket.socket, addr: object) -> None:
        socks.append(sock)
        if len(socks) == 1:
            raise RuntimeError("handler failed for the first connection")
        if len(socks) == 3:
            loop.stop()

    acc = Acceptor(loop, listener, on_accept)
    try:
        connect(listener.getsockname(), clients, 3)
        acc.start()
        with caplog.at_level(logging.ERROR):
            run_loop(loop, seconds=5.0)
        assert acc.accepted == 3
        assert any("handler failed" in str(r.exc_info[1]) for r in caplog.records if r.exc_info)
    finally:
        for s in socks:
            s.close()
        acc.close()


# -- drop_syns: admission by SYN drop ---------------------------------------------------


def somaxconn() -> int:
    return int(Path("/proc/sys/net/core/somaxconn").read_text())


def drain(sock: socket.socket) -> None:
    sock.setblocking(False)
    try:
        while True:
            sock.accept()[0].close()
    except BlockingIOError:
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a Linux socket filter")
@pytest.mark.parametrize(
    ("host", "family"), [("127.0.0.1", socket.AF_INET), ("::1", socket.AF_INET6)]
)
def test_core_drop_syns_drops_that_share_of_new_connections(host: str, family: int) -> None:
    if family == socket.AF_INET6 and not socket.has_ipv6:
        pytest.skip("no IPv6")
    sock = bind_socket(host, 0, backlog=4096)
    addr = sock.getsockname()[:2]
    try:
        assert quick_handshakes(addr, 100, family) == 100
        assert drop_syns(sock, 1.0)
        assert quick_handshakes(addr, 100, family) == 0
        drain(sock)
        assert drop_syns(sock, 0.5)
        assert syn_drop_in_force(sock) == 0.5
        half = quick_handshakes(addr, 400, family)
        assert 120 < half < 280, half  # binomial(400, 0.5): 200 +- 10 sigma
        drain(sock)
        # Connections already in the queue are not touched by a filter set later.
        assert drop_syns(sock, 0)
        assert quick_handshakes(addr, 20, family) == 20
        assert drop_syns(sock, 1.0)
        assert accept_queue(sock) == (20, min(4096, somaxconn()))
        drain(sock)
        assert drop_syns(sock, 0)
        assert syn_drop_in_force(sock) == 0
        assert drop_syns(sock, 0)  # removing none is not an error
        assert quick_handshakes(addr, 100, family) == 100
    finally:
        sock.close()


def test_core_drop_syns_refused_where_it_cannot_work(tmp_path: Path) -> None:
    unix = socket.socket(socket.AF_UNIX)
    try:
        unix.bind(str(tmp_path / "s"))
        unix.listen(8)
        assert not drop_syns(unix, 0.5)
    finally:
        unix.close()


def test_core_set_backlog_in_place(listener: socket.socket) -> None:
    set_backlog(listener, 64)
    assert accept_queue(listener) == (0, 64)


@pytest.mark.parametrize("raw", [False, True])
def test_core_acceptor_close_with_sweep_hands_over_the_waiting(
    loop: Loop, listener: socket.socket, clients: list[socket.socket], raw: bool
) -> None:
    # A client whose wakeup came to a loop that stops accepting (EPOLLEXCLUSIVE wakes one
    # waiter) must not be left queued: close(sweep=True) takes it; a plain close leaves it.
    got: list[object] = []
    acc = Acceptor(loop, listener, lambda conn, _addr: got.append(conn), raw_fds=raw)
    try:
        acc.start()
        connect(listener.getsockname(), clients)
        connect(listener.getsockname(), clients)
        acc.close(sweep=True)  # before the loop ever ran: both still queued
        assert len(got) == 2
        for conn in got:
            fd = conn if isinstance(conn, int) else conn.fileno()
            assert not os.get_blocking(fd)
        assert listener.fileno() == -1
    finally:
        for conn in got:
            if isinstance(conn, int):
                os.close(conn)
            else:
                conn.close()  # type: ignore[attr-defined]


def test_core_acceptor_paused_close_does_not_sweep(
    loop: Loop, listener: socket.socket, clients: list[socket.socket]
) -> None:
    got: list[object] = []
    acc = Acceptor(loop, listener, lambda conn, _addr: got.append(conn))
    acc.start()
    acc.pause()  # at the connection cap: queued clients wait for another worker
    connect(listener.getsockname(), clients)
    acc.close(sweep=True)
    assert got == []
