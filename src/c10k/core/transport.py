"""Transport and Protocol: one nonblocking stream connection on a Loop.

The split is asyncio's: a ``Protocol`` says what the bytes mean, a ``Transport`` moves
them. User code (and the HTTP server) writes a Protocol and never sees ``EAGAIN``,
``Capability.EDGE`` or a partial write:

    class Echo(Protocol):
        def data_received(self, data: bytes) -> bytes:
            return data                   # the reply: written at once, the rest queued

    loop = Loop("epoll")
    serve(loop, bind_socket("127.0.0.1", 8000), Echo)
    loop.run()

Theory of operation
-------------------
Rule 1, writing: try to send now, queue only the remainder (asyncio
``_SelectorSocketTransport.write``). ``data_received`` may *return* the reply instead of
calling ``write``: the transport writes it right after the call, which saves the
protocol a method call per request on the hot path (a keep-alive GET of a cached file is
one ``read`` and one ``write`` syscall and two Python calls). A queued item is bytes or a
``FileRegion``; a region goes out with ``os.sendfile`` from the page cache. Bytes followed
by a region (a response head before a file body) are sent with TCP_CORK set, pulled after
the region's last byte (nginx ``tcp_nopush``): the head and the first body bytes share a
segment and every segment is full.

Rule 2, flow control: when something stays queued the protocol's ``pause_writing`` runs
(before ``write`` returns), and ``resume_writing`` once the queue has drained: the
high-water mark is zero, so a protocol always knows whether its output is on the wire.
Reading goes on while writing unless the protocol calls ``pause_reading`` (an HTTP server
does, so a client that does not read its responses cannot make us buffer its requests).

Rule 3, level- and edge-triggered backends are handled here. Level-triggered: the fd's
interest is READ while reading, WRITE while output is queued, recomputed once per change
(``_sync``), so a paused reader on a full socket never spins the loop. Edge-triggered:
READ|WRITE is registered once and never modified (no epoll_ctl after accept); reads go on
until a short read or EAGAIN, and after ``resume_reading`` the transport reads once on the
next turn, since bytes that came while paused raise no new edge.

Rule 4, closing: ``close()`` closes once the queue has drained; ``write_eof()`` shuts down
the write side once it has (a lingering close reads on); ``abort()`` drops the queue and
closes now, ``abort(reset=True)`` with SO_LINGER 0 so the kernel frees the socket's send
queue at once and the peer gets RST. Closing forgets the fd in the backend without a
syscall where the kernel does it on close (epoll), releases queued regions, and calls
``connection_lost`` exactly once.

I/O errors fall in three buckets (STYLE 5): would-block -> wait; peer gone
(``CONNRESET_ERRNOS``) -> close quietly; anything else -> log and close.

The transport owns a bare fd, not a ``socket.socket`` (see c10k.core.fdio for why).
"""

from __future__ import annotations

import errno
import logging
import os
import socket
from collections.abc import Callable, Iterable
from typing import Any

from c10k.core import diskio
from c10k.core.backend import ERROR, HUP, READ, READ_MASK, WRITE, WRITE_MASK
from c10k.core.fdio import (
    CORK,
    CORK_OFF,
    CORK_ON,
    IPPROTO_TCP,
    TCP_CORK,
    reset_on_close,
    set_cork,
    set_notsent_lowat,
    shutdown_write,
    unsent_bytes,
)
from c10k.core.listener import Acceptor
from c10k.core.loop import Loop
from c10k.region import FileRegion

log = logging.getLogger("c10k.transport")

CONNRESET_ERRNOS = frozenset(
    (
        errno.ECONNRESET,
        errno.EPIPE,
        errno.ECONNABORTED,
        errno.ESHUTDOWN,
        errno.ETIMEDOUT,
        errno.ENOTCONN,
        errno.EBADF,
    )
)
# Bytes per read(2). 64 KiB: a request head is hundreds of bytes, a pipelined batch a few
# KiB; asyncio reads 256 KiB, but a bytes object that large is an mmap per read in glibc.
RECV_SIZE = 65536
# Bytes per sendfile(2) call. 1 MiB: a fast client's socket takes a megabyte or two a
# wakeup (server/session.py grows its unsent limit), so one call a wakeup where 256 KiB
# took four; and what the disk pool warms at once (diskio.WARM_MAX).
SENDFILE_CHUNK = 1 << 20
# File bytes one connection may send per loop turn; the rest goes on at the next turn.
# A reader as fast as sendfile (loopback, a proxy on the same host) never fills its
# socket, and without a share one 1 GiB response held the loop for up to half a second
# while other clients waited. 2 MiB, nginx's sendfile_max_chunk: well under a millisecond of
# sendfile, and on one 1 GiB stream shares of 1, 2 and 4 MiB cost the same within the
# noise (docs/BENCHMARKS.md, issue 15).
TURN_SHARE = 2 << 20
RDHUP = 0x2000  # EPOLLRDHUP (Linux): the peer's FIN is queued; epoll-et asks for it

os_read = os.read
os_write = os.write

# _flags bits. 0 is the hot state: open, reading, nothing queued.
PAUSED = 1  # the protocol paused reading
WRITING = 2  # output queued
CLOSING = 4  # close once the queue has drained
SHUTTING = 8  # shut the write side down once the queue has drained
READ_EOF = 16  # the peer's FIN was read: nothing more to read
CLOSED = 32
DISKWAIT = 64  # with WRITING: the next file chunk is being read in the disk pool
NEXT_TURN = 128  # with WRITING (edge-triggered): the rest of a turn's share is posted
UNWATCHED = -1  # _interest before read_first() registered the fd

Item = bytes | memoryview | FileRegion


class Protocol:
    """What to do with a connection's bytes; a Transport calls these. Override what you
    need; the defaults echo nothing and close on EOF."""

    transport: Transport

    def connection_made(self, transport: Transport) -> None:
        """The connection is open; keep ``transport`` to write on it."""
        self.transport = transport

    def data_received(self, data: bytes) -> bytes | None:
        """Bytes arrived (never empty). Return bytes to write them (a reply), or None."""
        return None

    def eof_received(self) -> None:
        """The peer closed its write side. Default: close ours too (after the queue)."""
        self.transport.close()

    def pause_writing(self) -> None:
        """Output stayed queued: the peer reads slower than we write."""

    def resume_writing(self) -> None:
        """The queue has drained: everything written is in the kernel."""

    def connection_lost(self, exc: BaseException | None) -> None:
        """The connection is closed (``exc`` is the error that closed it, if any)."""


class _Detached(Protocol):
    """What a closed transport holds instead of its protocol. Dropping the reference breaks
    the transport <-> protocol cycle, so refcounting frees a closed connection at once instead
    of the cyclic GC later (which cost a few % of a core at a new connection per request);
    anything the closed transport still reports goes nowhere."""

    def eof_received(self) -> None:
        pass


DETACHED: Protocol = _Detached()


class BaseTransport:
    """What every transport shares, whatever moves its bytes (the readiness Transport
    here; c10k.server's io_uring, thread-per-client and asyncio ones): the flag bits above
    in ``_flags``, and the rules for writing after close and for errors. A subclass
    provides ``fd``, ``writelines``, ``_close(exc)`` and the rest of the interface."""

    __slots__ = ()
    _flags: int
    _out: Any  # the queue: a list (or None when empty), a deque on asyncio
    fd: int

    def write(self, data: bytes | memoryview) -> None:
        """Send ``data`` now as far as the socket takes it; queue the rest."""
        self.writelines((data,))

    def writelines(self, items: Iterable[Item]) -> None:
        raise NotImplementedError

    def send_file(self, head: bytes, region: FileRegion) -> None:
        """``writelines((head, region))``: a response's head and its file body (a
        transport may send the common case flatter)."""
        self.writelines((head, region))

    def _enqueue(self, batch: list[Item]) -> None:
        out = self._out
        if out is None:
            self._out = batch  # (a slot of every subclass)
        else:
            out.extend(batch)

    def _refused(self, items: Iterable[Item], closing: int = CLOSING | SHUTTING) -> bool:
        """True (regions released) if nothing may be written any more: dropped once
        closed; a RuntimeError after close() or write_eof() (a protocol bug)."""
        flags = self._flags
        if not flags & (CLOSED | closing):
            return False
        release(items)
        if flags & CLOSED:
            return True
        raise RuntimeError("write after close() or write_eof()")

    @property
    def closed(self) -> bool:
        return bool(self._flags & CLOSED)

    @property
    def reading(self) -> bool:
        return not self._flags & (PAUSED | READ_EOF | CLOSED)

    def _close(self, exc: BaseException | None) -> None:
        raise NotImplementedError

    def _io_error(self, exc: OSError) -> None:
        if exc.errno not in CONNRESET_ERRNOS:
            log.error("connection fd %d: %s", self.fd, exc)
        self._close(exc)

    def _fatal_error(self, exc: Exception) -> None:
        # A bug in the protocol: one client's, so it must not leak the connection.
        log.error("protocol error on fd %d", self.fd, exc_info=exc)
        self._close(exc)

    def _write_some(self, data: bytes | memoryview) -> int:
        """One write(2) of ``data`` with nothing queued before it: the bytes the socket
        took, or -1 after an error (the connection is closed)."""
        try:
            return os_write(self.fd, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._io_error(exc)
            return -1

    def unacked_bytes(self) -> int:
        """Bytes handed to the kernel that the peer has not acknowledged (SIOCOUTQ). 0
        means the peer took everything it was sent: a wait is ours, not its."""
        if self._flags & CLOSED or self.fd < 0:
            return 0
        return unsent_bytes(self.fd)

    def set_send_lowat(self, nbytes: int) -> None:
        """How many unsent bytes the kernel may hold for this connection before a write
        blocks (TCP_NOTSENT_LOWAT; the listener's default is ``NOTSENT_LOWAT_BYTES``)."""
        if not self._flags & CLOSED and self.fd >= 0:
            set_notsent_lowat(self.fd, nbytes)

    # -- cold file chunks (c10k.core.diskio) --------------------------------------------
    def _disk_wait(self, item: FileRegion, count: int, run_in_thread: Any) -> bool:
        """If the next ``count`` bytes of ``item`` are not in memory, read them in the
        loop's disk pool (``run_in_thread``), set DISKWAIT and say True: the caller stops
        writing, and ``_disk_back`` writes on once they are in memory."""
        if not diskio.cold(item, count):
            return False
        self._flags |= DISKWAIT  # type: ignore[misc]  # (a slot of every subclass)
        run_in_thread(diskio.warm, *diskio.warm_region(item), done=self._disk_back)
        return True

    def _disk_back(self, fut: Any) -> None:
        self._flags &= ~DISKWAIT  # type: ignore[misc]
        if self._flags & CLOSED:
            return  # aborted while the disk worked: the region is already released
        if fut.cancelled() or fut.exception() is not None:
            diskio.COUNTS.warm_errors += 1  # the sendfile that follows reports it
        self._write_on()

    def _write_on(self) -> None:
        """Go on writing the queue after a disk wait."""
        raise NotImplementedError


class Transport(BaseTransport):
    """A nonblocking stream socket (a bare fd, owned) served by ``loop`` for ``protocol``.

    Registers the fd at once (raising, with nothing to undo, if the backend refuses it:
    select with an fd >= FD_SETSIZE) and calls ``protocol.connection_made(self)``.
    ``peer`` is whatever the caller wants to remember of the other end (an address).

    With ``register=False`` the fd is not watched yet: call ``read_first()``, which reads
    once and then watches the fd only if the connection is still open. A just-accepted
    connection whose request is already there (TCP_DEFER_ACCEPT) is then answered, and a
    one-shot client closed, without the fd ever entering the backend: no epoll_ctl, no
    wakeup.
    """

    __slots__ = ("_flags", "_interest", "_out", "fd", "loop", "peer", "protocol")
    #: Bytes per read(2). A subclass may read less: the most a connection holds in
    #: memory at once (c10k serve's --max-buffer-bytes).
    read_size = RECV_SIZE

    def __init__(
        self, loop: Loop, fd: int, protocol: Any, peer: object = None, register: bool = True
    ) -> None:
        self.loop = loop
        self.fd = fd
        self.protocol = protocol
        self.peer = peer
        self._out: list[Item] | None = None
        self._flags = 0
        if register:
            # Edge-triggered: both directions once, never modified.
            self._interest = (READ | WRITE) if loop.edge else READ
            loop.add_fd(fd, self._interest, self._ready_edge if loop.edge else self._ready)
        else:
            self._interest = UNWATCHED
        protocol.connection_made(self)

    def read_first(self, data: bytes | None = None) -> None:
        """Read once now (``register=False``), then watch the fd if it is still open.
        ``data``: what the caller already read from the fd (not empty), given to the
        protocol instead.

        Raises what ``Loop.add_fd`` raises, with the connection closed: the caller logs
        it (select's FD_SETSIZE)."""
        if data is None:
            self._ready(READ)
        else:
            self._deliver(data)
        self.watch()  # (nothing if that closed it)

    def watch(self) -> None:
        """Start watching the fd of a ``register=False`` transport (if still open): what
        ``read_first`` does after its read. Raises as ``read_first``."""
        if self._flags & CLOSED or self._interest != UNWATCHED:
            return
        loop = self.loop
        self._interest = (READ | WRITE) if loop.edge else self._wanted()
        try:
            loop.add_fd(self.fd, self._interest, self._ready_edge if loop.edge else self._ready)
        except BaseException:
            self.abort()
            raise

    # -- reading ---------------------------------------------------------------------
    def _ready(self, events: int) -> int:
        """The loop's callback for this fd on a level-triggered backend: one read, its
        reply written. The hot state (flags 0: reading, nothing queued) is handled
        inline, flat; everything else goes to ``_ready_slow``. Returns the bytes read
        (for ``_ready_edge``)."""
        if self._flags:
            self._ready_slow(events)
            return 0
        if not events & READ_MASK:
            return 0
        fd = self.fd
        try:
            data = os_read(fd, self.read_size)
        except (BlockingIOError, InterruptedError):
            return 0
        except OSError as exc:
            self._io_error(exc)
            return 0
        if not data:
            self._read_eof()
            return 0
        try:
            reply = self.protocol.data_received(data)
        except Exception as exc:
            self._fatal_error(exc)
            return 0
        if reply is not None:
            if self._flags:
                self.write(reply)
            else:
                try:
                    n = os_write(fd, reply)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError as exc:
                    self._io_error(exc)
                    return 0
                if n != len(reply):
                    self._queue([memoryview(reply)[n:]])
        return len(data)

    def _ready_edge(self, events: int) -> None:
        """The loop's callback on an edge-triggered backend: as ``_ready``, but read on
        until the receive queue is drained, since no new edge comes for what is left."""
        while True:
            n = self._ready(events)
            if not n:
                return
            if self._flags:
                # Out of the hot state mid-batch (an answer that closes and lingers): what
                # is left, and a FIN behind it, raise no new edge (rtsig sends no signal
                # for our own shutdown, where epoll happens to report the fd again).
                if n == self.read_size or events & RDHUP:
                    self._read_some()
                return
            if n < self.read_size and not events & RDHUP:
                # A short read drained the receive queue (stream socket): we may wait
                # now. Unless the peer's FIN was queued when we were woken (EPOLLRDHUP):
                # no new edge would come for it, so read on to the EOF (nginx:
                # rev->pending_eof).
                return

    def _ready_slow(self, events: int) -> None:
        flags = self._flags
        if flags & CLOSED:
            return
        if events & WRITE_MASK and flags & WRITING and not flags & DISKWAIT:
            self._flush()
            flags = self._flags
        if events & READ_MASK and not flags & (PAUSED | READ_EOF | CLOSED | CLOSING):
            self._read_some()
        elif events & (ERROR | HUP) and (flags & DISKWAIT or not flags & (WRITING | CLOSED)):
            # An error or hang-up that no read or write of ours will pick up (reading is
            # paused or past EOF, nothing is queued or the queue waits for the disk): the
            # connection is dead, and a level-triggered backend would report it on every
            # turn.
            self._close(None)

    def _read_some(self) -> None:
        """Read outside the hot state (while writing or shutting down), until EAGAIN or
        the EOF on an edge-triggered backend (a short read there may leave a FIN that no
        edge reports: reading resumed after a pause, an answer that lingers), once
        otherwise."""
        fd = self.fd
        while not self._flags & (PAUSED | READ_EOF | CLOSED | CLOSING):
            try:
                data = os_read(fd, self.read_size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._io_error(exc)
                return
            if not data:
                self._read_eof()
                return
            if not self._deliver(data) or not self.loop.edge:
                return

    def _deliver(self, data: bytes) -> bool:
        """Bytes read outside the hot path to the protocol, its reply written. False if the
        protocol failed (the connection is closed then)."""
        try:
            reply = self.protocol.data_received(data)
        except Exception as exc:
            self._fatal_error(exc)
            return False
        if reply is not None:
            self.write(reply)
        return True

    def _read_eof(self) -> None:
        self._flags |= READ_EOF
        self._sync()
        self.protocol.eof_received()

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until ``resume_reading`` (the bytes wait in the
        kernel, so TCP pushes back on the peer)."""
        if not self._flags & PAUSED:
            self._flags |= PAUSED
            self._sync()

    def resume_reading(self) -> None:
        flags = self._flags
        if flags & PAUSED:
            self._flags = flags & ~PAUSED
            self._sync()
            if self.loop.edge:
                # Bytes that arrived while paused raised no new edge.
                self.loop.call_soon(self._read_pending)

    def _read_pending(self) -> None:
        if not self._flags & (PAUSED | READ_EOF | CLOSED | CLOSING):
            self._ready_slow(READ)

    # -- writing ---------------------------------------------------------------------
    def writelines(self, items: Iterable[Item]) -> None:
        """Send bytes and file regions in order (regions by sendfile, corked behind the
        bytes before them); queue what the socket does not take now. The transport
        releases each region after its last byte, or when the connection closes."""
        # (the flags tested before the call: once per file response, nearly always clear)
        if self._flags & (CLOSED | CLOSING | SHUTTING) and self._refused(items):
            return
        batch = coalesce(items)
        if batch:
            self._queue(batch)

    def send_file(self, head: bytes, region: FileRegion) -> None:
        """``writelines((head, region))``, flat where that is one write and one sendfile:
        nothing queued, the region at most one chunk and known to be in memory. A large
        cached file's keep-alive response then costs about the Python calls of a small
        one's, not the general queue's (docs/BENCHMARKS.md, issue 15)."""
        count = region.count
        if (
            self._flags
            or self._out is not None
            or count > SENDFILE_CHUNK
            or (region.offset + count > region.warm_end and diskio.cold(region, count))
        ):
            self.writelines((head, region))
            return
        fd = self.fd
        n = sent = -1  # (-1: the call raised EAGAIN, or was not made)
        try:
            # The head and the body share full segments (set_cork, inlined: fdio.CORK).
            if CORK is None:
                set_cork(fd, True)
            else:
                CORK(fd, IPPROTO_TCP, TCP_CORK, CORK_ON, 4)
            n = os_write(fd, head)
            if n == len(head):
                sent = os.sendfile(fd, region.fd, region.offset, count)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            region.release()
            self._io_error(exc)
            return
        if sent == count:
            region.release()
            # Push the last partial segment now.
            if CORK is None:
                set_cork(fd, False)
            else:
                CORK(fd, IPPROTO_TCP, TCP_CORK, CORK_OFF, 4)
            return
        if n < len(head):
            self._out = [memoryview(head)[max(n, 0) :], region]
            self._stalled()
            return
        self._out = [region]
        if sent > 0:
            region.offset += sent
            region.count -= sent
        if sent == 0 or (sent > 0 and self.loop.edge):
            # The file shrank (_flush says so and closes), or a short send on an
            # edge-triggered backend, which goes on to EAGAIN as _flush does.
            self._flush()
        else:
            self._stalled()

    def _next_turn(self) -> None:
        """This turn's share is sent and the socket has room: go on at the next turn. A
        level-triggered backend reports the fd writable then (WRITE is watched while
        WRITING); an edge-triggered one raises no new edge, so the rest is posted."""
        if self.loop.edge and not self._flags & NEXT_TURN:
            self._flags |= NEXT_TURN
            self.loop.call_soon(self._turn_again)

    def _turn_again(self) -> None:
        flags = self._flags & ~NEXT_TURN
        self._flags = flags
        if flags & WRITING and not flags & (CLOSED | DISKWAIT):
            self._flush()

    def _queue(self, items: list[Item]) -> None:
        self._enqueue(items)
        if not self._flags & WRITING:
            self._flush()

    def _flush(self) -> None:
        """Write queued items until done or the socket is full."""
        out = self._out
        assert out is not None
        fd = self.fd
        share = TURN_SHARE
        try:
            while out:
                item = out[0]
                if isinstance(item, FileRegion):
                    while item.count:
                        if share <= 0:
                            self._next_turn()
                            break
                        step = min(item.count, SENDFILE_CHUNK)
                        if item.offset + step > item.warm_end and self._disk_wait(
                            item, step, self.loop.run_in_thread
                        ):
                            break  # (within warm_end: known to be in memory, no call)
                        n = os.sendfile(fd, item.fd, item.offset, step)
                        if n == 0:  # the file shrank under us: its length was promised
                            log.warning("file shrank while being sent; closing the connection")
                            self.abort()
                            return
                        item.offset += n
                        item.count -= n
                        share -= n
                        if n < step and not self.loop.edge:
                            # The socket is full (nginx reads a short send so): no second
                            # call to hear EAGAIN. Level-triggered only: a short send for
                            # another reason (the file ended) costs one turn there, but
                            # would wait for an edge that never comes.
                            break
                    if item.count:
                        break  # the socket is full, the next chunk is on the disk, or the
                        # turn's share is spent
                    item.release()
                    del out[0]
                    set_cork(fd, False)  # push the last partial segment now
                else:
                    if len(out) > 1 and isinstance(out[1], FileRegion):
                        set_cork(fd, True)  # the head and the body share full segments
                    n = os_write(fd, item)
                    if n == len(item):
                        del out[0]
                    else:
                        out[0] = memoryview(item)[n:]
                        break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._io_error(exc)
            return
        if out:
            flags = self._flags
            if not flags & WRITING:
                self._stalled()
            elif flags & DISKWAIT or not self._interest & WRITE:
                # WRITE is not watched while the disk works, and is again after. (Else
                # the interest stands: a stream's every wakeup ends here, with no call.)
                self._sync()
            return
        flags = self._flags
        self._out = None
        if flags & WRITING:
            self._flags = flags = flags & ~WRITING
            self._sync()
            self.protocol.resume_writing()
            flags = self._flags
        if flags & CLOSING:
            self._close(None)
        elif flags & SHUTTING:
            self._shutdown_now()

    def _stalled(self) -> None:
        """Output stays queued until the socket has room (or the disk pool is done)."""
        flags = self._flags
        if not flags & WRITING:
            self._flags = flags | WRITING
            self.protocol.pause_writing()
        self._sync()  # (WRITE is not watched while the disk works)

    def write(self, data: bytes | memoryview) -> None:
        """Send ``data`` now as far as the socket takes it; queue the rest. (The common
        case, nothing queued and nothing pending, is one write(2) and no list.)"""
        if self._flags or self._out is not None:
            self.writelines((data,))
            return
        n = self._write_some(data)
        if 0 <= n < len(data):
            self._queue([memoryview(data)[n:]])

    def _write_on(self) -> None:
        self._flush()

    def get_write_buffer_size(self) -> int:
        """Bytes queued here, not yet handed to the kernel (a region counts its rest)."""
        return sum(len(item) for item in self._out) if self._out else 0

    def pending_bytes(self) -> int:
        """Bytes written to this transport that the peer has not acknowledged: our queue
        plus the kernel's send queue (SIOCOUTQ). What a slow reader is behind by."""
        if self._flags & CLOSED:
            return 0
        return self.get_write_buffer_size() + unsent_bytes(self.fd)

    # -- closing ---------------------------------------------------------------------
    def close(self) -> None:
        """Close once everything queued is sent."""
        flags = self._flags
        if flags & CLOSED:
            return
        if flags & WRITING:
            self._flags = flags | CLOSING
            self._sync()  # stop reading: nothing read now would be answered
        else:
            self._close(None)

    def write_eof(self) -> None:
        """Shut down our write side once everything queued is sent; reading goes on."""
        flags = self._flags
        if flags & (CLOSED | SHUTTING | CLOSING):
            return
        self._flags = flags | SHUTTING
        if not flags & WRITING:
            self._shutdown_now()

    def _shutdown_now(self) -> None:
        try:
            shutdown_write(self.fd)
        except OSError as exc:
            self._close(exc)

    def abort(self, reset: bool = False) -> None:
        """Close now, dropping what is queued; with ``reset`` the peer gets RST and the
        kernel drops its send queue too (nginx ``reset_timedout_connection``)."""
        if self._flags & CLOSED:
            return
        if reset:
            reset_on_close(self.fd)
        self._close(None)

    def _close(self, exc: BaseException | None) -> None:
        if self._flags & CLOSED:
            return
        self._flags = CLOSED
        out, self._out = self._out, None
        if out:
            release(out)
        self.loop.forget_fd(self.fd)
        os.close(self.fd)
        protocol, self.protocol = self.protocol, DETACHED
        protocol.connection_lost(exc)

    # -- interest ----------------------------------------------------------------------
    def _wanted(self) -> int:
        """Level-triggered: the events the flags ask to watch."""
        flags = self._flags
        want = 0
        if not flags & (PAUSED | READ_EOF | CLOSING):
            want = READ
        if flags & WRITING and not flags & DISKWAIT:
            want |= WRITE
        return want

    def _sync(self) -> None:
        """Level-triggered: watch what the flags say, with at most one epoll_ctl."""
        loop = self.loop
        if loop.edge or self._flags & CLOSED or self._interest == UNWATCHED:
            return  # (read_first registers what _wanted says then)
        want = self._wanted()
        if want != self._interest:
            self._interest = want
            loop.modify_fd(self.fd, want)


def coalesce(items: Iterable[Item]) -> list[Item]:
    """Join runs of bytes so a batch goes out in one send; regions stay as they are."""
    out: list[Item] = []
    run: list[bytes | memoryview] = []
    for item in items:
        if isinstance(item, FileRegion):
            if run:
                out.append(run[0] if len(run) == 1 else b"".join(run))
                run = []
            out.append(item)
        elif item:
            run.append(item)
    if run:
        out.append(run[0] if len(run) == 1 else b"".join(run))
    return out


def release(items: Iterable[object]) -> None:
    """Release every FileRegion among ``items`` (a queue dropped on close)."""
    for item in items:
        if isinstance(item, FileRegion):
            item.release()


def serve(
    loop: Loop,
    sock: socket.socket,
    protocol_factory: Callable[[], Protocol],
    *,
    on_refused: Callable[[int, OSError | ValueError], object] | None = None,
) -> Acceptor:
    """Accept connections on the listening ``sock`` and give each a Transport and a new
    protocol from ``protocol_factory``. Returns the started Acceptor (``close()`` it to
    stop). A connection the backend cannot watch is closed (and ``on_refused(fd, exc)``
    told) rather than leaked."""

    def on_accept(fd: int, addr: object) -> None:
        try:
            Transport(loop, fd, protocol_factory(), addr)
        except (OSError, ValueError) as exc:
            os.close(fd)
            if on_refused is not None:
                on_refused(fd, exc)
            else:
                log.warning("cannot watch a new connection (fd %d): %s", fd, exc)

    acceptor = Acceptor(loop, sock, on_accept, raw_fds=True)
    acceptor.start()
    return acceptor
