"""kqueue(2) (FreeBSD, macOS, the other BSDs): changes and events through one syscall.

kqueue tracks (ident, filter) pairs, so READ and WRITE interest are two kevents: EVFILT_READ
and EVFILT_WRITE, added with EV_ADD and removed with EV_DELETE. ``poll`` merges the per-
filter events back into one ``(fd, events)`` per fd. EV_EOF becomes HUP and EV_ERROR ERROR,
so the loop wakes both directions and the syscall tells the handler what happened.

Two backends, as for epoll:
- ``kqueue``: level-triggered. A filter is reported on every wait while its condition holds.
- ``kqueue-et``: every kevent is added with EV_CLEAR, kqueue's edge trigger. kqueue(2):
  "After the event is retrieved by the user, its state is reset", so a filter is reported
  once and again only on new activity (new data, freed send space, a new connection). That
  is epoll's EPOLLET, and nginx treats the two as one: its NGX_CLEAR_EVENT is EV_CLEAR on
  kqueue and EPOLLET on epoll. It sets Capability.EDGE, so the loop and the server read and
  accept until EAGAIN (or a short read) and register READ|WRITE once. The flag is derived
  from ``capabilities``, so what the backend asks the kernel for and what it tells the loop
  cannot disagree. ``auto`` prefers level-triggered ``kqueue``, for the reason it prefers
  epoll LT (see c10k.core.registry).

Where EV_CLEAR differs from EPOLLET:
- kqueue reports per filter: a READ edge does not also carry WRITE, whereas an epoll edge
  carries the fd's whole current mask. Nothing may count on WRITE riding along with READ.
- The peer's FIN shows as EV_EOF on EVFILT_READ, in the same event as the last data (the
  socket filter reports EV_EOF whenever the read side is shut). The edge variant adds
  RDHUP (EPOLLRDHUP's bit) to that event's bits, so a reader that stops at a short read
  knows no new edge will come for the EOF and reads on to it, exactly as for epoll-et,
  which registers EPOLLRDHUP for that reason (nginx: ``rev->pending_eof`` on EV_EOF).

It cannot run on Linux; tests drive it with a fake of ``select.kqueue`` that records the
kevents it is given, which checks the translation both ways, and the contract suite runs
both variants on real sockets through an emulation of kqueue over epoll.
"""

from __future__ import annotations

import select
from typing import Any

from c10k.core.backend import ERROR, HUP, READ, WRITE, Backend, Capability

MAX_EVENTS = 1024
# EPOLLRDHUP's value, the bit c10k.core.backend.READ_MASK and the server read as "the peer's
# FIN is queued". kqueue has no such flag of its own (see "Where EV_CLEAR differs").
RDHUP = 0x2000


class KqueueBackend(Backend):
    name = "kqueue"
    capabilities = Capability.SCALABLE

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if hasattr(select, "kqueue"):
            return None
        return "kqueue exists only on BSD and macOS (select.kqueue)"

    def __init__(self, kq: Any = None, kevent: Any = None) -> None:
        # kq/kevent can be injected so the translation is testable where kqueue is absent.
        self._kq = kq if kq is not None else select.kqueue()  # type: ignore[attr-defined,unused-ignore]
        self._kevent = kevent if kevent is not None else select.kevent  # type: ignore[attr-defined,unused-ignore]
        self._events: dict[int, int] = {}
        self._k = k = _consts(kevent is None)
        edge = self.capabilities & Capability.EDGE
        # Flags of every kevent added: EV_ADD enables the filter too (kqueue(2): "Adding an
        # event automatically enables it"); EV_CLEAR makes it edge-triggered.
        self._add = k["KQ_EV_ADD"] | (k["KQ_EV_CLEAR"] if edge else 0)
        # What an EV_EOF on EVFILT_READ means to the loop: HUP, plus RDHUP when edge-
        # triggered, where it is the only word the reader gets about an EOF it has not read.
        self._read_eof = HUP | (RDHUP if edge else 0)

    def _fds(self) -> dict[int, int]:
        return self._events

    def _change(self, fd: int, old: int, new: int) -> None:
        k = self._k
        changes = []
        for bit, filt in ((READ, k["EVFILT_READ"]), (WRITE, k["EVFILT_WRITE"])):
            if new & bit and not old & bit:
                changes.append(self._kevent(fd, filt, self._add))
            elif old & bit and not new & bit:
                changes.append(self._kevent(fd, filt, k["KQ_EV_DELETE"]))
        if changes:
            self._kq.control(changes, 0, 0)

    def register(self, fd: int, events: int) -> None:
        if fd in self._events:
            raise KeyError(f"fd {fd} is already registered")
        self._change(fd, 0, events)
        self._events[fd] = events

    def modify(self, fd: int, events: int) -> None:
        old = self._events[fd]
        try:
            self._change(fd, old, events)
        except Exception:
            self._events[fd] = old
            raise
        self._events[fd] = events

    def unregister(self, fd: int) -> None:
        old = self._events.pop(fd)
        try:
            self._change(fd, old, 0)
        except OSError:  # the fd was closed first: kqueue already dropped its kevents
            pass

    def forget(self, fd: int) -> None:
        # kqueue(2): "Calling close() on a file descriptor will remove any kevents that
        # reference the descriptor", so no EV_DELETE is needed before close().
        del self._events[fd]

    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        if timeout is not None and timeout < 0:
            timeout = 0
        k = self._k
        rfilter, eof, error = k["EVFILT_READ"], k["KQ_EV_EOF"], k["KQ_EV_ERROR"]
        read_eof = self._read_eof
        ready: dict[int, int] = {}
        for ev in self._kq.control(None, MAX_EVENTS, timeout):
            flags = ev.flags
            if ev.filter == rfilter:
                bits = (READ | read_eof) if flags & eof else READ
            else:
                bits = (WRITE | HUP) if flags & eof else WRITE
            if flags & error:
                bits |= ERROR
            ready[ev.ident] = ready.get(ev.ident, 0) | bits
        return list(ready.items())

    def close(self) -> None:
        self._kq.close()


class KqueueEdgeBackend(KqueueBackend):
    """kqueue with EV_CLEAR on every kevent: edge-triggered, like epoll-et (module header)."""

    name = "kqueue-et"
    capabilities = Capability.SCALABLE | Capability.EDGE


def _consts(real: bool) -> dict[str, int]:
    names = (
        "EVFILT_READ",
        "EVFILT_WRITE",
        "KQ_EV_ADD",
        "KQ_EV_DELETE",
        "KQ_EV_CLEAR",
        "KQ_EV_EOF",
        "KQ_EV_ERROR",
    )
    if real and hasattr(select, "kqueue"):
        return {n: getattr(select, n) for n in names}
    # FreeBSD/macOS values (<sys/event.h>; OpenBSD and NetBSD agree), for the fakes in tests.
    return dict(zip(names, (-1, -2, 0x0001, 0x0002, 0x0020, 0x8000, 0x4000), strict=True))
