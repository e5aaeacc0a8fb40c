"""poll(2) and Solaris /dev/poll: no fd limit, but O(n) per call for poll.

poll() passes the whole interest array to the kernel on every call, so its cost grows with
the number of idle connections (Kegel's Poller_bench; see ``c10k bench poller``). The
kernel's revents use exactly our event bits, so the list passes through untouched.

/dev/poll (Solaris, illumos) keeps the interest set in the kernel like epoll; CPython
exposes it as ``select.devpoll`` with poll's API, except that registering an fd twice ORs
the masks, so ``modify`` must remove the fd first. It cannot run on Linux: the class is
exercised here with a fake of the OS object.
"""

from __future__ import annotations

import select
from typing import Any

from c10k.core.backend import Backend, Capability, ms_timeout


class PollBackend(Backend):
    name = "poll"
    capabilities = Capability.NONE

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None if hasattr(select, "poll") else "select.poll is not available on this OS"

    def __init__(self) -> None:
        self._poller: Any = self._make()
        self._events: dict[int, int] = {}

    def _make(self) -> Any:
        return select.poll()

    def _fds(self) -> dict[int, int]:
        return self._events

    def register(self, fd: int, events: int) -> None:
        if fd in self._events:
            raise KeyError(f"fd {fd} is already registered")
        self._poller.register(fd, events)
        self._events[fd] = events

    def modify(self, fd: int, events: int) -> None:
        if fd not in self._events:
            raise KeyError(f"fd {fd} is not registered")
        self._poller.modify(fd, events)
        self._events[fd] = events

    def unregister(self, fd: int) -> None:
        del self._events[fd]
        self._poller.unregister(fd)

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        result: list[tuple[int, int]] = self._poller.poll(ms_timeout(timeout))
        return result


class DevpollBackend(PollBackend):
    name = "devpoll"
    capabilities = Capability.SCALABLE

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if hasattr(select, "devpoll"):
            return None
        return "/dev/poll exists only on Solaris and illumos (select.devpoll)"

    def _make(self) -> Any:
        return select.devpoll()  # type: ignore[attr-defined,unused-ignore]

    def modify(self, fd: int, events: int) -> None:
        if fd not in self._events:
            raise KeyError(f"fd {fd} is not registered")
        # /dev/poll ORs a second registration into the first: remove, then add.
        self._poller.unregister(fd)
        self._poller.register(fd, events)
        self._events[fd] = events

    def close(self) -> None:
        self._poller.close()
