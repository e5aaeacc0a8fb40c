"""Shared helpers for the tests/core/test_core_*.py suites (imported, not a conftest).

- ``BACKEND_PARAMS``: every registered backend; those that cannot run here carry a skip
  mark whose reason is ``unavailable_backends()[name]`` (CPython ``BaseSelectorTestCase``
  subclasses skip the same way).
- ``fill_socket`` / ``drain_socket``: trio ``test_io.py``'s helpers.
- ``Watchdog``: stops a ``Loop`` from a thread through its *own* socketpair after a
  generous bound, so a test whose wakeup is broken fails instead of hanging. It never
  uses the loop's wakeup, which is one of the things under test.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from c10k.core import READ, Loop
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
