"""kqueue(2) (FreeBSD, macOS, the other BSDs): changes and events through one syscall.

kqueue tracks (ident, filter) pairs, so READ and WRITE interest are two kevents: EVFILT_READ
and EVFILT_WRITE, added with EV_ADD and removed with EV_DELETE. ``poll`` merges the per-
filter events back into one ``(fd, events)`` per fd. EV_EOF becomes HUP and EV_ERROR ERROR,
so the loop wakes both directions and the syscall tells the handler what happened.

It cannot run on Linux; tests drive it with a fake of ``select.kqueue`` that records the
kevents it is given, which checks the translation both ways.
"""

from __future__ import annotations

import select
from typing import Any

from c10k.core.backend import ERROR, HUP, READ, WRITE, Backend, Capability

MAX_EVENTS = 1024


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
        self._k = _consts(kevent is None)

    def _fds(self) -> dict[int, int]:
        return self._events

    def _change(self, fd: int, old: int, new: int) -> None:
        k = self._k
        changes = []
        for bit, filt in ((READ, k["EVFILT_READ"]), (WRITE, k["EVFILT_WRITE"])):
            if new & bit and not old & bit:
                changes.append(self._kevent(fd, filt, k["KQ_EV_ADD"]))
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
        ready: dict[int, int] = {}
        for ev in self._kq.control(None, MAX_EVENTS, timeout):
            bits = READ if ev.filter == k["EVFILT_READ"] else WRITE
            if ev.flags & k["KQ_EV_EOF"]:
                bits |= HUP
            if ev.flags & k["KQ_EV_ERROR"]:
                bits |= ERROR
            ready[ev.ident] = ready.get(ev.ident, 0) | bits
        return list(ready.items())

    def close(self) -> None:
        self._kq.close()


def _consts(real: bool) -> dict[str, int]:
    names = ("EVFILT_READ", "EVFILT_WRITE", "KQ_EV_ADD", "KQ_EV_DELETE", "KQ_EV_EOF", "KQ_EV_ERROR")
    if real and hasattr(select, "kqueue"):
        return {n: getattr(select, n) for n in names}
    # FreeBSD/macOS values, for the fake used in tests.
    return dict(zip(names, (-1, -2, 0x0001, 0x0002, 0x8000, 0x4000), strict=True))
