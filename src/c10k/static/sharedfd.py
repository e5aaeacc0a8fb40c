"""One open fd per cached file version, shared by every response that sends it.

Why: a response that opened the file for itself made each download cost two fds (the
socket and the file), so under a 20,000-fd limit a worker served at most ~10,000
concurrent downloads where its connection cap said 19,936 (docs/BENCHMARKS.md, Kegel test
2). Every sender reads at an explicit offset (sendfile, pread, splice), never at the
file position, so one fd serves them all, as nginx's ``open_file_cache`` shares them.

The fd closes when the last response using it is released (``FileRegion.release`` runs
``release``): nothing stays open for a file nobody is downloading. A file replaced on
disk gets a new cache entry at revalidation, and so a new fd; responses already under
way finish from the version they began with, as they did with fds of their own. Opens
happen in the disk pool and releases on the loop, hence the lock.
"""

from __future__ import annotations

import os
import threading

_LOCK = threading.Lock()


class SharedFd:
    __slots__ = ("fd", "refs")

    def __init__(self) -> None:
        self.fd = -1
        self.refs = 0

    def take(self) -> int:
        """The open fd with one more user, or -1 when none is open."""
        with _LOCK:
            if self.fd < 0:
                return -1
            self.refs += 1
            return self.fd

    def keep(self, fd: int) -> int:
        """Adopt ``fd``, just opened and checked, for the next users; if another thread
        kept one meanwhile, close ``fd`` and use that one."""
        with _LOCK:
            if self.fd < 0:
                self.fd, self.refs = fd, 1
                return fd
            self.refs += 1
            kept = self.fd
        os.close(fd)
        return kept

    def release(self, fd: int) -> None:
        """One user is done with ``fd`` (a FileRegion's closer); the last closes it."""
        with _LOCK:
            self.refs -= 1
            if self.refs:
                return
            self.fd = -1
        os.close(fd)
