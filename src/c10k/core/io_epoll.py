"""epoll(7), level-triggered and edge-triggered.

Some facts about epoll that shape this code:
- The interest set lives in the kernel; ``epoll_wait`` costs O(ready), not O(watched), which
  is why it is the default here (Kegel strategy 1 with a scalable poller).
- EPOLLIN/EPOLLOUT/EPOLLERR/EPOLLHUP equal POLLIN/... and our event bits, so the list
  ``select.epoll.poll`` returns is handed up untouched: no per-event Python work.
- An fd must be removed *before* it is closed: epoll watches the open file description, and
  a dup'ed fd would keep reporting events for a closed number.
- maxevents bounds how many events one wait returns; the rest wait for the next call
  (level-triggered: still ready; edge-triggered: the kernel keeps them queued on the ready
  list, nothing is lost). CPython allocates the array per call, so it is kept moderate.
- Edge-triggered (EPOLLET, Kegel strategy 2, "readiness change notification"): the kernel
  says "became ready" once. The caller must then read until EAGAIN, or until a short read
  (for a stream socket a short read means the receive queue was drained, which is what
  nginx's ``ngx_unix_recv`` relies on), and accept until EAGAIN. Registering READ|WRITE once
  and never calling modify saves the epoll_ctl syscalls that level-triggered output
  toggling costs.
"""

from __future__ import annotations

import select
from collections.abc import Callable

from c10k.core.backend import Backend, Capability

# Events per wait, nginx's default (libuv takes 1024). The loop's turn is one wait's
# events: with more ready than this, a client that became ready meanwhile is seen after the
# next MAX_EVENTS, not after all of them. Beside 1,000 clients downloading 1 MiB files, a
# visitor's small file took p50 267-295 ms with 512 and 392-572 ms with 1024 (nginx
# 275-311; scripts/fast_reader_latency.py --size 1m --conns 1000, docs/BENCHMARKS.md).
MAX_EVENTS = 512


class EpollBackend(Backend):
    name = "epoll"
    capabilities = Capability.SCALABLE
    _flags = 0
    # The bit Acceptor(exclusive=True) ORs into a listener's registration: with several
    # processes waiting on one shared listener, a connection wakes one of them, not all
    # (Linux >= 4.5; see c10k.core.listener).
    exclusive_accept = getattr(select, "EPOLLEXCLUSIVE", 0)

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if hasattr(select, "epoll") else "epoll exists only on Linux"

    def __init__(self) -> None:
        self._ep = select.epoll()
        # No fd -> events dict of our own: the kernel's interest list is the record (EEXIST
        # / ENOENT become the contract's KeyError), which saves a dict entry, about 50
        # bytes, per connection at C1M scale. Only the count is kept, for len().
        self._count = 0
        self.poll = self._make_poll()  # type: ignore[method-assign,assignment]

    def _make_poll(self) -> Callable[[float | None], list[tuple[int, int]]]:
        # Bind the C method once: ``backend.poll(t)`` is then a single C call per wait.
        ep_poll = self._ep.poll

        def poll(timeout: float | None) -> list[tuple[int, int]]:
            return ep_poll(-1 if timeout is None else timeout, MAX_EVENTS)

        return poll

    def __len__(self) -> int:
        return self._count

    def register(self, fd: int, events: int) -> None:
        try:
            self._ep.register(fd, events | self._flags)
        except FileExistsError:
            raise KeyError(f"fd {fd} is already registered") from None
        self._count += 1

    def modify(self, fd: int, events: int) -> None:
        try:
            self._ep.modify(fd, events | self._flags)
        except FileNotFoundError:
            raise KeyError(f"fd {fd} is not registered") from None

    def unregister(self, fd: int) -> None:
        try:
            self._ep.unregister(fd)
        except FileNotFoundError:
            raise KeyError(f"fd {fd} is not registered") from None
        except OSError:  # already closed elsewhere (EBADF): the kernel forgot it anyway
            pass
        self._count -= 1

    def forget(self, fd: int) -> None:
        # epoll(7): closing the last fd referring to an open file description removes it
        # from every epoll set, so no epoll_ctl(DEL) is needed before close().
        self._count -= 1

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:  # replaced per instance
        raise NotImplementedError

    def close(self) -> None:
        self._ep.close()


class EpollETBackend(EpollBackend):
    name = "epoll-et"
    capabilities = Capability.SCALABLE | Capability.EDGE
    # EPOLLRDHUP: a FIN that arrived together with the last data is reported in the same
    # wakeup, so the reader knows a short read did not drain the EOF (Linux 2.6.17+).
    _flags = (select.EPOLLET | select.EPOLLRDHUP) if hasattr(select, "EPOLLET") else 0
