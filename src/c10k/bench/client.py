"""The pure-Python load generator: nonblocking HTTP/1.1 clients, spread over processes.

Theory of operation
-------------------
One generator process is one ``epoll`` loop driving many sockets (no threads, no asyncio: the
generator's own cost per request must stay small and visible).  The parent (``LoadGenerator``)
starts several such processes, ``python -m c10k.bench.client``, and talks to each over a pipe
in JSON lines:

    parent -> worker   {config}            first line: mode and parameters
                       {"cmd": "go"}        start the measured run (all workers at once)
                       {"cmd": "hold", "n": N}      idle mode: grow to N held connections
                       {"cmd": "stop-adding"}       modem mode: first failure seen somewhere
                       {"cmd": "stop"}      finish and report
    worker -> parent   {"event": "ready"}   set-up done (connections open), waiting for go
                       {"event": "fail", ...}       modem: a user failed
                       {"event": "result", ...}     counters + latency histogram, then exit

Why processes: each process has its own RLIMIT_NOFILE (20,000 here), and the Python loop is
single-threaded; a run of 10,000+ connections is split so that no process holds more than
``PER_PROCESS_MAX`` sockets.  Why several source addresses: a TCP connection is named by its
4-tuple, so one (source address, destination) pair has one ephemeral port range (28,232 ports
here) and ``connect()``'s port search slows down as that range fills (the kernel walks it
looking for a free port; see the ``IP_BIND_ADDRESS_NO_PORT`` commit, Linux 4.2).  So each
(source address, destination) pair is kept to about ``PER_SOURCE_MAX`` connections, using
127.0.0.2, .3, ... (all of 127.0.0.0/8 is local on Linux) and ``IP_BIND_ADDRESS_NO_PORT`` so
the port is chosen at ``connect()`` time for the full 4-tuple.

Modes
~~~~~
- ``closed`` with ``keepalive=True``: a closed loop, each connection sends the next request
  when the previous response is complete (wrk's model).  A server that closes after each
  response (HTTP/1.0 ``http.server``) gets a new connection, counted in ``reconnects``.
- ``closed`` with ``keepalive=False``: a new connection per request, ``Connection: close``;
  latency includes the connect.  We read until the server's FIN so the *server* is the
  active closer and holds the TIME_WAIT, as with real browsers under HTTP/1.0 semantics,
  instead of exhausting the generator's ports.
- ``open``: requests start at a fixed rate whatever the server does (httperf ``--rate``),
  each on a new connection.  Latency is measured from the *intended* start time, so a stalled
  generator or a full backlog cannot hide queueing ("coordinated omission", Gil Tene).
- ``idle``: connect, make one request, then sit; the parent asks for more in steps.
- ``modem``: paced slow readers, see ``ModemWorker``.

Why pace in packets (modem mode).  A modem user receives data one TCP segment at a time, at
the line rate.  Reading one byte per 1/rate seconds would cost a syscall per byte and a timer
per byte per user; reading "as fast as possible" would not be a slow client at all.  So each
user wakes once per packet time (``packet / rate`` seconds: 1,460 B at 3,600 B/s is every
0.41 s) and reads at most what its token bucket allows.  That is 2.5 wake-ups a second per
user, so one Python process can pace thousands; ``read_packets`` > 1 reads that many
packets' worth per wake-up at the same average rate (the modem scenario reads 4, every
1.6 s: at 50,000 users that is 31,000 wake-ups a second instead of 123,000, and the data
still arrives segment by segment at the server's pace; the rate is judged on packet times
either way).  Ticks due within ``TICK_SLACK_S`` share one wake-up of the loop.  The
socket's receive buffer is set small (``SO_RCVBUF`` 8 KiB, doubled by the kernel; about
11 KiB of data may then queue) *before* connect so the window stays small and
the server has to keep the file's remainder itself and refill the socket as the user drains
it, which is the load a slow client puts on a server.  And the user announces an Ethernet
MSS (``TCP_MAXSEG`` 1,460, ``mss`` in the config) before connect: loopback's own MSS is
65,483 bytes, and the kernel sizes a socket's send buffer from its MSS (``tcp_sndbuf_expand``:
about twice the initial window of ten segments), so without it every server socket starts
with a 1.3 MiB buffer no Internet client would ever cause, and the run measures loopback's
segment size instead of the server (docs/BENCHMARKS.md, Kegel test 2).

Bodies dropped in the kernel (``discard`` in the config, the bigfile scenario's default).
A closed loop on big files copies every body byte into Python first, and this generator's
core (and wrk's) saturates before the server's: the server then idles part of the time,
and its cost per byte follows how the two interleave (docs/BENCHMARKS.md, issue 15). With
``discard`` a plain connection reads a response's head as usual and its body with
``recv_into(sink, n, MSG_TRUNC)``, which on a TCP socket drops up to ``n`` queued bytes
without copying them (Linux; the sink is never written, so it is never resident), so the
server, not the generator, sets the pace. Bytes are counted as they were. Over TLS the
bodies are encrypted and must be read: ``discard`` is ignored there.

Error classes (the same names the wrk parser uses where they overlap): ``connect`` (refused,
unreachable, or no SYN-ACK in time), ``read`` (reset while reading), ``write``, ``eof``
(server closed before a complete response), ``timeout`` (no complete response within
``timeout`` seconds), ``status`` (not 2xx/3xx; a 503 is counted as ``503`` instead, since
shedding load with 503 is the answer an overloaded server should give), ``late`` (open
mode: a 2xx that arrived after ``timeout``, so it is not goodput), ``tls`` (a TLS
handshake that failed, e.g. a certificate not signed by the run's CA, or did not finish
within ``timeout``; the first reason goes to the process's stderr log).  Resource errors at
``socket()``/``connect()`` get their own class, because they say which limit was hit on the
way to a million connections: ``emfile``/``enfile`` (fds), ``eaddrnotavail`` (no free
4-tuple: add source addresses or server ports), ``enomem`` (ENOMEM/ENOBUFS).

Several destinations (``ports`` in the config): connection ``j`` goes to the ``j``-th
(source, port) pair in turn, so each pair carries an equal share (see ``pair_for``).

TLS (``cafile`` in the config, ``c10k bench --tls``).  Every mode runs over TLS with the
sockets and states above unchanged: after the TCP connect a connection is ``_HANDSHAKE``
(nonblocking, driven by readability like any read) until its ``TLSWire`` says done, then
goes on as a plain one would; requests are encrypted before ``send`` (a short write queues
ciphertext, as it queued the request); every read is decrypted whole before the state
machine sees it (tlswire.py says why an ``SSLObject`` over MemoryBIOs rather than an
``SSLSocket``).  The server's certificate is checked against ``cafile`` and its name
against the host; a handshake that fails or does not finish within ``timeout`` is
counted as ``tls``.  Modem users are paced on the bytes the socket delivers, i.e. the
ciphertext a modem line would carry; a download completes on its plaintext.
"""

from __future__ import annotations

import contextlib
import errno
import heapq
import json
import math
import os
import re
import select
import selectors
import socket
import ssl
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import IO, Any

from c10k.bench.certs import client_context
from c10k.bench.stats import Histogram
from c10k.bench.tlswire import MAX_RECORD_BYTES, RAW_READ_BYTES, TLSWire

# Sockets per generator process.  The hard NOFILE limit here is 20,000; stay well below so the
# epoll loop (and its per-wakeup list) stays short, and the kernel's per-process fd table
# stays small.  wrk uses one thread per core; vmbench's echoclient forks one process per core.
PER_PROCESS_MAX = 8000
# Connections per (source address, destination): ~10,000 keeps connect()'s port search short
# with the 28,232-port default range (issue 3).
PER_SOURCE_MAX = 10000
# How many connect()s may be in flight at once during set-up.  Above the listen backlog
# (nginx 511 by default, somaxconn 4096 here) SYNs are dropped and retried after 1 s, 3 s...
CONNECT_WINDOW = 256
# Modem mode: read ticks due within this many seconds are served on the same wake-up.
# 10 ms is the scenario's interval between users and 2.5 % of a packet time at 3,600 B/s.
TICK_SLACK_S = 0.01
# wrk's default --timeout is 2 s; ours matches vs-nginx (5 s).
DEFAULT_TIMEOUT = 5.0
# Body bytes one recv may drop with ``discard`` (module doc); the buffer is never written.
# Heads are then read HEAD_READ bytes at a time, so little of a body is copied with one.
DISCARD_BYTES = 16 << 20
HEAD_READ = 4096
# Linux <netinet/in.h>: IP_BIND_ADDRESS_NO_PORT = 24 (Python exposes it from 3.12 only).
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

_CONNECTING, _SENDING, _HEAD, _BODY, _DRAIN, _IDLE, _HANDSHAKE = range(7)
_EMPTY = bytearray()  # shared by every idle connection; never written to
# The error class of a connection still in this state after ``timeout`` (module doc).
_LATE_KIND = {_CONNECTING: "connect", _HANDSHAKE: "tls"}

_RE_CL = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.I)
_RE_CONN_CLOSE = re.compile(rb"\r\nconnection:[ \t]*close", re.I)
_RE_CONN_KA = re.compile(rb"\r\nconnection:[ \t]*keep-alive", re.I)

CONNRESET_ERRNOS = frozenset(
    {errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ESHUTDOWN, errno.ENOTCONN}
)


# socket()/connect() errnos that name a limit (module doc, "Error classes").
ERRNO_KINDS = {
    errno.EMFILE: "emfile",
    errno.ENFILE: "enfile",
    errno.EADDRNOTAVAIL: "eaddrnotavail",
    errno.ENOMEM: "enomem",
    errno.ENOBUFS: "enomem",
}


def errno_kind(err: int | None, default: str = "connect") -> str:
    """The error class of a failed ``socket()``/``connect()``.

    >>> errno_kind(errno.EADDRNOTAVAIL), errno_kind(errno.ECONNREFUSED)
    ('eaddrnotavail', 'connect')
    """
    return ERRNO_KINDS.get(err or 0, default)


def pair_for(j: int, n_sources: int, n_ports: int, offset: int = 0) -> tuple[int, int]:
    """(source index, port index) of connection ``j``: round robin over all pairs.

    >>> [pair_for(j, 2, 3) for j in range(7)]
    [(0, 0), (1, 0), (0, 1), (1, 1), (0, 2), (1, 2), (0, 0)]
    """
    k = (j + offset) % (n_sources * n_ports)
    return k % n_sources, k // n_sources


def source_addresses(n_conns: int, per_source: int = PER_SOURCE_MAX, first: int = 2) -> list[str]:
    """Source addresses for ``n_conns`` connections to one destination.

    >>> source_addresses(100), source_addresses(25000)
    (['127.0.0.2'], ['127.0.0.2', '127.0.0.3', '127.0.0.4'])
    """
    n = max(1, math.ceil(n_conns / per_source))
    if n + first > 255:
        raise ValueError(f"{n_conns} connections need more than 253 source addresses")
    return [f"127.0.0.{first + i}" for i in range(n)]


def split_evenly(total: int, parts: int) -> list[int]:
    """Split ``total`` into ``parts`` near-equal non-negative integers.

    >>> split_evenly(10, 3), split_evenly(2, 4)
    ([4, 3, 3], [1, 1, 0, 0])
    """
    q, r = divmod(total, parts)
    return [q + (1 if i < r else 0) for i in range(parts)]


def make_request(
    host: str, port: int, path: str, close: bool, authority: str | None = None
) -> bytes:
    """A GET of ``path``; its Host is ``authority`` (a --url's as written) or host:port."""
    conn = b"close" if close else b"keep-alive"
    return (
        b"GET "
        + path.encode()
        + b" HTTP/1.1\r\nHost: "
        + (authority or f"{host}:{port}").encode()
        + b"\r\nUser-Agent: c10k-bench\r\nAccept: */*\r\nConnection: "
        + conn
        + b"\r\n\r\n"
    )


def tls_context(cfg: dict[str, Any]) -> ssl.SSLContext | None:
    """The client context of a config: None for plain HTTP; over TLS, one that trusts
    ``cafile`` (the run's CA, or a --url-ca), else the system's store (an https --url)."""
    if not (cfg.get("cafile") or cfg.get("tls")):
        return None
    return client_context(cfg.get("cafile"))


def parse_head(buf: bytes | bytearray) -> tuple[int, int, bool, int] | None:
    """Parse a response head.

    Returns:
        ``(status, content_length or -1, keep_alive, head_length)``, or None when the blank
        line has not arrived yet.

    >>> parse_head(b"HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\nhello")
    (200, 5, True, 38)
    >>> parse_head(b"HTTP/1.0 404 Not Found\\r\\nConnection: close\\r\\n\\r\\n")
    (404, -1, False, 45)
    >>> parse_head(b"HTTP/1.1 200 OK\\r\\n") is None
    True
    """
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[: end + 2])
    try:
        status = int(head[9:12])
    except ValueError:
        status = 0
    m = _RE_CL.search(head)
    length = int(m.group(1)) if m else -1
    if head[5:8] == b"1.0":
        keep = _RE_CONN_KA.search(head) is not None
    else:
        keep = _RE_CONN_CLOSE.search(head) is None
    if length < 0 and not (100 <= status < 200 or status in (204, 304)):
        keep = False  # body delimited by close (RFC 9112 section 6.3, rule 8)
    elif length < 0:
        length = 0
    return status, length, keep, end + 4


def _new_socket(source: str | None, rcvbuf: int = 0, host: str = "", mss: int = 0) -> socket.socket:
    """A nonblocking TCP socket for ``host`` (an IPv6 address gets an AF_INET6 one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setblocking(False)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf:
            # Must precede connect(): the window scale is fixed in the SYN (tcp(7)).
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if mss:
            # Also before connect(): the MSS is announced in the SYN (module doc: modem).
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        if source:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.bind((source, 0))
    except BaseException:
        s.close()
        raise
    return s


class _Poller:
    """epoll where there is one, else poll: the two calls the workers need."""

    def __init__(self) -> None:
        self._ep = select.epoll() if hasattr(select, "epoll") else None
        self._p = None if self._ep else select.poll()
        self.IN = select.POLLIN
        self.OUT = select.POLLOUT

    def register(self, fd: int, mask: int) -> None:
        (self._ep or self._p).register(fd, mask)  # type: ignore[union-attr]

    def modify(self, fd: int, mask: int) -> None:
        (self._ep or self._p).modify(fd, mask)  # type: ignore[union-attr]

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(OSError, KeyError):
            (self._ep or self._p).unregister(fd)  # type: ignore[union-attr]

    def poll(self, timeout: float) -> list[tuple[int, int]]:
        if self._ep is not None:
            return self._ep.poll(max(timeout, 0.0))
        assert self._p is not None
        return self._p.poll(max(0, math.ceil(timeout * 1e3)))

    def close(self) -> None:
        if self._ep is not None:
            self._ep.close()


class _Conn:
    __slots__ = (
        "fd",
        "head",
        "keep",
        "out",
        "remaining",
        "served",
        "sock",
        "src",
        "state",
        "status",
        "t0",
        "tls",
    )

    def __init__(self, sock: socket.socket, src: str | None, t0: float) -> None:
        self.tls: TLSWire | None = None
        self.sock = sock
        self.fd = sock.fileno()
        self.src = src
        self.state = _CONNECTING
        self.t0 = t0  # start of the current request (intended start in open mode)
        self.head = bytearray()
        self.remaining = 0
        self.keep = True
        self.status = 0
        self.served = 0
        self.out = b""


class _Commands:
    """Nonblocking reader of JSON lines on stdin."""

    def __init__(self) -> None:
        self.fd = sys.stdin.fileno()
        os.set_blocking(self.fd, False)
        self.buf = b""
        self.eof = False

    def read(self) -> list[dict[str, Any]]:
        try:
            data = os.read(self.fd, 65536)
        except BlockingIOError:
            return []
        if not data:
            self.eof = True
            return [{"cmd": "stop"}]
        self.buf += data
        *lines, self.buf = self.buf.split(b"\n")
        return [json.loads(x) for x in lines if x.strip()]


def _emit(msg: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(msg) + "\n")
    sys.stdout.flush()


class HttpWorker:
    """One generator process in ``closed``, ``open`` or ``idle`` mode (see module doc)."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.mode: str = cfg["mode"]
        self.host: str = cfg["host"]
        self.port: int = cfg["port"]
        self.addr = (self.host, self.port)
        self.addrs = [(self.host, p) for p in cfg.get("ports") or [self.port]]
        self.pair_offset: int = cfg.get("index", 0) * 7919  # processes start on different pairs
        self.sources: list[str | None] = cfg.get("sources") or [None]
        self.keepalive: bool = cfg.get("keepalive", True) and self.mode in ("closed", "idle")
        self.req = make_request(
            self.host,
            self.port,
            cfg.get("path", "/"),
            close=not self.keepalive,
            authority=cfg.get("authority"),
        )
        self.timeout: float = cfg.get("timeout", DEFAULT_TIMEOUT)
        self.poller = _Poller()
        self.conns: dict[int, _Conn] = {}
        self.hist = Histogram()
        self.ok = 0
        self.bytes = 0
        self.errors: dict[str, int] = {}
        self.reconnects = 0
        self.attempted = 0
        self.dropped = 0
        self.closed_by_server = 0
        self.scratch = bytearray(256 * 1024)
        # TLS (module doc): one client context per process; ``raw`` takes what the socket
        # gives, ``scratch`` the plaintext.
        self.tls_ctx = tls_context(cfg)
        # Bodies dropped in the kernel (module doc): plain connections only.
        self.discard = bool(cfg.get("discard")) and self.tls_ctx is None
        self.sink = bytearray(DISCARD_BYTES if self.discard else 0)
        self.discarded = 0  # of ``bytes``, those dropped in the kernel
        self.server_name: str = cfg.get("server_name") or self.host
        self.raw = bytearray(RAW_READ_BYTES if self.tls_ctx else 0)
        self.tls_reason_said = False
        self.tls_session: ssl.SSLSession | None = None  # offered by new connections
        self.tls_handshakes = 0  # done while measuring, and how many of them resumed
        self.tls_resumed = 0
        self.measuring = False
        self.running = True
        self.n_opened = 0
        self.pending: list[tuple[float, int]] = []  # (time, slot) reconnects after an error
        self.target = 0  # connections wanted (closed/idle)
        self.started = False
        self.stop_requested = False
        self.go = False
        self.hold_to = 0
        self.hold_timeout = 30.0
        self.cmds = _Commands()
        self.poller.register(self.cmds.fd, self.poller.IN)

    # -- connections --------------------------------------------------------------

    def _open(self, now: float) -> _Conn | None:
        si, pi = pair_for(self.n_opened, len(self.sources), len(self.addrs), self.pair_offset)
        src = self.sources[si]
        self.n_opened += 1
        try:
            s = _new_socket(src, host=self.host)
        except OSError as e:
            self._error(errno_kind(e.errno))
            return None
        c = _Conn(s, src, now)
        err = s.connect_ex(self.addrs[pi])
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self._error(errno_kind(err))
            return None
        self.conns[c.fd] = c
        self.poller.register(c.fd, self.poller.OUT)
        return c

    def _close(self, c: _Conn) -> None:
        self.poller.unregister(c.fd)
        self.conns.pop(c.fd, None)
        c.sock.close()
        if c.tls is not None and c.state != _HANDSHAKE:
            self.tls_session = c.tls.resumable() or self.tls_session

    def _error(self, kind: str) -> None:
        if self.measuring:
            self.errors[kind] = self.errors.get(kind, 0) + 1

    def _fail(self, c: _Conn, kind: str, now: float) -> None:
        self._error(kind)
        self._close(c)
        if self.mode == "closed" and self.running:
            # Replace the connection a little later, so a refusing server is not spun on.
            heapq.heappush(self.pending, (now + 0.01, 0))

    def _send(self, c: _Conn, now: float, fresh_t0: bool = True) -> None:
        if fresh_t0:
            c.t0 = now
        c.head.clear()
        c.state = _HEAD
        req = self.req
        try:
            if c.tls is not None:
                req = c.tls.encrypt(req)
            n = c.sock.send(req)
        except BlockingIOError:
            n = 0
        except OSError:
            self._fail(c, "write", now)
            return
        if n < len(req):
            c.out = req[n:]
            c.state = _SENDING
            self.poller.modify(c.fd, self.poller.OUT)

    def _connected(self, c: _Conn, now: float) -> None:
        err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(c, errno_kind(err), now)
            return
        self.poller.modify(c.fd, self.poller.IN)
        if self.tls_ctx is not None:
            c.tls = TLSWire(self.tls_ctx, self.server_name, self.tls_session)
            c.state = _HANDSHAKE
            self._handshake(c, now, b"")
            return
        self._usable(c, now)

    def _handshake_ready(self, c: _Conn, now: float) -> None:
        n = self._recv(c, self.raw, 0, 0, now)
        if n:
            self._handshake(c, now, memoryview(self.raw)[:n])

    def _recv(self, c: _Conn, buf: bytearray, nbytes: int, flags: int, now: float) -> int:
        """``recv_into(buf, nbytes, flags)``: the bytes read, or 0 if the read would block
        or failed (a reset or an EOF is counted and the connection dropped)."""
        try:
            n = c.sock.recv_into(buf, nbytes, flags)
        except BlockingIOError:
            return 0
        except OSError:
            self._fail(c, "read", now)
            return 0
        if n == 0:
            self._fail(c, "eof", now)
        return n

    def _handshake(self, c: _Conn, now: float, raw: bytes | memoryview) -> None:
        assert c.tls is not None
        try:
            done = c.tls.handshake(raw)
            out = c.tls.pending_out()
            # A ClientHello or Finished on a fresh connection: it fits the socket buffer.
            if out and c.sock.send(out) != len(out):
                raise ssl.SSLError("a handshake message did not fit the socket buffer")
        except ssl.SSLError as e:
            self._tls_failed(c, e, now)
            return
        except OSError:
            self._fail(c, "write", now)
            return
        if done:
            if self.measuring:
                self.tls_handshakes += 1
                self.tls_resumed += c.tls.obj.session_reused
            self._usable(c, now)

    def _tls_failed(self, c: _Conn, e: ssl.SSLError, now: float) -> None:
        if not self.tls_reason_said:
            self.tls_reason_said = True
            print(f"c10k bench generator: TLS handshake failed: {e}", file=sys.stderr)
        self._fail(c, "tls", now)

    def _recv_tls(self, c: _Conn) -> int:
        """Plaintext bytes read into ``scratch``, 0 at EOF; BlockingIOError when a read gave
        none (a partial record, a session ticket, the peer's close_notify)."""
        assert c.tls is not None
        n = c.sock.recv_into(self.raw)
        if n == 0:
            return 0
        got = c.tls.decrypt_into(memoryview(self.raw)[:n], self.scratch)
        if c.tls.closed:
            # Answer the server's close_notify (tlswire.py); its FIN is what ends the wait.
            with contextlib.suppress(OSError):
                c.sock.send(c.tls.pending_out())
        if got == 0:
            raise BlockingIOError
        return got

    def _usable(self, c: _Conn, now: float) -> None:
        """Connected (and TLS done): wait for "go", or send the request."""
        if self.mode == "closed" and not self.measuring and not self.started:
            c.state = _IDLE  # pre-connected, waiting for "go"
            return
        # Keep-alive closed loop: latency counts from the request (wrk's c->start);
        # one-request-per-connection and open modes: from connect() or the intended start.
        self._send(c, now, fresh_t0=self.mode == "closed" and self.keepalive)

    def _write_ready(self, c: _Conn, now: float) -> None:
        try:
            n = c.sock.send(c.out)
        except BlockingIOError:
            return
        except OSError:
            self._fail(c, "write", now)
            return
        c.out = c.out[n:]
        if not c.out:
            c.state = _HEAD
            self.poller.modify(c.fd, self.poller.IN)

    def _read_ready(self, c: _Conn, now: float) -> None:
        if self.discard and c.state == _BODY and c.remaining > 0:
            self._drop_body(c, now)
            return
        try:
            if c.tls is not None:
                n = self._recv_tls(c)
            else:  # (with discard a head is read in small pieces: little body comes with it)
                n = c.sock.recv_into(self.scratch, HEAD_READ if self.discard else 0)
        except BlockingIOError:
            return
        except OSError:
            if c.state == _DRAIN or c.state == _IDLE:
                self._finish_closed(c, now)
            else:
                self._fail(c, "read", now)
            return
        state = c.state
        if n == 0:
            if state == _BODY and c.remaining < 0:
                self._complete(c, now)
            elif state in (_DRAIN, _IDLE):
                self._finish_closed(c, now)
            elif state == _HEAD and not c.head and c.served and self.mode == "closed":
                # A keep-alive connection the server closed between requests (its idle
                # timeout or request cap): reconnect, not an error (wrk does the same).
                self.reconnects += 1
                self._close(c)
                self._replace(now)
            else:
                self._fail(c, "eof", now)
            return
        if self.measuring:
            self.bytes += n
        if state == _HEAD:
            c.head += self.scratch[:n]
            parsed = parse_head(c.head)
            if parsed is None:
                return
            c.status, length, c.keep, hlen = parsed
            extra = len(c.head) - hlen
            if length < 0:
                c.remaining = -1
                c.state = _BODY
                return
            c.remaining = length - extra
            if c.remaining <= 0:
                self._complete(c, now)
            else:
                c.state = _BODY
        elif state == _BODY and c.remaining >= 0:
            c.remaining -= n
            if c.remaining <= 0:
                self._complete(c, now)
        # _DRAIN / _IDLE: unexpected bytes are ignored.

    def _drop_body(self, c: _Conn, now: float) -> None:
        """Up to the rest of a known-length body, dropped in the kernel (module doc)."""
        n = self._recv(c, self.sink, min(c.remaining, DISCARD_BYTES), socket.MSG_TRUNC, now)
        if not n:
            return
        if self.measuring:
            self.bytes += n
            self.discarded += n
        c.remaining -= n
        if c.remaining <= 0:
            self._complete(c, now)

    def _complete(self, c: _Conn, now: float) -> None:
        c.served += 1
        if self.measuring:
            if not 200 <= c.status < 400:
                self._error("503" if c.status == 503 else "status")
            elif self.mode == "open" and now - c.t0 > self.timeout:
                self._error("late")  # served, but after the deadline: not goodput
            else:
                self.ok += 1
                self.hist.record(int((now - c.t0) * 1e6))
        mode = self.mode
        if mode == "idle":
            c.state = _IDLE
            c.head = _EMPTY  # an idle holder keeps nothing per connection but the socket
            if not c.keep:
                c.state = _DRAIN
            return
        if mode == "closed" and self.keepalive:
            if c.keep and self.running:
                self._send(c, now)
                return
            if self.running:
                self.reconnects += 1
            self._close(c)
            if self.running:
                self._replace(now)
            return
        # One request per connection: wait for the server's FIN (it holds TIME_WAIT).
        if c.keep:
            self._close(c)
            self._after_close(now)
        else:
            c.state = _DRAIN
            c.head.clear()

    def _finish_closed(self, c: _Conn, now: float) -> None:
        if c.state == _IDLE or self.mode == "idle":
            self.closed_by_server += 1  # idle mode: a connection that cannot be held
        self._close(c)
        self._after_close(now)

    def _after_close(self, now: float) -> None:
        if self.mode == "closed" and self.running:
            self._replace(now)

    def _replace(self, now: float) -> None:
        self._open(now)

    # -- set-up, runs and reports -------------------------------------------------

    def _connect_many(self, n: int, deadline: float, progress: bool = False) -> None:
        """Open up to n more connections, CONNECT_WINDOW at a time, and finish each one's
        handshake (idle mode: and its one request).  With ``progress``, report the held
        count once a second, and stop early once a resource error (``ERRNO_KINDS``) says
        no more can be opened."""
        opened = 0
        next_report = time.perf_counter() + 1.0
        # The connections of this call not yet idle (or closed).  Tracked apart so that a
        # holder with 19,000 idle connections does not walk them all on every turn.
        inflight: list[_Conn] = [c for c in self.conns.values() if c.state != _IDLE]
        conns = self.conns
        while time.perf_counter() < deadline and not self.stop_requested:
            inflight = [c for c in inflight if c.state != _IDLE and conns.get(c.fd) is c]
            while opened < n and len(inflight) < CONNECT_WINDOW:
                opened += 1  # a failed open counts too: no retry storm against a full server
                c = self._open(time.perf_counter())
                if c is not None:
                    inflight.append(c)
                elif progress and self._limit_hit():
                    opened = n  # EMFILE & co: trying on only repeats the error
            if opened >= n and not inflight:
                return
            self._loop_once(0.05)
            if progress and time.perf_counter() >= next_report:
                next_report += 1.0
                _emit({"event": "progress", "held": self._held(), "ok": self.ok})
        # Whatever has not finished by the deadline is reported as not held.

    def _limit_hit(self) -> bool:
        return any(self.errors.get(k) for k in set(ERRNO_KINDS.values()))

    def _held(self) -> int:
        return sum(1 for c in self.conns.values() if c.state == _IDLE)

    def _loop_once(self, timeout: float) -> None:
        now = time.perf_counter()
        if self.pending and self.pending[0][0] <= now + timeout:
            timeout = max(0.0, self.pending[0][0] - now)
        events = self.poller.poll(timeout)
        now = time.perf_counter()
        conns = self.conns
        OUT = self.poller.OUT
        for fd, ev in events:
            c = conns.get(fd)
            if c is None:
                if fd == self.cmds.fd:
                    for msg in self.cmds.read():
                        self._command(msg)
                    if self.cmds.eof:
                        self.poller.unregister(fd)
                continue
            state = c.state
            if state == _CONNECTING:
                self._connected(c, now)
            elif state == _HANDSHAKE:
                self._handshake_ready(c, now)
            elif state == _SENDING and ev & OUT:
                self._write_ready(c, now)
            else:
                self._read_ready(c, now)
        while self.pending and self.pending[0][0] <= now:
            heapq.heappop(self.pending)
            if self.running and len(self.conns) < self.target:
                self._open(now)

    def _drain(self, until: float) -> None:
        """Open loop, after the window: no new arrivals, but what arrived in it is waited
        for (up to the time-out), so a request sent in the window's last round trip
        counts by its outcome. Closed at the window's end, it counted as not served: one
        in a hundred in a 1 s window of 100 requests a second over TLS."""
        while not self.stop_requested:
            now = time.perf_counter()
            if now >= until or all(c.state == _IDLE for c in self.conns.values()):
                return
            self._loop_once(min(0.05, until - now))
            self._expire(time.perf_counter())

    def _expire(self, now: float) -> None:
        limit = now - self.timeout
        for c in list(self.conns.values()):
            if c.state == _DRAIN and c.t0 < limit:
                self._close(c)  # response was complete; the FIN never came
                self._after_close(now)
            elif c.state != _IDLE and c.t0 < limit:
                self._fail(c, _LATE_KIND.get(c.state, "timeout"), now)

    def _command(self, msg: dict[str, Any]) -> None:
        cmd = msg.get("cmd")
        if cmd == "stop":
            self.stop_requested = True
        elif cmd == "go":
            self.go = True
        elif cmd == "hold":
            self.hold_to = int(msg["n"])
            self.hold_timeout = float(msg.get("timeout", self.cfg.get("setup_timeout", 30.0)))

    def run(self) -> None:
        cfg = self.cfg
        self.started = False
        self.stop_requested = False
        self.go = False
        self.hold_to = 0
        life_end = time.perf_counter() + cfg.get("max_lifetime", 600.0)
        setup_end = time.perf_counter() + cfg.get("setup_timeout", 30.0)
        if self.mode == "closed" and self.keepalive:
            self.target = cfg["conns"]
            self._connect_many(self.target, setup_end)
        elif self.mode == "closed":
            self.target = cfg["conns"]
        _emit({"event": "ready", "conns": len(self.conns)})
        while not self.go and not self.stop_requested and not self.cmds.eof:
            self._loop_once(0.2)
            if time.perf_counter() > life_end:
                return
        if self.mode == "idle":
            self._run_idle(life_end)
            return
        self._run_measured(cfg, life_end)

    def _run_measured(self, cfg: dict[str, Any], life_end: float) -> None:
        t_go = time.perf_counter()
        self.started = True
        warm_end = t_go + cfg.get("warmup", 0.0)
        end = warm_end + cfg["duration"]
        self.measuring = cfg.get("warmup", 0.0) <= 0
        if self.mode == "closed":
            for c in list(self.conns.values()):
                if c.state == _IDLE:
                    self._send(c, t_go)
            while len(self.conns) < self.target:
                if self._open(t_go) is None:
                    break
        rate = cfg.get("rate", 0.0)
        interval = 1.0 / rate if rate > 0 else 0.0
        cap = cfg.get("max_inflight", PER_PROCESS_MAX)
        next_arrival = t_go
        next_expiry = t_go + 0.25
        measure_t0 = t_go if self.measuring else warm_end
        while not self.stop_requested:
            now = time.perf_counter()
            if not self.measuring and now >= warm_end:
                self.measuring = True
                measure_t0 = now
            if now >= end or now > life_end:
                break
            if self.mode == "open":
                # Issue every arrival that is due, even if late (no coordinated omission).
                while next_arrival <= now and next_arrival < end:
                    if self.measuring or next_arrival >= warm_end:
                        self.attempted += 1
                    if len(self.conns) >= cap:
                        if self.measuring:
                            self.dropped += 1
                    else:
                        self._open(next_arrival)
                    next_arrival += interval
                wait = min(next_arrival - now, 0.05)
            else:
                wait = 0.05
            self._loop_once(max(0.0, min(wait, end - now)))
            if now >= next_expiry:
                self._expire(now)
                next_expiry = now + 0.25
        measured = time.perf_counter() - measure_t0
        if self.mode == "open":
            self._drain(min(life_end, time.perf_counter() + self.timeout))
        self.running = False
        self.measuring = False
        for c in list(self.conns.values()):
            self._close(c)
        _emit(
            {
                "event": "result",
                "ok": self.ok,
                "bytes": self.bytes,
                "discarded": self.discarded,
                "errors": self.errors,
                "reconnects": self.reconnects,
                "attempted": self.attempted,
                "dropped": self.dropped,
                "tls_handshakes": self.tls_handshakes,
                "tls_resumed": self.tls_resumed,
                "measured_s": measured,
                "hist": self.hist.to_json(),
            }
        )

    def _run_idle(self, life_end: float) -> None:
        self.measuring = True  # errors during set-up are the figures in this mode
        reported = -1
        while not self.stop_requested and time.perf_counter() < life_end:
            connected = self.hold_to > len(self.conns)
            t0 = time.perf_counter()
            if connected:
                self._connect_many(
                    self.hold_to - len(self.conns), t0 + self.hold_timeout, progress=True
                )
            if connected or reported != self.hold_to:
                # Counted only here: a count over every connection five times a second
                # was the generators' own load at C1M (53 processes of ~19k each), taken
                # from the active client's core while it measured.
                held = self._held()
                _emit(
                    {
                        "event": "held",
                        "target": self.hold_to,
                        "held": held,
                        "ok": self.ok,
                        "pending": len(self.conns) - held,
                        "errors": self.errors,
                        "closed_by_server": self.closed_by_server,
                        "establish_s": round(time.perf_counter() - t0, 3),
                    }
                )
                reported = self.hold_to
            self._loop_once(0.2)
        held = sum(1 for c in self.conns.values() if c.state == _IDLE)
        for c in list(self.conns.values()):
            self._close(c)
        _emit(
            {
                "event": "result",
                "held": held,
                "errors": self.errors,
                "ok": self.ok,
                "closed_by_server": self.closed_by_server,
                "hist": self.hist.to_json(),
            }
        )

    def close(self) -> None:
        for c in list(self.conns.values()):
            self._close(c)
        self.poller.close()


class _User:
    __slots__ = (
        "alive",
        "fd",
        "got",
        "head_len",
        "keep",
        "need",
        "sock",
        "start",
        "state",
        "t_conn",
        "t_data",
        "tls",
        "wire",
    )

    def __init__(self) -> None:
        self.sock: socket.socket | None = None
        self.tls: TLSWire | None = None
        self.fd = -1
        self.alive = True
        self.state = _CONNECTING
        self.got = 0  # bytes of the current download, head included
        self.wire = 0  # bytes off the socket for it (TLS: ciphertext): what is paced
        self.need = -1  # head + body once the head is parsed
        self.head_len = 0
        self.keep = True
        self.start = 0.0
        self.t_conn = 0.0
        self.t_data = 0.0  # when a read last returned data (a failure says how long ago)


class ModemWorker:
    """Paced slow readers, dkftpbench-style (see the module doc and scenarios/modem.py).

    Users are added one after another, ``interval`` seconds apart across all workers (worker
    ``i`` of ``k`` adds its ``j``-th user at ``(j*k + i) * interval``).  Each user downloads
    the file in a loop over one keep-alive connection (reconnecting if the server closes),
    reading at most ``rate`` bytes/s in ``packet``-sized reads.  A user fails when it cannot
    connect, the server closes mid-file, or, once ``grace_packets`` packet-times have passed
    in the current download, its average rate for that download is below
    ``min_fraction * rate``.
    """

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.addrs = [(cfg["host"], p) for p in cfg.get("ports") or [cfg["port"]]]
        self.sources: list[str | None] = cfg.get("sources") or [None]
        self.mss = int(cfg.get("mss", 0))
        self.req = make_request(
            cfg["host"], cfg["port"], cfg["path"], close=False, authority=cfg.get("authority")
        )
        self.rate = float(cfg["rate"])
        self.packet = int(cfg["packet"])
        # A user reads ``read_packets`` packets' worth per wake-up (the module doc, "Why pace
        # in packets"); its rate is judged on packet times whatever the read size.
        self.read_packets = int(cfg.get("read_packets", 1))
        if self.read_packets < 1:
            raise ValueError(f"read_packets must be >= 1, not {self.read_packets}")
        self.tick = self.read_packets * self.packet / self.rate
        self.grace = cfg.get("grace_packets", 10) * self.packet / self.rate
        self.min_rate = cfg.get("min_fraction", 0.75) * self.rate
        self.rcvbuf = int(cfg.get("rcvbuf", 8192))
        self.timeout = cfg.get("timeout", DEFAULT_TIMEOUT)
        self.poller = _Poller()
        self.cmds = _Commands()
        self.poller.register(self.cmds.fd, self.poller.IN)
        self.users: dict[int, _User] = {}
        # Every read tick is ``tick`` after the last and every connect check ``timeout``
        # after the connect, each from a clock that only moves forward: so each queue is
        # already in time order and a FIFO does what a heap would, at O(1) a timer.
        self.ticks: deque[tuple[float, _User]] = deque()
        self.checks: deque[tuple[float, _User]] = deque()
        self.scratch = bytearray(max(self.packet * 4, 65536))
        # TLS: ``scratch`` takes the ciphertext, ``text`` the plaintext (the module doc).
        self.tls_ctx = tls_context(cfg)
        self.server_name: str = cfg.get("server_name") or cfg["host"]
        self.text = bytearray(len(self.scratch) + 2 * MAX_RECORD_BYTES) if self.tls_ctx else None
        self.failures: list[dict[str, Any]] = []
        self.started = 0
        self.alive = 0
        self.downloads = 0
        self.bytes = 0
        self.reads = 0  # recv calls that returned data: the generator's wake-ups that count

    def _connect(self, u: _User, now: float) -> None:
        si, pi = pair_for(self.started, len(self.sources), len(self.addrs))
        addr = self.addrs[pi]
        try:
            s = _new_socket(self.sources[si], self.rcvbuf, addr[0], self.mss)
        except OSError:
            self._fail(u, "connect", now)
            return
        err = s.connect_ex(addr)
        if err not in (0, errno.EINPROGRESS):
            s.close()
            self._fail(u, "connect", now)
            return
        u.sock = s
        u.fd = s.fileno()
        u.state = _CONNECTING
        u.t_conn = now
        self.users[u.fd] = u
        self.poller.register(u.fd, self.poller.OUT)
        self.checks.append((now + self.timeout, u))

    def _close(self, u: _User) -> None:
        if u.sock is not None:
            self.poller.unregister(u.fd)
            self.users.pop(u.fd, None)
            u.sock.close()
            u.sock = None

    def _fail(self, u: _User, reason: str, now: float) -> None:
        if not u.alive:
            return
        u.alive = False
        self.alive -= 1
        self._close(u)
        f = {"reason": reason, "t": round(now - self.t_go, 3), "started": self.started}
        if u.t_data:
            # Seconds without a byte: a server's send timeout shows as its value (nginx's
            # send_timeout is 60 s), a kernel that stopped delivering as a long stall.
            f["stalled_s"] = round(now - u.t_data, 3)
        self.failures.append(f)
        _emit({"event": "fail", **f})

    def _request(self, u: _User, now: float) -> None:
        assert u.sock is not None
        try:
            req = self.req if u.tls is None else u.tls.encrypt(self.req)
            u.sock.send(req)  # a fresh or drained connection: the request fits
        except OSError:
            self._fail(u, "write", now)
            return
        u.state = _BODY
        u.got = 0
        u.wire = 0
        u.need = -1
        u.start = now

    def _on_connected(self, u: _User, now: float) -> None:
        assert u.sock is not None
        if u.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self._fail(u, "connect", now)
            return
        if self.tls_ctx is not None:
            # The handshake is driven by readability; reading is paced only after it.
            u.tls = TLSWire(self.tls_ctx, self.server_name)
            u.state = _HANDSHAKE
            self.poller.modify(u.fd, self.poller.IN)
            self._handshake(u, now, b"")
            return
        self._downloading(u, now)

    def _downloading(self, u: _User, now: float) -> None:
        # No read interest: a user reads only on its ticks; the kernel holds the rest.
        self.poller.unregister(u.fd)
        self._request(u, now)
        self.ticks.append((now + self.tick, u))

    def _handshake_ready(self, u: _User, now: float) -> None:
        assert u.sock is not None
        try:
            n = u.sock.recv_into(self.scratch)
        except BlockingIOError:
            return
        except OSError:
            self._fail(u, "read", now)
            return
        if n == 0:
            self._fail(u, "eof", now)
            return
        self._handshake(u, now, memoryview(self.scratch)[:n])

    def _handshake(self, u: _User, now: float, raw: bytes | memoryview) -> None:
        assert u.sock is not None
        assert u.tls is not None
        try:
            done = u.tls.handshake(raw)
            out = u.tls.pending_out()
            # A ClientHello or Finished on a fresh connection: it fits the socket buffer.
            if out and u.sock.send(out) != len(out):
                raise ssl.SSLError("a handshake message did not fit the socket buffer")
        except ssl.SSLError as e:
            if not self.failures:
                print(f"c10k bench generator: TLS handshake failed: {e}", file=sys.stderr)
            self._fail(u, "tls", now)
            return
        except OSError:
            self._fail(u, "write", now)
            return
        if done:
            self._downloading(u, now)

    def _read(self, u: _User, limit: int, now: float) -> int | None:
        """Read up to ``limit`` bytes off the socket; the plaintext count, now at the start
        of ``self.text`` (TLS) or ``self.scratch``; None when the user failed."""
        assert u.sock is not None
        try:
            n = u.sock.recv_into(self.scratch, limit)
            u.wire += n
            self.reads += 1
            if n:
                u.t_data = now
            if n and u.tls is not None:
                assert self.text is not None
                return u.tls.decrypt_into(memoryview(self.scratch)[:n], self.text)
        except BlockingIOError:
            return 0
        except OSError:  # ssl.SSLError too: a bad record
            self._fail(u, "read", now)
            return None
        if n == 0:
            self._fail(u, "eof", now)
            return None
        return n

    def _received(self, u: _User, n: int, now: float) -> bool:
        """Account ``n`` bytes of the download; False when the user failed or reconnected."""
        data = self.scratch if self.text is None else self.text
        if u.need < 0:
            head = bytes(data[:n]) if u.got == 0 else b""
            parsed = parse_head(head) if head else None
            if parsed is None or parsed[1] < 0 or not 200 <= parsed[0] < 300:
                self._fail(u, "status" if parsed else "head", now)
                return False
            u.need = parsed[3] + parsed[1]
            u.keep = parsed[2]
        u.got += n
        self.bytes += n
        if u.got >= u.need:
            self.downloads += 1
            if u.keep:
                self._request(u, now)
            else:
                self._close(u)
                self._connect(u, now)
                return False
        return True

    def _tick(self, u: _User, now: float) -> None:
        if u.state != _BODY or u.sock is None:
            return
        allowance = int(self.rate * (now - u.start)) + self.packet - u.wire
        if allowance > 0:
            n = self._read(u, min(allowance, len(self.scratch)), now)
            if n is None or (n > 0 and not self._received(u, n, now)):
                return
        # From the start of the current download (a new one may have just begun).
        elapsed = now - u.start
        if u.state == _BODY and elapsed >= self.grace and u.wire / elapsed < self.min_rate:
            self._fail(u, "slow", now)
            return
        self.ticks.append((now + self.tick, u))

    def run(self) -> None:
        cfg = self.cfg
        k, i = cfg.get("workers", 1), cfg.get("index", 0)
        interval = cfg["interval"]
        max_users = cfg["max_users"]
        _emit({"event": "ready"})
        go = False
        while not go:
            for _fd, _ev in self.poller.poll(1.0):
                for msg in self.cmds.read():
                    if msg.get("cmd") == "go":
                        go = True
                    elif msg.get("cmd") == "stop":
                        return
        self.t_go = t_go = time.perf_counter()
        life_end = t_go + cfg.get("max_lifetime", 600.0)
        adding = max_users > 0
        next_add = t_go + i * interval
        timeline: list[list[float]] = []
        next_sample = t_go
        stop = False
        while not stop:
            now = time.perf_counter()
            if now > life_end:
                break
            if adding and now >= next_add:
                u = _User()
                self.started += 1
                self.alive += 1
                self._connect(u, now)
                next_add = t_go + (self.started * k + i) * interval
                if self.started >= max_users:
                    adding = False
                    _emit({"event": "done-adding", "started": self.started})
            if now >= next_sample:
                timeline.append([round(now - t_go, 3), self.alive, self.started])
                next_sample += 0.5
            # Ticks due within SLACK are served now: one wake-up serves many users (a user
            # read a few ms early just gets a few ms less allowance), where waking for each
            # would cost an epoll_wait per user-tick.
            due = now + TICK_SLACK_S
            ticks = self.ticks
            while ticks and ticks[0][0] <= due:
                u = ticks.popleft()[1]
                if u.alive:
                    self._tick(u, now)
            checks = self.checks
            while checks and checks[0][0] <= now:
                u = checks.popleft()[1]
                if u.alive and u.state in _LATE_KIND and now - u.t_conn >= self.timeout:
                    self._fail(u, _LATE_KIND[u.state], now)
            nxt = min(
                next_sample,
                ticks[0][0] if ticks else now + 0.5,
                checks[0][0] if checks else now + 0.5,
            )
            if adding:
                nxt = min(nxt, next_add)
            for fd, _ev in self.poller.poll(max(0.0, nxt - time.perf_counter())):
                if fd == self.cmds.fd:
                    for msg in self.cmds.read():
                        if msg.get("cmd") == "stop":
                            stop = True
                        elif msg.get("cmd") == "stop-adding" and adding:
                            adding = False
                    if self.cmds.eof:
                        self.poller.unregister(fd)
                    continue
                user = self.users.get(fd)
                if user is not None and user.state == _CONNECTING:
                    self._on_connected(user, time.perf_counter())
                elif user is not None and user.state == _HANDSHAKE:
                    self._handshake_ready(user, time.perf_counter())
        now = time.perf_counter()
        timeline.append([round(now - t_go, 3), self.alive, self.started])
        for u in list(self.users.values()):
            self._close(u)
        _emit(
            {
                "event": "result",
                "started": self.started,
                "alive": self.alive,
                "failures": self.failures,
                "downloads": self.downloads,
                "bytes": self.bytes,
                "reads": self.reads,
                "timeline": timeline,
                "elapsed_s": round(now - t_go, 3),
            }
        )

    def close(self) -> None:
        for u in list(self.users.values()):
            self._close(u)
        self.poller.close()


def worker_main() -> int:
    """Entry point of one generator process: config on stdin, JSON lines on stdout."""
    cfg = json.loads(sys.stdin.buffer.readline())
    cpus = cfg.get("cpus")
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(0, cpus)
    from c10k.bench.machine import raise_nofile

    raise_nofile()
    worker: HttpWorker | ModemWorker
    worker = ModemWorker(cfg) if cfg["mode"] == "modem" else HttpWorker(cfg)
    try:
        worker.run()
    finally:
        worker.close()
    return 0


# --------------------------------------------------------------------------------------
# Parent side
# --------------------------------------------------------------------------------------


class WorkerError(RuntimeError):
    pass


class LoadGenerator:
    """Start generator processes, talk to them in JSON lines, collect their results.

    Use as a context manager: leaving it ends every worker it started (by its own Popen).
    """

    def __init__(self, configs: list[dict[str, Any]], log_dir: Path) -> None:
        self.configs = configs
        self.procs: list[subprocess.Popen[bytes]] = []
        self.bufs: list[bytes] = []
        self.logs: list[IO[bytes]] = []
        self.sel = selectors.DefaultSelector()
        self.queue: deque[tuple[int, dict[str, Any]]] = deque()
        env = dict(os.environ)
        pkg_parent = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(
            [pkg_parent, *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
        )
        log_dir.mkdir(parents=True, exist_ok=True)
        try:
            for i, cfg in enumerate(configs):
                log = open(log_dir / f"generator-{i}.log", "wb")  # noqa: SIM115
                self.logs.append(log)
                p = subprocess.Popen(
                    [sys.executable, "-m", "c10k.bench.client"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    env=env,
                )
                self.procs.append(p)
                self.bufs.append(b"")
                assert p.stdin is not None
                assert p.stdout is not None
                p.stdin.write(json.dumps(cfg).encode() + b"\n")
                p.stdin.flush()
                os.set_blocking(p.stdout.fileno(), False)
                self.sel.register(p.stdout, selectors.EVENT_READ, i)
        except BaseException:
            self.close()
            raise
        self.log_dir = log_dir

    def __enter__(self) -> LoadGenerator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, msg: dict[str, Any], only: int | None = None) -> None:
        line = json.dumps(msg).encode() + b"\n"
        for i, p in enumerate(self.procs):
            if only is not None and i != only:
                continue
            if p.stdin is not None and p.poll() is None:
                with contextlib.suppress(BrokenPipeError, OSError):
                    p.stdin.write(line)
                    p.stdin.flush()

    def _pump(self, timeout: float) -> None:
        """Read whatever the workers have written (waiting up to ``timeout``) into the queue."""
        ready = self.sel.select(timeout)
        if not ready:
            for i, p in enumerate(self.procs):
                if p.poll() is not None and p.returncode != 0:
                    raise WorkerError(self._death(i))
            return
        for key, _ in ready:
            i = key.data
            stdout = self.procs[i].stdout
            assert stdout is not None
            try:
                data = os.read(stdout.fileno(), 65536)
            except BlockingIOError:
                continue
            if not data:
                self.sel.unregister(stdout)
                if self.procs[i].wait() != 0:
                    raise WorkerError(self._death(i))
                continue
            self.bufs[i] += data
            *lines, self.bufs[i] = self.bufs[i].split(b"\n")
            self.queue.extend((i, json.loads(x)) for x in lines if x.strip())

    def next_event(self, timeout: float) -> tuple[int, dict[str, Any]] | None:
        """The next message from any worker, or None after ``timeout`` seconds."""
        deadline = time.perf_counter() + timeout
        while not self.queue:
            left = deadline - time.perf_counter()
            if left <= 0:
                return None
            self._pump(min(left, 0.5))
        return self.queue.popleft()

    def _death(self, i: int) -> str:
        self.logs[i].flush()
        tail = (self.log_dir / f"generator-{i}.log").read_bytes()[-800:].decode(errors="replace")
        return f"generator process {i} exited with {self.procs[i].returncode}: {tail}"

    def wait_all(
        self, event: str, timeout: float, match: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Wait for one ``event`` message (with the ``match`` items) from every worker."""
        got: dict[int, dict[str, Any]] = {}
        deadline = time.perf_counter() + timeout
        while len(got) < len(self.procs):
            left = deadline - time.perf_counter()
            if left <= 0:
                raise WorkerError(
                    f"timed out waiting for {event!r} from generator processes "
                    f"{sorted(set(range(len(self.procs))) - set(got))}"
                )
            item = self.next_event(left)
            if (
                item is not None
                and item[1].get("event") == event
                and all(item[1].get(k) == v for k, v in (match or {}).items())
            ):
                got[item[0]] = item[1]
        return [got[i] for i in range(len(self.procs))]

    def close(self) -> None:
        for p in self.procs:
            if p.stdin is not None:
                with contextlib.suppress(OSError):
                    p.stdin.close()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout is not None:
                with contextlib.suppress(KeyError, ValueError):
                    self.sel.unregister(p.stdout)
                p.stdout.close()
        self.sel.close()
        for log in self.logs:
            log.close()
        self.procs = []
        self.logs = []


def plan_processes(
    conns: int, max_procs: int | None = None, per_process: int = PER_PROCESS_MAX
) -> int:
    """How many generator processes ``conns`` connections need.

    >>> plan_processes(100), plan_processes(10000), plan_processes(20000, max_procs=2)
    (1, 2, 2)
    """
    from c10k.bench.machine import nofile_soft

    per = min(per_process, max(64, nofile_soft() - 256))
    n = max(1, math.ceil(conns / per))
    return min(n, max_procs) if max_procs else n


def merge_results(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Add up the ``result`` messages of several workers (closed/open modes)."""
    hist = Histogram()
    errors: dict[str, int] = {}
    out: dict[str, Any] = {
        "ok": 0,
        "bytes": 0,
        "discarded": 0,
        "reconnects": 0,
        "attempted": 0,
        "dropped": 0,
        "tls_handshakes": 0,
        "tls_resumed": 0,
    }
    measured = 0.0
    for r in results:
        for k in out:
            out[k] += r.get(k, 0)
        for k, v in r.get("errors", {}).items():
            errors[k] = errors.get(k, 0) + v
        hist.merge(Histogram.from_json(r["hist"]))
        measured = max(measured, r.get("measured_s", 0.0))
    out["errors"] = errors
    out["measured_s"] = measured
    out["hist"] = hist
    return out


if __name__ == "__main__":
    sys.exit(worker_main())
