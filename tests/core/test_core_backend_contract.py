"""One contract suite for every readiness backend (CPython ``BaseSelectorTestCase``).

Each test runs once per registered backend; those that cannot run here are reported as
skipped with ``unavailable_backends()``'s reason. Where kqueue is missing, ``kqueue`` and
``kqueue-et`` also run as ``<name>-emulated``: the real backend classes over an emulation
of kqueue on epoll (``_core_support.EpollKqueue``), which checks the kevents they ask for
(EV_CLEAR or not) and their translation of what comes back against kernel readiness.

Sockets are ``socketpair()`` ends, filled and drained trio-style. Readiness is checked with
``poll(0)`` after the kernel already has the state (socketpair sends are synchronous), so
no test depends on timing; where a wait is needed it is a bounded ``poll(timeout)`` and
only its result is asserted.
"""

from __future__ import annotations

import resource
import socket
from collections.abc import Iterator

import pytest
from _core_support import (
    BACKEND_PARAMS,
    EMULATED_PARAMS,
    SocketPairs,
    drain_socket,
    fill_socket,
    make_emulated,
    socketpair,
)

from c10k.core import READ, READ_MASK, WRITE, WRITE_MASK, Backend, Capability, make_backend

__all__ = ["socketpair"]  # a fixture, used by name

# Generous bound for "the kernel already has it ready" waits; the result, not the time,
# is asserted.
WAIT = 2.0


@pytest.fixture(params=[*BACKEND_PARAMS, *EMULATED_PARAMS])
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    if isinstance(request.param, tuple):  # (name, "emulated")
        name = request.param[0]
        b = make_emulated(name)
    else:
        name = request.param
        b = make_backend(name)
    assert b.name == name
    yield b
    b.close()


def events_by_fd(ready: list[tuple[int, int]]) -> dict[int, int]:
    out: dict[int, int] = {}
    for fd, ev in ready:
        assert fd not in out, f"fd {fd} reported twice in one poll: {ready}"
        out[fd] = ev
    return out


def edge(backend: Backend) -> bool:
    return bool(backend.capabilities & Capability.EDGE)


def test_core_backend_empty_socket_not_readable(backend: Backend, socketpair: SocketPairs) -> None:
    a, _b = socketpair()
    backend.register(a.fileno(), READ)
    assert len(backend) == 1
    assert backend.poll(0) == []


def test_core_backend_readable_after_peer_sends(backend: Backend, socketpair: SocketPairs) -> None:
    a, b = socketpair()
    backend.register(a.fileno(), READ)
    b.send(b"hello")
    got = events_by_fd(backend.poll(WAIT))
    assert set(got) == {a.fileno()}
    assert got[a.fileno()] & READ
    assert not got[a.fileno()] & WRITE  # no WRITE interest, no WRITE report


def test_core_backend_fresh_socket_writable(backend: Backend, socketpair: SocketPairs) -> None:
    a, _b = socketpair()
    backend.register(a.fileno(), WRITE)
    got = events_by_fd(backend.poll(WAIT))
    assert set(got) == {a.fileno()}
    assert got[a.fileno()] & WRITE
    assert not got[a.fileno()] & READ


def test_core_backend_read_write_interest_reports_both(
    backend: Backend, socketpair: SocketPairs
) -> None:
    a, b = socketpair()
    b.send(b"x")
    backend.register(a.fileno(), READ | WRITE)
    got = events_by_fd(backend.poll(WAIT))
    assert got[a.fileno()] & READ
    assert got[a.fileno()] & WRITE


def test_core_backend_modify_read_to_write_and_back(
    backend: Backend, socketpair: SocketPairs
) -> None:
    a, b = socketpair()
    fd = a.fileno()
    backend.register(fd, READ)
    assert backend.poll(0) == []  # nothing to read yet
    backend.modify(fd, WRITE)
    got = events_by_fd(backend.poll(WAIT))
    assert got.get(fd, 0) & WRITE
    backend.modify(fd, READ)
    assert backend.poll(0) == []  # writable, but WRITE is no longer wanted
    b.send(b"x")
    got = events_by_fd(backend.poll(WAIT))
    assert got.get(fd, 0) & READ
    assert not got[fd] & WRITE


def test_core_backend_unregister_stops_events(backend: Backend, socketpair: SocketPairs) -> None:
    a, b = socketpair()
    backend.register(a.fileno(), READ | WRITE)
    b.send(b"x")
    assert backend.poll(WAIT) != []
    backend.unregister(a.fileno())
    assert len(backend) == 0
    assert backend.poll(0) == []
    # ...and it can be registered again afterwards.
    backend.register(a.fileno(), READ)
    assert events_by_fd(backend.poll(WAIT)).get(a.fileno(), 0) & READ


def test_core_backend_double_register_raises(backend: Backend, socketpair: SocketPairs) -> None:
    a, _b = socketpair()
    backend.register(a.fileno(), READ)
    with pytest.raises(KeyError):
        backend.register(a.fileno(), WRITE)
    # The failed call changed nothing: still READ only.
    assert backend.poll(0) == []


def test_core_backend_modify_unknown_fd_raises(backend: Backend, socketpair: SocketPairs) -> None:
    a, _b = socketpair()
    with pytest.raises(KeyError):
        backend.modify(a.fileno(), READ)
    assert len(backend) == 0


def test_core_backend_unregister_unknown_fd_raises(
    backend: Backend, socketpair: SocketPairs
) -> None:
    a, _b = socketpair()
    with pytest.raises(KeyError):
        backend.unregister(a.fileno())
    backend.register(a.fileno(), READ)
    backend.unregister(a.fileno())
    with pytest.raises(KeyError):  # twice is a caller bug too
        backend.unregister(a.fileno())


def test_core_backend_peer_close_reports_readable(
    backend: Backend, socketpair: SocketPairs
) -> None:
    a, b = socketpair()
    backend.register(a.fileno(), READ)
    b.close()
    got = events_by_fd(backend.poll(WAIT))
    assert set(got) == {a.fileno()}
    assert got[a.fileno()] & READ_MASK  # READ, or HUP/ERROR that the loop folds into it
    assert a.recv(10) == b""  # and the reader finds out from its own syscall


def test_core_backend_full_socket_not_writable_until_drained(
    backend: Backend, socketpair: SocketPairs
) -> None:
    a, b = socketpair()
    assert fill_socket(a) > 0
    backend.register(a.fileno(), WRITE)
    assert backend.poll(0) == []
    assert drain_socket(b) > 0
    got = events_by_fd(backend.poll(WAIT))
    assert got.get(a.fileno(), 0) & WRITE_MASK


def test_core_backend_poll_timeout_returns_empty(backend: Backend, socketpair: SocketPairs) -> None:
    a, _b = socketpair()
    backend.register(a.fileno(), READ)
    # Only the result is asserted: no wall-clock checks (STYLE 6).
    assert backend.poll(0.05) == []
    assert backend.poll(0.0001) == []  # rounds up to 1 ms, not down to a busy 0


def test_core_backend_many_fds_only_active_reported(
    backend: Backend, socketpair: SocketPairs
) -> None:
    n = 500
    if backend.max_fd is not None:  # select: stay below FD_SETSIZE with the pairs' 2 fds
        n = min(n, (backend.max_fd - 64) // 2)
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * n + 64:
        pytest.skip(f"RLIMIT_NOFILE soft limit {soft} is too low for {n} socketpairs")
    pairs = [socketpair() for _ in range(n)]
    for a, _b in pairs:
        backend.register(a.fileno(), READ)
    assert len(backend) == n
    assert backend.poll(0) == []
    active = {0, 7, n // 2, n - 1}
    for i in active:
        pairs[i][1].send(b"ping")
    got = events_by_fd(backend.poll(WAIT))
    # The poll may in principle return early with fewer; collect until all are in.
    for _ in range(10):
        if len(got) >= len(active):
            break
        got.update(events_by_fd(backend.poll(WAIT)))
    assert set(got) == {pairs[i][0].fileno() for i in active}
    assert all(ev & READ for ev in got.values())


def test_core_backend_level_vs_edge_rereport(backend: Backend, socketpair: SocketPairs) -> None:
    a, b = socketpair()
    fd = a.fileno()
    backend.register(fd, READ)
    b.send(b"first")
    assert events_by_fd(backend.poll(WAIT)).get(fd, 0) & READ
    # Not read: still readable.
    if edge(backend):
        assert backend.poll(0) == []  # told once; only a new arrival is a new edge
        b.send(b"second")
        assert events_by_fd(backend.poll(WAIT)).get(fd, 0) & READ
        assert backend.poll(0) == []
    else:
        assert events_by_fd(backend.poll(0)).get(fd, 0) & READ
        assert events_by_fd(backend.poll(0)).get(fd, 0) & READ
        drain_socket(a)
        assert backend.poll(0) == []


def test_core_backend_capabilities_match_name(backend: Backend) -> None:
    # The loop reads flags, never types (STYLE 8.3): make sure they say what they mean.
    assert (backend.name in ("epoll-et", "kqueue-et", "rtsig")) == edge(backend)
    assert bool(backend.capabilities & Capability.FD_LIMIT) == (backend.max_fd is not None)
    scalable = backend.name in ("epoll", "epoll-et", "kqueue", "kqueue-et", "devpoll", "rtsig")
    assert bool(backend.capabilities & Capability.SCALABLE) == scalable


def test_core_backend_forget_then_close_then_reuse_fd(backend: Backend) -> None:
    # forget() + close() must leave no trace: no events for the closed fd, and the same
    # fd number, reused by a new socket, registers again without "already registered"
    # (epoll and kqueue rely on the kernel dropping the closed fd by itself).
    a, b = socket.socketpair()
    fd = a.fileno()
    backend.register(fd, READ)
    b.send(b"x")
    backend.forget(fd)
    a.close()
    assert fd not in events_by_fd(backend.poll(0))
    c, d = socket.socketpair()
    try:
        assert c.fileno() == fd  # the lowest free number comes back
        backend.register(c.fileno(), READ)
        d.send(b"y")
        assert events_by_fd(backend.poll(1.0)).get(fd, 0) & READ
        backend.unregister(fd)
    finally:
        for s in (b, c, d):
            s.close()
    assert len(backend) == 0
