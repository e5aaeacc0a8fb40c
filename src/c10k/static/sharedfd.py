"""One open fd per cached file version, shared by every response that sends it.

Why: a response that opened the file for itself made each download cost two fds (the
socket and the file), so under a 20,000-fd limit a worker served at most ~10,000
concurrent downloads where its connection cap said 19,936 (docs/BENCHMARKS.md, Kegel test
2). Every sender reads at an explicit offset (sendfile, pread, splice), never at the
file position, so one fd serves them all, as nginx's ``open_file_cache`` shares them.

When the last response using it is released (``FileRegion.release`` runs ``release``) the
fd stays open, idle, for the next download (nginx's ``open_file_cache inactive=``): a
keep-alive client fetching the same big file again and again finds its send complete in
one sendfile, so without this every response closed the fd and the next one went to the
disk pool to open it again (a thread hand-off, a wakeup and an open per download, most of
what a 1 MiB response cost beyond nginx's). At most ``IDLE_MAX`` idle fds stay open per
process (the oldest closes first), each for as long as the server's ``open_file_idle``
says (``expire``, from its once-a-second tick: a file deleted on disk is not held for
long), and one whose cache entry is gone (``retire``: evicted, or replaced at revalidation
because the file changed) closes with its last user. A file replaced on disk gets a new
cache entry at revalidation, and so a new fd; responses already under way finish from the
version they began with. A program that uses StaticFiles without c10k's server calls
``expire`` from a timer of its own (or ``close_idle``). Opens happen in the disk pool and
releases on the loop, hence the lock.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from c10k.region import Residency

# Idle fds kept open per process: counted in the fds the server keeps free for other
# things than clients (c10k.server.base.FD_RESERVE, 64).
IDLE_MAX = 16

_LOCK = threading.Lock()
_idle: OrderedDict[SharedFd, float] = OrderedDict()  # -> when it went idle (monotonic)


class SharedFd:
    __slots__ = ("fd", "refs", "residency", "retired")

    def __init__(self) -> None:
        self.fd = -1
        self.refs = 0
        self.retired = False
        # What of this file version is in memory (c10k.core.diskio), for its regions.
        self.residency = Residency()

    def take(self, same_file: Callable[[int], bool] | None = None) -> int:
        """The open fd with one more user, or -1 when none is open. An idle fd is first
        checked with ``same_file(fd)`` (an fstat: nothing read from the disk): a file
        changed in place since its last download is closed, and -1 returned, so the
        caller opens and checks it as it does a file never opened."""
        with _LOCK:
            fd = self.fd
            if fd < 0:
                return -1
            self.refs += 1
            if self.refs > 1:
                return fd
            del _idle[self]
        if same_file is None or same_file(fd):
            return fd
        self.retire()
        self.release(fd)
        return -1

    def keep(self, fd: int) -> int:
        """Adopt ``fd``, just opened and checked, for the next users; if another thread
        kept one meanwhile, close ``fd`` and use that one."""
        with _LOCK:
            if self.fd < 0:
                self.fd, self.refs = fd, 1
                return fd
            if not self.refs:
                del _idle[self]
            self.refs += 1
            kept = self.fd
        os.close(fd)
        return kept

    def release(self, fd: int) -> None:
        """One user is done with ``fd`` (a FileRegion's closer); the last leaves it idle,
        or closes it once retired."""
        with _LOCK:
            self.refs -= 1
            if self.refs:
                return
            if self.retired:
                self.fd = -1
            else:
                _idle[self] = time.monotonic()
                if len(_idle) <= IDLE_MAX:
                    return
                oldest, _ = _idle.popitem(last=False)
                fd, oldest.fd = oldest.fd, -1
        os.close(fd)

    def retire(self) -> None:
        """Its cache entry is gone: close the fd now if idle, else with its last user."""
        with _LOCK:
            self.retired = True
            if self.refs or self.fd < 0:
                return
            del _idle[self]
            fd, self.fd = self.fd, -1
        os.close(fd)


def expire(now: float, idle_seconds: float) -> int:
    """Close the fds idle for ``idle_seconds`` by ``now`` (monotonic); return how many
    idle ones are left open (a server with some must keep calling)."""
    closing = []
    with _LOCK:
        while _idle:
            shared, since = next(iter(_idle.items()))
            if now - since < idle_seconds:
                break
            del _idle[shared]
            closing.append(shared.fd)
            shared.fd = -1
        left = len(_idle)
    for fd in closing:
        os.close(fd)
    return left


def close_idle() -> None:
    """Close every idle fd now (a stop, or a test counting fds)."""
    expire(math.inf, 0.0)
