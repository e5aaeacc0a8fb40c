"""Session: one HTTP/1.1 connection's engine, with no I/O of its own.

Every server mode (the readiness loop, io_uring, thread per client, asyncio/uvloop) runs
this same object per connection; the mode only moves bytes. A Session is an
``HTTPConnection`` (framing, pipelining, header limits) plus the rest of what a
connection means: which response, keep-alive or close, the deadline it is under, when to
stop reading, when to offload to the disk pool, when to yield. It has no socket, reads no
clock and starts no thread; what it needs from its mode comes in through three objects:

- ``transport``: moves bytes (``writelines``, ``write``, ``send_file``, ``close``,
  ``write_eof``, ``abort``, ``pause_reading``, ``resume_reading``, ``pending_bytes``) and
  reports what happened by calling the Session back: ``data_received``,
  ``eof_received``, ``pause_writing`` (output stayed queued), ``resume_writing`` (it
  drained), ``connection_lost``. ``c10k.core.transport.Transport`` is the readiness mode's; each
  other mode has its own with the same face.
- ``loop``: ``now`` (the time of this turn), ``deadlines`` (``core.timers.Deadlines``),
  ``call_soon`` and ``run_in_thread``.
- ``policy``: the per-process ``c10k.server.policy.Policy``: handler, wire memo, error
  responses, counters, access log, overload tier, drain.

So the whole server suite tests every mode at once, and the Session itself is tested with
a fake transport and a fake clock (tests/server/test_server_session.py).

The path of one keep-alive request (the hot path, top to bottom in ``data_received``):
the read is exactly a head seen before (the head memo: see Rule 4 in c10k.http.connection)
-> ``handler_fast`` returns the cached Response -> the wire bytes for (that Response, this
Connection variant) come from the per-second memo -> the keep-alive deadline is moved (one
store) -> the bytes are *returned*, and the transport writes them. A large cached file's
GET goes the same way with its head memoized per Connection variant (``Wire.file_heads``)
and handed to ``transport.send_file`` with the file region. Anything else (partial heads,
pipelined batches, errors, ranges, a paced connection, a blocked socket) takes the
general branches below.

States (``state``): IDLE between requests; READING inside a head (the header timeout runs
from its first byte and is not extended by more bytes: slowloris); WRITING while output is
queued (reading paused, pipelined requests wait, the send deadline and rate run);
LINGERING after a closing response when the client may still be sending (our side is
shut, reads are discarded for ``linger_timeout``, so unread bytes cannot turn into an RST
that destroys the response, RFC 9112 section 9.6); CLOSING (close requested, output
draining); CLOSED. ``job`` is the request being answered in the disk pool, or YIELDED
while pipelined requests wait for the next turn (``max_pipelined``).

Slow readers: while WRITING the deadline comes every ``send_timeout``; at each, the client
must have acknowledged something since the last one (nginx ``send_timeout``) and, on
average since the write blocked, at least ``min_send_rate`` bytes a second, or the
connection is reset (SO_LINGER 0: the kernel frees its send queue at once). What it
acknowledged is what we handed the transport minus ``transport.pending_bytes()``, our
queue plus the kernel's (the first write fills megabytes of socket buffer at memory speed
whatever the client does). A check that finds the kernel's queue empty
(``transport.unacked_bytes()`` 0: the client acknowledged all it was sent) passes and starts
the rate over, and so does the check after it: the wait was ours (a cold file chunk in the
disk pool, c10k.core.diskio), and a response slowed by our own disk is never charged to the
client, which is judged only on bytes it had for a whole ``send_timeout``.

A client's kernel memory follows its speed: its socket's unsent limit
(TCP_NOTSENT_LOWAT) is about one second of what it reads (``send_queue_for``), between 4
KiB and ``MAX_SEND_QUEUE``. A new connection starts at the listener's
``NOTSENT_LOWAT_BYTES`` (256 KiB): a 28.8k modem user would sit on 70 seconds of that,
and ten thousand of them push the kernel into TCP memory pressure
(``net.ipv4.tcp_mem``), where it shrinks every socket's buffers and the slow users
starve (docs/BENCHMARKS.md, Kegel test 2); a slowhttptest reader would pin it for
nothing. So the first check of a write that blocks comes ``SEND_QUEUE_CHECK`` seconds
in, not a ``send_timeout``: if the client (not our disk: the kernel still holds
unacknowledged bytes) took less than the limit a second, the limit shrinks to a second
of what it took. A client that proves fast gets more (only ever grown then, and only
once it took twice its limit: a receive window is taken at once whatever the reader
does): at the end of a blocked write, and ``SEND_GROW_CHECK`` into a write of many times
its limit (one big file). The loop then wakes once per megabyte or two of a fast
client's big file instead of once per ~128 KiB, which is what a big file costs us in CPU
(nginx leaves the socket's autotuned buffer, up to 4 MiB, to fill). The client reads no
slower for any of it (the kernel still holds a second of its reading). The price: a
client that reads fast and then stops pins up to ``MAX_SEND_QUEUE`` (plus its window)
until its send checks reset it, as every socket of a server without a limit does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from c10k.core.listener import NOTSENT_LOWAT_BYTES
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
from c10k.server.pacing import Pacer
from c10k.server.wire import CLOSE, KEEP_10, KEEP_11, release_body

if TYPE_CHECKING:
    from c10k.server.policy import Policy

log = logging.getLogger("c10k.server")

IDLE, READING, WRITING, LINGERING, CLOSING, CLOSED = range(6)

# Session.job while pipelined requests wait for the loop's next turn (max_pipelined).
YIELDED = Request(b"GET", b"*", 1, {}, True, False)

# Seconds into a blocked write at which the client's reading speed is judged, and the
# least and most unsent limit a socket is given (module doc: a client's kernel memory).
SEND_QUEUE_CHECK = 2.0
MIN_SEND_QUEUE = 4096
MAX_SEND_QUEUE = 2 << 20
# A write of this many times the socket's limit gets an early look at the client's speed
# (a loop timer, since the deadlines' buckets are a second wide), SEND_GROW_CHECK in.
SEND_GROW_CHECK = 0.05
SEND_GROW_WRITE = 4


def send_queue_for(rate: float) -> int:
    """The unsent limit for a client that reads ``rate`` bytes a second: about a second
    of it, a power of two, between ``MIN_SEND_QUEUE`` and ``MAX_SEND_QUEUE``.

    >>> send_queue_for(3600), send_queue_for(100_000), send_queue_for(10**9)
    (4096, 131072, 2097152)
    """
    if rate >= MAX_SEND_QUEUE:
        return MAX_SEND_QUEUE
    n = MIN_SEND_QUEUE
    while n < rate:
        n <<= 1
    return n


def answer_at_accept(policy: Policy, data: bytes, now: float) -> bytes | None:
    """A new connection's first read, answered without a Session when it is the whole
    exchange (Kegel's test 1): a head seen before asking to close, a GET of a cached
    file whose closing wire is memoized. Returns that wire with the request counted (the
    mode writes it and closes the fd), or None: serve ``data`` with a Session.

    The same decisions as the hot path of ``Session.data_received``, for the cases where
    nothing would outlive the response: no per-client limit or access log needs the
    connection, the server is not shedding load. What it saves per connection is the
    Session, its transport, a deadline filed and discarded, and their teardown (about a
    fifth of the Python time of a one-shot client; docs/ARCHITECTURE.md).
    """
    if (
        len(data) > MEMO_MAX_HEAD_BYTES
        or policy.degraded
        or policy.observe
        or policy.limiter is not None
        or (req := policy.head_memo_get(data)) is None
        or req.keep_alive
        or req.method != b"GET"
        or req.has_body
    ):
        return None
    try:
        resp = policy.handler_fast(req, now)
    except Exception:
        return None  # the Session asks again, and logs it
    if resp is None:
        return None  # needs the disk: the Session offloads it
    wires = policy.wire_memo_get(resp)
    if wires is None or (wire := wires[CLOSE]) is None:
        release_body(resp)  # (a file's open fd) the Session asks the handler again
        return None
    policy.requests += 1
    return wire


class Session(HTTPConnection):
    """One connection's HTTP state machine; see the module comment."""

    __slots__ = (
        "append",
        "climit",
        "deadline",
        "deadline_key",
        "handle_fast",
        "job",
        "loop",
        "pacer",
        "policy",
        "send_queue",
        "state",
        "transport",
        "will_close",
        "wprogress",
    )

    def __init__(self, policy: Policy, loop: Any) -> None:
        # HTTPConnection.__init__, inlined: this runs once per accepted connection.
        self.limits = policy.limits
        self._buf = b""
        self._scan = 0
        self._eof = False
        self._paused = False
        self.policy = policy
        # The handler this connection asks first: the policy's, or one its listener
        # chose (the --redirect-https listener's).
        self.handle_fast = policy.handler_fast
        # How a response goes on the wire: ``policy.append_plain`` where the connection
        # is plain but the server's responses say HTTPS-only things (HSTS).
        self.append = policy.append
        self.loop = loop
        self.transport: Any = None
        self.job: Request | None = None
        self.will_close = False
        self.state = IDLE
        # While WRITING: [when the write blocked, bytes outstanding then plus bytes
        # handed over since, bytes acknowledged at the last check, the last check found
        # the kernel's queue empty, the send-queue check is still to come].
        self.wprogress: list[Any] | None = None
        # The socket's unsent limit (TCP_NOTSENT_LOWAT; module doc).
        self.send_queue = NOTSENT_LOWAT_BYTES
        # --limit-rate: output handed to the transport at a rate (c10k.server.pacing).
        rate = policy.limit_rate
        self.pacer = Pacer(rate, policy.limit_rate_after) if rate else None
        # --limit-conn-per-ip/--limit-req: this connection's client key and counted entry
        # (c10k.server.clientlimit; set at the first request), None before it.
        self.climit: Any = None
        self.deadline: float | None = loop.now + policy.header_timeout
        self.deadline_key: int | None = None
        loop.deadlines.schedule(self)

    # -- what the transport reports ----------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> bytes | None:
        """Bytes from the client. Returns the response bytes when the whole answer is
        one memoized write (the transport sends them); otherwise writes through the
        transport itself and returns None."""
        if self.state >= WRITING or self.job is not None:
            self._received_late(data)
            return None
        policy = self.policy
        if (
            not self._buf
            and len(data) <= MEMO_MAX_HEAD_BYTES
            and (req := policy.head_memo_get(data)) is not None
            and not self._paused
        ):
            if req.method == b"GET" and not req.has_body and not policy.degraded:
                # The common case, flat: cached response, memoized wire.
                loop = self.loop
                now = loop.now
                limiter = policy.limiter
                if limiter is not None and (resp := limiter.check(self, req, now)) is not None:
                    # per-client limits: 503 (closing) or 429, through the same wire
                    resp = self._engine(resp, req)
                else:
                    try:
                        resp = self.handle_fast(req, now)
                    except Exception:
                        log.exception("handler failed for %r", req.target)
                        resp = self._engine(policy.error(500), req)
                    if resp is None:  # needs the disk: answered from the I/O pool
                        self._offload(req)
                        return None
                wires = policy.wire_memo_get(resp)
                if req.keep_alive:
                    body = None
                    if resp.close:
                        wire = None
                    elif wires is not None:
                        wire = wires[req.minor << 1 ^ 2]
                    elif (
                        (body := resp.body).__class__ is FileRegion
                        and resp.pace is None
                        and self.pacer is None
                        and (heads := policy.file_heads_get(resp.head)) is not None
                    ):
                        # A large cached file, as flat: its head is memoized per
                        # Connection variant, and the transport sends it and the region
                        # (writelines' work without its general queue).
                        wire = heads[req.minor << 1 ^ 2]
                    else:
                        wire = None
                    if wire is not None:
                        policy.requests += 1
                        if policy.observe:
                            policy.account(self, req, resp)
                        deadline = now + policy.keepalive_timeout
                        self.deadline = deadline
                        if self.deadline_key is None or deadline < self.deadline_key:
                            loop.deadlines.schedule(self)
                        if body is None:
                            return wire
                        self.transport.send_file(wire, body)
                        return None
                elif wires is not None and (wire := wires[CLOSE]) is not None:
                    # A client that asked to close (Kegel's test 1): the same, then close.
                    policy.requests += 1
                    if policy.observe:
                        policy.account(self, req, resp)
                    self.send_closing(wire)
                    return None
                out: list[bytes | FileRegion] = []
                self._answer(req, out, resp)
                self._send(out)
            else:
                out = []
                self._answer(req, out)
                self._send(out)
            return None
        self.receive_data(data)
        self._process()
        return None

    def _received_late(self, data: bytes) -> None:
        """Bytes that came while we were not asking for any: a read already under way
        when reading was paused (writing, a job in the pool), or lingering."""
        if self.state >= LINGERING:
            return  # lingering: read and discarded; closing: nobody will answer
        self.receive_data(data)
        if len(self._buf) >= self.policy.max_buffer_bytes:
            self.transport.pause_reading()

    def eof_received(self) -> None:
        if self.state >= LINGERING:
            self.transport.close()  # the client is done: lingering is over
            return
        self.receive_data(b"")
        if self.state != WRITING and self.job is None:
            self._process()  # else seen once the output is out (_sent_all)

    def pause_writing(self) -> None:
        if self.pacer is not None:
            self.pacer.blocked = True
        self._writing()

    def _writing(self) -> None:
        """Output waits (in the transport, or in the pacer): stop reading, start the send
        deadline."""
        if self.state >= WRITING:
            return
        now = self.loop.now
        self.state = WRITING
        timeout = self.policy.send_timeout
        early = timeout > SEND_QUEUE_CHECK
        pending = self.transport.pending_bytes()
        self.wprogress = [now, pending, 0, 0, early]
        self.transport.pause_reading()
        self.deadline = now + (SEND_QUEUE_CHECK if early else timeout)
        self.loop.deadlines.schedule(self)
        if self.send_queue < MAX_SEND_QUEUE and pending > SEND_GROW_WRITE * self.send_queue:
            later = self.loop.call_later
            if later is not None:  # (the threads mode has no timers)
                later(SEND_GROW_CHECK, self._grow_send_queue)

    def _grow_send_queue(self) -> None:
        """Early in a big blocked write: a fast client's socket may hold more."""
        if self.state == WRITING and self.transport is not None:
            self._fit_send_queue(grow_only=True)

    def resume_writing(self) -> None:
        pacer = self.pacer
        if pacer is not None:
            pacer.blocked = False
            if pacer.held:
                return  # the pacer's timer carries on
        if self.state != WRITING:
            return
        if self.send_queue < MAX_SEND_QUEUE:
            self._fit_send_queue(grow_only=True)
        self._written()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self.deadline = None
        self.loop.deadlines.discard(self)  # nothing may keep a closed one alive
        self._buf = b""
        if self.pacer is not None:
            self.pacer.release()
        self.policy.connection_closed(self)

    def on_deadline(self) -> None:
        """A deadline passed: header, keep-alive idle, send progress or lingering."""
        policy = self.policy
        transport = self.transport
        state = self.state
        job = self.job
        if job is not None and job is not YIELDED:
            log.warning("request for %r still in the disk pool after the send timeout", job.target)
            reset = False
        elif state == READING:
            # RFC 9110 section 15.5.9: 408 for a request the client did not finish in time.
            policy.timeouts += 1
            self._close_with(self._engine(policy.error(408), None))
            return
        elif state == WRITING:
            if self.wprogress[4]:  # type: ignore[index]
                self._fit_send_queue()
                return
            if self._reading_on_pace():
                return
            policy.timeouts += 1
            log.info("client reads below --min-send-rate or stopped reading; resetting")
            reset = True
        else:
            policy.timeouts += state == IDLE
            reset = state == CLOSING  # a closing answer the client would not take
        transport.abort(reset)

    def _fit_send_queue(self, grow_only: bool = False) -> None:
        """Give the socket about a second of what the client reads (module doc: a
        client's kernel memory): at the first check of a blocked write, or, with
        ``grow_only``, early in a big one or at the end of one, only ever more."""
        w = self.wprogress
        assert w is not None
        now = self.loop.now
        transport = self.transport
        if grow_only or transport.unacked_bytes():  # the client sets the pace, not our disk
            acked = w[1] - transport.pending_bytes()
            want = send_queue_for(acked / max(now - w[0], 1e-3))
            have = self.send_queue
            # More only for more than a window's worth: a client that reads nothing still
            # takes its receive window at once, which over 50 ms looks fast.
            if (want > have and acked >= 2 * have) or (want < have and not grow_only):
                transport.set_send_lowat(want)
                self.send_queue = want
        if grow_only:
            return
        w[4] = False
        self.deadline = w[0] + self.policy.send_timeout
        self.loop.deadlines.schedule(self)

    def _reading_on_pace(self) -> bool:
        """At a send deadline: did the client take something since the last check and
        keep the average rate? If so, the next check is a send_timeout away."""
        w = self.wprogress
        assert w is not None
        policy = self.policy
        now = self.loop.now
        transport = self.transport
        pending = transport.pending_bytes()
        acked = w[1] - pending
        if acked <= w[2] or acked < policy.min_send_rate * (now - w[0]):
            ours = not transport.unacked_bytes()
            if not ours and not w[3]:
                return False
            # The client took every byte the kernel had (or did at the last check): the
            # wait was ours, a cold file chunk in the disk pool, never charged to it. Its
            # rate counts from here, and bytes that came just before this check get one
            # whole send_timeout.
            w[0], w[1], w[3], acked = now, pending, ours, 0
        else:
            w[3] = 0
        w[2] = acked
        self.deadline = now + policy.send_timeout
        self.loop.deadlines.schedule(self)
        return True

    # -- requests ----------------------------------------------------------------------
    def _process(self) -> None:
        """Answer every complete request in the buffer, in order (pipelining)."""
        if self.job is not None:  # pipelined requests wait for the one in the pool
            return
        out: list[bytes | FileRegion] = []
        pending = 0
        policy = self.policy
        limit = policy.max_pending_output_bytes
        answered = 0
        cap = policy.max_pipelined
        while True:
            try:
                event = self.next_event()
            except RemoteProtocolError as exc:
                resp = self._engine(policy.error(exc.error_status_hint), None)
                if policy.observe:
                    policy.account(self, None, resp)
                policy.requests += 1
                self.append(out, resp, CLOSE, False)
                self.will_close = True
                break
            if event is NEED_DATA:
                if self._buf:
                    if self.state == IDLE:
                        # The first bytes of a head: the header timeout runs from now (a
                        # keep-alive connection was on the longer idle timeout), and more
                        # bytes do not extend it (slowloris trickle).
                        deadline = self.loop.now + policy.header_timeout
                        if self.deadline is None or deadline < self.deadline:
                            self.deadline = deadline
                            self.loop.deadlines.schedule(self)
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
                self.transport.pause_reading()
                self.loop.call_soon(self._resume)
                break
        self._send(out)

    def _answer(
        self, req: Request, out: list[bytes | FileRegion], resp: Response | None = None
    ) -> int:
        """Put the response to ``req`` (or ``resp``, already made) on ``out``; return its
        size in bytes, or -1 if it went to the disk I/O pool."""
        policy = self.policy
        method = req.method
        if resp is not None:
            pass
        elif policy.shed_level >= 2:
            # Overload tier 2: a clear 503 + Retry-After instead of the work.
            resp = self._engine(policy.overload_response(), req)
            policy.tiers.shed_503 += 1
        elif (
            policy.limiter is not None
            and (resp := policy.limiter.check(self, req, self.loop.now)) is not None
        ):
            resp = self._engine(resp, req)  # per-client limits: 503 (closing) or 429
        elif method == b"GET" or method == b"HEAD":
            try:
                resp = self.handle_fast(req, self.loop.now)
            except Exception:
                log.exception("handler failed for %r", req.target)
                resp = self._engine(policy.error(500), req)
            if resp is None:
                self._offload(req)
                return -1
        else:
            resp = self._engine(policy.method_response(method_status(method)), req)
        keep = req.keep_alive and not resp.close and not req.has_body
        if keep and policy.degraded and policy.shed_keepalive():
            keep = False
        if keep:
            kind = KEEP_11 if req.minor else KEEP_10
        else:
            kind = CLOSE
            self.will_close = True
        if policy.observe:
            policy.account(self, req, resp)
        policy.requests += 1
        if resp.pace is not None or self.pacer is not None:
            self._mark(out, resp)
        return self.append(out, resp, kind, method == b"HEAD")

    def _engine(self, resp: Response, req: Request | None) -> Response:
        """One of the engine's own answers with the operator's page (--error-page)."""
        paged = self.policy.paged
        return resp if paged is None else paged(resp, req, self.loop)

    def _mark(self, out: list[Any], resp: Response) -> None:
        """A response with its own rate (per site or path, c10k.server.sites), or any
        response once the connection paces: its Pace goes first, as the pacer's mark."""
        if self.pacer is None:
            self.pacer = Pacer(0, 0)
        out.append(resp.pace if resp.pace is not None else self.policy.pace)

    # -- the disk I/O pool and yielding ----------------------------------------------------
    def _offload(self, req: Request) -> None:
        """Hand ``req`` to the pool and stop reading until ``job_done``."""
        self.job = req
        self.transport.pause_reading()
        self.policy.offload(self, req)

    def job_done(self, req: Request, resp: Response) -> None:
        """The pool answered ``req`` (on the loop's thread): send it, then carry on with
        pipelined requests."""
        if self.state >= CLOSING or self.job is not req:  # timed out or reset meanwhile
            release_body(resp)
            return
        self.job = None
        if self.state != WRITING:
            # Before the answer goes out (one change of interest, not two, on a
            # level-triggered backend when the write completes at once).
            self.transport.resume_reading()
        out: list[bytes | FileRegion] = []
        self._answer(req, out, resp)
        self._send(out)

    def _resume(self) -> None:
        """Carry on with pipelined requests after yielding the loop (``max_pipelined``)."""
        if self.job is not YIELDED or self.state >= LINGERING:
            return
        self.job = None
        if self.state != WRITING:  # else resume_writing carries on
            self._process()

    # -- writing -------------------------------------------------------------------------
    def _send(self, out: list[bytes | FileRegion]) -> None:
        if not out:
            if self.will_close:
                self._finish()
            elif self.job is None:
                self.transport.resume_reading()
            return
        if self.pacer is not None:
            out = self._paced(out)
        if self.state == WRITING:
            w = self.wprogress
            assert w is not None
            w[1] += sum(len(item) for item in out)
        if out:
            self.transport.writelines(out)
        if self.state < WRITING:
            self._sent_all()

    def _paced(self, out: list[bytes | FileRegion]) -> list[bytes | FileRegion]:
        """What of ``out`` may go now under --limit-rate; the pacer holds the rest, and
        the connection is WRITING until its timer has handed everything over."""
        pacer = self.pacer
        assert pacer is not None
        was_held = bool(pacer.held)
        now = self.loop.now
        ready = pacer.take(out, now)
        if pacer.held and not was_held:
            self._writing()
            self.loop.call_later(pacer.due(now), self._pace)
        return ready  # type: ignore[return-value]

    def _pace(self) -> None:
        """The pacer's timer: hand over what the rate allows now, then wait again, or
        carry on as after any write once the pacer and the transport are empty."""
        pacer = self.pacer
        assert pacer is not None
        if self.state == CLOSED:
            return
        now = self.loop.now
        ready = pacer.next(now)
        if ready:
            w = self.wprogress
            assert w is not None
            w[1] += sum(len(item) for item in ready)
            self.transport.writelines(ready)
        if pacer.held:
            self.loop.call_later(pacer.due(now), self._pace)
        elif not pacer.blocked and self.state == WRITING:
            self._written()

    def _written(self) -> None:
        """A blocked write is over. Its send deadline goes with it: a pipelined head
        read next must get a header timeout from now, not a send check already past
        (which, read as a header timeout, answered 408 mid-pipeline)."""
        self.state = IDLE
        self.wprogress = None
        self.deadline = None
        self._sent_all()

    def _sent_all(self) -> None:
        """Everything written is in the kernel: close, answer what waited, or wait for
        the next request."""
        policy = self.policy
        job = self.job
        if job is not None:
            if job is not YIELDED:  # the next response is in the pool: wait for the disk
                self.deadline = self.loop.now + policy.send_timeout
                self.loop.deadlines.schedule(self)
            return
        if self.will_close or (policy.draining and not self._buf):
            # Draining (graceful stop): a response begun before the signal went out with
            # keep-alive; close now that it is complete.
            self._finish()
            return
        if (self._buf or self._eof) and not self._paused:
            # Pipelined requests that waited while we wrote (or past the output cap), or
            # the client's EOF after its last request: answer or close now.
            self._process()
            return
        deadline = self.loop.now + (
            policy.header_timeout if self._buf else policy.keepalive_timeout
        )
        self.deadline = deadline
        if self.deadline_key is None or deadline < self.deadline_key:
            self.loop.deadlines.schedule(self)
        self.transport.resume_reading()

    # -- closing -------------------------------------------------------------------------
    def send_closing(self, wire: bytes | memoryview) -> None:
        """Send the rest of a closing response's memoized ``wire`` and close after it (the
        request is counted already). Also how a mode goes on with ``answer_at_accept``'s
        wire when the socket did not take it all."""
        self.will_close = True
        self.transport.write(wire)
        if self.state < WRITING:
            self._finish()

    def _finish(self) -> None:
        """The last response is out: close, lingering if the client may still send."""
        transport = self.transport
        # After the client's EOF every byte it sent has been read (FIN comes last), so
        # closing cannot turn unread data into an RST: no lingering needed.
        if not self._eof and (self._buf or self._paused):
            self.state = LINGERING
            self._buf = b""
            self.deadline = self.loop.now + self.policy.linger_timeout
            self.loop.deadlines.schedule(self)
            transport.write_eof()
            transport.resume_reading()
            return
        self.state = CLOSING
        transport.close()

    def _close_with(self, resp: Response) -> None:
        """Send a closing error response (408) and close, under the send deadline."""
        out: list[bytes | FileRegion] = []
        policy = self.policy
        if policy.observe:
            policy.account(self, None, resp)
        policy.requests += 1
        self.append(out, resp, CLOSE, False)
        self.state = CLOSING
        self.deadline = self.loop.now + policy.send_timeout
        self.loop.deadlines.schedule(self)
        self.transport.writelines(out)
        self.transport.close()

    def close_if_idle(self) -> None:
        """Draining: close a connection that waits for its next request."""
        if self.state == IDLE and not self._buf and self.job is None:
            self.state = CLOSING
            self.transport.close()
