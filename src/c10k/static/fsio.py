"""Every filesystem call the static layer makes, in one place.

Theory of operation
-------------------
The server answers what it can from memory on the event loop (``StaticFiles.handle_fast``)
and sends everything else to a small thread pool, because a cold ``open``/``stat``/``read``
can block for milliseconds to seconds on a busy or network disk (the C10K page's note on
Flash's AMPED design: helper threads for disk I/O, the event loop for sockets). To make
that split checkable, the static layer touches the filesystem only through the functions
below, so a test can:

- set ``delay_hook`` to a callable taking the path: it runs before every path-based call
  (``realpath``, ``stat``, ``open``, ``scandir``), e.g. to sleep when the path ends in
  ``slow.bin``, or to raise when called from a thread that must never touch the disk;
- or monkeypatch any single function here (the handler looks them up at call time).

``read``/``fstat``/``close`` take an fd, not a path, so they are not delayed: every slow
path starts with a path-based call anyway.
"""

from __future__ import annotations

import os
from collections.abc import Callable

# Called with the path before every path-based filesystem call; None (the default) costs
# one global load and one comparison.
delay_hook: Callable[[str], None] | None = None


def realpath(path: str) -> str:
    """``os.path.realpath`` (an ``lstat`` per component, ``readlink`` per symlink)."""
    if delay_hook is not None:
        delay_hook(path)
    return os.path.realpath(path)


def stat(path: str) -> os.stat_result:
    """``os.stat``, following symlinks."""
    if delay_hook is not None:
        delay_hook(path)
    return os.stat(path)


def open_fd(path: str, flags: int) -> int:
    """``os.open``."""
    if delay_hook is not None:
        delay_hook(path)
    return os.open(path, flags)


def scandir(path: str) -> list[os.DirEntry[str]]:
    """``os.scandir`` read whole (the iterator holds a directory fd until exhausted)."""
    if delay_hook is not None:
        delay_hook(path)
    with os.scandir(path) as it:
        return list(it)


def fstat(fd: int) -> os.stat_result:
    """``os.fstat``."""
    return os.fstat(fd)


def read(fd: int, size: int) -> bytes:
    """``os.read``."""
    return os.read(fd, size)


def close(fd: int) -> None:
    """``os.close``."""
    os.close(fd)
