"""select(2): the portable baseline, and its hard limit.

select() takes bitmaps of FD_SETSIZE (1024 on Linux glibc) bits, so no fd >= 1024 can be
watched at all: CPython raises "filedescriptor out of range in select()". We refuse such
fds at ``register`` with an error that names the fix, and advertise FD_LIMIT so the server
caps its connections below ``max_fd`` instead of failing on connection 1,000. The cost per
call is O(highest fd) in the kernel plus O(n) to rebuild the lists in Python.
"""

from __future__ import annotations

import select

from c10k.core.backend import READ, WRITE, Backend, Capability

FD_SETSIZE = 1024  # glibc's; CPython's select module is compiled against it on Linux


class SelectBackend(Backend):
    name = "select"
    capabilities = Capability.FD_LIMIT
    max_fd = FD_SETSIZE

    def __init__(self) -> None:
        self._events: dict[int, int] = {}
        self._readers: set[int] = set()
        self._writers: set[int] = set()

    def _fds(self) -> dict[int, int]:
        return self._events

    def register(self, fd: int, events: int) -> None:
        if fd in self._events:
            raise KeyError(f"fd {fd} is already registered")
        if not 0 <= fd < FD_SETSIZE:
            raise ValueError(
                f"select() cannot watch fd {fd}: fds must be below FD_SETSIZE ({FD_SETSIZE}); "
                "use --backend poll or epoll for more connections"
            )
        self._events[fd] = events
        self._apply(fd, events)

    def modify(self, fd: int, events: int) -> None:
        if fd not in self._events:
            raise KeyError(f"fd {fd} is not registered")
        self._events[fd] = events
        self._apply(fd, events)

    def unregister(self, fd: int) -> None:
        del self._events[fd]
        self._readers.discard(fd)
        self._writers.discard(fd)

    def _apply(self, fd: int, events: int) -> None:
        if events & READ:
            self._readers.add(fd)
        else:
            self._readers.discard(fd)
        if events & WRITE:
            self._writers.add(fd)
        else:
            self._writers.discard(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is not None and timeout < 0:
            timeout = 0
        try:
            r, w, x = select.select(self._readers, self._writers, self._readers, timeout)
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            return []
        ready: dict[int, int] = {}
        for fd in r:
            ready[fd] = READ
        for fd in w:
            ready[fd] = ready.get(fd, 0) | WRITE
        for fd in x:  # exceptional condition (OOB data): let the reader find out
            ready[fd] = ready.get(fd, 0) | READ
        return list(ready.items())
