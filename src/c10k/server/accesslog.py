"""Access log: Combined Log Format (or JSON lines), written off the loop.

The loop formats one line per response (a few string operations) and appends it to a
list; once per loop tick (``flush``, at most every 100 ms) the batch goes to a writer
thread through a ``queue.SimpleQueue``, so a slow disk or a full pipe never blocks the
loop (nginx buffers its access log the same way: ``access_log ... buffer=`` and
``flush=``). If the writer falls behind by more than ``MAX_PENDING_BATCHES`` batches, new
lines are dropped and counted (``dropped``): serving beats logging under overload.

Rotation (``reopen``, on SIGUSR1 as nginx, after logrotate renamed the file): the switch
to a new file at the same path is queued behind the batches already made, so the writer
thread does it between two batches: no line is lost, repeated or split across the files.

Combined format (Apache/nginx ``combined``)::

    127.0.0.1 - - [27/Nov/2026:08:30:00 +0000] "GET /x HTTP/1.1" 200 512 "-" "curl/8.0"

Fields the client controls (target, Referer, User-Agent) are escaped: ``"``, ``\\`` and
bytes outside printable ASCII become ``\\xHH``, so a request cannot forge log lines
(nginx escapes the same way).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sys
import threading
import time
from typing import IO

log = logging.getLogger("c10k.server")

MAX_PENDING_BATCHES = 64
REOPEN = "reopen"  # in the writer's queue: switch to a new file at the same path

_ESCAPE = {c: f"\\x{c:02X}" for c in range(256) if c < 0x20 or c >= 0x7F or c in b'"\\'}


def escape(value: bytes) -> str:
    """Bytes from the client as a safe log string.

    >>> escape(b'a"b\\n\\xff')
    'a\\\\x22b\\\\x0A\\\\xFF'
    """
    return "".join(_ESCAPE.get(c) or chr(c) for c in value)


def _user(subject: str | None) -> str:
    """The Combined format's user field: no spaces or quotes may go into it."""
    if not subject:
        return "-"
    return escape(subject.encode()).replace(" ", "\\x20")


def clf_time(timestamp: float) -> str:
    """``[27/Nov/2026:08:30:00 +0000]`` (always UTC).

    >>> clf_time(0)
    '[01/Jan/1970:00:00:00 +0000]'
    """
    return time.strftime("[%d/%b/%Y:%H:%M:%S +0000]", time.gmtime(timestamp))


class AccessLog:
    """Formats lines on the loop thread; a daemon thread writes them."""

    def __init__(self, target: str, fmt: str = "combined") -> None:
        self.fmt = fmt
        self.dropped = 0
        self._lines: list[str] = []
        self._queue: queue.SimpleQueue[list[str] | str | None] = queue.SimpleQueue()
        self._target = target
        self._stamp = ""
        self._stamp_second = -1
        self._stream: IO[str]
        if target == "-":
            self._stream = sys.stderr
            self._own = False
        else:
            self._stream = self._open()
            self._own = True
        self._thread: threading.Thread | None = None

    def _open(self) -> IO[str]:
        fd = os.open(self._target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        return os.fdopen(fd, "a", encoding="utf-8", buffering=1 << 16)

    def reopen(self) -> bool:
        """SIGUSR1 (or SIGHUP to a process on its own) after logrotate moved the file:
        later lines go to a new file at the same path. False for stderr (nothing to do).

        Lines made before the call are handed to the writer first, and the switch waits
        behind them in the writer's queue, so the file changes between two batches: every
        line made before the signal goes to the old file, every later one to the new, and
        a batch is never split across the two (each is written and flushed whole). If the
        new file cannot be made, the old one is kept."""
        if not self._own:
            return False
        self.flush()
        if self._thread is None:  # no writer yet: nothing is queued, switch here
            self._swap()
        else:
            self._queue.put(REOPEN)
        return True

    def _swap(self) -> None:
        try:
            new = self._open()
        except OSError as exc:
            log.warning(
                "access log %s cannot be reopened (%s); still writing the old file",
                self._target,
                exc.strerror,
            )
            return
        old, self._stream = self._stream, new
        try:
            old.close()
        except OSError:
            pass

    def _time(self, now: float) -> str:
        second = int(now)
        if second != self._stamp_second:
            self._stamp_second = second
            self._stamp = clf_time(now) if self.fmt == "combined" else str(second)
        return self._stamp

    def log(
        self,
        peer: str,
        method: bytes,
        target: bytes,
        minor: int,
        headers: dict[bytes, bytes] | None,
        status: int,
        size: int,
        user: str | None = None,
    ) -> None:
        """One response. ``method`` empty: the request could not be parsed (logged as
        ``"-"``, like nginx's 400s). ``user``: the client certificate's subject (mutual
        TLS), in the Combined format's user field (nginx: ``$ssl_client_s_dn``)."""
        now = time.time()
        referer = headers.get(b"referer", b"-") if headers else b"-"
        agent = headers.get(b"user-agent", b"-") if headers else b"-"
        if self.fmt == "json":
            line = json.dumps(
                {
                    "time": round(now, 3),
                    "remote": peer,
                    "method": escape(method),
                    "target": escape(target),
                    "version": f"HTTP/1.{minor}",
                    "status": status,
                    "bytes": size,
                    "referer": escape(referer),
                    "user_agent": escape(agent),
                    "user": user,
                    # The Host the request named (with [[site]] tables: how its site was
                    # chosen; an absolute-form target's authority). Combined has no field.
                    "host": escape(headers[b"host"]) if headers and b"host" in headers else None,
                },
                separators=(",", ":"),
            )
        else:
            request = f"{escape(method)} {escape(target)} HTTP/1.{minor}" if method else "-"
            line = (
                f'{peer} - {_user(user)} {self._time(now)} "{request}" {status} {size} '
                f'"{escape(referer)}" "{escape(agent)}"'
            )
        self._lines.append(line)

    def flush(self) -> None:
        """Hand the lines gathered so far to the writer thread (loop thread, each tick)."""
        if not self._lines:
            return
        if self._thread is None:  # started lazily: workers fork before any thread exists
            self._thread = threading.Thread(target=self._write, name="c10k-log", daemon=True)
            self._thread.start()
        if self._queue.qsize() >= MAX_PENDING_BATCHES:
            self.dropped += len(self._lines)
            self._lines = []
            return
        self._queue.put(self._lines)
        self._lines = []

    def _write(self) -> None:
        while True:
            batch = self._queue.get()
            if batch is None:
                break
            if isinstance(batch, str):  # REOPEN
                self._swap()
                continue
            try:
                self._stream.write("\n".join(batch) + "\n")
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a full disk must not kill the server; the lines are lost

    def close(self) -> None:
        """Flush what is left and stop the writer (waits up to 5 s)."""
        self.flush()
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=5)
        if self._own:
            self._stream.close()
