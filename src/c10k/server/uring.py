"""UringServer: the io_uring mode, the same Session driven by completions.

The C10K page's strategy 3 (aio / IOCP) in its modern form. Instead of "tell me which fds
are ready, then I read", every connection always has an operation *in flight* in the
kernel, and the loop only reaps results:

    loop turn:  timers and deadlines -> io_uring_enter(submit the batch, wait for >= 1
                CQE or the next deadline) -> for each CQE: accept / recv / send / poll
                done -> callbacks posted this turn

One ``io_uring_enter`` per turn submits every SQE the previous turn prepared (sends of
responses, re-armed recvs, cancels) and sleeps, with the timeout in the same call
(IORING_ENTER_EXT_ARG). With 100 busy keep-alive clients a turn reaps ~200 completions
and submits ~100 SENDs for one syscall, where epoll pays a read(2) and a write(2) per
request (tests/server/test_server_uring.py checks with strace).

What each piece of ``UringTransport`` (the Session's transport here) does, and why:

- accept: one multishot ACCEPT per listener (5.19): one SQE, then a CQE per client, with
  SOCK_NONBLOCK|SOCK_CLOEXEC set by the kernel. At the connection cap it is cancelled and
  re-armed when a connection closes. EMFILE/ENFILE: re-armed after 100 ms. On guard
  (admission, overload) a single-shot ACCEPT and accept4(2) after it, a batch a turn
  (``_bound_accepts``): the multishot one hands a turn the whole kernel queue.
- recv: one multishot RECV per connection (6.0) with a provided-buffer ring
  (IORING_REGISTER_PBUF_RING): the kernel picks a buffer only when bytes arrive, so an idle
  connection pins no memory; the bytes are copied out and the buffer returned at once.
  ``pause_reading`` cancels it, ``resume_reading`` arms it again.
- send: a SEND SQE of the bytes the Session returned or wrote; the bytes object is kept
  alive until its CQE. A SEND counts as written when submitted (the Session moves on to
  keep-alive); a short completion queues the rest and tells the Session
  (``pause_writing``), like a partial write(2).
- file bodies: os.sendfile on the nonblocking socket, corked behind their head (nginx
  tcp_nopush); when the socket is full a POLL_ADD (POLLOUT) says when to go on. io_uring
  has no sendfile opcode; SPLICE needs a pipe (2 fds) per transfer and two linked SQEs per
  chunk; READ + SEND copies the file through user memory twice.
- closing: the fd is closed at once (the cap counts fds) and the ops still in flight are
  cancelled by ASYNC_CANCEL in the next batch; their late CQEs find the transport closed
  and only return buffers. The transport lives (in ``conns``) until its last CQE, so a SEND
  still parked in the kernel never points at freed memory.

Measured decisions (``taskset -c 0 c10k serve DIR --backend X`` vs ``taskset -c 1 wrk``;
see docs/STRATEGIES.md): DEFER_TASKRUN + SINGLE_ISSUER (completion work batched inside our
enter instead of task work forced on us while Python runs: 40-58k -> 72-90k requests per
CPU-second), multishot recv (84-88k vs 71-72k with a RECV per request), SEND SQEs on the
hot path (never lost to write(2) in A/B runs, and no syscall per request).

Precedents: liburing's multishot accept/recv examples, "io_uring and networking in 2023"
(provided buffer rings, multishot), nginx (sendfile + tcp_nopush, lingering close),
Tokio-uring (ops own their buffers until completion).
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from types import FrameType
from typing import Any, TypeVar

from c10k.core import transport as tp
from c10k.core.fdio import peer_address, reset_on_close, set_cork, shutdown_write, unsent_bytes
from c10k.core.io_uring import (
    CQE_F_BUFFER,
    CQE_F_MORE,
    OP_RECV,
    RECV_MULTISHOT,
    SETUP_COOP_TASKRUN,
    SETUP_DEFER_TASKRUN,
    SETUP_SINGLE_ISSUER,
    SQE_BUFFER_SELECT,
    BufferRing,
    Ring,
    result_error,
)
from c10k.core.io_uring import unavailable_reason as uring_unavailable_reason
from c10k.core.listener import ACCEPT_BATCH, ACCEPT_CAPACITY_ERRNOS, CAPACITY_SLEEP, accept_fds
from c10k.core.loop import LOAD_ALPHA, ThreadRunner
from c10k.core.timers import Deadlines, TimerHandle, TimerHeap
from c10k.core.transport import DETACHED, BaseTransport, Item, coalesce, release
from c10k.core.wakeup import Wakeup
from c10k.region import FileRegion
from c10k.server.base import ServerBase, session_of
from c10k.server.session import Session

log = logging.getLogger("c10k.server")
T = TypeVar("T")

# user_data = (id << 3) | kind. Ids 0.. are listeners (ACCEPT); a connection's id is a
# counter, never reused, so a late CQE cannot reach a newer client.
K_ACCEPT, K_RECV, K_SEND, K_POLL, K_CANCEL, K_WAKE = range(6)

# Ring sizes. SQ 4096: a turn with more SQEs submits early (Ring.prep does it) and goes
# on. CQ 4x: completions of recvs armed long ago can all land in one turn; beyond that
# the kernel keeps the overflow (IORING_FEAT_NODROP) and we flush it on the next enter.
SQ_ENTRIES = 4096
CQ_ENTRIES = 16384
# Provided buffers: 1024 x 8 KiB = 8 MiB for all connections together. A request head is
# a few hundred bytes; 8 KiB holds one max-size head at once. When the group runs dry the
# recv fails with ENOBUFS and is re-armed on the next turn.
BUF_GROUP = 0
BUF_COUNT = 1024
BUF_SIZE = 8192
SOCK_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
os_write = os.write


class UringLoop:
    """What a Session needs of a loop (``now``, ``deadlines``, ``call_soon``,
    ``run_in_thread``), for the ring's single thread. Callbacks posted with ``call_soon``
    (also from other threads: deque appends are atomic) run at the end of the turn."""

    def __init__(self, threads: int) -> None:
        self.now = time.monotonic()
        self.deadlines = Deadlines()
        self.timers = TimerHeap()
        self.soon: collections.deque[tuple[Callable[..., object], tuple[object, ...]]] = (
            collections.deque()
        )
        self.wakeup = Wakeup()
        self.lag = 0.0
        self.load = 0.0
        self._runner = ThreadRunner(threads, self.call_soon_threadsafe)
        self.run_in_thread = self._runner.run

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self.soon.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., object], *args: object) -> None:
        self.soon.append((callback, args))
        self.wakeup.wake()

    def call_later(self, delay: float, callback: Callable[..., object]) -> TimerHandle:
        return self.timers.call_at(time.monotonic() + delay, callback)

    def close(self) -> None:
        self._runner.close()
        self.wakeup.close()


class UringTransport(BaseTransport):
    """One connection's I/O as ring operations; the Session's transport in this mode."""

    __slots__ = (
        "_flags",
        "_inflight",
        "_out",
        "_polling",
        "_recv_armed",
        "_sending",
        "fd",
        "peer",
        "protocol",
        "server",
        "uid",
    )

    def __init__(self, server: UringServer, fd: int, uid: int, protocol: Any, peer: object) -> None:
        self.server = server
        self.fd = fd
        self.uid = uid << 3
        self.protocol = protocol
        self.peer = peer
        self._out: list[Item] | None = None
        self._sending: bytes | None = None  # the bytes of the SEND in flight
        self._polling = False
        self._recv_armed = False
        self._inflight = 0
        self._flags = 0
        protocol.connection_made(self)

    def read_first(self, size: int) -> None:
        """Read once now, synchronously: the request is usually there already (the
        listeners defer accept until it is, TCP_DEFER_ACCEPT). The answer is written
        at once too, and the multishot RECV is armed only if the connection stays open,
        so a one-shot client costs no ring operation but its close."""
        try:
            data = os.read(self.fd, size)
        except (BlockingIOError, InterruptedError):
            data = None
        except OSError as exc:
            self._io_error(exc)
            return
        if data == b"":
            self._flags |= tp.READ_EOF
            self.protocol.eof_received()
        elif data is not None:
            self._deliver(data)  # (its reply by write: one write(2) now)
        self._rearm()

    def start(self, first: bytes | memoryview) -> None:
        """Go on from ``ServerBase.first_read`` (it read the fd already): deliver the
        bytes it read, or send the rest of its closing answer, or (``b""``) only arm."""
        if isinstance(first, memoryview):
            self.protocol.send_closing(first)
        elif first:
            self._deliver(first)
        self._rearm()

    def write(self, data: bytes | memoryview) -> None:
        """Bytes written outside the hot path (which returns its reply as a SEND):
        with nothing queued or in flight, one write(2) now, so a closing answer can be
        followed by the close at once; else queued behind what is there."""
        self._write_now(data)

    def _write_now(self, reply: bytes | memoryview) -> None:
        """A reply with nothing queued before it: write(2) it; queue what is left."""
        if self._flags or self._out or self._sending is not None or self._polling:
            self.writelines((reply,))
            return
        n = self._write_some(reply)
        if 0 <= n < len(reply):
            self.writelines((memoryview(reply)[n:],))

    # -- completions -------------------------------------------------------------------
    def on_recv(self, res: int, cflags: int) -> None:
        if not cflags & CQE_F_MORE:
            self._inflight -= 1
            self._recv_armed = False
        if res <= 0 or self._flags:
            self._recv_slow(res, cflags)
            return
        server = self.server
        try:
            reply = self.protocol.data_received(server.take(cflags, res))
        except Exception as exc:
            self._fatal_error(exc)
            return
        if reply is not None:
            if self._flags or self._sending is not None:
                self.write(reply)
            else:
                # Hot path: one SEND of the memoized response; counted as written.
                self._sending = reply
                self._inflight += 1
                server.prep_send(self.fd, reply, 0, self.uid | K_SEND, 0)
        if not self._recv_armed and not self._flags:
            self._arm_recv()

    def _recv_slow(self, res: int, cflags: int) -> None:
        server = self.server
        flags = self._flags
        if res < 0:
            if cflags & CQE_F_BUFFER:
                server.buffers.give_back(cflags)
            if flags & tp.CLOSED:
                server.maybe_release(self)
            elif res == -errno.ENOBUFS:
                server.starved.append(self)  # re-armed next turn, after buffers came back
            elif res == -errno.ECANCELED:
                # pause_reading asked for it; reading may have resumed since, before
                # this completion told us the recv was gone.
                self._rearm()
            else:
                self._io_error(result_error(res))
            return
        if flags & (tp.CLOSED | tp.CLOSING | tp.READ_EOF):
            server.buffers.give_back(cflags)
            if flags & tp.CLOSED:
                server.maybe_release(self)
            return
        if res == 0:
            self._flags |= tp.READ_EOF
            self.protocol.eof_received()
            return
        # Paused (a recv already completing when we cancelled it) or writing: the
        # protocol still gets the bytes; a Session buffers them.
        self._deliver(server.take(cflags, res))
        self._rearm()

    def _deliver(self, data: bytes) -> None:
        try:
            reply = self.protocol.data_received(data)
        except Exception as exc:
            self._fatal_error(exc)
        else:
            if reply is not None:
                self.write(reply)

    def on_send(self, res: int) -> None:
        self._inflight -= 1
        data = self._sending
        self._sending = None
        if not self._completed(res):
            return
        if data is not None and res < len(data):
            # Short send: the socket filled. The rest goes first, and the Session hears
            # of it (its send deadline and rate check run from now).
            rest = data[res:]
            if self._out is None:
                self._out = [rest]
            else:
                self._out.insert(0, rest)
            self._blocked()
        elif self._out is None and not self._flags:
            return  # hot path: the one response is out
        self._flush()

    def on_poll(self, res: int) -> None:
        self._inflight -= 1
        self._polling = False
        if self._completed(res):
            self._flush()

    def _completed(self, res: int) -> bool:
        """A SEND or POLL came back: False if there is nothing more to do (closed
        meanwhile, or an error, which closes)."""
        if self._flags & tp.CLOSED:
            self.server.maybe_release(self)
            return False
        if res < 0:
            self._io_error(result_error(res))
            return False
        return True

    # -- reading -------------------------------------------------------------------------
    def _arm_recv(self) -> None:
        self._recv_armed = True
        self._inflight += 1
        self.server.prep_recv(self.fd, self.uid | K_RECV)

    def _rearm(self) -> None:
        if not self._recv_armed and not self._flags & (
            tp.PAUSED | tp.READ_EOF | tp.CLOSED | tp.CLOSING
        ):
            self._arm_recv()

    def pause_reading(self) -> None:
        if not self._flags & tp.PAUSED:
            self._flags |= tp.PAUSED
            if self._recv_armed:
                self.server.ring.prep_cancel(self.uid | K_RECV, K_CANCEL)

    def resume_reading(self) -> None:
        if self._flags & tp.PAUSED:
            self._flags &= ~tp.PAUSED
            self._rearm()

    def rearm_starved(self) -> None:
        if self._flags & tp.CLOSED:
            self.server.maybe_release(self)
        else:
            self._rearm()

    # -- writing -------------------------------------------------------------------------
    def writelines(self, items: Iterable[Item]) -> None:
        if self._refused(items):
            return
        batch = coalesce(items)
        if batch:
            self._enqueue(batch)
            self._flush()

    def _flush(self) -> None:
        """Start the next write: a SEND for bytes; sendfile (+ POLL_ADD when full) for a
        file body and the head before it. Returns at once if a write is in flight."""
        if self._sending is not None or self._polling or self._flags & tp.DISKWAIT:
            self._blocked()
            return
        out = self._out
        fd = self.fd
        try:
            while out:
                item = out[0]
                if isinstance(item, FileRegion):
                    if not self._send_region(item):
                        return
                    del out[0]
                    set_cork(fd, False)
                elif len(out) > 1 and isinstance(out[1], FileRegion):
                    # A head before a file body goes out synchronously, corked, so the head
                    # and the first body bytes share a segment (tcp_nopush).
                    set_cork(fd, True)
                    n = os_write(fd, item)
                    if n == len(item):
                        del out[0]
                    else:
                        out[0] = bytes(item[n:])
                        self._poll_out()
                        return
                else:
                    data = item if item.__class__ is bytes else bytes(item)
                    del out[0]
                    self._sending = data
                    self._inflight += 1
                    self.server.prep_send(fd, data, 0, self.uid | K_SEND, 0)
                    if out:
                        self._blocked()
                        return
                    break
        except (BlockingIOError, InterruptedError):
            self._poll_out()
            return
        except OSError as exc:
            self._io_error(exc)
            return
        self._out = None
        self._drained()

    def _send_region(self, item: FileRegion) -> bool:
        """Sendfile ``item`` until done (True) or the fair share of this turn is sent or
        the socket is full (False: a POLL_ADD continues it)."""
        sent = 0
        fd = self.fd
        while item.count:
            if sent >= tp.TURN_SHARE:
                self._poll_out()  # fair share for this turn: on after the others
                return False
            step = min(item.count, tp.SENDFILE_CHUNK)
            if self._disk_wait(item, step, self.server.loop.run_in_thread):
                self._blocked()  # _disk_back calls _write_on once it is in memory
                return False
            n = os.sendfile(fd, item.fd, item.offset, step)
            if n == 0:
                log.warning("file shrank while being sent; closing the connection")
                self.abort()
                return False
            item.offset += n
            item.count -= n
            sent += n
            if n < step and item.count:
                self._poll_out()  # the socket is full (a short send, as nginx reads it)
                return False
        item.release()
        return True

    def _write_on(self) -> None:
        self._flush()

    def _poll_out(self) -> None:
        self._polling = True
        self._inflight += 1
        self.server.ring.prep_poll_add(self.fd, select.POLLOUT, self.uid | K_POLL)
        self._blocked()

    def _blocked(self) -> None:
        if not self._flags & tp.WRITING:
            self._flags |= tp.WRITING
            self.protocol.pause_writing()

    def _drained(self) -> None:
        """Nothing queued. A SEND still in flight counts as written unless the Session
        was told that output is blocked; then (and before closing) we wait for it."""
        if self._sending is not None or self._polling:
            return
        flags = self._flags
        if flags & tp.WRITING:
            self._flags = flags = flags & ~tp.WRITING
            self.protocol.resume_writing()
            flags = self._flags
            if self._out or self._sending is not None:
                return  # resume_writing wrote more
        if flags & tp.CLOSING:
            self._close(None)
        elif flags & tp.SHUTTING and not flags & tp.CLOSED:
            try:
                shutdown_write(self.fd)
            except OSError as exc:
                self._close(exc)

    def get_write_buffer_size(self) -> int:
        queued = sum(len(item) for item in self._out) if self._out else 0
        return queued + (len(self._sending) if self._sending is not None else 0)

    def pending_bytes(self) -> int:
        if self._flags & tp.CLOSED:
            return 0
        return self.get_write_buffer_size() + unsent_bytes(self.fd)

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        flags = self._flags
        if flags & tp.CLOSED:
            return
        if self._out or self._sending is not None or self._polling:
            self._flags = flags | tp.CLOSING
        else:
            self._close(None)

    def write_eof(self) -> None:
        flags = self._flags
        if flags & (tp.CLOSED | tp.SHUTTING | tp.CLOSING):
            return
        self._flags = flags | tp.SHUTTING
        if not self._out and self._sending is None and not self._polling:
            self._drained()

    def abort(self, reset: bool = False) -> None:
        if self._flags & tp.CLOSED:
            return
        if reset:
            reset_on_close(self.fd)
        self._close(None)

    def _close(self, exc: BaseException | None) -> None:
        if self._flags & tp.CLOSED:
            return
        self._flags = tp.CLOSED
        out, self._out = self._out, None
        if out:
            release(out)
        server = self.server
        if not server.closing:
            ring = server.ring
            uid = self.uid
            if self._recv_armed:
                ring.prep_cancel(uid | K_RECV, K_CANCEL)
            if self._sending is not None:
                ring.prep_cancel(uid | K_SEND, K_CANCEL)
            if self._polling:
                ring.prep_cancel(uid | K_POLL, K_CANCEL)
        # The fd goes now: ops in flight hold their own reference to the socket until
        # their cancellation completes, and our ids are never reused.
        os.close(self.fd)
        protocol, self.protocol = self.protocol, DETACHED  # no cycle left: freed at once
        protocol.connection_lost(exc)
        server.maybe_release(self)


class UringServer(ServerBase):
    """An HTTP/1.1 server on one io_uring (see the module comment and ServerBase)."""

    backend_name = "uring"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return uring_unavailable_reason()

    def _setup(self) -> None:
        config = self.config
        self._set_capacity()
        self.loop = UringLoop(max(1, config.io_threads))
        self.closing = False
        self._open_ring()
        self._wake_buf = bytearray(64)
        self.conns: dict[int, UringTransport] = {}
        self.starved: list[UringTransport] = []
        self.accepted = [0] * len(self.socks)
        self.accept_armed = [False] * len(self.socks)
        self.accept_retry: TimerHandle | None = None
        self.multishot_accept = True
        self.bounded_accept = False  # on guard: a batch per turn (see _bound_accepts)
        self._turn_accepts = 0
        self._check_accepts = 0  # accepts since the last pressure check
        # Accepted past a turn's batch (a multishot accept's CQEs): (listener, fd), served
        # a batch a turn and counted as queue by admission (_on_accept).
        self.held: collections.deque[tuple[int, int]] = collections.deque()
        self.held_per = [0] * len(self.socks)
        self._held_due = False
        self._running = False
        self._old_signal_handlers: dict[int, Any] = {}
        self._old_wakeup_fd = -1
        self._next_uid = 1

    def _open_ring(self) -> None:
        # DEFER_TASKRUN (6.1) + SINGLE_ISSUER: completion work (the recv copy, the
        # multishot re-poll) runs inside our io_uring_enter, batched, instead of in
        # task_work forced on us by an IPI while Python runs. The price: only the thread
        # that created the ring may submit, so serve_forever re-creates it when called
        # from another thread. Older kernels: COOP_TASKRUN (5.19), or none.
        ring = None
        for flags in (SETUP_SINGLE_ISSUER | SETUP_DEFER_TASKRUN, SETUP_COOP_TASKRUN, 0):
            try:
                ring = Ring(SQ_ENTRIES, CQ_ENTRIES, flags)
                break
            except OSError as exc:
                if exc.errno != errno.EINVAL or not flags:
                    raise
        assert ring is not None
        try:
            size = min(BUF_SIZE, self.policy.read_size)
            buffers = BufferRing(ring, BUF_GROUP, BUF_COUNT, size)
        except BaseException:
            ring.close()
            raise
        self.ring = ring
        self.buffers = buffers
        self.read_size = size  # a ring buffer's worth, for the first read too
        self._owner = threading.get_ident()
        # Hot-path bindings.
        self.prep_send = ring.prep_send
        self.take = buffers.take
        prep = ring.prep

        def prep_recv(fd: int, user_data: int) -> None:
            prep(OP_RECV, fd, 0, 0, 0, 0, user_data, SQE_BUFFER_SELECT, RECV_MULTISHOT, BUF_GROUP)

        self.prep_recv = prep_recv

    # -- the loop ------------------------------------------------------------------------
    def serve_forever(self, install_signals: bool = True) -> None:
        """Accept and serve until SIGINT/SIGTERM or ``stop()``; then close everything."""
        if install_signals:
            self.install_signal_handlers()
        self._running = True
        if threading.get_ident() != self._owner:
            # SINGLE_ISSUER: the ring must belong to the serving thread.
            self.buffers.close()
            self.ring.close()
            self._open_ring()
        try:
            self._arm_wakeup()
            self._arm_accepts()
            self._start_housekeeping()
            self._run()
        finally:
            self.close()

    def _run(self) -> None:
        ring = self.ring
        reap = ring.reap
        wait = ring.submit_and_wait
        loop = self.loop
        deadlines = loop.deadlines
        timers = loop.timers
        heap, keys = timers._heap, deadlines._keys  # (heads read inline: c10k.core.loop)
        soon = loop.soon
        conns = self.conns
        monotonic = time.monotonic
        alpha = LOAD_ALPHA
        lag = load = 0.0
        while self._running:
            now = monotonic()
            lag += (now - loop.now - lag) * alpha
            loop.now = now
            loop.lag = lag
            if heap and heap[0].when <= now:
                for h in timers.pop_due(now):
                    self._run_one(h.callback, h.args)
            if keys and keys[0] <= now:
                deadlines.expire(now)
            if self.starved:
                starved, self.starved = self.starved, []
                for transport in starved:
                    transport.rearm_starved()
            if not self._running:
                break
            when: float | None = None
            if heap:
                when = timers.next_when() if heap[0].cancelled else heap[0].when
            if keys and (when is None or keys[0] < when):
                when = keys[0]
            timeout = 0.0 if soon else (1.0 if when is None else max(when - now, 0.0005))
            wait(timeout)
            loop.now = monotonic()
            events = reap()
            load += (len(events) - load) * alpha
            loop.load = load
            self._turn_accepts = 0
            for ud, res, fl in events:
                kind = ud & 7
                try:
                    if kind == K_RECV:
                        conns[ud >> 3].on_recv(res, fl)
                    elif kind == K_SEND:
                        conns[ud >> 3].on_send(res)
                    elif kind == K_POLL:
                        conns[ud >> 3].on_poll(res)
                    elif kind == K_ACCEPT:
                        self._on_accept(ud >> 3, res, fl)
                    elif kind == K_WAKE:
                        self._on_wake(res)
                    # K_CANCEL: the cancelled op reports on its own CQE.
                except Exception:  # as Loop: one client's bug must not stop the server
                    log.exception("error handling completion %#x (res %d)", ud, res)
                    self._drop(ud)
            for _ in range(len(soon)):
                callback, args = soon.popleft()
                self._run_one(callback, args)

    @staticmethod
    def _run_one(callback: Callable[..., object], args: tuple[object, ...]) -> None:
        try:
            callback(*args)
        except Exception:
            log.exception("error in callback %r", callback)

    def _drop(self, ud: int) -> None:
        transport = self.conns.get(ud >> 3) if ud & 7 in (K_RECV, K_SEND, K_POLL) else None
        if transport is not None and not transport.closed:
            try:
                transport.abort()
            except Exception:
                log.exception("error closing connection fd %d", transport.fd)

    def maybe_release(self, transport: UringTransport) -> None:
        if transport._inflight <= 0 and transport.closed:
            self.conns.pop(transport.uid >> 3, None)

    # -- accepting -------------------------------------------------------------------------
    def _arm_accepts(self) -> None:
        if self.accepting_paused or self.draining or self.accept_retry is not None:
            return
        for i, s in enumerate(self.socks):
            if not self.accept_armed[i]:
                self.accept_armed[i] = True
                self.ring.prep_accept(
                    s.fileno(),
                    (i << 3) | K_ACCEPT,
                    SOCK_FLAGS,
                    self.multishot_accept and not self.bounded_accept,
                )

    def _on_accept(self, index: int, res: int, flags: int) -> None:
        if not flags & CQE_F_MORE:
            self.accept_armed[index] = False
        if res < 0:
            self._accept_failed(index, res)
        elif self.closing:
            os.close(res)
        elif self.held or self._turn_accepts >= ACCEPT_BATCH:
            self._hold(index, res)
        else:
            # Draining too: the client is connected, and answered with Connection: close.
            self._serve_fd(index, res)
            if self.bounded_accept and not flags & CQE_F_MORE:
                self._accept_waiting(index, ACCEPT_BATCH - 1)
        if self.draining and not self.accept_armed[index]:
            self._sweep(index)

    def _hold(self, index: int, fd: int) -> None:
        """A connection past this turn's batch of accepts: served in a later turn, in
        order, a batch a turn (``_serve_held``), and counted in the listener's queue
        meanwhile (``held_counts``). Off guard a multishot accept hands one turn every
        connection in the kernel's queue, which the turn served before any check ran and
        the check then found the queue empty (docs/BENCHMARKS.md, issue 20, per mode).
        Now the turn's 64th accept asks for a check (``backlog_alert``), which reads these
        as the queue they are and puts the mode on guard."""
        self.held.append((index, fd))
        self.held_per[index] += 1
        if not self._held_due:
            self._held_due = True
            self.loop.call_soon(self._serve_held)
        self._rearm_accept(index)

    def _serve_held(self, everyone: bool = False) -> None:
        """A batch of the held connections (``everyone``: all, when draining)."""
        self._held_due = False
        held, per = self.held, self.held_per
        room = len(held) if everyone else ACCEPT_BATCH - self._turn_accepts
        while held and room > 0 and (everyone or not (self.accepting_paused or self.closing)):
            index, fd = held.popleft()
            per[index] -= 1
            room -= 1
            self._serve_fd(index, fd)
        if held and not (self.accepting_paused or self.closing or self._held_due):
            self._held_due = True
            self.loop.call_soon(self._serve_held)

    def held_counts(self) -> list[int] | None:
        return self.held_per if self.held else None

    def _bound_accepts(self, on: bool) -> None:
        """On guard (admission or overload shedding), accept as the readiness modes do: a
        single-shot ACCEPT, then what else waits up to a batch (``_accept_waiting``), and
        the turn goes on to its timers. A multishot accept hands one turn the whole kernel
        queue, which it serves before the pressure check runs again: under a tenth of a
        core that was 0.8-1 s a turn at 3x, everyone queued behind it stale, and the queue
        admission reads was empty at every check (docs/BENCHMARKS.md, issue 20 per mode).
        Off guard, the next accept is multishot again (``_arm_accepts``)."""
        if on == self.bounded_accept:
            return
        self.bounded_accept = on
        if on:
            self._cancel_accepts()  # each re-armed single-shot from its ECANCELED CQE

    def _accept_waiting(self, index: int, limit: int, sweep: bool = False) -> None:
        """Up to ``limit`` connections waiting on listener ``index``, served now (accept4
        until EAGAIN, as the Acceptor does on a readiness wakeup): not past the connection
        cap, nor once draining, unless this is the drain's ``sweep`` (who waits is
        answered before the listener closes)."""
        waiting = accept_fds(self.socks[index], limit)
        while sweep or not (self.accepting_paused or self.draining or self.closing):
            try:
                fd, _addr = next(waiting)
            except StopIteration:
                return
            except OSError as exc:
                if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                    self._accept_failed(index, -exc.errno)  # (backs off, then re-arms)
                else:
                    log.warning("accept: %s", exc)
                return
            os.set_blocking(fd, False)
            self._serve_fd(index, fd)

    def _serve_fd(self, index: int, fd: int) -> None:
        self.accepted[index] += 1
        self._turn_accepts += 1
        self._check_accepts += 1
        if self._turn_accepts == ACCEPT_BATCH or self._check_accepts == ACCEPT_BATCH:
            # (Since the check too: the kernel may hand a burst over in turns of a few
            # dozen CQEs, and a quiet process checks once a second.)
            self.backlog_alert()
        policy = self.policy
        policy.accepts += 1
        try:
            if policy.accept_guard and not policy.admit(fd):
                return
            first = None
            if self.plain[index]:
                first = self.first_read(fd, self.loop.now)
                if first is None:  # answered and closed with no Session, or gone
                    return
            uid = self._next_uid
            self._next_uid = uid + 1
            protocol = self.make_protocol(self.loop, index)
            peer = peer_address(fd) if policy.keep_peer else None
            transport = self.conns[uid] = UringTransport(self, fd, uid, protocol, peer)
            self.opened()
            if first is None:
                transport.read_first(self.read_size)  # (its layers read)
            else:
                transport.start(first)
        finally:
            # Whatever became of this one (stale, answered at accept, an error), a
            # single-shot accept (on guard, or a kernel without multishot) arms the next.
            self._rearm_accept(index)

    def _rearm_accept(self, index: int) -> None:
        if not self.accept_armed[index] and not self.draining:
            self._arm_accepts()

    def _close_listeners(self) -> None:
        self._serve_held(everyone=True)  # connected clients: answered with Connection: close
        # The listeners stay open until each accept's cancellation has completed: then
        # _sweep takes what waits in the queue. A multishot accept waits exclusively (as
        # EPOLLEXCLUSIVE), and the oldest waiter gets the wakeup: a connection that woke
        # this worker's accept just as it was cancelled woke no one else, and sat in the
        # queue until the next client woke the new worker (a 10 s stall in a reload).
        self._pause_accepting()
        for index, armed in enumerate(self.accept_armed):
            if not armed:  # paused at the cap: no wakeup can be lost
                self.socks[index].close()

    def _sweep(self, index: int) -> None:
        """Draining, the accept on listener ``index`` done: serve who waits, then close it."""
        sock = self.socks[index]
        if sock.fileno() < 0:
            return
        self._serve_held(everyone=True)  # (held from the accept's last CQEs)
        self._accept_waiting(index, ACCEPT_BATCH, sweep=True)
        sock.close()
        if not self.nconn and not any(self.accept_armed):
            self._running = False

    def _accept_failed(self, index: int, res: int) -> None:
        if res == -errno.ECANCELED:
            # Paused at the cap (or draining): if a connection closed before this CQE
            # came, the resume found the accept still armed and left it to us.
            self._arm_accepts()
            return
        if res == -errno.EINVAL and self.multishot_accept:
            self.multishot_accept = False  # a kernel without multishot accept
        elif -res in ACCEPT_CAPACITY_ERRNOS:
            log.warning("accept: %s; retrying in %.1fs", os.strerror(-res), CAPACITY_SLEEP)
            if self.accept_retry is None:
                self.accept_retry = self.loop.call_later(CAPACITY_SLEEP, self._accept_again)
            return
        elif -res not in (errno.EAGAIN, errno.EINTR, errno.ECONNABORTED, errno.EPROTO):
            log.error("accept: %s", os.strerror(-res))
        self._arm_accepts()

    def _accept_again(self) -> None:
        self.accept_retry = None
        self._arm_accepts()

    def _cancel_accepts(self) -> None:
        for i, armed in enumerate(self.accept_armed):
            if armed:
                self.ring.prep_cancel((i << 3) | K_ACCEPT, K_CANCEL)

    # -- ServerBase hooks ------------------------------------------------------------------
    def sessions(self) -> Iterator[Session]:
        for transport in list(self.conns.values()):
            session = session_of(transport.protocol)
            if not transport.closed and session is not None:
                yield session

    def accept_counts(self) -> list[int]:
        return list(self.accepted)

    def pressure_reading(self) -> tuple[float, float]:
        return self.loop.lag, self.loop.load

    def _pressure(self) -> None:
        self._check_accepts = 0
        super()._pressure()
        self._bound_accepts(self.policy.accept_guard)

    def _pause_accepting(self) -> None:
        self._cancel_accepts()

    def _resume_accepting(self) -> None:
        # A cancelled multishot accept may still be armed (its CQE not yet reaped);
        # _arm_accepts only arms listeners whose last CQE said "no more".
        self._arm_accepts()
        if self.held and not self._held_due:
            self._held_due = True
            self.loop.call_soon(self._serve_held)

    def _stop_loop(self) -> None:
        if not any(self.accept_armed):  # else the last _sweep stops the loop
            self._running = False

    # -- wakeups and signals ---------------------------------------------------------------
    def _arm_wakeup(self) -> None:
        buf = self._wake_buf
        addr = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
        self.ring.prep_recv(self.loop.wakeup.fileno(), K_WAKE, addr, len(buf))

    def _on_wake(self, res: int) -> None:
        # Signal numbers or thread wakeups; what they mean was posted to loop.soon.
        if self._running and not self.closing:
            self._arm_wakeup()

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM: drain, then stop. The C-level handler writes to the wakeup
        socket (set_wakeup_fd), whose pending RECV completes, so a sleeping
        io_uring_enter returns at once even if the signal lands just before it."""
        self._old_wakeup_fd = signal.set_wakeup_fd(
            self.loop.wakeup.wsock.fileno(), warn_on_full_buffer=False
        )
        for sig in self.handled_signals:
            self._old_signal_handlers[sig] = signal.signal(sig, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the loop thread: only post the work.
        self.loop.call_soon(self.on_signal, signum)

    def stop(self) -> None:
        """Thread-safe: make ``serve_forever`` return."""
        self._running = False
        if not self.closing:
            try:
                self.loop.wakeup.wake()
            except OSError:
                pass  # closed by a concurrent close(): nothing left to wake

    def shutdown_threadsafe(self, timeout: float | None = None) -> None:
        self.loop.call_soon_threadsafe(self.shutdown, timeout)

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.policy.close()
        while self.held:
            os.close(self.held.popleft()[1])
        for transport in list(self.conns.values()):
            transport.abort()
        self.conns.clear()
        # Closing the ring cancels whatever is still in flight; unregister the buffers
        # first so no late recv can pick one.
        self.buffers.close()
        self.ring.close()
        for s in self.socks:
            s.close()
        if self._old_signal_handlers:  # installed (so in the main thread): restore
            for sig, old in self._old_signal_handlers.items():
                signal.signal(sig, old)
            self._old_signal_handlers.clear()
            signal.set_wakeup_fd(self._old_wakeup_fd)
        self.loop.close()
