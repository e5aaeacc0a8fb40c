"""Waking the loop from other threads and from signal handlers.

A socketpair whose read end the loop watches. Other threads write a byte after posting a
callback (``Loop.call_soon_threadsafe``). For signals, ``signal.set_wakeup_fd`` makes the C
level handler write the signal number into it, so a signal arriving while the loop sleeps in
epoll_wait ends the wait at once; PEP 475 would otherwise just resume the wait. The loop
reads the numbers and runs its own handlers, outside signal context (asyncio does this).
"""

from __future__ import annotations

import socket


class Wakeup:
    def __init__(self) -> None:
        self.rsock, self.wsock = socket.socketpair()
        self.rsock.setblocking(False)
        self.wsock.setblocking(False)

    def fileno(self) -> int:
        return self.rsock.fileno()

    def wake(self) -> None:
        try:
            self.wsock.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # already full of wakeups: the loop will wake anyway
        except OSError:
            if self.wsock.fileno() >= 0:
                raise
            # closed: the loop is gone, there is nothing to wake (a late stop())

    def drain(self) -> bytes:
        """Read and return everything pending (signal numbers, or zero bytes)."""
        chunks = []
        while True:
            try:
                data = self.rsock.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)

    def close(self) -> None:
        self.rsock.close()
        self.wsock.close()
