"""A keep-alive big-file client that discards bodies in the kernel (issue 15's yardstick).

wrk reads every byte into its own buffer, 8 KiB at a time, and at 1 MiB per response its
core saturates first (every bigfile round here says GENERATOR SATURATED): the server then
idles half the time, and its CPU per byte depends on how the two happen to interleave, not
on what it costs to send a file (rounds of one command spread 0.7-1.1x nginx). This client
reads a response's head into memory and its body with ``recv(MSG_TRUNC)``, which on a TCP
socket drops the bytes without copying them (Linux 4.x+), so its core has time to spare
and the server, not the client, sets the pace.

It parses what it needs to stay in step and counts the rest as an error, never as a
response: a status other than 200, a head without Content-Length or over 64 KiB, a
connection closed or reset mid-response. One thread, one epoll, ``--conns`` connections
opened before the clock starts; each sends ``GET PATH`` again as soon as a response is
whole, or, after a response that said ``Connection: close`` (c10k's first overload tier
says so once its loop lags), connects again first, as wrk does (counted: reconnects).

    .venv/bin/python scripts/trunc_client.py --port 8080 --path /big.bin --conns 1000 --secs 8

Prints one JSON line: responses, bytes (heads and bodies, partial ones included), errors
(by kind), reconnects, warm_errors, seconds and cpu0_busy (CPU 0's busy seconds, as
scripts/_pinned.py reads them, over the counted seconds only).
scripts/files_vs_nginx.py runs it with ``--client trunc``.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import select
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import busy0

HEAD_MAX = 64 * 1024
DISCARD = 16 << 20  # bytes one recv may drop (the buffer is never written: MSG_TRUNC)
WARM_LIMIT = 30.0  # seconds for every connection to have its first response


class Conn:
    __slots__ = ("close", "connecting", "head", "left", "served", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.head = bytearray()  # the head read so far
        self.left = -1  # body bytes still to come; -1 while reading the head
        self.close = False  # the response being read said Connection: close
        self.served = False  # a response came whole on this connection
        self.connecting = True  # its connect has not completed yet


def parse_head(head: bytes) -> tuple[int, bool]:
    """From a 200 response's head: the body's length (-1 for anything else: an error)
    and whether it said Connection: close."""
    lines = head.split(b"\r\n")
    if not lines[0].startswith(b"HTTP/1.1 200 "):
        return -1, False
    length, close = -1, False
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name, value = name.strip().lower(), value.strip()
        if name == b"content-length":
            length = int(value) if value.isdigit() else -1
        elif name == b"connection":
            close = b"close" in value.lower()
    return length, close


class Client:
    def __init__(self, host: str, port: int, path: str, conns: int) -> None:
        self.request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
        self.ep = select.epoll()
        self.conns: dict[int, Conn] = {}
        self.address = (host, port)
        self.responses = self.nbytes = self.reconnects = self.warm_errors = 0
        self.errors: dict[str, int] = {}  # by kind and when
        self.cold = 0  # connections that have not had a response yet
        self.warming = True
        self.sink = memoryview(bytearray(DISCARD))
        for _ in range(conns):
            self.connect()

    def connect(self, served: bool = False) -> None:
        """A new connection, nonblocking (as wrk's: a SYN the server drops delays that
        one connection, not the client); its request goes once it is up. ``served``: it
        replaces one that had its first response (the warm-up counts connections)."""
        s = socket.socket()
        s.setblocking(False)
        err = s.connect_ex(self.address)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            raise OSError(err, os.strerror(err))
        c = self.conns[s.fileno()] = Conn(s)
        c.served = served
        self.ep.register(s.fileno(), select.EPOLLOUT)
        self.cold += not served

    def connected(self, c: Conn) -> None:
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self.fail(c, f"connect {errno.errorcode.get(err, err)}")
            return
        c.connecting = False
        self.ep.modify(c.sock.fileno(), select.EPOLLIN)
        c.sock.send(self.request)

    def run(self, secs: float) -> tuple[float, float]:
        """Warm up until every connection has had a response (a server that meets a
        burst of new connections may drop their SYNs or reset some as stale: those
        connect again, counted in ``warm_errors``), then count for ``secs``. Returns the
        counted seconds and CPU 0's busy seconds over them (read here, so that the
        connects and the warm-up are not in them)."""
        self.spin(time.monotonic() + WARM_LIMIT, lambda: self.cold == 0)
        if self.cold:
            sys.exit(f"{self.cold} connections without a response after {WARM_LIMIT:.0f} s")
        self.warming = False
        self.responses = self.nbytes = self.reconnects = 0
        start, busy = time.monotonic(), busy0()
        self.spin(start + secs, lambda: False)
        return time.monotonic() - start, busy0() - busy

    def spin(self, end: float, done: Callable[[], bool]) -> None:
        while self.conns and not done() and (now := time.monotonic()) < end:
            for fd, _ in self.ep.poll(end - now):
                c = self.conns.get(fd)
                if c is None:
                    continue
                if c.connecting:
                    self.connected(c)
                else:
                    self.readable(c)

    def readable(self, c: Conn) -> None:
        try:
            while True:
                if c.left < 0:
                    data = c.sock.recv(HEAD_MAX)
                    if not data:
                        return self.fail(c, "closed")
                    self.nbytes += len(data)
                    if not self.head_read(c, data):
                        return
                else:
                    n = c.sock.recv_into(self.sink, min(c.left, DISCARD), socket.MSG_TRUNC)
                    if not n:
                        return self.fail(c, "closed")
                    self.nbytes += n
                    c.left -= n
                if c.left == 0:
                    self.responses += 1
                    self.cold -= not c.served
                    c.served = True
                    c.left = -1
                    if c.close:
                        return self.reconnect(c)
                    c.sock.send(self.request)
        except BlockingIOError:
            return None
        except OSError as exc:
            return self.fail(c, type(exc).__name__)

    def reconnect(self, c: Conn) -> None:
        """After a response that said Connection: close: a new connection in its place
        (one that cannot even start, out of ports say, is an error)."""
        self.drop(c)
        self.reconnects += 1
        try:
            self.connect(served=True)
        except OSError as exc:
            key = f"{type(exc).__name__} reconnecting"
            self.errors[key] = self.errors.get(key, 0) + 1

    def head_read(self, c: Conn, data: bytes) -> bool:
        """Take ``data`` into the head; once it is whole, set the body bytes left (what
        came after the head counts against them). False: wait for more, or failed."""
        c.head += data
        end = c.head.find(b"\r\n\r\n")
        if end < 0:
            if len(c.head) > HEAD_MAX:
                self.fail(c, "head")
            return False
        length, c.close = parse_head(bytes(c.head[:end]))
        extra = len(c.head) - end - 4
        if c.head.startswith(b"HTTP/1.1 503 "):  # shed by the server: an error, not fatal
            self.fail(c, "503")
            return False
        if length < 0 or extra > length:  # (a pipelined extra response: not asked for)
            if self.warming:  # a wrong path or server: connecting again will not mend it
                sys.exit(f"not a whole 200 response: {bytes(c.head[:200])!r}")
            self.fail(c, "head")
            return False
        c.head.clear()
        c.left = length - extra
        return True

    def fail(self, c: Conn, kind: str) -> None:
        if self.warming:
            self.warm_errors += 1
            self.cold -= not c.served
            self.drop(c)
            self.connect(c.served)
            return
        idle = c.left < 0 and not c.head
        where = "connecting" if c.connecting else "idle" if idle else "mid-response"
        key = f"{kind} {where}"
        self.errors[key] = self.errors.get(key, 0) + 1
        self.drop(c)

    def drop(self, c: Conn) -> None:
        self.ep.unregister(c.sock.fileno())
        del self.conns[c.sock.fileno()]
        c.sock.close()


def main() -> None:
    a = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a.add_argument("--host", default="127.0.0.1")
    a.add_argument("--port", type=int, required=True)
    a.add_argument("--path", default="/big.bin")
    a.add_argument("--conns", type=int, default=1000)
    a.add_argument("--secs", type=float, default=8.0)
    o = a.parse_args()
    client = Client(o.host, o.port, o.path, o.conns)
    secs, busy = client.run(o.secs)
    out = {"responses": client.responses, "bytes": client.nbytes, "errors": client.errors}
    out |= {"reconnects": client.reconnects, "warm_errors": client.warm_errors}
    print(json.dumps({**out, "seconds": round(secs, 3), "cpu0_busy": round(busy, 3)}))


if __name__ == "__main__":
    main()
