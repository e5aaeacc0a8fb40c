"""Server: a Loop, a listener, the connections, and the policy that ties them together.

This is the only module that knows the event core, the HTTP layer and the static handler
at once. It owns:
- the connection cap: derived from RLIMIT_NOFILE (raised to the hard limit at start) minus
  ``FD_RESERVE``, and from the backend's own fd limit (select: FD_SETSIZE). At the cap the
  listener is paused, so excess clients wait in the kernel's backlog instead of being
  accepted and dropped; it resumes when a connection closes;
- the ``Date`` line, rendered at most once per second, and the per-response wire memo
  (status line + headers + Date + Connection + body as one bytes object), cleared when the
  Date changes, so a cached file costs one dict lookup to put on the wire;
- pre-rendered error responses for protocol errors and unsupported methods;
- clean stop on SIGINT/SIGTERM: stop accepting, close every connection, return.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from c10k.core.backend import READ, WRITE, Capability
from c10k.core.fdio import accept_wait_ms
from c10k.core.listener import Acceptor, accept_queue, bind_socket, drop_syns, set_backlog
from c10k.core.loop import Loop
from c10k.core.timers import TimerHandle
from c10k.http.connection import Limits
from c10k.http.events import Request
from c10k.http.writers import Response, body_length, build_response, error_response, http_date
from c10k.server.accesslog import AccessLog
from c10k.server.config import ServerConfig
from c10k.server.protocol import IDLE, LINGERING, READING, WRITING, Connection
from c10k.static import StaticFiles

log = logging.getLogger("c10k.server")

# fds kept free for things other than client sockets: listeners, the wakeup pair, epoll,
# files opened for sendfile, logs. nginx leaves this to the admin (worker_connections vs
# worker_rlimit_nofile); we keep a fixed margin and say so at start.
FD_RESERVE = 64
# A graceful stop closes idle connections after this grace, not at once: a connection
# accepted a moment before the signal is idle until its first request arrives, and a
# client does not retry a request on a fresh connection that closes under it (it does on
# a reused keep-alive one, RFC 9112 section 9.3.1). A request arriving within the grace is
# answered with Connection: close. Found by tests/server/test_server_workers.py (reload
# under load: about one reset per four reloads without it).
DRAIN_IDLE_GRACE = 0.25
# Overload: the pressure check's period, and how many fds a wait must return (smoothed)
# before loop lag counts as overload rather than a descheduled process or a GC pause.
PRESSURE_INTERVAL = 0.1
SHED_MIN_READY = 16.0
SHED_MIN_BUSY = 0.8
# The accept queue under overload (see ``_accept_queues``): the smallest backlog we shrink
# a listener to (a queue shorter than half of it is never called standing), and by how
# much smaller a new size must be than the one in force to be set.
MIN_BACKLOG = 64
BACKLOG_HYSTERESIS = 0.2
# Admission by SYN drop (see ``_admission``): the queue we aim at holds this share of
# --max-accept-wait's worth of accepts (at least MIN_QUEUE); a gap to it is closed over
# ADMIT_HORIZON seconds; at most MAX_DROP of the SYNs are dropped (beyond that the backlog
# bound takes over).
QUEUE_SHARE = 0.1
MIN_QUEUE = 16
ADMIT_HORIZON = 0.5
MAX_DROP = 0.98
# While the accept queue is guarded, each new connection's wait is read (TCP_INFO, ~4 us,
# 5 % of a request's cost). After this many fresh ones in a row only one in
# ``STALE_SAMPLE`` is read, until a stale one turns up: with the queue bounded, only a
# handshake the full queue delayed can be stale, and with tcp_abort_on_overflow=1 there
# are none.
FRESH_RUN = 32
STALE_SAMPLE = 8
GAUGES = frozenset(
    (
        "active",
        "reading",
        "writing",
        "waiting",
        "shed_level",
        "backlog",
        "syn_drop_percent",
        "uptime_seconds",
    )
)


class AcceptQueue:
    """What the overload policy knows of one listener's accept queue (``_accept_queues``)."""

    __slots__ = ("accepted", "backlog", "can_drop", "drop", "qlen")

    def __init__(self, backlog: int) -> None:
        self.backlog = backlog  # the listen(2) backlog in force
        self.accepted = 0  # accepts counted at the last check
        self.qlen = 0  # queue length at the last check
        self.drop = 0.0  # share of SYNs the listener's filter drops
        self.can_drop = True  # False once the kernel refused the filter


def static_files(config: ServerConfig) -> StaticFiles:
    """The default handler, configured from ``config`` (every server mode uses this)."""
    return StaticFiles(
        config.root,
        index=config.index,
        serve_dotfiles=config.serve_dotfiles,
        cache_max_file_bytes=config.cache_max_file_bytes,
        cache_max_total_bytes=config.cache_max_total_bytes,
        revalidate_seconds=config.revalidate_seconds,
        autoindex=config.autoindex,
        precompressed=config.precompressed,
        cache_control=config.cache_control,
        cache_control_default=config.cache_control_default,
        charset=config.charset,
    )


def handlers(
    config: ServerConfig, handler: Callable[[Request, float], Response] | None
) -> tuple[Callable[[Request, float], Response], Callable[[Request, float], Response | None]]:
    """(handler, handler_fast) for a server: the default StaticFiles answers from memory
    on the loop (handle_fast, None when it needs the filesystem) and runs ``handle`` in
    the disk I/O pool; a custom handler is trusted not to block and is both."""
    if handler is None:
        files = static_files(config)
        return files.handle, files.handle_fast
    return handler, handler


def listening_sockets(
    config: ServerConfig, sock: socket.socket | list[socket.socket] | None
) -> list[socket.socket]:
    """The sockets a server was given, or one bound from ``config.host``/``config.port``."""
    if sock is None:
        sock = bind_socket(
            config.host, config.port, backlog=config.backlog, reuse_port=config.reuse_port
        )
    return sock if isinstance(sock, list) else [sock]


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return (soft, hard) in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise RLIMIT_NOFILE from %d to %d: %s", soft, hard, exc)
    return soft, hard


class Server:
    """An HTTP/1.1 static file server on one event loop.

    Args:
        config: the settings; ``config.port`` 0 picks a free port (see ``address``).
        handler: ``handler(request, now) -> Response``; defaults to StaticFiles(config.root).
        sock: an already-bound listening socket (or a list of them, all served) to use
            instead of binding one from ``config.host``/``config.port``.
    """

    def __init__(
        self,
        config: ServerConfig,
        handler: Callable[[Request, float], Response] | None = None,
        sock: socket.socket | list[socket.socket] | None = None,
    ) -> None:
        self.config = config
        self.handler, self.handler_fast = handlers(config, handler)  # see offload
        self.pool: ThreadPoolExecutor | None = None
        self.offloaded = 0
        # Counters (nginx stub_status names) and the access log; per-response accounting
        # runs only when something reads it (``observe``).
        self.started = time.time()
        self.handled = 0
        self.bytes_sent = 0
        self.status_counts: dict[int, int] = {}
        self.shed_level = 0
        self.busy = 0.0  # share of a core this process used over the last interval
        self._pressure_wall = time.monotonic()
        self._pressure_cpu = time.process_time()
        self.shed_keepalive = 0
        self.shed_503 = 0
        self.shed_accepts = 0
        self.shed_stale = 0
        # _on_accept looks at each new connection (tier 3, or a standing accept queue whose
        # oldest entries may have waited longer than --max-accept-wait).
        self.accept_guard = False
        self.max_accept_wait_ms = int(config.max_accept_wait * 1e3)
        self._fresh = 0  # connections found fresh in a row (see FRESH_RUN)
        self.degraded = False  # draining or shedding: new responses close their connection
        self.access_log = (
            AccessLog(config.access_log, config.log_format) if config.access_log else None
        )
        self.observe = self.access_log is not None or config.status_path is not None
        self._status_cache: tuple[float, bytes, Response] | None = None
        if config.status_path:
            self.handler_fast = self._with_status(self.handler_fast, config.status_path)
        self.limits = Limits(config.max_header_bytes, config.max_fields)
        self.nofile_soft, self.nofile_hard = raise_nofile_limit()
        self.loop = Loop(config.backend)
        self.edge = self.loop.edge
        self.capacity, self.capacity_reason = self._capacity()
        self.socks = listening_sockets(config, sock)
        self.sock = self.socks[0]
        # exclusive: a listener shared by several workers (Unix sockets; TCP without
        # SO_REUSEPORT) wakes one of them per connection; with one waiter it changes nothing.
        self.acceptors = [
            Acceptor(
                self.loop,
                s,
                self._on_accept,
                raw_fds=True,
                exclusive=True,
                on_backlog=self._backlog_alert if config.max_accept_wait > 0 else None,
            )
            for s in self.socks
        ]
        self.accepting_paused = False
        self._pressure_timer: TimerHandle | None = None
        self._queues = [AcceptQueue(config.backlog) for _ in self.acceptors]
        if config.max_accept_wait > 0:
            # A listener kept by the supervisor across a worker's restart may still carry
            # the dead worker's SYN filter or shrunk backlog.
            for s in self.socks:
                if accept_queue(s) is not None:
                    set_backlog(s, config.backlog)
                    drop_syns(s, 0)
        # Open connections are counted, not kept in a set of our own: the loop's fd ->
        # callback map already holds each one (``connections`` walks it), which saves a
        # set entry (~40 bytes) per connection at C1M scale.
        self.nconn = 0
        self.draining = False
        self.requests = 0
        self.timeouts = 0
        self.wire_memo: dict[Response, list[bytes | None]] = {}
        # Hoisted for the hot path in protocol.py (both dicts keep their identity: they
        # are only ever cleared, never replaced).
        self.wire_memo_get = self.wire_memo.get
        self.head_memo_get = self.limits.head_memo.get
        self.keepalive_timeout = config.keepalive_timeout
        self.date_line = b""
        self._date_expires = 0.0
        self._update_date()
        self._errors: dict[int, Response] = {}

    # -- public --------------------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        name = self.sock.getsockname()
        if isinstance(name, str):  # a Unix-domain socket: (path, 0)
            return name, 0
        host, port = name[:2]
        return host, port

    @property
    def backend_name(self) -> str:
        return self.loop.backend.name

    @property
    def url(self) -> str:
        host, port = self.address
        if self.sock.family == socket.AF_UNIX:
            return f"http+unix://{host}:/"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    def serve_forever(self, install_signals: bool = True) -> None:
        """Accept and serve until SIGINT/SIGTERM or ``stop()``; then close everything."""
        if install_signals:
            self.install_signal_handlers()
        for acceptor in self.acceptors:
            acceptor.start()
        self.loop.call_later(1.0, self._tick)
        self._pressure_timer = self.loop.call_later(PRESSURE_INTERVAL, self._pressure)
        try:
            self.loop.run()
        finally:
            self.close()

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM drain the server gracefully (a second one stops it at once). Call
        before announcing readiness, so a signal sent right after the announcement cannot
        hit the default action."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self._on_signal)

    def stop(self) -> None:
        """Thread-safe: make ``serve_forever`` return (open connections are closed)."""
        self.loop.stop()

    def shutdown(self, timeout: float | None = None) -> None:
        """Graceful stop (loop thread only; see ``shutdown_threadsafe``): stop accepting,
        close idle keep-alive connections, let in-flight requests finish (their responses
        say ``Connection: close``), and make ``serve_forever`` return when the last
        connection has closed or after ``timeout`` (default ``config.shutdown_timeout``),
        whichever comes first. nginx's graceful shutdown (SIGQUIT) does the same."""
        if self.draining:
            return
        self.draining = True
        self.degraded = True
        for acceptor, q in zip(self.acceptors, self._queues, strict=True):
            if q.drop > 0:  # the socket lives on in the supervisor, for the next worker
                drop_syns(acceptor.sock, 0)
                q.drop = 0.0
            acceptor.close()
        limit = self.config.shutdown_timeout if timeout is None else timeout
        self.loop.call_later(min(DRAIN_IDLE_GRACE, limit), self._close_idle)
        self.loop.call_later(limit, self.loop.stop)
        if not self.nconn:
            self.loop.stop()

    def _close_idle(self) -> None:
        for conn in list(self.connections):
            if conn.state == IDLE and conn.out is None and not conn._buf and conn.job is None:
                conn._force_close()

    def shutdown_threadsafe(self, timeout: float | None = None) -> None:
        self.loop.call_soon_threadsafe(self.shutdown, timeout)

    def offload(self, conn: Connection, req: Request) -> None:
        """Answer ``req`` in the disk I/O pool (open/stat/read of a file not in memory), so
        a slow disk stalls only this request, never the loop (the page's AMPED note; nginx
        ``aio threads``). The result comes back through the loop's wakeup fd
        (``call_soon_threadsafe``) to ``conn._job_done``."""
        self.offloaded += 1
        handler = self.handler
        now = self.loop.now
        done = conn._job_done
        if self.config.io_threads == 0:  # no pool: block the loop (measurement baseline)
            done(req, self._run_handler(handler, req, now))
            return
        pool = self.pool
        if pool is None:  # started lazily: workers fork before any thread exists
            pool = self.pool = ThreadPoolExecutor(
                self.config.io_threads, thread_name_prefix="c10k-io"
            )
        post = self.loop.call_soon_threadsafe
        run = self._run_handler

        def job() -> None:
            post(done, req, run(handler, req, now))

        pool.submit(job)

    def _run_handler(
        self, handler: Callable[[Request, float], Response], req: Request, now: float
    ) -> Response:
        try:
            return handler(req, now)
        except Exception:
            log.exception("handler failed for %r", req.target)
            return self.protocol_error_response(500)

    def close(self) -> None:
        if self.access_log is not None:
            self.access_log.close()
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
        for acceptor in self.acceptors:
            acceptor.close()
        for conn in list(self.connections):
            conn._force_close()
        self.loop.close()

    # -- policy --------------------------------------------------------------------------
    def _capacity(self) -> tuple[int, str]:
        cap = self.nofile_soft - FD_RESERVE
        reason = f"RLIMIT_NOFILE {self.nofile_soft} minus {FD_RESERVE} reserved fds"
        backend = self.loop.backend
        if backend.capabilities & Capability.FD_LIMIT and backend.max_fd is not None:
            fd_cap = backend.max_fd - FD_RESERVE
            if fd_cap < cap:
                cap = fd_cap
                reason = (
                    f"the {backend.name} backend cannot watch fds >= {backend.max_fd} "
                    f"(FD_SETSIZE) minus {FD_RESERVE} reserved; use --backend epoll for more"
                )
        if self.config.max_connections is not None and self.config.max_connections < cap:
            cap = self.config.max_connections
            reason = "--max-connections"
        return max(cap, 1), reason

    def _on_accept(self, fd: int, addr: object) -> None:
        if self.accept_guard and not self._admit(fd):
            return
        self.handled += 1
        conn = Connection(self, fd)
        if self.observe:  # a str per connection only when something logs it
            conn.peer = addr[0] if isinstance(addr, tuple) else "unix"
        events = (READ | WRITE) if self.edge else READ  # ET: both once, never modified
        try:
            self.loop.add_fd(fd, events, conn._ready)
        except (OSError, ValueError) as exc:
            # e.g. select with an fd >= FD_SETSIZE when files held open pushed the socket
            # past the reserve: refuse this one client, leak nothing.
            log.warning("cannot watch a new connection (fd %d): %s", fd, exc)
            conn.deadline = None
            self.loop.deadlines.discard(conn)
            os.close(fd)
            return
        self.nconn += 1
        # Data that arrived before registration is reported too: epoll_ctl(ADD) checks
        # readiness at once, also for EPOLLET.
        if self.nconn >= self.capacity:
            self.accepting_paused = True
            for acceptor in self.acceptors:
                acceptor.pause()

    def _admit(self, fd: int) -> bool:
        """Under overload only: False (and ``fd`` closed) for a connection to refuse."""
        if self.shed_level >= 3:
            # Overload tier 3: refuse at once (cheapest: no object, no registration); the
            # client sees the connection close and may retry elsewhere or later.
            self.shed_accepts += 1
            os.close(fd)
            return False
        fresh = self._fresh
        if fresh >= FRESH_RUN:
            self._fresh = fresh + 1
            if fresh % STALE_SAMPLE:
                return True  # sampled: see FRESH_RUN
        age = accept_wait_ms(fd)
        if age is None or age <= self.max_accept_wait_ms:
            if fresh < FRESH_RUN:
                self._fresh = fresh + 1
            return True
        # Its client has waited longer than --max-accept-wait (in the accept queue, or for
        # a handshake whose ACK the full queue dropped): it has likely given up, and
        # serving it in turn would make every client behind it wait as long (a FIFO queue
        # under overload serves only the stale). Closing with the request unread sends
        # RST: the client learns at once.
        self._fresh = 0
        self.shed_stale += 1
        os.close(fd)
        return False

    def _accept_queues(self, span: float) -> bool:
        """Keep the kernel's accept queues short enough to be worth waiting in; True while
        one is guarded (admission or a shrunk backlog in force).

        Under a flood of new connections the queue is not in this loop (its lag stays
        low) but in the kernel: a listen backlog of 4096 at 2,000 accepts a second is a
        2-second wait, longer than clients wait, so the server would serve only clients
        that have left (docs/BENCHMARKS.md, Overload: 14-49 % of the peak at 3x). Two
        bounds, per listener, from its queue length (TCP_INFO) and the accept rate since
        the last check:

        - Admission (``_admission``): while the queue stands above a tenth of
          --max-accept-wait's worth of accepts, a share of the SYNs is dropped at random
          by a socket filter, so that about as many connections join the queue as leave
          it. The queue then never fills, and a full queue is what hurts most: Linux
          drops the handshake's last ACK there, and that client, connected as far as it
          knows, waits seconds for a retransmission to find room (then it is stale, and
          reset at accept: work for nothing). A dropped SYN costs this process nothing;
          the client retries in a second.
        - The backlog, where the filter is not available or not enough: while the queue
          holds more than half of --max-accept-wait's worth of accepts, the backlog is
          set (listen(2) again) to that many, so the kernel drops the excess SYNs itself;
          while it stays at least half full the size follows the accept rate up; once
          the queue is short it doubles back toward --backlog.

        Connections that still waited longer than --max-accept-wait are reset at accept
        (``_admit``).
        """
        wait = self.config.max_accept_wait
        standing = False  # (or still growing back: the caller keeps checking often)
        for acceptor, q in zip(self.acceptors, self._queues, strict=True):
            accepted = acceptor.accepted - q.accepted
            q.accepted = acceptor.accepted
            rate = accepted / span if span > 0 else 0.0
            info = accept_queue(acceptor.sock)
            if info is None:
                continue
            qlen, limit = info
            if q.can_drop:
                standing = self._admission(acceptor.sock, q, info, accepted, rate, span) or standing
            q.qlen = qlen
            size = q.backlog
            fit = max(MIN_BACKLOG, min(self.config.backlog, int(rate * wait / 2)))
            if qlen > max(rate * wait / 2, MIN_BACKLOG / 2):
                standing = True  # holds more than the bound: shrink to what drains in it
                size = fit
            elif qlen * 2 >= limit:
                size = max(q.backlog, fit)  # still full at a size set from a lower rate: follow it
            elif qlen * 4 < limit:
                size = min(self.config.backlog, max(q.backlog * 2, MIN_BACKLOG))
            if size > q.backlog or q.backlog - size > q.backlog * BACKLOG_HYSTERESIS:
                try:
                    set_backlog(acceptor.sock, size)
                except OSError as exc:
                    log.warning("cannot resize the accept queue: %s", exc)
                else:
                    if size < q.backlog:
                        log.warning(
                            "accept queue: %d waiting at %.0f accepts/s; backlog %d -> %d",
                            qlen,
                            rate,
                            q.backlog,
                            size,
                        )
                    q.backlog = size
            standing = standing or q.backlog < self.config.backlog
        return standing

    def _admission(
        self,
        sock: socket.socket,
        q: AcceptQueue,
        info: tuple[int, int],
        accepted: int,
        rate: float,
        span: float,
    ) -> bool:
        """Set the share of SYNs ``sock``'s filter drops so that the queue settles at its
        target (see ``_accept_queues``); True while dropping."""
        qlen, limit = info
        target = max(MIN_QUEUE, rate * self.config.max_accept_wait * QUEUE_SHARE)
        if q.drop <= 0 and (qlen <= target or q.qlen <= target):
            return False  # not standing (a queue above target at two checks in a row)
        # Connections that joined the queue since the last check, and so the SYNs that
        # came (what passed is 1 - drop of them): the offered rate, retries included.
        joined = max(0, accepted + qlen - q.qlen)
        offered = joined / (1 - q.drop)
        # As many should join as leave, plus (or minus) the gap to the target, closed
        # over ADMIT_HORIZON seconds.
        want = accepted + (target - qlen) * min(1.0, span / ADMIT_HORIZON)
        drop = q.drop / 2 if offered <= 0 else min(MAX_DROP, max(0.0, 1 - want / offered))
        if qlen >= limit:
            # Full (at the connection cap, or the backlog shrunk): nothing could join, so
            # what was offered is unknown, and a full queue is what admission avoids.
            drop = MAX_DROP
        elif drop < 0.01 and qlen <= target:
            drop = 0.0
        # Set again at every check while dropping, not only on a change: during a reload
        # the draining worker on the same socket removes its filter (``shutdown``).
        if drop != q.drop or drop > 0:
            if not drop_syns(sock, drop):
                q.can_drop = False
                if q.drop > 0:
                    drop_syns(sock, 0)  # (best effort: an older share may still be set)
                q.drop = 0.0
                return False
            if q.drop == 0:
                log.warning(
                    "accept queue: %d waiting at %.0f accepts/s; dropping %.0f %% of new SYNs",
                    qlen,
                    rate,
                    drop * 100,
                )
            q.drop = drop
        return drop > 0

    @property
    def connections(self) -> list[Connection]:
        """The open connections (a snapshot; O(n): for stop, drain and the status page)."""
        out = []
        for cb in self.loop.callbacks():
            conn = getattr(cb, "__self__", None)
            if isinstance(conn, Connection):
                out.append(conn)
        return out

    def connection_closed(self, conn: Connection) -> None:
        self.nconn -= 1
        if self.draining:
            if not self.nconn:
                self.loop.stop()
        elif self.accepting_paused and self.nconn < self.capacity:
            self.accepting_paused = False
            for acceptor in self.acceptors:
                acceptor.resume()

    def protocol_error_response(self, status: int) -> Response:
        resp = self._errors.get(status)
        if resp is None:
            resp = self._errors[status] = error_response(status, close=True)
        return resp

    def method_response(self, status: int) -> Response:
        """405 (with Allow) or 501 for a method we do not serve."""
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
        # Monotonic time at which the wall-clock second changes.
        self._date_expires = self.loop.now + (1.0 - (now % 1.0))

    def _tick(self) -> None:
        # Once per second (and at most once per second) re-render Date; the wire memo is
        # keyed to it.
        self._update_date()
        self.loop.call_at(self._date_expires, self._tick)

    def _pressure(self) -> None:
        """Every 100 ms: the overload tier from the loop's smoothed pressure, and the
        access log's batch handed to its writer thread.

        Tiers (Envoy's overload manager, in the order it sheds): 1 new responses close
        their connection (no keep-alive), 2 new requests get 503 + Retry-After, 3 new
        connections are closed at accept. The measure is the loop lag (how long a turn's
        callbacks ran: what a newly ready client waits), and it only counts when the waits
        return many fds at once (``SHED_MIN_READY``) and this process used most of a core
        over the last interval (``SHED_MIN_BUSY``): a GC pause with few clients, or a
        process descheduled because others share its cores (53 workers on 2 cores while
        a million connections ramp up), is not overload of *this* loop.
        """
        loop = self.loop
        config = self.config
        wall = time.monotonic()
        cpu = time.process_time()
        span = wall - self._pressure_wall
        self.busy = (cpu - self._pressure_cpu) / span if span > 0 else 0.0
        self._pressure_wall, self._pressure_cpu = wall, cpu
        level = 0
        if loop.load >= SHED_MIN_READY and self.busy >= SHED_MIN_BUSY:
            lag = loop.lag
            if lag > config.shed_accept_lag:
                level = 3
            elif lag > config.shed_503_lag:
                level = 2
            elif lag > config.shed_keepalive_lag:
                level = 1
        if level != self.shed_level:
            log.warning(
                "overload tier %d -> %d (loop lag %.0f ms, %.0f ready per wait)",
                self.shed_level,
                level,
                loop.lag * 1e3,
                loop.load,
            )
            self.shed_level = level
        self.degraded = self.draining or level >= 1
        standing = config.max_accept_wait > 0 and self._accept_queues(span)
        self.accept_guard = level >= 3 or standing
        if self.access_log is not None:
            self.access_log.flush()
        # An idle loop checks once a second, not ten times: at C1M scale 53 idle workers
        # share a core, and every wakeup of one delays the others.
        busy = level or standing or loop.load >= SHED_MIN_READY / 4 or self.access_log is not None
        self._pressure_timer = loop.call_later(PRESSURE_INTERVAL if busy else 1.0, self._pressure)

    def _backlog_alert(self) -> None:
        """An accept batch came back full: check the queues within 100 ms, not at the
        idle loop's next once-a-second check (a flood fills a 4096 backlog in a second,
        and the first check would find it seconds deep)."""
        timer = self._pressure_timer
        if timer is not None and timer.when - self.loop.now > PRESSURE_INTERVAL:
            timer.cancel()
            self._pressure_timer = self.loop.call_later(PRESSURE_INTERVAL, self._pressure)

    # -- accounting, access log, status ---------------------------------------------------
    def account(self, conn: Connection, req: Request | None, resp: Response) -> None:
        """One response decided (only when ``observe``): counters and the access log."""
        size = 0 if req is not None and req.method == b"HEAD" else body_length(resp.body)
        self.bytes_sent += size
        counts = self.status_counts
        counts[resp.status] = counts.get(resp.status, 0) + 1
        if self.access_log is not None:
            if req is None:
                self.access_log.log(conn.peer, b"", b"", 1, None, resp.status, size)
            else:
                self.access_log.log(
                    conn.peer, req.method, req.target, req.minor, req.headers, resp.status, size
                )

    def _with_status(
        self, inner: Callable[[Request, float], Response | None], path: str
    ) -> Callable[[Request, float], Response | None]:
        base = path.encode()
        metrics = base.rstrip(b"/") + b"/metrics"

        def handler_fast(req: Request, now: float) -> Response | None:
            target = req.target.partition(b"?")[0]
            if target == base:
                return self._status_response(now, prometheus=False)
            if target == metrics:
                return self._status_response(now, prometheus=True)
            return inner(req, now)

        return handler_fast

    def status(self) -> dict[str, int]:
        """The counters: nginx stub_status's, plus per-status and shedding ones."""
        states = [0] * 5
        for conn in self.connections:
            states[conn.state] += 1
        return {
            "active": self.nconn,
            "reading": states[READING],
            "writing": states[WRITING] + states[LINGERING],
            "waiting": states[IDLE],
            "accepts": sum(a.accepted for a in self.acceptors),
            "handled": self.handled,
            "requests": self.requests,
            "bytes_sent": self.bytes_sent,
            "timeouts": self.timeouts,
            "offloaded": self.offloaded,
            "shed_level": self.shed_level,
            "shed_503": self.shed_503,
            "shed_accepts": self.shed_accepts,
            "shed_stale": self.shed_stale,
            "backlog": min(q.backlog for q in self._queues),
            "syn_drop_percent": round(max(q.drop for q in self._queues) * 100),
            "access_log_dropped": self.access_log.dropped if self.access_log else 0,
            "uptime_seconds": int(time.time() - self.started),
            "pid": os.getpid(),
        }

    def _status_response(self, now: float, prometheus: bool) -> Response:
        # Rendered at most every 100 ms: a status page polled hard costs little.
        key = b"prom" if prometheus else b"stub"
        cached = self._status_cache
        if cached is not None and cached[1] == key and now - cached[0] < PRESSURE_INTERVAL:
            return cached[2]
        st = self.status()
        if prometheus:
            lines = []
            for name, value in st.items():
                if name == "pid":
                    continue
                kind = "gauge" if name in GAUGES else "counter"
                metric = f"c10k_{name}" + ("" if kind == "gauge" else "_total")
                lines.append(f"# TYPE {metric} {kind}\n{metric} {value}")
            lines.append("# TYPE c10k_responses_total counter")
            for code, count in sorted(self.status_counts.items()):
                lines.append(f'c10k_responses_total{{status="{code}"}} {count}')
            text = "\n".join(lines) + "\n"
            ctype = b"text/plain; version=0.0.4; charset=utf-8"
        else:
            # nginx stub_status layout first (tools parse it), then ours.
            text = (
                f"Active connections: {st['active']}\n"
                f"server accepts handled requests\n"
                f" {st['accepts']} {st['handled']} {st['requests']}\n"
                f"Reading: {st['reading']} Writing: {st['writing']} Waiting: {st['waiting']}\n"
            )
            for name in (
                "bytes_sent",
                "timeouts",
                "offloaded",
                "shed_level",
                "shed_503",
                "shed_accepts",
                "shed_stale",
                "backlog",
                "syn_drop_percent",
                "access_log_dropped",
                "uptime_seconds",
                "pid",
            ):
                text += f"{name}: {st[name]}\n"
            for code, count in sorted(self.status_counts.items()):
                text += f"status_{code}: {count}\n"
            ctype = b"text/plain; charset=utf-8"
        resp = build_response(
            200,
            [(b"Content-Type", ctype), (b"Cache-Control", b"no-store")],
            text.encode(),
        )
        self._status_cache = (now, key, resp)
        return resp

    def overload_response(self) -> Response:
        """Tier 2: 503 with Retry-After, closing (RFC 9110 section 15.6.4)."""
        resp = self._errors.get(-503)
        if resp is None:
            resp = self._errors[-503] = error_response(503, [(b"Retry-After", b"1")], close=True)
        return resp

    def _on_signal(self, signum: int) -> None:
        if self.draining:
            log.info("signal %d again: stopping now", signum)
            self.loop.stop()
            return
        log.info(
            "signal %d: draining %d connections (at most %.0f s; again to stop now)",
            signum,
            len(self.connections),
            self.config.shutdown_timeout,
        )
        self.shutdown()
