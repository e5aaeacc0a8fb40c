"""Shared helpers for the tests/core/test_core_*.py suites (imported, not a conftest).

- ``BACKEND_PARAMS``: every registered backend; those that cannot run here carry a skip
  mark whose reason is ``unavailable_backends()[name]`` (CPython ``BaseSelectorTestCase``
  subclasses skip the same way).
- ``fill_socket`` / ``drain_socket``: trio ``test_io.py``'s helpers.
- ``Watchdog``: stops a ``Loop`` from a thread through its *own* socketpair after a
  generous bound, so a test whose wakeup is broken fails instead of hanging. It never
  uses the loop's wakeup, which is one of the things under test.
- ``FakeKevent`` and the <sys/event.h> values, for the fakes of ``select.kqueue``;
  ``EpollKqueue``: kqueue emulated over epoll, and ``EMULATED_PARAMS`` /
  ``make_emulated``: the kqueue backends on it, so the contract suite runs them on real
  sockets where kqueue does not exist.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from c10k.core import READ, Backend, Loop
from c10k.core.io_kqueue import KqueueBackend
from c10k.core.registry import BACKENDS, available_backends, unavailable_backends


def _backend_params() -> list[object]:
    unavailable = unavailable_backends()
    params: list[object] = [pytest.param(n, id=n) for n in available_backends()]
    params += [
        pytest.param(n, id=n, marks=pytest.mark.skip(reason=unavailable[n]))
        for n in BACKENDS
        if n in unavailable
    ]
    return params


BACKEND_PARAMS = _backend_params()


# -- kqueue: kevents, and kqueue emulated over epoll --------------------------------------

# FreeBSD/macOS <sys/event.h> values, written out here independently of io_kqueue.
EVFILT_READ, EVFILT_WRITE = -1, -2
EV_ADD, EV_DELETE, EV_CLEAR, EV_ERROR, EV_EOF = 0x0001, 0x0002, 0x0020, 0x4000, 0x8000


class FakeKevent:
    def __init__(self, ident: int, filter: int = EVFILT_READ, flags: int = EV_ADD) -> None:
        self.ident = ident
        self.filter = filter
        self.flags = flags

    def __repr__(self) -> str:
        return f"FakeKevent({self.ident}, {self.filter}, {self.flags:#x})"


class EpollKqueue:
    """``select.kqueue``'s EVFILT_READ/EVFILT_WRITE semantics, emulated with Linux epoll.

    A model of the kernel, not a recorder: the contract suite uses it to run the kqueue
    backends on real socketpairs here. kqueue keys a kevent by (ident, filter) and epoll
    by fd, so each filter gets an epoll of its own (registered for EPOLLIN|EPOLLRDHUP or
    for EPOLLOUT), and a wait blocks on an outer epoll watching both. The rules kept:
    - EV_ADD adds the kevent, or updates the one already there; EV_DELETE removes it and
      fails (ENOENT, EBADF) for one that is not there, as kevent(2) does.
    - EV_CLEAR is EPOLLET: reported once, again only on new activity. Without it, a
      kevent is reported on every wait while its condition holds.
    - EV_EOF is set when epoll says HUP or ERR (or RDHUP, for EVFILT_READ): the
      connection, or its read side, is shut. EV_ERROR in a returned kevent reports a
      failed change, not a socket error; here a failed change raises instead, as it does
      from a ``control`` call with no room for events (the backend's changes).
    - close() of an fd drops its kevents: epoll drops a closed fd's registration too (the
      contract suite never dup()s a watched fd).
    - ``control(changes, max_events, timeout)``: changes first, then up to ``max_events``
      events; ``timeout`` None blocks, a negative one raises ValueError as CPython's does.
    """

    def __init__(self) -> None:
        self._filters = {
            EVFILT_READ: (select.epoll(), select.EPOLLIN | select.EPOLLRDHUP),
            EVFILT_WRITE: (select.epoll(), select.EPOLLOUT),
        }
        self._outer = select.epoll()
        for ep, _ in self._filters.values():
            self._outer.register(ep.fileno(), select.EPOLLIN)
        self.closed = False

    def control(self, changes: Any, max_events: int, timeout: float | None = None) -> Any:
        if timeout is not None and timeout < 0:
            raise ValueError("timeout must be positive or None")
        for c in changes or ():
            ep, mask = self._filters[c.filter]
            if c.flags & EV_DELETE:
                ep.unregister(c.ident)
            elif c.flags & EV_ADD:
                mask |= select.EPOLLET if c.flags & EV_CLEAR else 0
                try:
                    ep.register(c.ident, mask)
                except FileExistsError:
                    ep.modify(c.ident, mask)
        if not max_events:
            return []
        self._outer.poll(-1 if timeout is None else timeout, 2)
        out: list[FakeKevent] = []
        for filt, (ep, _) in self._filters.items():
            eof = select.EPOLLHUP | select.EPOLLERR
            eof |= select.EPOLLRDHUP if filt == EVFILT_READ else 0
            if len(out) < max_events:
                for fd, ev in ep.poll(0, max_events - len(out)):
                    out.append(FakeKevent(fd, filt, EV_EOF if ev & eof else 0))
        return out

    def close(self) -> None:
        for ep, _ in self._filters.values():
            ep.close()
        self._outer.close()
        self.closed = True


def _emulated() -> list[str]:
    # Only where kqueue is missing (elsewhere the real one runs) and epoll is there.
    if hasattr(select, "kqueue") or not hasattr(select, "epoll"):
        return []
    return [n for n in ("kqueue", "kqueue-et") if n in BACKENDS]


#: ``(name, "emulated")`` params, ids ``<name>-emulated``: the backends ``make_emulated``
#: can run here although their kernel object is missing.
EMULATED_PARAMS = [pytest.param((n, "emulated"), id=f"{n}-emulated") for n in _emulated()]


def make_emulated(name: str) -> Backend:
    """The named kqueue backend, on an ``EpollKqueue``."""
    cls = BACKENDS[name]
    assert issubclass(cls, KqueueBackend), name
    return cls(kq=EpollKqueue(), kevent=FakeKevent)


def fill_socket(sock: socket.socket) -> int:
    """Send until the kernel refuses; returns how many bytes went in."""
    total = 0
    try:
        while True:
            total += sock.send(b"x" * 65536)
    except BlockingIOError:
        pass
    return total


def drain_socket(sock: socket.socket) -> int:
    """Receive until EAGAIN (or EOF); returns how many bytes came out."""
    total = 0
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            total += len(data)
    except BlockingIOError:
        pass
    return total


class SocketPairs:
    """Makes nonblocking socketpairs and closes every one of them at teardown."""

    def __init__(self) -> None:
        self.socks: list[socket.socket] = []

    def __call__(self) -> tuple[socket.socket, socket.socket]:
        a, b = socket.socketpair()
        self.socks += (a, b)
        a.setblocking(False)
        b.setblocking(False)
        return a, b

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks.clear()


@pytest.fixture
def socketpair() -> Iterator[SocketPairs]:
    pairs = SocketPairs()
    yield pairs
    pairs.close()


class Watchdog:
    """After ``seconds``, a thread writes a byte that a loop-watched fd turns into stop()."""

    def __init__(self, loop: Loop, seconds: float = 10.0) -> None:
        self.loop = loop
        self.fired = False
        self._r, self._w = socket.socketpair()
        self._r.setblocking(False)
        loop.add_fd(self._r.fileno(), READ, self._on_ready)
        self._timer = threading.Timer(seconds, self._w.send, (b"!",))
        self._timer.daemon = True

    def _on_ready(self, _events: int) -> None:
        self.fired = True
        drain_socket(self._r)
        self.loop.stop()

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join()
        self.loop.remove_fd(self._r.fileno())
        self._r.close()
        self._w.close()


def run_loop(loop: Loop, seconds: float = 10.0) -> None:
    """``loop.run()`` under a Watchdog; fails the test if the watchdog had to stop it."""
    with Watchdog(loop, seconds) as dog:
        loop.run()
    assert not dog.fired, f"the loop did not stop by itself within {seconds} s"


class PollCounter:
    """Wraps ``backend.poll`` (an instance attribute shadows the method, also for epoll's
    per-instance poll) and records every timeout it is called with."""

    def __init__(self, loop: Loop) -> None:
        self.timeouts: list[float | None] = []
        self.in_poll = threading.Event()
        real = loop.backend.poll

        def poll(timeout: float | None) -> list[tuple[int, int]]:
            self.timeouts.append(timeout)
            self.in_poll.set()
            return real(timeout)

        loop.backend.poll = poll  # type: ignore[method-assign]

    @property
    def calls(self) -> int:
        return len(self.timeouts)
