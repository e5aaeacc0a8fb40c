"""The ``poller`` scenario: time per event vs. number of watched fds, for each backend.

Theory of operation
-------------------
Kegel's Poller_bench and Niels Provos's libevent benchmark measure the readiness API itself,
with no HTTP and no server: watch N file descriptors of which only a few are active, make the
active ones readable, call the wait, handle what it returns, repeat.  ``select()`` and
``poll()`` hand the kernel the whole interest set on every call and get it back scanned, so
their cost grows with N even when one fd is ready; ``epoll`` keeps the set in the kernel and
returns only ready fds, so its cost stays flat.  That is the "poll is O(n), epoll is O(1)"
curve of the C10K page.  Python adds its own O(n) to ``select.select`` (it rebuilds the fd
sets from lists each call); that cost is real for a Python server, so it is kept.

Set-up per (backend, N): ``active`` socketpairs (the ends we make readable) plus ``N - active``
idle fds.  The idle fds are unbound UDP sockets: a real socket each (so the kernel runs a
socket's ``poll`` method for it, as for an idle client), never readable, and one fd apiece, so
N reaches twice as far within ``RLIMIT_NOFILE`` as socketpairs would.  N is capped at the
soft limit less a reserve; the result says so.  ``select`` stops at its limit: CPython
refuses fds >= FD_SETSIZE (1024).

Each iteration writes one byte to the peer of every active pair, calls the wait once, and
reads the byte from every fd it reported.  ``wait_us`` is the time of the wait call alone;
``us_per_event`` is the whole iteration divided by the events handled.

Backends: the stdlib's ``select``, ``poll`` and ``epoll`` through ``select`` directly (the
kernel's cost plus CPython's), and every backend ``c10k.core.registry.available_backends()``
names, as ``core:<name>`` (the kernel's cost plus our event core's).  The gap between
``epoll`` and ``core:epoll`` is what the core's Python layer adds per wait.
"""

from __future__ import annotations

import os
import select
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from c10k.bench.machine import nofile_soft
from c10k.bench.stats import median

FD_SETSIZE = 1024  # glibc <sys/select.h>; CPython's select() raises ValueError beyond it
FD_RESERVE = 64  # fds kept back for stdio, the epoll fd, the generator's pipes...


class WaitBackend(Protocol):
    name: str
    max_fd: int | None

    def register(self, fd: int) -> None: ...
    def wait(self, timeout: float) -> Iterable[int]: ...
    def close(self) -> None: ...


class SelectBackend:
    name = "select"
    max_fd: int | None = FD_SETSIZE

    def __init__(self) -> None:
        self.fds: list[int] = []

    def register(self, fd: int) -> None:
        self.fds.append(fd)

    def wait(self, timeout: float) -> Iterable[int]:
        return select.select(self.fds, [], [], timeout)[0]

    def close(self) -> None:
        self.fds = []


class PollBackend:
    name = "poll"
    max_fd: int | None = None

    def __init__(self) -> None:
        self.p = select.poll()

    def register(self, fd: int) -> None:
        self.p.register(fd, select.POLLIN)

    def wait(self, timeout: float) -> Iterable[int]:
        return [fd for fd, _ in self.p.poll(int(timeout * 1000))]

    def close(self) -> None:
        pass


class EpollBackend:
    name = "epoll"
    max_fd: int | None = None

    def __init__(self) -> None:
        self.ep = select.epoll()

    def register(self, fd: int) -> None:
        self.ep.register(fd, select.EPOLLIN)

    def wait(self, timeout: float) -> Iterable[int]:
        return [fd for fd, _ in self.ep.poll(timeout)]

    def close(self) -> None:
        self.ep.close()


def stdlib_backends() -> dict[str, Callable[[], WaitBackend]]:
    out: dict[str, Callable[[], WaitBackend]] = {"select": SelectBackend}
    if hasattr(select, "poll"):
        out["poll"] = PollBackend
    if hasattr(select, "epoll"):
        out["epoll"] = EpollBackend
    return out


class _CoreAdapter:
    """Wraps a ``c10k.core`` backend (``register(fd, events)``, ``poll(timeout)`` returning
    ``[(fd, events)]``, ``close()``) in the three calls this bench needs."""

    def __init__(self, name: str, obj: Any, read_bit: int) -> None:
        self.name = f"core:{name}"
        self.obj = obj
        self.max_fd: int | None = getattr(obj, "max_fd", None)
        self._read = read_bit

    def register(self, fd: int) -> None:
        self.obj.register(fd, self._read)

    def wait(self, timeout: float) -> Iterable[int]:
        return [fd for fd, _ev in self.obj.poll(timeout)]

    def close(self) -> None:
        self.obj.close()


def _core_backends(notes: list[str]) -> dict[str, Callable[[], WaitBackend]]:
    """c10k.core's backends (``registry.available_backends()``), when that package exists.

    The bench may use c10k.core as a client library (STYLE.md section 2); an API it does not
    recognise is reported as a note, never a failure of the whole bench.
    """
    try:
        from c10k.core import registry
        from c10k.core.backend import READ
    except ImportError:
        return {}
    out: dict[str, Callable[[], WaitBackend]] = {}
    try:
        for name in registry.available_backends():
            cls = registry.get_backend_class(name)

            def make(cls: Any = cls, name: str = name) -> WaitBackend:
                return _CoreAdapter(name, cls(), READ)

            out[f"core:{name}"] = make
    except Exception as e:  # the bench must not fail because the core's API moved
        notes.append(f"c10k.core backends skipped: registry API not recognised ({e!r})")
        return {}
    return out


def all_backends(notes: list[str]) -> dict[str, Callable[[], WaitBackend]]:
    out = stdlib_backends()
    out.update(_core_backends(notes))
    return out


def fd_budget() -> int:
    return max(0, nofile_soft() - FD_RESERVE)


def plan_sizes(sizes: list[int], active: int) -> tuple[list[int], list[str]]:
    """Keep the sizes the fd limit allows; add the limit itself as the last point."""
    budget = fd_budget() - active  # each active pair costs 2 fds, the idle ones 1
    notes = []
    keep = [n for n in sizes if n <= budget]
    if len(keep) < len(sizes):
        too_big = [n for n in sizes if n > budget]
        notes.append(
            f"N={','.join(map(str, too_big))} need more fds than RLIMIT_NOFILE "
            f"({nofile_soft()}) allows: measured up to N={budget} instead"
        )
        if budget > (keep[-1] if keep else 0):
            keep.append(budget)
    return keep, notes


def bench_one(
    make: Callable[[], WaitBackend],
    n: int,
    active: int,
    seconds: float,
    max_iterations: int = 100_000,
) -> dict[str, Any]:
    """Measure one backend at N watched fds. Raises ValueError if the backend can't hold N."""
    active = max(1, min(active, n))
    pairs: list[tuple[socket.socket, socket.socket]] = []
    idle: list[socket.socket] = []
    backend = make()
    try:
        for _ in range(active):
            a, b = socket.socketpair()
            pairs.append((a, b))
        idle.extend(socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(n - active))
        max_fd = max([s.fileno() for s in idle] + [a.fileno() for a, _ in pairs])
        if backend.max_fd is not None and max_fd >= backend.max_fd:
            raise ValueError(
                f"{backend.name} is limited to fd < {backend.max_fd} "
                f"(FD_SETSIZE); N={n} needs fd {max_fd}"
            )
        # Interleave registration so the active fds sit among the idle ones, not first.
        step = max(1, len(idle) // active) if idle else 1
        it = iter(idle)
        for a, _b in pairs:
            backend.register(a.fileno())
            for _ in range(step):
                s = next(it, None)
                if s is not None:
                    backend.register(s.fileno())
        for s in it:
            backend.register(s.fileno())
        writers = [b.fileno() for _, b in pairs]
        waits: list[float] = []
        events = 0
        one = b"x"
        write, read, perf = os.write, os.read, time.perf_counter
        t_start = perf()
        deadline = t_start + seconds
        iterations = 0
        while iterations < max_iterations:
            for w in writers:
                write(w, one)
            t0 = perf()
            ready = list(backend.wait(1.0))
            t1 = perf()
            waits.append(t1 - t0)
            for fd in ready:
                read(fd, 16)
            events += len(ready)
            iterations += 1
            if t1 >= deadline and iterations >= 10:
                break
        total = perf() - t_start
        if events < iterations * active:
            raise RuntimeError(
                f"{backend.name}: {events} events in {iterations} iterations "
                f"with {active} active fds"
            )
        return {
            "backend": backend.name,
            "n": n,
            "active": active,
            "iterations": iterations,
            "events": events,
            "wait_us": round(median(waits) * 1e6, 3),
            "wait_us_mean": round(sum(waits) / len(waits) * 1e6, 3),
            "us_per_event": round(total / events * 1e6, 3),
        }
    finally:
        backend.close()
        for a, b in pairs:
            a.close()
            b.close()
        for s in idle:
            s.close()
