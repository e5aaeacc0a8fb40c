"""Listening sockets and the accept loop.

Accepting defensively:
- Accept in batches until EAGAIN, at most ``max_per_wakeup`` per readiness event, so a
  connection storm cannot starve established connections (asyncio's ``for _ in
  range(backlog)``, bpo-27906). With an edge-triggered backend the remaining backlog would
  not be announced again, so the acceptor re-posts itself instead of waiting for an edge.
- On ACCEPT_CAPACITY_ERRNOS (out of fds or memory) the pending connection cannot be taken;
  level-triggered polling would spin at 100% CPU reporting it. The listener is paused for
  ``CAPACITY_SLEEP`` seconds and retried (trio sleeps 100 ms; nginx disables accept events
  for ``ngx_accept_disabled`` rounds).
- ECONNABORTED/EPROTO etc.: the peer gave up between SYN and accept; skip it.
- ``pause()``/``resume()`` let the server stop accepting while at its connection cap, so
  the kernel's backlog absorbs the excess instead of us accepting and closing.

TCP_NODELAY is set on the listener: Linux copies it to every accepted socket, which saves a
setsockopt per connection (checked by tests/core/test_listener.py).

Listeners for several worker processes (used by c10k.server.listeners):
- ``reuse_port_supported()`` probes SO_REUSEPORT once (Linux >= 3.9, the BSDs; with it
  each worker gets its own socket and accept queue, and the kernel spreads connections by
  a hash of the 4-tuple: no thundering herd, no accept lock. nginx ``listen ... reuseport``).
- Where it is missing, workers share one listener. Then every worker blocked in
  epoll_wait on it wakes for each connection and all but one get EAGAIN (the page's
  "thundering herd"). ``EPOLLEXCLUSIVE`` (Linux >= 4.5) wakes one waiter instead;
  ``exclusive_accept_flag()`` gives the bit to OR into the listener's registration, or 0
  where the kernel or Python lacks it. It is only valid with EPOLL_CTL_ADD (never MOD), so
  pause/resume must be remove + add, which is what Acceptor does. ``Acceptor(...,
  exclusive=True)`` registers with it when the loop's backend names the bit in its
  ``exclusive_accept`` attribute (epoll), and falls back to a plain registration on
  EINVAL (kernels before 4.5; and EPOLLRDHUP, which epoll-et sets, is not allowed with
  it). With a single waiter it changes nothing, so a server may always ask for it.
- ``bind_unix_socket`` binds an AF_UNIX stream listener. A socket file left behind by a
  crashed server makes bind fail with EADDRINUSE, so the path is probed first: connect()
  refused means nobody listens and the stale file is removed; a live listener, or a path
  that is not a socket at all, is an error (we never delete someone else's file).
  Permissions: see UNIX_SOCKET_MODE. ``remove_unix_socket`` unlinks it at exit, but only
  if the file is still the one we bound (a newer server may have replaced it).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import select
import socket
import stat
import struct
import sys
from collections.abc import Callable, Iterator
from typing import Any

from c10k.core.backend import READ
from c10k.core.fdio import (
    TCP_NOTSENT_LOWAT,
    accept_bare,
    bare_accept_available,
    set_nonblocking,
)
from c10k.core.loop import Loop
from c10k.core.timers import TimerHandle

log = logging.getLogger("c10k.listener")

ACCEPT_CAPACITY_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
ACCEPT_SKIP_ERRNOS = frozenset(
    (errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.EHOSTUNREACH)
)
CAPACITY_SLEEP = 0.1  # seconds; trio's SLEEP_TIME
DEFAULT_BACKLOG = 4096  # nginx: NGX_LISTEN_BACKLOG 511 on Linux, capped by somaxconn (4096)
# rw for everyone, as uvicorn (``--uds``: chmod 0o666) and gunicorn (umask 0) leave it:
# connect() on a Unix socket needs write permission, and what this server serves is what
# any local user could fetch over loopback TCP anyway. To restrict access, put the socket
# in a directory only the intended group can search (the portable way: some BSDs ignore
# a socket file's own mode).
UNIX_SOCKET_MODE = 0o666

_reuse_port: bool | None = None


def reuse_port_supported() -> bool:
    """True if SO_REUSEPORT can be set here (probed once on a throwaway socket)."""
    global _reuse_port
    if _reuse_port is None:
        opt = getattr(socket, "SO_REUSEPORT", None)
        ok = False
        if opt is not None:
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                    s.setsockopt(socket.SOL_SOCKET, opt, 1)
                ok = True
            except OSError:  # e.g. ENOPROTOOPT on Linux < 3.9 or under some sandboxes
                ok = False
        _reuse_port = ok
    return _reuse_port


def exclusive_accept_flag() -> int:
    """EPOLLEXCLUSIVE (to OR into a shared listener's epoll registration), or 0."""
    return int(getattr(select, "EPOLLEXCLUSIVE", 0))


NOTSENT_LOWAT_BYTES = 256 * 1024


def bind_socket(
    host: str, port: int, *, backlog: int = DEFAULT_BACKLOG, reuse_port: bool = False
) -> socket.socket:
    """Create a nonblocking listening TCP socket.

    Args:
        host: address to bind; an IPv6 literal (``::1``) gives an AF_INET6 socket.
        port: 0 for any free port (read it back with ``getsockname()``).
        backlog: listen() backlog (the kernel caps it at net.core.somaxconn).
        reuse_port: set SO_REUSEPORT, for one listener per worker process.
    """
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, type_, proto, _, addr = infos[0]
    sock = socket.socket(family, type_, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Unsent bytes a socket may hold (tcp(7) TCP_NOTSENT_LOWAT; copied to accepted
        # sockets like TCP_NODELAY): without it one sendfile can park megabytes per
        # client in kernel memory, so 1,500 slow readers (slowhttptest -X) pinned 1.5 GB
        # and each sendfile into a full socket cost ~0.5 ms; with it a slow reader holds
        # at most this much besides what is in flight.
        sock.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, NOTSENT_LOWAT_BYTES)
        sock.bind(addr)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bind_unix_socket(
    path: str, *, backlog: int = DEFAULT_BACKLOG, mode: int = UNIX_SOCKET_MODE
) -> socket.socket:
    """Create a nonblocking listening AF_UNIX stream socket at ``path``.

    A stale socket file (nobody accepts on it) is replaced; see the module comment.

    Raises:
        OSError: EADDRINUSE if a server listens on ``path`` or ``path`` is not a socket;
            any error of bind/listen/chmod.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if not stat.S_ISSOCK(st.st_mode):
            raise OSError(errno.EADDRINUSE, f"{path} exists and is not a socket; not removing it")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(1.0)
            try:
                probe.connect(path)
            except ConnectionRefusedError:
                log.info("removing stale Unix socket %s (nothing listens on it)", path)
                os.unlink(path)
            except OSError:
                pass  # let bind() report whatever is wrong
            else:
                raise OSError(errno.EADDRINUSE, f"a server already listens on {path}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        try:
            os.chmod(path, mode)
            sock.listen(backlog)
            sock.setblocking(False)
        except BaseException:
            os.unlink(path)
            raise
    except BaseException:
        sock.close()
        raise
    return sock


# struct tcp_info and the socket filter below are read and built as Linux lays them out.
_LINUX = sys.platform.startswith("linux")
# struct tcp_info (linux/tcp.h): on a listening socket tcpi_unacked is the accept queue's
# current length and tcpi_sacked its limit (what ``ss -lnt`` shows as Recv-Q / Send-Q).
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
_TCP_INFO_QUEUE = struct.Struct("=II")  # at offset 24: tcpi_unacked, tcpi_sacked


def accept_queue(sock: socket.socket) -> tuple[int, int] | None:
    """(connections waiting to be accepted, the queue's limit) of a TCP listener, or None
    where the kernel does not say (a Unix-domain socket, a non-Linux kernel: the layout
    of struct tcp_info read here is Linux's)."""
    if not _LINUX:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 32)
    except OSError:
        return None
    if len(raw) < 32:
        return None
    qlen, limit = _TCP_INFO_QUEUE.unpack_from(raw, 24)
    return int(qlen), int(limit)


def set_backlog(sock: socket.socket, backlog: int) -> None:
    """Change a listening socket's backlog in place: listen(2) on a socket that already
    listens only updates its limit on Linux (and BSD); queued connections stay queued,
    new SYNs are dropped while the queue is over the limit."""
    sock.listen(backlog)


# Random early drop of SYNs, for admission control under overload (``drop_syns``): a
# classic BPF socket filter on the listener. The kernel runs a listener's filter on every
# segment addressed to it (tcp_v4_rcv / tcp_v6_rcv -> tcp_filter, before the SYN queue, the
# accept queue and SYN cookies), with the packet data starting at the TCP header. The
# program keeps anything with ACK set (handshake completions, so a connection already
# answered is never lost) and anything without SYN, and drops a SYN when a random 32-bit
# number (the SKF_AD_RANDOM ancillary load) falls below a threshold. A dropped SYN costs
# this process nothing (it never reaches a queue) and the client retransmits it after its
# initial timeout (1 s on Linux, RFC 6298).
_SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_SO_DETACH_FILTER = getattr(socket, "SO_DETACH_FILTER", 27)
_SOCK_FILTER = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_SOCK_FPROG = struct.Struct("@HP")  # struct sock_fprog: len, filter * (native alignment)
_SKF_AD_RANDOM = -0x1000 + 56  # SKF_AD_OFF + SKF_AD_RANDOM
_TCP_FLAGS_OFFSET = 13
_TH_SYN, _TH_ACK = 0x02, 0x10
_BPF_LD_B_ABS, _BPF_LD_W_ABS = 0x30, 0x20
_BPF_JSET_K, _BPF_JGE_K, _BPF_RET_K = 0x45, 0x35, 0x06


def _syn_drop_program(threshold: int) -> bytes:
    insns = (
        (_BPF_LD_B_ABS, 0, 0, _TCP_FLAGS_OFFSET),  # 0: A = TCP flags
        (_BPF_JSET_K, 3, 0, _TH_ACK),  # 1: ACK set -> 5 (keep)
        (_BPF_JSET_K, 0, 2, _TH_SYN),  # 2: SYN set -> 3, else 5 (keep)
        (_BPF_LD_W_ABS, 0, 0, _SKF_AD_RANDOM & 0xFFFFFFFF),  # 3: A = random u32
        (_BPF_JGE_K, 0, 1, threshold),  # 4: A >= threshold -> 5, else 6
        (_BPF_RET_K, 0, 0, 0xFFFFFFFF),  # 5: keep the whole segment
        (_BPF_RET_K, 0, 0, 0),  # 6: drop
    )
    return b"".join(_SOCK_FILTER.pack(*insn) for insn in insns)


def drop_syns(sock: socket.socket, fraction: float) -> bool:
    """Have the kernel drop ``fraction`` (0..1) of the new connection attempts (SYNs) to
    the listening TCP socket ``sock``, at random, before they reach its queues; 0 removes
    the filter. Returns False where this cannot be done (not Linux, not TCP, the kernel
    refused): the caller then has only the backlog to bound the queue with."""
    if not _LINUX or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        import ctypes  # (optional in CPython builds: the core must import without it)
    except ImportError:
        return False
    try:
        if fraction <= 0:
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_DETACH_FILTER, 0)
            except OSError as exc:
                if exc.errno != errno.ENOENT:  # ENOENT: there was none
                    raise
            return True
        threshold = min(int(fraction * 2**32), 2**32 - 1)
        program = _syn_drop_program(threshold)
        code = ctypes.create_string_buffer(program, len(program))
        # The kernel copies the program during the call; ``code`` outlives it.
        prog = _SOCK_FPROG.pack(len(program) // _SOCK_FILTER.size, ctypes.addressof(code))
        sock.setsockopt(socket.SOL_SOCKET, _SO_ATTACH_FILTER, prog)
    except OSError as exc:
        log.warning("cannot filter SYNs on the listener: %s", exc)
        return False
    return True


def syn_drop_in_force(sock: socket.socket) -> float:
    """The share of SYNs ``drop_syns`` set on ``sock``, read back from the kernel (so also
    from another process holding the same socket); 0 with no filter or another one."""
    if not _LINUX:
        return 0.0
    try:
        import ctypes
    except ImportError:
        return 0.0
    ours = _syn_drop_program(0)
    blocks = len(ours) // _SOCK_FILTER.size
    # SO_GET_FILTER takes and returns its length in instructions, not bytes, which
    # socket.getsockopt cannot express: call libc's.
    buf = ctypes.create_string_buffer(len(ours))
    optlen = ctypes.c_uint32(blocks)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.getsockopt(
        sock.fileno(), socket.SOL_SOCKET, _SO_ATTACH_FILTER, buf, ctypes.byref(optlen)
    ):
        return 0.0  # EINVAL: a longer program than ours
    head = 4 * _SOCK_FILTER.size  # the instructions before the threshold's
    if optlen.value != blocks or buf.raw[:head] != ours[:head]:
        return 0.0
    threshold: int = _SOCK_FILTER.unpack_from(buf.raw, head)[3]
    return threshold / 2**32


# (st_dev, st_ino, st_ctime_ns): the inode number alone is not enough, since tmpfs and
# ext4 hand a freed inode number to the next file created.
UnixSocketIdentity = tuple[int, int, int]


def unix_socket_identity(path: str) -> UnixSocketIdentity | None:
    """Identity of the socket file at ``path`` (take it after bind), for
    ``remove_unix_socket``."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino, st.st_ctime_ns


def remove_unix_socket(path: str, identity: UnixSocketIdentity | None) -> None:
    """Unlink ``path`` if it is still the socket file we bound (same device, inode and
    change time)."""
    if identity is not None and unix_socket_identity(path) == identity:
        try:
            os.unlink(path)
        except OSError as exc:
            log.warning("could not remove Unix socket %s: %s", path, exc)


# Connections accepted per readiness event, in every server mode (asyncio's own accept loop
# takes as many, bpo-27906): a queue that holds more stands beyond what one turn takes in.
ACCEPT_BATCH = 64


def accept_fds(sock: socket.socket, limit: int = ACCEPT_BATCH) -> Iterator[tuple[int, Any]]:
    """Up to ``limit`` waiting connections of the listening ``sock``, as (bare fd,
    address) pairs; stops at EAGAIN. Clients that gave up before accept
    (ACCEPT_SKIP_ERRNOS) are skipped. For servers that drive their own accept (the
    Acceptor is this, inlined, on a Loop).

    Raises:
        OSError: ACCEPT_CAPACITY_ERRNOS (out of fds or memory: back off, do not spin),
            or anything unexpected.
    """
    accept = sock._accept  # type: ignore[attr-defined]
    for _ in range(limit):
        try:
            conn = accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if exc.errno in ACCEPT_SKIP_ERRNOS:
                continue
            raise
        yield conn


def _accept_bare_pair(listen_fd: int) -> tuple[int, None]:
    # fdio.accept_bare shaped as socket._accept: (fd, address).
    return accept_bare(listen_fd), None


class Acceptor:
    """Accepts connections on a listening socket and hands them to ``on_accept``.

    ``on_accept(sock, addr)`` gets a nonblocking connected socket and owns it from then on.
    With ``raw_fds=True`` it gets the bare nonblocking fd instead (see core/fdio.py: no
    socket object, no getsockname per connection); the caller must ``os.close`` it.
    ``on_backlog()``, if given, is called after a wakeup that accepted a whole batch
    (``max_per_wakeup``): the queue held more than one batch, a sign of a flood.
    With ``raw_fds`` and ``peer=False`` the address is None: where libc has accept4 the
    fd then comes nonblocking from one syscall (``fdio.accept_bare``), ~1 us less per
    connection than accept + ioctl(FIONBIO) + the address tuple.
    """

    def __init__(
        self,
        loop: Loop,
        sock: socket.socket,
        # (sock, addr), or (fd, addr) with raw_fds=True
        on_accept: Callable[[Any, object], object],
        max_per_wakeup: int = ACCEPT_BATCH,
        raw_fds: bool = False,
        exclusive: bool = False,
        on_backlog: Callable[[], object] | None = None,
        peer: bool = True,
    ) -> None:
        self.raw_fds = raw_fds
        # The fd comes nonblocking, without an address (see the class comment).
        self.bare = raw_fds and not peer and bare_accept_available()
        self.on_backlog = on_backlog
        # Extra event bits for the listener's registration (EPOLLEXCLUSIVE, or 0).
        self.exclusive_bits = int(getattr(loop.backend, "exclusive_accept", 0)) if exclusive else 0
        self.loop = loop
        self.sock = sock
        self.on_accept = on_accept
        self.max_per_wakeup = max_per_wakeup
        self.accepted = 0
        self.capacity_errors = 0
        self._listening = False
        self._paused = False  # paused by the owner (pause/resume)
        self._retry: TimerHandle | None = None
        self._closed = False

    def start(self) -> None:
        self._paused = False
        self._watch()

    def pause(self) -> None:
        """Stop accepting until ``resume()`` (e.g. at the connection cap)."""
        self._paused = True
        self._unwatch()

    def resume(self) -> None:
        if self._paused:
            self._paused = False
            if self._retry is None:
                self._watch()
                if self.loop.edge:  # connections that queued while paused raise no edge
                    self.loop.call_soon(self._read_ready, READ)

    @property
    def paused(self) -> bool:
        return self._paused or self._retry is not None

    def _watch(self) -> None:
        if not self._listening and not self._closed:
            fd = self.sock.fileno()
            if self.exclusive_bits:
                try:
                    self.loop.add_fd(fd, READ | self.exclusive_bits, self._read_ready)
                except OSError as exc:
                    if exc.errno != errno.EINVAL:
                        raise
                    self.exclusive_bits = 0  # see the module comment
            if not self.exclusive_bits:
                self.loop.add_fd(fd, READ, self._read_ready)
            self._listening = True

    def _unwatch(self) -> None:
        if self._listening:
            self.loop.remove_fd(self.sock.fileno())
            self._listening = False

    def _read_ready(self, _events: int) -> None:
        if not self._listening:
            return
        accept: Callable[[], tuple[Any, Any]]
        if self.bare:
            accept = functools.partial(_accept_bare_pair, self.sock.fileno())
        else:
            accept = self.sock._accept if self.raw_fds else self.sock.accept  # type: ignore[attr-defined]
        for _ in range(self.max_per_wakeup):
            try:
                conn: Any
                conn, addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if self._accept_failed(exc):
                    return
                continue
            self._hand_over(conn, addr)
            if not self._listening:  # the owner paused us (connection cap)
                return
        self._batch_done()

    def _batch_done(self) -> None:
        # A whole batch accepted: more may wait (a flood, or an edge to re-post).
        if self.on_backlog is not None:
            self.on_backlog()
        if self.loop.edge:
            self.loop.call_soon(self._read_ready, READ)

    def _accept_failed(self, exc: OSError) -> bool:
        """An accept error: True to stop this wakeup (out of fds or memory: the listener
        sleeps, not spins), False to go on (a client that gave up); else raise."""
        if exc.errno in ACCEPT_CAPACITY_ERRNOS:
            self.capacity_errors += 1
            log.warning(
                "accept: %s; pausing the listener for %.0f ms",
                exc.strerror,
                CAPACITY_SLEEP * 1e3,
            )
            self._unwatch()
            self._retry = self.loop.call_later(CAPACITY_SLEEP, self._after_sleep)
            return True
        if exc.errno in ACCEPT_SKIP_ERRNOS:
            return False
        raise exc

    def _hand_over(self, conn: Any, addr: object) -> None:
        self.accepted += 1
        if self.bare:
            pass  # nonblocking from accept4 already
        elif self.raw_fds:
            try:
                set_nonblocking(conn)
            except OSError:
                os.close(conn)
                return
        else:
            conn.setblocking(False)
        try:
            self.on_accept(conn, addr)
        except Exception:
            # Log and go on with the batch: on an edge-triggered backend, letting this
            # escape would also skip the re-post below, and the rest of the backlog
            # would wait for another client's edge. on_accept owns conn (it may have
            # registered it), so it is not closed here.
            log.exception("error in on_accept for %r", addr)

    def _after_sleep(self) -> None:
        self._retry = None
        if not self._paused:
            self._watch()
            self._read_ready(READ)

    def close(self, sweep: bool = False) -> None:
        """Stop accepting and close the listening socket. With ``sweep``, first hand over
        the connections waiting in its queue (if it was being watched): on a listener
        shared with EPOLLEXCLUSIVE, one waiter is woken per connection, and a wakeup that
        came to this loop just before it stopped would otherwise leave that client
        waiting until the next one wakes another process."""
        if sweep and self._listening and not self._closed:
            self._unwatch()
            try:
                for fd, addr in accept_fds(self.sock, self.max_per_wakeup):
                    self._hand_over(fd if self.raw_fds else socket.socket(fileno=fd), addr)
            except OSError as exc:
                log.warning("accept while closing the listener: %s", exc.strerror)
        if self._retry is not None:
            self._retry.cancel()
            self._retry = None
        self._unwatch()
        self._closed = True
        self.sock.close()
