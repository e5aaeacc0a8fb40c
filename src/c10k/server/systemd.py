"""systemd integration, standard library only: socket activation and ``Type=notify``.

Socket activation (sd_listen_fds(3)): when ``LISTEN_PID`` is our pid, systemd passed
``LISTEN_FDS`` listening sockets from fd 3 on, named by ``LISTEN_FDNAMES`` (the socket
unit's ``FileDescriptorName=``). They replace ``--listen``/``-b``/``-p``: c10k serves on
them without binding, so the port is open (and queues connections) before c10k starts and
across restarts, and c10k needs no privilege to bind port 80. A name is read like
``--listen``'s prefixes: ``tls`` (HTTPS), ``proxy`` (a PROXY header first), both as
``proxy+tls``; any other name (systemd's default is the unit's name) is plain HTTP. Every
worker serves the same passed sockets (they are not re-bound per worker with
SO_REUSEPORT: the sockets are systemd's). The variables are unset once read, as
sd_listen_fds(unset_environment=1) does.

Readiness (sd_notify(3)): ``NOTIFY_SOCKET`` names an AF_UNIX datagram socket (``@`` for
the abstract namespace). The main process sends READY=1 once every worker serves,
RELOADING=1 (with MONOTONIC_USEC, as systemd 253's Type=notify-reload asks) and READY=1
around a SIGHUP reload, STOPPING=1 when it starts to stop, STATUS= lines, and WATCHDOG=1
every half of ``WATCHDOG_USEC`` while its loop turns. A notify socket that is missing or
refuses is logged once and never stops the server.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass

log = logging.getLogger("c10k.systemd")

SD_LISTEN_FDS_START = 3
FAMILIES = (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX)
NAME_WORDS = ("tls", "proxy")


@dataclass(frozen=True)
class Activation:
    """The sockets systemd passed, and ``--listen`` specs that describe them in order."""

    sockets: list[socket.socket]
    specs: list[str]


def listen_fds(environ: dict[str, str] | None = None) -> Activation | None:
    """The passed sockets, or None when systemd passed none to this process.

    Raises:
        ValueError: the variables are malformed or a passed fd is not a listening
            stream socket we can serve; the message says which.
    """
    env = os.environ if environ is None else environ
    pid, count = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    names = env.get("LISTEN_FDNAMES")
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        env.pop(key, None)
    if pid is None or count is None:
        return None
    if not pid.isdigit() or int(pid) != os.getpid():
        return None  # meant for another process (our parent's, say): not ours to take
    if not count.isdigit() or int(count) < 1:
        raise ValueError(f"LISTEN_FDS={count!r}: not a count of sockets")
    n = int(count)
    labels = names.split(":") if names else []
    if names and len(labels) != n:
        raise ValueError(f"LISTEN_FDNAMES names {len(labels)} sockets, LISTEN_FDS says {n}")
    socks = [_adopt(SD_LISTEN_FDS_START + i) for i in range(n)]
    specs = [_spec(s, labels[i] if labels else "") for i, s in enumerate(socks)]
    return Activation(socks, specs)


def _adopt(fd: int) -> socket.socket:
    try:
        sock = socket.socket(fileno=fd)
    except OSError as exc:
        raise ValueError(f"LISTEN_FDS: fd {fd} is not a socket ({exc.strerror})") from None
    problem = None
    if sock.family not in FAMILIES:
        problem = f"a socket of family {sock.family!r}"
    elif sock.type != socket.SOCK_STREAM:
        problem = "not a stream socket (ListenDatagram=? c10k needs ListenStream=)"
    elif not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
        problem = "not listening (Accept=yes? c10k needs Accept=no)"
    if problem:
        sock.detach()  # leave systemd's fd as it was
        raise ValueError(f"LISTEN_FDS: fd {fd} is {problem}")
    os.set_inheritable(fd, False)  # not to whatever a worker might exec
    sock.setblocking(False)
    return sock


def _spec(sock: socket.socket, name: str) -> str:
    words = [w for w in NAME_WORDS if w in name.split("+")]
    prefix = "".join(f"{w}:" for w in words)
    if sock.family == socket.AF_UNIX:
        return f"{prefix}unix:{sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    if sock.family == socket.AF_INET6:
        host = f"[{host}]"
    return f"{prefix}{host}:{port}"


class Notifier:
    """sd_notify for the main process; a no-op without ``NOTIFY_SOCKET``."""

    def __init__(self, environ: dict[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        path = env.pop("NOTIFY_SOCKET", None)
        usec = env.pop("WATCHDOG_USEC", None)
        watchdog_pid = env.pop("WATCHDOG_PID", None)
        self.address = ("\0" + path[1:]) if path and path.startswith("@") else path
        self.interval: float | None = None
        ours = watchdog_pid is None or watchdog_pid == str(os.getpid())
        if usec and usec.isdigit() and int(usec) > 0 and ours:
            self.interval = int(usec) / 2e6  # half the timeout, as sd_watchdog_enabled says
        self.next_ping = 0.0
        self._sock: socket.socket | None = None
        self._failed = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *lines: str) -> None:
        if self.address is None or self._failed:
            return
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), self.address)
        except OSError as exc:
            self._failed = True
            self.close()
            log.warning("NOTIFY_SOCKET %r: %s; not notifying systemd any more", self.address, exc)

    def ready(self, status: str) -> None:
        self.send("READY=1", f"STATUS={status}", f"MAINPID={os.getpid()}")

    def reloading(self) -> None:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, status: str) -> None:
        self.send(f"STATUS={status}")

    def watchdog_due(self) -> float | None:
        """When the next WATCHDOG=1 is due (None: no watchdog)."""
        return None if self.interval is None else self.next_ping

    def watchdog(self, now: float) -> None:
        """WATCHDOG=1 if it is due: call from the main loop, so a stuck loop stops it."""
        if self.interval is not None and now >= self.next_ping:
            self.send("WATCHDOG=1")
            self.next_ping = now + self.interval

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
