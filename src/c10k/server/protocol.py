"""One HTTP connection: socket bytes <-> HTTPConnection <-> static handler.

The path of one keep-alive request (the hot path, top to bottom in ``_read_ready``):

    epoll says READ -> Loop calls conn._ready(events) -> recv(64 KiB) -> HTTPConnection
    finds CRLFCRLF and returns the memoized Request -> StaticFiles.handle returns the cached
    Response object -> the wire bytes for (that Response, this Connection header) come from
    the per-second memo -> one send() -> the keep-alive deadline is bumped by one store.

So a cached small file costs one recv and one send and no file-system syscall. Anything
unusual (partial heads, pipelined batches, errors, big files, a blocked socket) takes the
general branches of the same functions.

Writing: try to send at once, queue only the remainder (asyncio ``_SelectorSocketTransport``).
A queued item is bytes/memoryview or a FileRegion. A header followed by a FileRegion is
written with TCP_CORK set and the cork is pulled after the body's last sendfile (nginx's
``tcp_nopush``): header and body share the first segment and every segment is full-sized.
MSG_MORE on the header alone did the same for the first segment; corking measured 0.88 vs
0.80 of nginx's efficiency on 1 MiB files at 1,000 connections (vs-nginx --file big.bin,
2 rounds each; within this box's noise, kept because it is what nginx does). While
output is queued, a level-triggered backend watches WRITE only (so a readable socket cannot
spin the loop) and pipelined requests stay unparsed in the buffer; both resume when the
queue drains. An edge-triggered backend watches READ|WRITE from accept to close and never
calls epoll_ctl again.

Closing: after a response that must close, we close at once when the client has sent
nothing more; when unread bytes may follow (a request body we never read, an error), we
shut down our side and keep reading and discarding for ``linger_timeout`` (nginx's
lingering close), because closing with unread data makes the kernel send RST, which can
destroy the response before the client reads it (RFC 9112 section 9.6).

I/O errors fall in three buckets (STYLE 5): would-block -> wait; peer gone
(CONNRESET_ERRNOS) -> close quietly; anything else -> log and close (``_fatal_error``).
"""

from __future__ import annotations

import errno
import logging
import os
from typing import TYPE_CHECKING

from c10k.core.backend import READ, READ_MASK, WRITE, WRITE_MASK
from c10k.core.fdio import reset_on_close, set_cork, shutdown_write, unsent_bytes
from c10k.http.connection import (
    CONNECTION_CLOSED,
    MEMO_MAX_HEAD_BYTES,
    HTTPConnection,
    method_status,
)
from c10k.http.errors import RemoteProtocolError
from c10k.http.events import NEED_DATA, PAUSED, Request
from c10k.http.writers import Response
from c10k.region import FileRegion

if TYPE_CHECKING:
    from c10k.server.app import Server

log = logging.getLogger("c10k.server")

RECV_SIZE = 65536
RDHUP = 0x2000  # EPOLLRDHUP (Linux): the peer's FIN is queued; only epoll-et asks for it
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
os_read = os.read
os_write = os.write
SENDFILE_CHUNK = 256 << 10  # per call: bounded so one fat client cannot hog a loop turn

# Connection header variants; index into the per-response wire memo.
KEEP_11 = 0  # HTTP/1.1 keep-alive: no Connection header needed
CLOSE = 1
KEEP_10 = 2  # HTTP/1.0 keep-alive must be announced (index = (minor << 1) ^ 2)
CONNECTION_LINES = (b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n")

# The per-second wire memo keeps responses the handler returns again (cached files, error
# pages); answers made per request are not kept, and the memo is bounded anyway.
ONE_OFF_STATUSES = frozenset((206, 416))
WIRE_MEMO_MAX_ENTRIES = 4096

# Connection.job while pipelined requests wait for the loop's next turn (max_pipelined).
YIELDED = Request(b"GET", b"*", 1, {}, True, False)

# Connection states, for status counters and the deadline handler.
IDLE, READING, WRITING, LINGERING, CLOSED = range(5)


class Connection(HTTPConnection):
    """HTTPConnection plus a socket fd: one object per client, ``__slots__`` only.

    The socket is a bare fd (see c10k.core.fdio for why): ``os.read``/``os.write`` on the
    hot path, ``os.close`` at the end.
    """

    __slots__ = (
        "deadline",
        "deadline_key",
        "fd",
        "job",
        "out",
        "peer",
        "server",
        "state",
        "will_close",
        "wsent",
        "wstart",
    )

    def __init__(self, server: Server, fd: int) -> None:
        # HTTPConnection.__init__, inlined: this runs once per accepted connection.
        self.limits = server.limits
        self._buf = b""
        self._scan = 0
        self._eof = False
        self._paused = False
        self.server = server
        self.fd = fd
        self.out: list[bytes | memoryview | FileRegion] | None = None
        # A request being answered in the disk I/O pool, or YIELDED (see _process).
        self.job: Request | None = None
        self.will_close = False
        self.peer = ""  # the client's address, for the access log (set by the server)
        self.wstart = 0.0  # when the current blocked write began (min_send_rate)
        self.wsent = 0
        self.state = IDLE
        self.deadline: float | None = server.loop.now + server.config.header_timeout
        self.deadline_key: int | None = None
        server.loop.deadlines.schedule(self)

    # -- readiness ---------------------------------------------------------------------
    def _ready_slow(self, events: int) -> None:
        if events & WRITE_MASK and self.out is not None:
            self._flush()
        if events & READ_MASK and self.out is None and self.job is None:
            state = self.state
            if state < LINGERING:
                self._read_ready()
            elif state == LINGERING:
                self._linger_read()

    def _read_ready(self) -> None:
        self._ready(READ)

    def _ready(self, events: int) -> None:
        """The Loop's callback for this fd: the read side is inlined (one Python call per
        event on the hot path); output in flight and lingering go to ``_ready_slow``."""
        if self.out is not None or self.state >= LINGERING or self.job is not None:
            self._ready_slow(events)
            return
        if not events & READ_MASK:
            return
        server = self.server
        fd = self.fd
        while True:
            try:
                data = os_read(fd, RECV_SIZE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._io_error(exc)
                return
            if not data:
                self.receive_data(b"")
                self._process()
                return
            # Hot path: the read is exactly one head seen before, CRLFCRLF included (so it
            # is valid and holds no other request: see Rule 4 in c10k.http.connection).
            if (
                not self._buf
                and len(data) <= MEMO_MAX_HEAD_BYTES
                and (req := server.head_memo_get(data)) is not None
                and not self._paused
            ):
                if (
                    req.method == b"GET"
                    and req.keep_alive
                    and not req.has_body
                    and not server.degraded
                ):
                    # The common case, flat: cached response, memoized wire, one send.
                    now = server.loop.now
                    try:
                        resp = server.handler_fast(req, now)
                    except Exception:
                        log.exception("handler failed for %r", req.target)
                        resp = server.protocol_error_response(500)
                    if resp is None:  # needs the disk: answered from the I/O pool
                        self._offload(req)
                        return
                    wires = server.wire_memo_get(resp)
                    wire = wires[req.minor << 1 ^ 2] if wires is not None else None
                    if wire is not None and not resp.close:
                        server.requests += 1
                        if server.observe:
                            server.account(self, req, resp)
                        try:
                            n = os_write(fd, wire)
                        except (BlockingIOError, InterruptedError):
                            n = 0
                        except OSError as exc:
                            self._io_error(exc)
                            return
                        if n == len(wire):
                            deadline = now + server.keepalive_timeout
                            self.deadline = deadline
                            if self.deadline_key is None or deadline < self.deadline_key:
                                server.loop.deadlines.schedule(self)
                        else:
                            self._queue([memoryview(wire)[n:]])
                    else:
                        out: list[bytes | FileRegion] = []
                        self._answer(req, out, resp)
                        self._send(out)
                else:
                    self._respond(req)
                if self.out is not None or self.state == CLOSED or self.job is not None:
                    return
            else:
                self.receive_data(data)
                self._process()
                if self.out is not None or self.state == CLOSED or self.job is not None:
                    return
            if not server.edge or (len(data) < RECV_SIZE and not events & RDHUP):
                # Short read: the receive queue is drained (stream socket), so even an
                # edge-triggered backend may wait now. Level-triggered: poll tells us.
                # Unless the peer's FIN was already queued when we were woken (EPOLLRDHUP
                # in this wakeup's mask): no new edge will come for it, so read on to the
                # EOF now (nginx: rev->pending_eof).
                return

    def _process(self) -> None:
        """Answer every complete request in the buffer, in order (pipelining)."""
        if self.job is not None:  # pipelined requests wait for the one in the pool
            return
        out: list[bytes | FileRegion] = []
        pending = 0
        server = self.server
        limit = server.config.max_pending_output_bytes
        answered = 0
        cap = server.config.max_pipelined
        while True:
            try:
                event = self.next_event()
            except RemoteProtocolError as exc:
                resp = self.server.protocol_error_response(exc.error_status_hint)
                if self.server.observe:
                    self.server.account(self, None, resp)
                self._append(out, resp, CLOSE, False)
                self.will_close = True
                break
            if event is NEED_DATA:
                if self._buf:
                    if self.state == IDLE:
                        # The first bytes of a head: from now on the header timeout runs
                        # (a keep-alive connection was on the longer idle timeout), and
                        # it is not reset by further bytes (slowloris trickle).
                        deadline = server.loop.now + server.config.header_timeout
                        if self.deadline is None or deadline < self.deadline:
                            self.deadline = deadline
                            server.loop.deadlines.schedule(self)
                    self.state = READING
                else:
                    self.state = IDLE
                break
            if event is CONNECTION_CLOSED or event is PAUSED:
                self.will_close = True
                break
            assert isinstance(event, Request)
            size = self._answer(event, out)
            if size < 0:  # offloaded: send what came before it, then wait for it
                break
            pending += size
            if self.will_close or pending > limit:
                break
            answered += 1
            if answered >= cap and self._buf:
                # Fairness: a client that pipelined many requests gets the rest after
                # the other ready clients have had their turn.
                self.job = YIELDED
                server.loop.call_soon(self._resume)
                break
        self._send(out)

    def _respond(self, req: Request) -> None:
        out: list[bytes | FileRegion] = []
        self._answer(req, out)
        self._send(out)

    def _answer(
        self, req: Request, out: list[bytes | FileRegion], resp: Response | None = None
    ) -> int:
        """Produce the response to ``req`` (or ``resp``, already made) into ``out``;
        return its size in bytes, or -1 if it went to the disk I/O pool."""
        server = self.server
        method = req.method
        if resp is not None:
            pass
        elif server.shed_level >= 2:
            # Overload tier 2: a clear 503 + Retry-After instead of the work.
            resp = server.overload_response()
            server.shed_503 += 1
        elif method == b"GET" or method == b"HEAD":
            try:
                resp = server.handler_fast(req, server.loop.now)
            except Exception:
                log.exception("handler failed for %r", req.target)
                resp = server.protocol_error_response(500)
            if resp is None:
                self._offload(req)
                return -1
        else:
            resp = server.method_response(method_status(method))
        if server.degraded and server.shed_level >= 1:
            server.shed_keepalive += 1
        if req.keep_alive and not resp.close and not req.has_body and not server.degraded:
            kind = KEEP_11 if req.minor else KEEP_10
        else:
            kind = CLOSE
            self.will_close = True
        if server.observe:
            server.account(self, req, resp)
        return self._append(out, resp, kind, method == b"HEAD")

    def _append(self, out: list[bytes | FileRegion], resp: Response, kind: int, head: bool) -> int:
        server = self.server
        server.requests += 1
        body = resp.body
        if body is None or body.__class__ is bytes:
            memo = server.wire_memo
            wires = memo.get(resp)
            if wires is None:
                if resp.status in ONE_OFF_STATUSES or len(memo) >= WIRE_MEMO_MAX_ENTRIES:
                    # A per-request answer (a byte range, a listing...) would only fill
                    # the memo until the next Date second: build it, keep nothing.
                    wires = [None, None, None]
                else:
                    wires = memo[resp] = [None, None, None]
            wire = wires[kind]
            if wire is None:
                wire = wires[kind] = b"".join(
                    (resp.head, server.date_line, CONNECTION_LINES[kind], b"\r\n", body or b"")
                )
            if head and body:  # a HEAD answered with a GET's response (error pages)
                wire = wire[: len(wire) - len(body)]
            out.append(wire)
            return len(wire)
        out.append(b"".join((resp.head, server.date_line, CONNECTION_LINES[kind], b"\r\n")))
        parts = body if isinstance(body, tuple) else (body,)
        size = 0
        for part in parts:
            if head:
                if isinstance(part, FileRegion):
                    part.release()
            else:
                out.append(part)
                size += len(part)
        # Counted whole, though a region costs the queue only an fd: a pipelined batch of
        # big files then stops after the first, so a slow reader holds one open file, not
        # one per request it queued (found by slowhttptest -X, the slow-read attack).
        return size

    # -- the disk I/O pool ---------------------------------------------------------------
    def _offload(self, req: Request) -> None:
        """Hand ``req`` to the pool; stop reading (level-triggered: watch nothing, or only
        WRITE while earlier responses drain) until ``_job_done``."""
        self.job = req
        server = self.server
        if not server.edge and self.state != WRITING:
            server.loop.modify_fd(self.fd, 0)
        server.offload(self, req)

    def _resume(self) -> None:
        """Continue with pipelined requests after yielding the loop (``max_pipelined``)."""
        if self.job is not YIELDED or self.state == CLOSED:
            return
        self.job = None
        server = self.server
        if self.out is not None:  # still writing: _sent_all carries on
            return
        if not server.edge:
            server.loop.modify_fd(self.fd, READ)  # _sent_all may have left it on WRITE
        self._process()
        if server.edge and self.out is None and self.job is None and self.state < LINGERING:
            self._read_ready()

    def _job_done(self, req: Request, resp: Response) -> None:
        """The pool answered ``req`` (on the loop thread): send it, then carry on with
        any pipelined requests."""
        if self.state == CLOSED or self.job is not req:  # timed out or reset meanwhile
            _release(resp)
            return
        self.job = None
        server = self.server
        if not server.edge and self.state != WRITING:
            server.loop.modify_fd(self.fd, READ)
        out: list[bytes | FileRegion] = []
        self._answer(req, out, resp)
        self._send(out)
        if server.edge and self.out is None and self.state < LINGERING:
            self._read_ready()  # bytes that arrived meanwhile raised no new edge

    # -- writing -----------------------------------------------------------------------
    def _send(self, items: list[bytes | FileRegion]) -> None:
        if not items:
            if self.will_close:
                self._finish()
            return
        if len(items) == 1 and self.out is None:
            data = items[0]
            if data.__class__ is bytes:
                # The common case: one response, one send.
                try:
                    n = os.write(self.fd, data)
                except (BlockingIOError, InterruptedError):
                    n = 0
                except OSError as exc:
                    self._io_error(exc)
                    return
                if n == len(data):
                    self._sent_all()
                    return
                self._queue([memoryview(data)[n:]])
                return
        self._queue(_coalesce(items))

    def _queue(self, items: list[bytes | memoryview | FileRegion]) -> None:
        if self.out is None:
            self.out = items
        else:
            self.out.extend(items)
        self._flush()

    def _flush(self) -> None:
        """Write queued items until done or the socket is full."""
        out = self.out
        assert out is not None
        fd = self.fd
        try:
            while out:
                item = out[0]
                if isinstance(item, FileRegion):
                    while item.count:
                        n = os.sendfile(fd, item.fd, item.offset, min(item.count, SENDFILE_CHUNK))
                        self.wsent += n
                        if n == 0:  # the file shrank under us: we cannot honour Content-Length
                            log.warning("file shrank while being sent; closing the connection")
                            self._force_close()
                            return
                        item.offset += n
                        item.count -= n
                    item.release()
                    out.pop(0)
                    set_cork(fd, False)  # push the last partial segment now
                else:
                    if len(out) > 1 and isinstance(out[1], FileRegion):
                        # A header before a file body: cork so header and body leave in
                        # full-sized segments (nginx tcp_nopush); uncorked after the body.
                        set_cork(fd, True)
                    n = os.write(fd, item)
                    self.wsent += n
                    if n == len(item):
                        out.pop(0)
                    else:
                        out[0] = memoryview(item)[n:]
                        break
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as exc:
            self._io_error(exc)
            return
        if out:
            self._wait_writable()
        else:
            self.out = None
            self._sent_all()

    def _wait_writable(self) -> None:
        server = self.server
        now = server.loop.now
        config = server.config
        if self.state != WRITING:
            self.state = WRITING
            self.wstart = now
            self.wsent = 0
            if not server.edge:
                server.loop.modify_fd(self.fd, WRITE)
        else:
            # Progress resets the send timeout (nginx send_timeout), but a reader that
            # takes a byte now and then must not hold a response forever (slow-read
            # attack): past one send_timeout, the average rate must be min_send_rate.
            # The rate is of what the client acknowledged (minus SIOCOUTQ), not of what
            # we wrote: the first write fills megabytes of kernel buffer at once.
            elapsed = now - self.wstart
            if (
                elapsed > config.send_timeout
                and self.wsent - unsent_bytes(self.fd) < config.min_send_rate * elapsed
            ):
                log.info("fd %d: client reads below --min-send-rate; resetting", self.fd)
                self.server.timeouts += 1
                reset_on_close(self.fd)
                self._force_close()
                return
        self.deadline = now + config.send_timeout
        server.loop.deadlines.schedule(self)

    def _sent_all(self) -> None:
        """Everything queued is on the wire: close, or go back to reading requests."""
        server = self.server
        was_writing = self.state == WRITING
        if was_writing:
            if not server.edge and self.job is None:
                server.loop.modify_fd(self.fd, READ)
            self.state = IDLE
        if self.job is not None:  # the next response is in the pool, or we yielded
            if was_writing and not server.edge and self.job is not YIELDED:
                server.loop.modify_fd(self.fd, 0)
            self.deadline = server.loop.now + server.config.send_timeout
            server.loop.deadlines.schedule(self)
            return
        if self.will_close or (server.draining and not self._buf):
            # Draining (graceful stop): a response begun before the signal went out with
            # keep-alive; close now that it is complete.
            self._finish()
            return
        if self._buf and not self._paused:
            # Pipelined requests waited while we were writing (or past the output cap).
            self._process()
            if self.out is not None or self.state == CLOSED:
                return
        config = server.config
        deadline = server.loop.now + (
            config.header_timeout if self._buf else config.keepalive_timeout
        )
        self.deadline = deadline
        if self.deadline_key is None or deadline < self.deadline_key:
            server.loop.deadlines.schedule(self)
        if was_writing and server.edge and not self._buf:
            # No new edge will come for bytes that arrived while we were writing.
            self._read_ready()

    # -- closing -----------------------------------------------------------------------
    def _finish(self) -> None:
        """The last response is out: close, lingering if the client may still be sending."""
        if self._buf or (self._paused and not self._eof):
            try:
                shutdown_write(self.fd)
            except OSError:
                self._force_close()
                return
            self.state = LINGERING
            server = self.server
            self._buf = b""
            self.deadline = server.loop.now + server.config.linger_timeout
            server.loop.deadlines.schedule(self)
            # Discard what is already queued now: an edge-triggered backend reports no
            # new edge for bytes that arrived before we started lingering.
            self._linger_read()
            return
        self._force_close()

    def _linger_read(self) -> None:
        try:
            while os.read(self.fd, RECV_SIZE):
                pass
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            pass
        self._force_close()

    def on_deadline(self) -> None:
        """A timeout expired: header, keep-alive idle, send progress or lingering."""
        self.server.timeouts += 1
        if self.job is not None and self.job is not YIELDED:
            log.warning(
                "request for %r still in the disk I/O pool after the send timeout", self.job.target
            )
        elif self.state == READING and self.out is None:
            # RFC 9110 section 15.5.9: 408 for a request the client did not finish in time.
            wire: list[bytes | FileRegion] = []
            self._append(wire, self.server.protocol_error_response(408), CLOSE, False)
            try:
                os.write(self.fd, wire[0])  # type: ignore[arg-type]
            except OSError:
                pass
        elif self.state == WRITING:
            # Send timeout: the client stopped reading. Drop what the kernel still holds
            # for it too (RST), or a slow-read attacker keeps megabytes of socket memory.
            reset_on_close(self.fd)
        self._force_close()

    def _io_error(self, exc: OSError) -> None:
        if exc.errno not in CONNRESET_ERRNOS:
            self._fatal_error(exc)
        self._force_close()

    def _fatal_error(self, exc: BaseException) -> None:
        log.error("connection fd %d: %s", self.fd, exc)

    def _force_close(self) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.deadline = None
        self.server.loop.deadlines.discard(self)  # nothing may keep a closed one alive
        if self.out:
            for item in self.out:
                if isinstance(item, FileRegion):
                    item.release()
        self.out = None
        self._buf = b""
        server = self.server
        server.loop.forget_fd(self.fd)
        os.close(self.fd)
        server.connection_closed(self)


def _release(resp: Response) -> None:
    body = resp.body
    for part in body if isinstance(body, tuple) else (body,):
        if isinstance(part, FileRegion):
            part.release()


def _coalesce(items: list[bytes | FileRegion]) -> list[bytes | memoryview | FileRegion]:
    """Join runs of bytes so a pipelined batch goes out in one send."""
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
        out.append(b"".join(run) if len(run) > 1 else run[0])
    return out
