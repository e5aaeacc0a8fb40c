"""The readiness-backend interface, in the spirit of Kegel's Poller.

A backend watches fds for read/write interest and, on ``poll(timeout)``, returns the ready
ones as a list of ``(fd, events)``. That is all: no callbacks, no sockets, no HTTP.

Event bits are POLLIN/POLLOUT/POLLERR/POLLHUP's values on Linux (which EPOLLIN etc. share),
so the poll and epoll backends hand the kernel's list through untouched: zero per-event
translation on the hot path. Backends whose OS speaks another language (select, kqueue)
translate into these bits. ERROR and HUP are reported whatever the interest; the loop folds
them into both directions (CPython ``EpollSelector.select``, trio), so a reader or writer
waiting on a dead fd always wakes up and finds out from its own syscall.

Capabilities are flags the loop and the server read instead of checking types (nginx's
``ngx_event_flags``):
    EDGE       -- readiness *change* notification (epoll EPOLLET): a waiter is told once,
                  so it must read/write/accept until EAGAIN (or a short read) before waiting
                  again. Registering READ|WRITE once and never modifying is the norm.
    SCALABLE   -- ``poll`` cost does not grow with the number of idle fds (epoll, kqueue,
                  /dev/poll); select and poll are O(n) per call.
    FD_LIMIT   -- fds at or above ``max_fd`` cannot be registered (select's FD_SETSIZE);
                  the server must cap its connections below it.
"""

from __future__ import annotations

import enum
import select
from abc import ABC, abstractmethod
from typing import ClassVar

READ = 0x001  # POLLIN == EPOLLIN
WRITE = 0x004  # POLLOUT == EPOLLOUT
ERROR = 0x008  # POLLERR == EPOLLERR
HUP = 0x010  # POLLHUP == EPOLLHUP
# What wakes a reader / a writer (ERR and HUP wake both).
READ_MASK = READ | ERROR | HUP | getattr(select, "EPOLLRDHUP", 0x2000)
WRITE_MASK = WRITE | ERROR | HUP


class Capability(enum.IntFlag):
    NONE = 0
    EDGE = 1
    SCALABLE = 2
    FD_LIMIT = 4


class BackendUnavailable(RuntimeError):
    """This backend cannot run on this OS/kernel; the message says why and what to use."""


class Backend(ABC):
    """One readiness strategy. Subclasses set ``name``, ``capabilities`` and the operations.

    All methods take plain int fds. ``register`` on an fd already registered, or
    ``modify``/``unregister`` on one that is not, raise (KeyError / OSError), as
    ``selectors`` does: double registration is a caller bug worth hearing about.
    """

    name: ClassVar[str]
    capabilities: ClassVar[Capability] = Capability.NONE
    #: Highest fd + 1 this backend can watch, or None for no limit of its own.
    max_fd: ClassVar[int | None] = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None if the backend can run here, else a sentence saying why not."""
        return None

    @abstractmethod
    def register(self, fd: int, events: int) -> None:
        """Start watching ``fd`` for ``events`` (READ and/or WRITE)."""

    @abstractmethod
    def modify(self, fd: int, events: int) -> None:
        """Change the interest set of a registered fd."""

    @abstractmethod
    def unregister(self, fd: int) -> None:
        """Stop watching ``fd``. Call it *before* closing the fd."""

    def forget(self, fd: int) -> None:
        """Stop watching ``fd``, which the caller closes next and never dup()ed.

        Backends whose kernel object drops an fd by itself when its last reference is
        closed (epoll, kqueue) skip the syscall here: on a new connection per request
        that is one epoll_ctl(DEL) saved per connection (nginx relies on the same rule,
        see ngx_epoll_del_event's NGX_CLOSE_EVENT). Others just unregister.
        """
        self.unregister(fd)

    @abstractmethod
    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        """Wait up to ``timeout`` seconds (None: forever, 0: don't block).

        Returns:
            ``[(fd, events), ...]`` for the ready fds; possibly empty on timeout or EINTR.
        """

    def close(self) -> None:  # noqa: B027 (optional hook)
        """Release the kernel object, if any."""

    def __len__(self) -> int:
        return len(self._fds())

    def _fds(self) -> dict[int, int]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} fds={len(self)}>"


def ms_timeout(timeout: float | None) -> int:
    """Seconds to the milliseconds poll()/devpoll want, rounded *up* (CPython does the
    same, so a timer never fires early and spins).

    >>> ms_timeout(None), ms_timeout(0), ms_timeout(0.0001), ms_timeout(1.5)
    (-1, 0, 1, 1500)
    """
    import math

    if timeout is None:
        return -1
    if timeout <= 0:
        return 0
    return math.ceil(timeout * 1e3)
