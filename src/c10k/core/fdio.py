"""Socket I/O on bare fds, for connections that keep no ``socket.socket`` object.

Why bare fds: wrapping each accepted fd in a ``socket.socket`` costs, per connection, a
getsockname(2) (CPython's constructor checks the fd), two enum conversions in
``socket.accept`` and ~100 bytes of object, and buys nothing ``os.read``/``os.write``/
``os.close`` do not do as well on a stream socket. The few calls that need a socket
object (setsockopt, shutdown) are rare (big files, lingering close): they borrow a
temporary object and ``detach()`` it so the fd is not closed behind our back.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
import sys
import termios
from typing import Any

_ONE = (1).to_bytes(4, sys.byteorder)


_NO_TCP_OPTION_ERRNOS = frozenset((errno.EOPNOTSUPP, errno.ENOPROTOOPT))
TCP_NOTSENT_LOWAT = getattr(socket, "TCP_NOTSENT_LOWAT", 25)  # Linux 3.12+


def _libc_accept4() -> Any:
    # accept4(2) through libc, where it exists (Linux, the BSDs): the stdlib's accept
    # always asks for the peer's address and gives a blocking fd. Without ctypes (some
    # embedded builds) the stdlib's accept it is.
    try:
        import ctypes

        accept4 = ctypes.CDLL(None, use_errno=True).accept4
    except (ImportError, OSError, AttributeError):
        return None
    accept4.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int)
    accept4.restype = ctypes.c_int
    return accept4


def _libc_setsockopt(typed: bool = True) -> Any:
    # setsockopt(2) on a bare fd through libc, with the two int values made once: the
    # borrowed socket object costs three more syscalls (CPython's constructor asks the fd
    # for its family, type and protocol) and 3.2 us against 1.5 us a call here, twice per
    # file response (TCP_CORK on and off). Without ctypes, the borrowed object.
    # Untyped (``typed=False``), for TCP_CORK only: ctypes then converts each argument
    # by its Python type (int to C int, a byref to a pointer) in 0.9 us a call against
    # 1.6 us with argtypes (timeit, 2026-12-07); its value must be passed as a byref.
    try:
        import ctypes

        setsockopt = ctypes.CDLL(None, use_errno=True)["setsockopt"]  # (a new object)
    except (ImportError, OSError, AttributeError):
        return None
    if typed:
        setsockopt.argtypes = (
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_uint,
        )
    setsockopt.restype = ctypes.c_int
    return setsockopt


_ACCEPT4: Any = _libc_accept4() if hasattr(socket, "SOCK_NONBLOCK") else None
_SETSOCKOPT: Any = _libc_setsockopt()
_SET_CORK: Any = _libc_setsockopt(typed=False)
_get_errno: Any = getattr(sys.modules.get("ctypes"), "get_errno", None)
IPPROTO_TCP = int(socket.IPPROTO_TCP)
TCP_CORK = int(getattr(socket, "TCP_CORK", 3))
# set_cork without its Python frame, for a path that corks twice per response (a large
# file's flat send): ``CORK(fd, IPPROTO_TCP, TCP_CORK, CORK_ON or CORK_OFF, 4)``, or None
# without ctypes (then call set_cork). Its result may be ignored: it fails only where
# corking means nothing (a Unix socket), or on an fd whose next write fails anyway.
CORK: Any = None
CORK_ON: Any = None
CORK_OFF: Any = None
if _SETSOCKOPT is not None:
    _ct = sys.modules["ctypes"]
    # (a byref keeps its c_int alive)
    CORK, CORK_ON, CORK_OFF = _SET_CORK, _ct.byref(_ct.c_int(1)), _ct.byref(_ct.c_int(0))
_NONBLOCK_CLOEXEC = getattr(socket, "SOCK_NONBLOCK", 0) | getattr(socket, "SOCK_CLOEXEC", 0)


def _tcp_option(fd: int, option: int, int_ptr: int) -> None:
    """setsockopt(fd, IPPROTO_TCP, option, *int_ptr) through libc; a socket without TCP
    options (Unix-domain: EOPNOTSUPP) is left alone, as the borrowed-object path does."""
    if _SETSOCKOPT(fd, IPPROTO_TCP, option, int_ptr, 4) < 0:
        _tcp_option_failed()


def _tcp_option_failed() -> None:
    err = _get_errno()
    if err not in _NO_TCP_OPTION_ERRNOS:
        raise OSError(err, os.strerror(err))


def bare_accept_available() -> bool:
    """Whether ``accept_bare`` works here."""
    return _ACCEPT4 is not None


def accept_bare(listen_fd: int) -> int:
    """One connection as a nonblocking close-on-exec fd, without its address: one
    accept4(2), no ioctl(FIONBIO) after it and no address tuple (nginx's accept4 with
    SOCK_NONBLOCK). For servers that do not log or limit peers.

    Raises:
        OSError: as accept(2) fails (BlockingIOError when nothing is waiting).
    """
    fd: int = _ACCEPT4(listen_fd, None, None, _NONBLOCK_CLOEXEC)
    if fd < 0:
        err = _get_errno()
        raise OSError(err, os.strerror(err))
    return fd


def set_nonblocking(fd: int) -> None:
    """O_NONBLOCK with one ioctl(FIONBIO) (os.set_blocking costs fcntl GET + SET)."""
    fcntl.ioctl(fd, termios.FIONBIO, _ONE)


def set_cork(fd: int, on: bool) -> None:
    """TCP_CORK on a bare fd: while corked, the kernel sends only full segments; uncorking
    pushes the rest (tcp(7)). nginx's ``tcp_nopush`` does this around sendfile."""
    if CORK is not None:
        # (A Unix-domain socket, --listen unix:/path, has no TCP options: corking only
        # packs segments, so there is nothing to do without it.)
        # (_tcp_option inlined and untyped: twice per file response)
        if CORK(fd, IPPROTO_TCP, TCP_CORK, CORK_ON if on else CORK_OFF, 4) < 0:
            _tcp_option_failed()
        return
    s = socket.socket(fileno=fd)
    try:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1 if on else 0)
    except OSError as exc:
        # A Unix-domain socket (--listen unix:/path) has no TCP options: EOPNOTSUPP.
        # Corking only packs segments, so there is nothing to do without it.
        if exc.errno not in _NO_TCP_OPTION_ERRNOS:
            raise
    finally:
        s.detach()


def shutdown_write(fd: int) -> None:
    """shutdown(fd, SHUT_WR) on a bare fd."""
    s = socket.socket(fileno=fd)
    try:
        s.shutdown(socket.SHUT_WR)
    finally:
        s.detach()


def set_notsent_lowat(fd: int, nbytes: int) -> None:
    """TCP_NOTSENT_LOWAT on a bare fd: how many unsent bytes the kernel queues before a
    write blocks (tcp(7)); none on a Unix-domain socket, where there is nothing to do."""
    if _SETSOCKOPT is not None:
        value = sys.modules["ctypes"].c_int(nbytes)
        _tcp_option(fd, TCP_NOTSENT_LOWAT, sys.modules["ctypes"].addressof(value))
        return
    s = socket.socket(fileno=fd)
    try:
        s.setsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT, nbytes)
    except OSError as exc:
        if exc.errno not in _NO_TCP_OPTION_ERRNOS:
            raise
    finally:
        s.detach()


_OUTQ = bytearray(4)


def unsent_bytes(fd: int) -> int:
    """Bytes queued in the socket's send buffer that the peer has not acknowledged yet
    (ioctl SIOCOUTQ, = TIOCOUTQ on Linux; 0 where unsupported). What a client has really
    read is what we wrote minus this: the first write of a response fills the kernel
    buffer at memory speed whatever the client does."""
    try:
        fcntl.ioctl(fd, termios.TIOCOUTQ, _OUTQ)
    except OSError:
        return 0
    return int.from_bytes(_OUTQ, sys.byteorder)


_LINGER_RESET = (1).to_bytes(
    4, "little" if __import__("sys").byteorder == "little" else "big"
) + bytes(4)


def reset_on_close(fd: int) -> None:
    """SO_LINGER {on, 0}: the next close() sends RST and drops the unsent queue at once,
    instead of the kernel trickling megabytes to a client we gave up on (nginx
    ``reset_timedout_connection``). For timed-out and too-slow readers only."""
    s = socket.socket(fileno=fd)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    except OSError:
        pass
    finally:
        s.detach()


# struct tcp_info's layout below is Linux's; other kernels (FreeBSD's has one too) differ.
_LINUX = sys.platform.startswith("linux")
_TCP_INFO = getattr(socket, "TCP_INFO", 11)
# struct tcp_info (linux/tcp.h): tcpi_last_data_recv (ms) at offset 52, tcpi_rtt (us) at
# 68, tcpi_total_retrans at 100.
_WAIT_FIELDS = struct.Struct("=I12xI28xI")
_WAIT_INFO_BYTES = 104


def accept_wait_ms(fd: int) -> int | None:
    """How long the client of a just-accepted TCP connection has been waiting, in ms, as
    far as the kernel knows; None where it does not say (not TCP, not Linux).

    The sum of: the time since the connection last received data (stamped when it was
    established and again when its request arrived: the time spent in the accept
    queue); its first RTT sample, which on a fresh connection is the time from our
    SYN-ACK to the segment that completed the handshake (normally one round trip, but
    when the accept queue was full the client's ACK was dropped and the handshake
    completed only when the client retransmitted its request, seconds later);
    and 1 s per SYN-ACK the kernel had to retransmit (its initial timeout).
    """
    parts = accept_wait_parts(fd)
    return None if parts is None else parts[1]


def accept_wait_parts(fd: int) -> tuple[int, int] | None:
    """(ms in the accept queue, ms the client has waited in all: ``accept_wait_ms``) of a
    just-accepted TCP connection; None where the kernel does not say.

    The first is only the time since the connection last received data: with
    TCP_DEFER_ACCEPT (``listeners``) it joined the queue when its request arrived, so this
    is its time there, and it leaves out the handshake's round trip, which a slow client
    (a saturated load generator answers our SYN-ACK late) stretches without any queue of
    ours standing: admission's overload measure must not see that (issue 20).
    """
    if not _LINUX:
        return None
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 0, fileno=fd)
    try:
        raw = s.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _WAIT_INFO_BYTES)
    except OSError:
        return None
    finally:
        s.detach()
    if len(raw) < _WAIT_INFO_BYTES:
        return None
    idle, rtt_us, retrans = _WAIT_FIELDS.unpack_from(raw, 52)
    return int(idle), int(idle + rtt_us // 1000 + 1000 * retrans)


def peer_address(fd: int) -> object:
    """getpeername(2) of a connected socket fd, as ``socket.getpeername`` gives it (a
    (host, port, ...) tuple, or a path for a Unix socket); None if it has none left."""
    s = socket.socket(fileno=fd)
    try:
        return s.getpeername()
    except OSError:
        return None
    finally:
        s.detach()
