"""UringServer: the same HTTP/1.1 static server, driven by io_uring completions.

The C10K page's strategy 3 (aio / IOCP) in its modern form. Instead of "tell me which fds
are ready, then I read", every connection always has an operation *in flight* in the
kernel, and the loop only reaps results:

    loop turn:  expire deadlines -> io_uring_enter(submit the batch, wait for >= 1 CQE or
                the next deadline)  -> for each CQE: accept / recv / send / poll done

One ``io_uring_enter`` per turn submits every SQE the previous turn prepared (sends of
responses, re-armed recvs, cancels) and sleeps, with the timeout in the same call
(IORING_ENTER_EXT_ARG). With 100 busy keep-alive clients a turn reaps ~200 completions
(a recv and a send per request) and submits ~100 SENDs for the price of one syscall,
where epoll pays a read(2) and a write(2) per request (tests/server/test_server_uring.py
checks with strace: 200 requests, no read/write/recv/send syscall at all).

Operations and why:
- accept: one multishot ACCEPT per listener (5.19): one SQE, then a CQE per client, with
  SOCK_NONBLOCK|SOCK_CLOEXEC set by the kernel. At the connection cap it is cancelled
  (clients wait in the kernel backlog, as with the readiness server) and re-armed when a
  connection closes. EMFILE/ENFILE: re-armed after 100 ms (trio's SLEEP_TIME).
- recv: RECV with a provided-buffer ring (IORING_REGISTER_PBUF_RING): the kernel picks a
  buffer only when bytes arrive, so an idle connection pins no memory; the bytes are
  copied out and the buffer returned at once. Multishot recv: see MULTISHOT_RECV.
- send: SEND of the same coalesced wire bytes the readiness server writes (head memo,
  wire memo, pipelined batches joined); the bytes object is kept alive until its CQE.
  A short send re-submits the rest.
- file bodies: os.sendfile on the nonblocking socket, with TCP_CORK around header+body
  (nginx tcp_nopush), as the readiness server does; when the socket is full, a POLL_ADD
  (POLLOUT) SQE says when to continue. io_uring has no sendfile opcode; SPLICE would
  need a pipe (2 fds) per transfer in flight, eating the fd budget C10K is about, and two
  linked SQEs per chunk; READ + SEND copies the file through user memory twice. sendfile
  from the page cache does neither, and a nonblocking socket never blocks it.
- closing: the fd is closed at once (the cap counts fds) and the ops still in flight are
  cancelled by ASYNC_CANCEL in the next batch; their late CQEs find the connection
  marked closed and only return buffers. The object lives until its last CQE, so a SEND
  still parked in the kernel never points at freed memory.

The HTTP side is exactly the readiness server's: ``UringConnection`` subclasses
``c10k.server.protocol.Connection`` and inherits its parsing, pipelining, limits,
response assembly (``_process``, ``_answer``, ``_append``) and timeouts (``on_deadline``:
408 on an unfinished head, silent close when idle); only the I/O methods are replaced.
Policy pieces (RLIMIT_NOFILE raising, FD_RESERVE, the per-second Date line and wire memo,
error responses) are those of ``c10k.server.app``.

Measured decisions (``taskset -c 0 c10k serve DIR --backend X`` vs ``taskset -c 1 wrk
-t1 -c100 -d5s /small.txt``, 512 bytes, requests per server CPU-second from
/proc/PID/stat utime+stime, pairs interleaved in the same minute; this 2-core VM is
shared by other jobs, so one configuration's figure can move 2x between runs: read
the pairs, not the digits):
- DEFER_TASKRUN + SINGLE_ISSUER: without them the kernel ran recv completions as task
  work at IRQ exit while Python ran (``irqentry_exit_to_user_mode`` 13% of perf samples):
  40-58k req/cpu-s; with them the work is batched inside our enter: 72-90k.
- multishot recv (MULTISHOT_RECV): 84-88k vs 71-72k with one RECV SQE per request.
- SEND SQE vs write(2) on the hot path (SYNC_SEND): 84-88k vs 75k in the first A/B; a
  second A/B was noise (73/89/80k vs 94/47/64k). Kept SEND: it is the completion model
  (no syscall per request, strace-checked) and never lost.
- vs epoll, keep-alive: a tie within this VM's noise. Three interleaved pairs: 90/87/72k
  vs 76/83/88k; three more later: 81/86/88k vs 91/104/95k (the same configuration moved
  from 47k to 94k between runs). utime/stime split (tick-based, rough): the kernel half of
  a request costs about the same (~8 us), our Python half is larger (~4.6-6 vs ~2.6-3 us:
  two CQEs, one SQE, the buffer hand-back at 0.4-0.6 us each), which eats the saved
  read/write syscalls. At 1,000 connections: 77k/73k vs 68k/79k, a tie.
- Where it can beat epoll: connection rate (``wrk -c50 -H "Connection: close"``): 19.3k
  and 18.2k vs 17.7k and 16.2k req/cpu-s in two pairs (20.1k vs 21.4k in a third). Per
  connection the readiness server makes accept4, ioctl(FIONBIO), epoll_ctl, read, write
  and close; here the multishot accept delivers a nonblocking fd with no syscall, recv
  and send are SQEs in the shared enter, and close(2) is the only syscall left; and
  requests/s under load when the server gets the CPU (one enter serves a whole batch):
  76k vs 40k rps in one pair. The next step would be fewer Python ops per request
  (IOSQE_CQE_SKIP_SUCCESS on SENDs, which needs another way to know when the kernel is
  done with the bytes).

Not wired in this mode yet (Server has them): overload shedding tiers, the access log,
the status page, min_send_rate. max_pipelined fairness, the disk I/O pool and graceful
drain are (through ``_Clock.call_soon``, ``offload`` and ``shutdown``).

Precedents: liburing's ``io_uring_prep_multishot_accept`` / ``recv_multishot`` examples,
the "io_uring and networking in 2023" notes (provided buffer rings, multishot), nginx
(sendfile + tcp_nopush, lingering close), Tokio-uring (ops own their buffers until
completion).
"""

from __future__ import annotations

import collections
import errno
import logging
import os
import select
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

from c10k.core.fdio import set_cork, shutdown_write
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
from c10k.core.listener import bind_socket
from c10k.core.timers import Deadlines
from c10k.core.wakeup import Wakeup
from c10k.http.connection import MEMO_MAX_HEAD_BYTES, Limits
from c10k.http.events import Request
from c10k.http.writers import Response, error_response, http_date
from c10k.region import FileRegion
from c10k.server.app import FD_RESERVE, handlers, raise_nofile_limit
from c10k.server.config import ServerConfig
from c10k.server.protocol import (
    CLOSED,
    IDLE,
    LINGERING,
    SENDFILE_CHUNK,
    WRITING,
    Connection,
)

log = logging.getLogger("c10k.server")

# user_data = (id << 3) | kind. id 0.. are listeners (ACCEPT) or the server itself; a
# connection's id is a counter, never reused, so a late CQE cannot reach a newer client.
K_ACCEPT, K_RECV, K_SEND, K_POLL, K_CANCEL, K_WAKE = range(6)

# Ring sizes. SQ 4096: a turn with more SQEs submits early (Ring.prep does it) and goes
# on. CQ 4x: completions of recvs armed long ago can all land in one turn; beyond that
# the kernel keeps the overflow (IORING_FEAT_NODROP) and we flush it on the next enter.
SQ_ENTRIES = 4096
CQ_ENTRIES = 16384
# Provided buffers: 1024 x 8 KiB = 8 MiB for all connections together. A request head is
# a few hundred bytes; 8 KiB holds one max-size head (max_header_bytes) at once. When
# the group runs dry the recv fails with ENOBUFS and is re-armed on the next turn.
BUF_GROUP = 0
BUF_COUNT = 1024
BUF_SIZE = 8192
# While output is pending, read at most this much ahead (pipelined requests) before we
# stop re-arming recv and let TCP push back, like the level-triggered server's
# "WRITE only while output is queued".
READ_AHEAD_BYTES = 64 * 1024
# Multishot RECV (6.0): one SQE per connection instead of one per request. See
# measurements in the commit log; it also keeps reading while a response is in flight.
MULTISHOT_RECV = True
# Hot path: write(2) the response at once instead of a SEND SQE (see measurements).
SYNC_SEND = False
ACCEPT_RETRY_SECONDS = 0.1  # trio SLEEP_TIME after EMFILE
ACCEPT_CAPACITY_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
SOCK_FLAGS = socket.SOCK_NONBLOCK | socket.SOCK_CLOEXEC
os_sendfile = os.sendfile
os_write = os.write


class _Clock:
    """What ``Connection`` uses of ``server.loop``: ``now``, the deadline buckets and
    ``call_soon`` (callbacks run at the end of the loop turn; ``soon`` is also where the
    disk I/O pool's threads post their answers: deque appends are thread-safe)."""

    __slots__ = ("deadlines", "now", "soon")

    def __init__(self) -> None:
        self.now = time.monotonic()
        self.deadlines = Deadlines()
        self.soon: collections.deque[tuple[Callable[..., object], tuple[object, ...]]] = (
            collections.deque()
        )

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self.soon.append((callback, args))


class UringConnection(Connection):
    """A Connection whose I/O is io_uring operations instead of readiness callbacks."""

    __slots__ = ("inflight", "polling", "recv_armed", "sending", "uid", "us")

    def __init__(self, server: UringServer, fd: int, uid: int) -> None:
        self.limits = server.limits
        self._buf = b""
        self._scan = 0
        self._eof = False
        self._paused = False
        self.server = server  # type: ignore[assignment]  # duck-typed: see _Clock
        self.us = server
        self.fd = fd
        self.uid = uid << 3
        self.out: list[bytes | memoryview | FileRegion] | None = None
        self.job: Request | None = None  # a request being answered in the disk I/O pool
        self.will_close = False
        self.state = IDLE
        self.inflight = 0
        self.sending: bytes | None = None
        self.polling = False
        self.recv_armed = False
        self.deadline: float | None = server.loop.now + server.config.header_timeout
        self.deadline_key: int | None = None
        server.loop.deadlines.schedule(self)

    # -- completions ---------------------------------------------------------------------
    def on_recv(self, res: int, flags: int) -> None:
        if not flags & CQE_F_MORE:
            self.inflight -= 1
            self.recv_armed = False
        us = self.us
        if res <= 0 or self.out is not None or self.state >= LINGERING or self.job is not None:
            self._recv_slow(res, flags)
            return
        data = us.take(flags, res)
        # Hot path (as in Connection._ready): the read is exactly one head seen before.
        if (
            not self._buf
            and res <= MEMO_MAX_HEAD_BYTES
            and (req := us.head_memo_get(data)) is not None
            and not self._paused
        ):
            if req.method == b"GET" and req.keep_alive and not req.has_body and not us.degraded:
                now = us.loop.now
                try:
                    resp = us.handler_fast(req, now)
                except Exception:
                    log.exception("handler failed for %r", req.target)
                    resp = us.protocol_error_response(500)
                if resp is None:  # needs the disk: answered from the I/O pool
                    self._offload(req)
                    self._maybe_rearm()
                    return
                wires = us.wire_memo_get(resp)
                wire = wires[req.minor << 1 ^ 2] if wires is not None else None
                if wire is not None and not resp.close:
                    us.requests += 1
                    if SYNC_SEND:
                        try:
                            n = os_write(self.fd, wire)
                        except (BlockingIOError, InterruptedError):
                            n = 0
                        except OSError as exc:
                            self._io_error(exc)
                            return
                        if n == len(wire):
                            deadline = now + us.keepalive_timeout
                            self.deadline = deadline
                            if self.deadline_key is None or deadline < self.deadline_key:
                                us.loop.deadlines.schedule(self)
                            if not self.recv_armed:
                                self._arm_recv()
                            return
                        self.out = [wire[n:]]
                        self._flush()
                        self._maybe_rearm()
                        return
                    self.out = [wire]
                    self.sending = wire
                    self.inflight += 1
                    us.prep_send(self.fd, wire, 0, self.uid | K_SEND, 0)
                    deadline = now + us.send_timeout
                    self.deadline = deadline
                    if self.deadline_key is None or deadline < self.deadline_key:
                        us.loop.deadlines.schedule(self)
                    if not self.recv_armed:
                        self._arm_recv()
                    return
                out: list[bytes | FileRegion] = []
                self._answer(req, out, resp)
                self._send(out)
            else:
                self._respond(req)
        else:
            self.receive_data(data)
            self._process()
        self._maybe_rearm()

    def _recv_slow(self, res: int, flags: int) -> None:
        us = self.us
        state = self.state
        if res < 0:
            if flags & CQE_F_BUFFER:
                us.buffers.give_back(flags)
            if state == CLOSED:
                us.maybe_release(self)
            elif res == -errno.ENOBUFS:
                us.starved.append(self)  # re-armed next turn, after buffers came back
            elif res == -errno.ECANCELED:
                # We cancelled it (multishot read-ahead limit): re-armed now if the
                # output drained meanwhile, else when it does.
                self._maybe_rearm()
            else:
                self._io_error(result_error(res))
            return
        if state == CLOSED:
            us.buffers.give_back(flags)
            us.maybe_release(self)
            return
        if state == LINGERING:
            us.buffers.give_back(flags)
            if res == 0:
                self._force_close()
            elif not self.recv_armed:
                self._arm_recv()
            return
        data = us.take(flags, res) if res else b""
        if self._eof:
            return  # bytes after EOF cannot come from a stream socket
        self.receive_data(data)
        if self.out is None and self.job is None:
            self._process()
        elif len(self._buf) >= READ_AHEAD_BYTES and self.recv_armed and MULTISHOT_RECV:
            # Enough read ahead while a response is pending: stop the multishot recv
            # and let TCP push back (re-armed when the output drains).
            us.ring.prep_cancel(self.uid | K_RECV, K_CANCEL)
        self._maybe_rearm()

    def _maybe_rearm(self) -> None:
        if self.recv_armed or self._eof:
            return
        state = self.state
        if state == CLOSED:
            return
        if (
            state != LINGERING
            and (self.out is not None or self.job is not None)
            and len(self._buf) >= READ_AHEAD_BYTES
        ):
            return  # output pending and enough read ahead: TCP pushes back
        self._arm_recv()

    def _read_ready(self) -> None:
        # Called by Connection._job_done (we pose as edge-triggered, so it does not try
        # to modify a readiness registration): the pool's answer is out, so carry on
        # with pipelined requests that arrived meanwhile.
        if self._buf and self.out is None and self.job is None and self.state < LINGERING:
            self._process()
        self._maybe_rearm()

    def _arm_recv(self) -> None:
        self.recv_armed = True
        self.inflight += 1
        self.us.prep_recv(self.fd, self.uid | K_RECV)

    def on_send(self, res: int) -> None:
        self.inflight -= 1
        data = self.sending
        self.sending = None
        out = self.out
        if (
            data is not None
            and res == len(data)
            and out is not None
            and len(out) == 1
            and self.state == IDLE
            and not self.will_close
            and not self._buf
            and not self._eof
            and not self.us.draining
        ):
            # Hot path: the one response is out; back to keep-alive.
            self.out = None
            us = self.us
            deadline = us.loop.now + us.keepalive_timeout
            self.deadline = deadline
            if self.deadline_key is None or deadline < self.deadline_key:
                us.loop.deadlines.schedule(self)
            if not self.recv_armed:
                self._maybe_rearm()
            return
        if self.state == CLOSED:
            self.us.maybe_release(self)
            return
        if res < 0:
            self._io_error(result_error(res))
            return
        out = self.out
        assert out is not None
        assert data is not None
        if res < len(data):
            # Short send: the socket filled. Progress restarts the send timeout.
            out[0] = data[res:]
            self._wait_progress()
            self._flush()
            return
        del out[0]
        if out:
            self._flush()
        else:
            self.out = None
            self._sent_all()

    def on_poll(self, res: int) -> None:
        self.inflight -= 1
        self.polling = False
        if self.state == CLOSED:
            self.us.maybe_release(self)
            return
        if res < 0:
            self._io_error(result_error(res))
            return
        self._flush()

    # -- writing (replacing the readiness versions) ----------------------------------------
    def _send(self, items: list[bytes | FileRegion]) -> None:
        if not items:
            if self.will_close:
                self._finish()
            return
        if len(items) == 1 or not any(isinstance(i, FileRegion) for i in items):
            joined: list[bytes | memoryview | FileRegion] = (
                [items[0]] if len(items) == 1 else [b"".join(items)]  # type: ignore[arg-type]
            )
        else:
            joined = _coalesce(items)
        self._queue(joined)

    def _queue(self, items: list[bytes | memoryview | FileRegion]) -> None:
        if self.out is None:
            self.out = items
        else:
            self.out.extend(items)
        self._flush()

    def _flush(self) -> None:
        """Start the next write: SEND for bytes; sendfile (+ POLL_ADD when full) for a
        file body and the header before it. Returns at once if a write is in flight."""
        if self.sending is not None or self.polling:
            return
        out = self.out
        assert out is not None
        fd = self.fd
        us = self.us
        try:
            while out:
                item = out[0]
                if isinstance(item, FileRegion):
                    sent = 0
                    while item.count:
                        if sent >= SENDFILE_CHUNK:
                            # Fair share for this turn: continue when writable (at once
                            # if still writable) after the other connections ran.
                            self._poll_out()
                            return
                        n = os_sendfile(fd, item.fd, item.offset, min(item.count, SENDFILE_CHUNK))
                        if n == 0:
                            log.warning("file shrank while being sent; closing the connection")
                            self._force_close()
                            return
                        item.offset += n
                        item.count -= n
                        sent += n
                    item.release()
                    out.pop(0)
                    set_cork(fd, False)
                elif len(out) > 1 and isinstance(out[1], FileRegion):
                    # A header before a file body goes out synchronously, corked, so the
                    # header and the first body bytes share a segment (tcp_nopush).
                    set_cork(fd, True)
                    n = os_write(fd, item)
                    if n == len(item):
                        out.pop(0)
                    else:
                        out[0] = bytes(item[n:])
                        self._poll_out()
                        return
                else:
                    data = item if item.__class__ is bytes else bytes(item)
                    out[0] = data
                    self.sending = data
                    self.inflight += 1
                    us.prep_send(fd, data, 0, self.uid | K_SEND, 0)
                    # send_timeout runs from now: the SEND may park at once on a full socket.
                    deadline = us.loop.now + us.send_timeout
                    self.deadline = deadline
                    if self.deadline_key is None or deadline < self.deadline_key:
                        us.loop.deadlines.schedule(self)
                    return
        except (BlockingIOError, InterruptedError):
            self._poll_out()
            return
        except OSError as exc:
            self._io_error(exc)
            return
        self.out = None
        self._sent_all()

    def _poll_out(self) -> None:
        self.polling = True
        self.inflight += 1
        self.us.ring.prep_poll_add(self.fd, select.POLLOUT, self.uid | K_POLL)
        self._wait_progress()

    def _wait_progress(self) -> None:
        us = self.us
        self.state = WRITING
        self.deadline = us.loop.now + us.send_timeout
        us.loop.deadlines.schedule(self)

    def _sent_all(self) -> None:
        us = self.us
        if self.state == WRITING:
            self.state = IDLE
        if self.job is not None:  # the next response is still in the disk I/O pool
            self.deadline = us.loop.now + us.send_timeout
            us.loop.deadlines.schedule(self)
            self._maybe_rearm()
            return
        if self.will_close or (us.draining and not self._buf):
            # Draining (graceful stop): a response begun before the signal went out with
            # keep-alive; close now that it is complete.
            self._finish()
            return
        if (self._buf and not self._paused) or self._eof:
            # Pipelined requests that waited, or the client's EOF that came while we
            # were writing (a half-close after its last request): answer or close now.
            self._process()
            if self.out is not None or self.state == CLOSED:
                self._maybe_rearm()
                return
        config = us.config
        deadline = us.loop.now + (config.header_timeout if self._buf else us.keepalive_timeout)
        self.deadline = deadline
        if self.deadline_key is None or deadline < self.deadline_key:
            us.loop.deadlines.schedule(self)
        self._maybe_rearm()

    # -- closing ---------------------------------------------------------------------------
    def _finish(self) -> None:
        # After the client's EOF every byte it sent has been read (FIN comes last), so a
        # close cannot turn unread data into a RST: no lingering needed.
        if (self._buf or self._paused) and not self._eof:
            try:
                shutdown_write(self.fd)
            except OSError:
                self._force_close()
                return
            us = self.us
            self.state = LINGERING
            self._buf = b""
            self.deadline = us.loop.now + us.config.linger_timeout
            us.loop.deadlines.schedule(self)
            if not self.recv_armed:
                self._arm_recv()
            return
        self._force_close()

    def _linger_read(self) -> None:  # readiness only; lingering here is the armed recv
        if not self.recv_armed:
            self._arm_recv()

    def _force_close(self) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.deadline = None
        self.us.loop.deadlines.discard(self)  # unfiled: nothing keeps a closed one alive
        if self.out:
            for item in self.out:
                if isinstance(item, FileRegion):
                    item.release()
        self.out = None
        self._buf = b""
        us = self.us
        if not us.closing:
            uid = self.uid
            if self.recv_armed:
                us.ring.prep_cancel(uid | K_RECV, K_CANCEL)
            if self.sending is not None:
                us.ring.prep_cancel(uid | K_SEND, K_CANCEL)
            if self.polling:
                us.ring.prep_cancel(uid | K_POLL, K_CANCEL)
        # The fd goes now: in-flight ops hold their own reference to the socket until
        # their cancellation completes, and our ids are never reused.
        os.close(self.fd)
        us.connection_closed(self)


def _coalesce(items: list[bytes | FileRegion]) -> list[bytes | memoryview | FileRegion]:
    out: list[bytes | memoryview | FileRegion] = []
    run: list[bytes] = []
    for item in items:
        if isinstance(item, FileRegion):
            if run:
                out.append(b"".join(run))
                run = []
            out.append(item)
        else:
            run.append(item)
    if run:
        out.append(b"".join(run))
    return out


class UringServer:
    """An HTTP/1.1 static file server on one io_uring; the ``ServerLike`` face of
    ``c10k.server.modes``.

    Args:
        config: the settings (``config.backend`` is ignored: this mode is its own loop).
        handler: ``handler(request, now) -> Response``; defaults to StaticFiles(config.root).
        sock: a listening socket, or a list of them, to serve instead of binding one.
    """

    backend_name = "uring"
    # Connection's readiness code asks this: "edge-triggered" means "never modify a
    # registration", which is true here (there is none).
    edge = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return uring_unavailable_reason()

    def __init__(
        self,
        config: ServerConfig,
        handler: Callable[[Request, float], Response] | None = None,
        sock: socket.socket | list[socket.socket] | None = None,
    ) -> None:
        self.config = config
        self.handler, self.handler_fast = handlers(config, handler)  # as Server
        self.pool: ThreadPoolExecutor | None = None
        self.offloaded = 0
        self._stop_at: float | None = None
        self.limits = Limits(config.max_header_bytes, config.max_fields)
        self.nofile_soft, self.nofile_hard = raise_nofile_limit()
        self.capacity, self.capacity_reason = self._capacity()
        self.loop = _Clock()
        self.closing = False
        if sock is None:
            socks = [
                bind_socket(
                    config.host, config.port, backlog=config.backlog, reuse_port=config.reuse_port
                )
            ]
        else:
            socks = list(sock) if isinstance(sock, list) else [sock]
        self.socks = socks
        self._open_ring()
        self.wakeup = Wakeup()
        self._wake_buf = bytearray(64)
        self.conns: dict[int, UringConnection] = {}
        self.open = 0
        self.starved: list[UringConnection] = []
        self.accept_armed = [False] * len(socks)
        self.accept_paused = False
        self.accept_retry_at: float | None = None
        self.multishot_accept = True
        self.draining = False
        # Read by Connection: overload shedding (loop-lag tiers), the access log and the
        # status page are not wired into this mode yet, so these stay off.
        self.degraded = False  # becomes True when draining
        self.observe = False
        self.shed_level = 0
        self.shed_503 = 0
        self.shed_keepalive = 0
        self._running = False
        self._shutdown_requested = False
        self._old_signal_handlers: dict[int, Any] = {}
        self._old_wakeup_fd = -1
        self._shutdown_timeout: float | None = None
        self._next_uid = 1
        self.requests = 0
        self.timeouts = 0
        self.wire_memo: dict[Response, list[bytes | None]] = {}
        self.wire_memo_get = self.wire_memo.get
        self.head_memo_get = self.limits.head_memo.get
        self.keepalive_timeout = config.keepalive_timeout
        self.send_timeout = config.send_timeout
        self.date_line = b""
        self._date_expires = 0.0
        self._update_date()
        self._errors: dict[int, Response] = {}
        # Hot-path bindings.

    def _open_ring(self) -> None:
        # DEFER_TASKRUN (6.1) + SINGLE_ISSUER: completion work (the recv copy, the
        # multishot re-poll) runs inside our io_uring_enter, batched, instead of in
        # task_work forced on us by an IPI while Python runs; measured on this VM it
        # removed most of irqentry_exit_to_user_mode from the profile. The price: only
        # the thread that created the ring may submit, so serve_forever re-creates it
        # when called from another thread. Older kernels: COOP_TASKRUN (5.19), or none.
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
            buffers = BufferRing(ring, BUF_GROUP, BUF_COUNT, BUF_SIZE)
        except BaseException:
            ring.close()
            raise
        self.ring = ring
        self.buffers = buffers
        self._owner = threading.get_ident()
        # Hot-path bindings.
        self.prep_send = ring.prep_send
        self.take = buffers.take
        prep = ring.prep
        ioprio = RECV_MULTISHOT if MULTISHOT_RECV else 0

        def prep_recv(fd: int, user_data: int) -> None:
            prep(OP_RECV, fd, 0, 0, 0, 0, user_data, SQE_BUFFER_SELECT, ioprio, BUF_GROUP)

        self.prep_recv = prep_recv

    # -- public ----------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socks[0].getsockname()[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM stop the server. The C-level handler writes to the wakeup
        socket (set_wakeup_fd), whose pending RECV completes, so a sleeping
        io_uring_enter returns at once even if the signal lands just before it."""
        self._old_wakeup_fd = signal.set_wakeup_fd(
            self.wakeup.wsock.fileno(), warn_on_full_buffer=False
        )
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_signal_handlers[sig] = signal.signal(sig, self._on_signal)

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
            self._run()
        finally:
            self.close()

    def stop(self) -> None:
        """Thread-safe: make ``serve_forever`` return."""
        self._running = False
        if not self.closing:
            try:
                self.wakeup.wake()
            except OSError:
                pass  # closed by a concurrent close(): nothing left to wake

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        for conn in list(self.conns.values()):
            conn._force_close()
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
        self.wakeup.close()

    # -- the loop ------------------------------------------------------------------------
    def _run(self) -> None:
        ring = self.ring
        reap = ring.reap
        wait = ring.submit_and_wait
        loop = self.loop
        deadlines = loop.deadlines
        conns = self.conns
        monotonic = time.monotonic
        while self._running:
            now = monotonic()
            loop.now = now
            if self._shutdown_requested and not self.draining:
                self.shutdown(self._shutdown_timeout)
                if not self._running:
                    break
            if now >= self._date_expires:
                self._update_date()
            nxt = deadlines.next_when()
            if nxt is not None and nxt <= now:
                deadlines.expire(now)
                nxt = deadlines.next_when()
            if self.starved:
                starved, self.starved = self.starved, []
                for conn in starved:
                    if conn.state != CLOSED:
                        conn._maybe_rearm()
                    else:
                        self.maybe_release(conn)
            if self.accept_retry_at is not None and now >= self.accept_retry_at:
                self.accept_retry_at = None
                self._arm_accepts()
            timeout = self._date_expires - now
            if nxt is not None and nxt - now < timeout:
                timeout = nxt - now
            if self.accept_retry_at is not None and self.accept_retry_at - now < timeout:
                timeout = self.accept_retry_at - now
            if self._stop_at is not None:
                if now >= self._stop_at:
                    break  # the drain deadline (shutdown_timeout)
                timeout = min(timeout, self._stop_at - now)
            if not self._running:
                break
            wait(max(timeout, 0.0005))
            loop.now = monotonic()
            for ud, res, fl in reap():
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
            soon = loop.soon
            while soon:
                callback, args = soon.popleft()
                try:
                    callback(*args)
                except Exception:
                    log.exception("error in callback %r", callback)

    def _drop(self, ud: int) -> None:
        conn = self.conns.get(ud >> 3) if ud & 7 in (K_RECV, K_SEND, K_POLL) else None
        if conn is not None and conn.state != CLOSED:
            try:
                conn._force_close()
            except Exception:
                log.exception("error closing connection fd %d", conn.fd)

    # -- accepting -------------------------------------------------------------------------
    def _arm_accepts(self) -> None:
        if self.accept_paused or self.draining:
            return
        for i, s in enumerate(self.socks):
            if not self.accept_armed[i]:
                self.accept_armed[i] = True
                self.ring.prep_accept(
                    s.fileno(), (i << 3) | K_ACCEPT, SOCK_FLAGS, self.multishot_accept
                )

    def _on_accept(self, index: int, res: int, flags: int) -> None:
        if not flags & CQE_F_MORE:
            self.accept_armed[index] = False
        if res < 0:
            if res == -errno.ECANCELED:
                # Paused at the cap: if a connection closed before this CQE came, the
                # resume found the accept still armed and left it to us.
                if not self.accept_paused and not self.accept_armed[index]:
                    self._arm_accepts()
                return
            if res == -errno.EINVAL and self.multishot_accept:
                self.multishot_accept = False  # a kernel without multishot accept
            elif -res in ACCEPT_CAPACITY_ERRNOS:
                log.warning(
                    "accept: %s; retrying in %.1fs", os.strerror(-res), ACCEPT_RETRY_SECONDS
                )
                if not self.accept_armed[index]:
                    self.accept_retry_at = self.loop.now + ACCEPT_RETRY_SECONDS
                return
            elif -res not in (errno.EAGAIN, errno.EINTR, errno.ECONNABORTED):
                log.error("accept: %s", os.strerror(-res))
            if not self.accept_armed[index] and self.accept_retry_at is None:
                self._arm_accepts()
            return
        if self.draining or self.closing:
            os.close(res)
            return
        uid = self._next_uid
        self._next_uid = uid + 1
        conn = UringConnection(self, res, uid)
        self.conns[uid] = conn
        self.open += 1
        conn._arm_recv()
        if self.open >= self.capacity:
            self._pause_accepts()
        elif not self.accept_armed[index]:
            self._arm_accepts()

    def _pause_accepts(self) -> None:
        self.accept_paused = True
        for i, armed in enumerate(self.accept_armed):
            if armed:
                self.ring.prep_cancel((i << 3) | K_ACCEPT, K_CANCEL)

    def connection_closed(self, conn: UringConnection) -> None:
        self.open -= 1
        self.maybe_release(conn)
        if self.draining and not self.open and not self.closing:
            self._running = False
        if self.accept_paused and not self.draining and self.open < self.capacity:
            self.accept_paused = False
            # A cancelled multishot accept may still be armed (its CQE not yet reaped);
            # _arm_accepts only arms listeners whose last CQE said "no more".
            self._arm_accepts()

    def maybe_release(self, conn: UringConnection) -> None:
        if conn.inflight <= 0 and conn.state == CLOSED:
            self.conns.pop(conn.uid >> 3, None)

    # -- wakeups and signals ---------------------------------------------------------------
    def _arm_wakeup(self) -> None:
        buf = self._wake_buf
        import ctypes

        addr = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
        self.ring.prep_recv(self.wakeup.fileno(), K_WAKE, addr, len(buf))

    def _on_wake(self, res: int) -> None:
        # Signal numbers or thread wakeups; the Python-level handlers already ran.
        if self._running and not self.closing:
            self._arm_wakeup()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Runs between two bytecodes of the loop thread (CPython runs Python-level
        # handlers in the main thread): only flags and preps, no I/O waits.
        if self.draining:
            log.info("signal %d again: stopping now", signum)
            self._running = False
            return
        log.info(
            "signal %d: draining %d connections (at most %.0f s; again to stop now)",
            signum,
            self.open,
            self.config.shutdown_timeout,
        )
        self._shutdown_requested = True

    def shutdown(self, timeout: float | None = None) -> None:
        """Graceful stop (loop thread only), as ``Server.shutdown``: stop accepting, close
        idle keep-alive connections, let in-flight responses finish (with ``Connection:
        close``), and return from ``serve_forever`` when the last connection has closed
        or after ``timeout`` (default ``config.shutdown_timeout``)."""
        if self.draining:
            return
        self.draining = True
        self.degraded = True
        for i, armed in enumerate(self.accept_armed):
            if armed:
                self.ring.prep_cancel((i << 3) | K_ACCEPT, K_CANCEL)
        for s in self.socks:
            s.close()  # refused from now on (the cancelled accept drops its reference)
        for conn in list(self.conns.values()):
            if (
                conn.state == IDLE
                and conn.out is None
                and not conn._buf
                and conn.job is None
                and conn.sending is None
            ):
                conn._force_close()
        self._stop_at = time.monotonic() + (
            self.config.shutdown_timeout if timeout is None else timeout
        )
        if not self.open:
            self._running = False

    def shutdown_threadsafe(self, timeout: float | None = None) -> None:
        self._shutdown_timeout = timeout
        self._shutdown_requested = True
        self.wakeup.wake()

    # -- the disk I/O pool -------------------------------------------------------------------
    def offload(self, conn: Connection, req: Request) -> None:
        """Answer ``req`` in the disk I/O pool, as ``Server.offload``; the answer comes
        back through ``loop.soon`` and the wakeup socket's pending RECV."""
        self.offloaded += 1
        handler = self.handler
        now = self.loop.now
        done = conn._job_done
        if self.config.io_threads == 0:
            done(req, self._run_handler(handler, req, now))
            return
        pool = self.pool
        if pool is None:
            pool = self.pool = ThreadPoolExecutor(
                self.config.io_threads, thread_name_prefix="c10k-io"
            )
        soon = self.loop.soon
        wake = self.wakeup.wake
        run = self._run_handler

        def job() -> None:
            soon.append((done, (req, run(handler, req, now))))
            wake()

        pool.submit(job)

    def _run_handler(
        self, handler: Callable[[Request, float], Response], req: Request, now: float
    ) -> Response:
        try:
            return handler(req, now)
        except Exception:
            log.exception("handler failed for %r", req.target)
            return self.protocol_error_response(500)

    # -- policy (as c10k.server.app.Server) ------------------------------------------------
    def _capacity(self) -> tuple[int, str]:
        cap = self.nofile_soft - FD_RESERVE
        reason = f"RLIMIT_NOFILE {self.nofile_soft} minus {FD_RESERVE} reserved fds"
        if self.config.max_connections is not None and self.config.max_connections < cap:
            cap = self.config.max_connections
            reason = "--max-connections"
        return max(cap, 1), reason

    def protocol_error_response(self, status: int) -> Response:
        resp = self._errors.get(status)
        if resp is None:
            resp = self._errors[status] = error_response(status, close=True)
        return resp

    def overload_response(self) -> Response:
        return self.protocol_error_response(503)

    def account(self, conn: Connection, req: Request | None, resp: Response) -> None:
        pass  # observe is False: never called

    def method_response(self, status: int) -> Response:
        key = -status
        resp = self._errors.get(key)
        if resp is None:
            extra = [(b"Allow", b"GET, HEAD")] if status == 405 else None
            resp = self._errors[key] = error_response(status, extra)
        return resp

    def _update_date(self) -> None:
        now = time.time()
        self.date_line = b"Date: " + http_date(now) + b"\r\n"
        self.wire_memo.clear()
        self._date_expires = time.monotonic() + (1.0 - (now % 1.0))
