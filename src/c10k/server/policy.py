"""Policy: what one server process decides that is not about one connection.

Every server mode makes one Policy and hands it to each connection's Session. It owns:

- the handler: ``handle_fast`` (memory only, on the loop) and ``handle`` (the filesystem,
  in the disk I/O pool: ``offload``), with the status page in front when asked for;
- the wire (``c10k.server.wire.Wire``: Date line, wire memo, error responses);
- the limits a Session reads on every request, hoisted from the config;
- the counters (nginx stub_status's and ours), the access log, the status page;
- the overload tier (``c10k.server.overload``) and accept-queue admission
  (``c10k.server.admission``), from the pressure readings the mode reports every
  ``PRESSURE_INTERVAL`` (``pressure``);
- draining: ``degraded`` makes new responses close their connection;
- the per-client limits (``limiter``, c10k.server.clientlimit): asked by the Session at
  each request (``limiter.check``; the client from ``limit_client``), released when a
  counted connection closes; under a supervisor their table is the supervisor's shared
  one (``share_limits``);
- under a supervisor, its record on the workers' shared board (``share``,
  ``c10k.server.shared``): written at each pressure check, when the status page is
  rendered and when the worker stops (``publish``), and read by the status page, which
  then shows the whole server. No thread: the pressure check is the timer every mode
  already runs.

It is driven from one thread at a time: the loop thread of the readiness, io_uring and
asyncio modes; the thread-per-client mode holds one lock around every call into it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, Protocol

from c10k.core import diskio
from c10k.core.transport import RECV_SIZE
from c10k.http.connection import Limits
from c10k.http.events import Request
from c10k.http.forwarded import client_address, parse_networks
from c10k.http.writers import Response, body_length
from c10k.server.accesslog import AccessLog
from c10k.server.admission import Admission
from c10k.server.clientlimit import ClientLimits, Table, parse_rate, peer_text
from c10k.server.config import ServerConfig
from c10k.server.health import HealthCheck, is_health
from c10k.server.overload import IDLE_INTERVAL, PRESSURE_INTERVAL, Tiers
from c10k.server.session import CLOSED, CLOSING, IDLE, LINGERING, READING, WRITING, Session
from c10k.server.shared import Board, Cell, aggregate
from c10k.server.sites import build_handler, server_pace, site_configs
from c10k.server.status import Counters, StatusPage
from c10k.server.wire import Wire
from c10k.static import StaticFiles, sharedfd
from c10k.static.pages import error_pages_from

if TYPE_CHECKING:
    import socket

log = logging.getLogger("c10k.server")

Handler = Callable[[Request, float], Response]
FastHandler = Callable[[Request, float], Response | None]
# The connection-state gauges (active, reading, writing, waiting) cost a walk over every
# connection, so a record written at each busy pressure check (PRESSURE_INTERVAL) walks
# at most this often: a tenth of the walks at 10,000 connections, gauges at most a second
# old. The status page's own render always walks (it is rate-limited by STATUS_TTL).
GAUGE_INTERVAL = IDLE_INTERVAL
NO_LIMITS = dict.fromkeys(
    ("limit_conn_rejected", "limit_req_rejected", "limit_keys", "limit_evictions"), 0
)


class Driver(Protocol):
    """What the Policy needs back from its server mode."""

    nconn: int  # open connections

    def sessions(self) -> Iterable[Session]: ...

    def connection_closed(self) -> None: ...


def static_files(config: ServerConfig) -> StaticFiles:
    """The default handler, configured from ``config``."""
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
        fallback=config.fallback,
        error_pages=error_pages_from(config.error_page),
        add_headers=config.add_header,
        add_header_paths=config.add_header_paths,
        compress=config.compress,
        compress_level=config.compress_level,
        compress_min_bytes=config.compress_min_bytes,
        compress_max_bytes=config.compress_max_bytes,
    )


def peer_host(peer: object) -> str:
    """The client address for the access log: the host of an (host, port, ...) tuple."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return "unix" if peer is None or isinstance(peer, str) else str(peer)


def _run_now(fn: Callable[[], None]) -> None:
    fn()


def _log_failure(future: Future[None]) -> None:
    if (exc := future.exception()) is not None:
        log.error("reading an error page failed: %s", exc)


def _no_wire(_resp: object) -> None:
    """The memoized-wire lookup under --limit-rate: never, so nothing skips the pacer."""


class Policy(Wire):
    """The per-process half of the engine (see the module comment).

    Args:
        config: the settings.
        handler: ``handler(request, now) -> Response``, trusted not to block (it runs on
            the loop); default: StaticFiles(config.root), whose filesystem work runs in
            the disk I/O pool.
        socks: the listening sockets (for accept-queue admission).
    """

    def __init__(
        self,
        config: ServerConfig,
        handler: Handler | None = None,
        socks: Sequence[socket.socket] = (),
    ) -> None:
        super().__init__(config.hsts)
        self.config = config
        self.driver: Driver | None = None
        if handler is None:
            # StaticFiles, or with [[site]] tables the Sites that picks one by Host
            # (c10k.server.sites); paced per site or path prefix where asked.
            files = build_handler(config)
            self.handler: Handler = files.handle
            self.handler_fast: FastHandler = files.handle_fast
            # --error-page for the engine's own answers too (``paged``); None: no pages.
            if any(c.error_page for c in (config, *site_configs(config))):
                self._error_page = files.error_page
                self.paged = self._paged
        else:
            self.handler = self.handler_fast = handler
        self.limits = Limits(config.max_header_bytes, config.max_fields)
        self.head_memo_get = self.limits.head_memo.get
        self.header_timeout = config.header_timeout
        self.keepalive_timeout = config.keepalive_timeout
        self.send_timeout = config.send_timeout
        self.linger_timeout = config.linger_timeout
        self.min_send_rate = config.min_send_rate
        self.limit_rate = config.limit_rate
        self.limit_rate_after = config.limit_rate_after
        # The mark of a response without a Pace of its own on a paced connection.
        self.pace = server_pace(config)
        if self.limit_rate:  # every response through Session._send and its pacer
            self.wire_memo_get = _no_wire  # type: ignore[assignment]
        self.max_pipelined = config.max_pipelined
        self.max_pending_output_bytes = config.max_pending_output_bytes
        self.max_buffer_bytes = config.max_buffer_bytes
        # Bytes per read: a connection never holds more unanswered bytes than this
        # (reads stop while its answers are pending; the rest waits in the kernel).
        self.read_size = min(RECV_SIZE, config.max_buffer_bytes)
        # Counters (nginx stub_status names); per-response accounting runs only when
        # something reads it (``observe``).
        self.started = time.time()
        self.accepts = 0
        self.handled = 0
        self.requests = 0
        self.bytes_sent = 0
        self.timeouts = 0
        self.offloaded = 0  # requests answered in the disk pool (+ diskio.COUNTS.cold)
        diskio.set_enabled(config.io_threads > 0)  # 0: everything on the loop (a baseline)
        # TLS (c10k.server.tls): handshakes done, failed, and plain HTTP sent to TLS.
        self.tls_handshakes = self.tls_failures = self.tls_plain_http = 0
        self.proxy_headers = self.proxy_errors = 0  # PROXY protocol (proxylayer.py)
        self.status_counts: dict[int, int] = {}
        self.access_log = (
            AccessLog(config.access_log, config.log_format) if config.access_log else None
        )
        self.observe = self.access_log is not None or config.status_path is not None
        if config.status_path:
            page = StatusPage(config.status_path, self.counters, self.handler_fast)
            self.handler_fast = page.handle_fast
        if config.health:
            check = HealthCheck(lambda: self.failing, self.handler_fast)
            self.handler_fast = check.handle_fast
        self.log_health = config.log_health
        self.trusted = parse_networks(config.trusted_proxy)
        self.limiter: ClientLimits | None = None
        if config.limit_conn_per_ip or config.limit_req is not None:
            rate = parse_rate(config.limit_req)[0] if config.limit_req is not None else 0
            self.limiter = ClientLimits(
                config.limit_conn_per_ip,
                rate,
                config.limit_req_burst,
                bool(self.trusted),
                self.limit_client,
            )
        # Modes keep each connection's peer address only when something reads it.
        self.keep_peer = self.observe or self.limiter is not None
        # Overload and admission, and the flags a Session reads per request.
        self.tiers = Tiers(config.shed_keepalive_lag, config.shed_503_lag, config.shed_accept_lag)
        self.admission = Admission(
            socks, config.backlog, config.max_accept_wait, config.admission_trace
        )
        self.shed_level = 0
        self.close_budget = 0  # kept connections the tiers may still close before the next check
        # Draining or shedding: responses take the Session's general path, which asks
        # ``shed_keepalive`` whether to close their connection.
        self.degraded = False
        self.draining = False
        self.failing = False  # told to stop: the health check fails (--drain-delay, drain)
        self.accept_guard = False  # look at each new connection (tier 3, or admission)
        self.cell: Cell | None = None  # this worker's record on the shared board
        self._states = dict.fromkeys(("active", "reading", "writing", "waiting"), 0)
        self._states_due = 0.0

    # -- the disk I/O pool ---------------------------------------------------------------
    def offload(self, session: Session, req: Request) -> None:
        """Answer ``req`` in the disk I/O pool (open/stat/read of a file not in memory), so
        a slow disk stalls only this request, never the loop (the page's AMPED note; nginx
        ``aio threads``); the answer comes back to ``session.job_done`` on the loop."""
        self.offloaded += 1
        loop = session.loop
        now = loop.now
        if self.config.io_threads == 0:  # no pool: block the loop (measurement baseline)
            session.job_done(req, self.run_handler(req, now))
            return

        def done(future: Future[Response]) -> None:
            session.job_done(req, future.result())

        loop.run_in_thread(self.run_handler, req, now, done=done)

    def run_handler(self, req: Request, now: float) -> Response:
        try:
            return self.handler(req, now)
        except Exception:
            log.exception("handler failed for %r", req.target)
            resp = self.error(500)
            return resp if self.paged is None else self.paged(resp, req, None)

    # -- the engine's own answers with the operator's pages (--error-page) ----------------
    paged: Callable[[Response, Request | None, Any], Response] | None = None

    def _paged(self, resp: Response, req: Request | None, loop: Any) -> Response:
        """``resp`` (400, 408, 429, 503 ... made by the engine) with its configured page
        from memory (``StaticFiles.error_page``); a page to (re)read goes to the disk
        pool, or runs at once where there is no loop (the pool's own thread) or no pool
        (``--io-threads 0``)."""
        head = req is not None and req.method == b"HEAD"
        if loop is None or self.config.io_threads == 0:
            paged: Response = self._error_page(resp, head, time.monotonic(), _run_now, req)
            return paged

        def defer(fn: Callable[[], None]) -> None:
            loop.run_in_thread(fn, done=_log_failure)

        paged = self._error_page(resp, head, loop.now, defer, req)
        return paged

    # -- accounting ----------------------------------------------------------------------
    def _forwarded_client(self, peer: str, req: Request) -> str:
        """The client behind --trusted-proxy peers, as the request's headers name it."""
        headers = req.headers
        fwd, xff = headers.get(b"forwarded"), headers.get(b"x-forwarded-for")
        return client_address(peer, self.trusted, [fwd] if fwd else (), [xff] if xff else ())

    def account(self, session: Session, req: Request | None, resp: Response) -> None:
        """One response decided (only when ``observe``): counters and the access log."""
        size = 0 if req is not None and req.method == b"HEAD" else body_length(resp.body)
        self.bytes_sent += size
        counts = self.status_counts
        counts[resp.status] = counts.get(resp.status, 0) + 1
        if self.access_log is not None and (self.log_health or not is_health(resp)):
            transport = session.transport
            peer = peer_host(transport.peer if transport is not None else None)
            if self.trusted and req is not None:
                peer = self._forwarded_client(peer, req)
            # The verified client certificate's subject (--tls-client-ca), if any.
            user = getattr(transport, "subject", None)
            if req is None:
                self.access_log.log(peer, b"", b"", 1, None, resp.status, size, user)
            else:
                self.access_log.log(
                    peer, req.method, req.target, req.minor, req.headers, resp.status, size, user
                )

    # -- per-client limits -----------------------------------------------------------------
    def limit_client(self, session: Session, req: Request) -> str | None:
        """The client per-client limits count (``limiter.resolve``): the access log's,
        the peer (a PROXY header's client on such a listener), or behind a trusted proxy
        the one its headers name."""
        transport = session.transport
        client = peer_text(transport.peer if transport is not None else None)
        if self.trusted and client is not None:
            client = self._forwarded_client(client, req)
        return client

    def share_limits(self, table: Table, cell: int) -> None:
        """Count per-client limits in the supervisor's ``table``, column ``cell``."""
        if self.limiter is not None:
            self.limiter.share(table, cell)

    def connection_closed(self, session: Session) -> None:
        climit = session.climit
        if climit is not None and climit[3] and self.limiter is not None:
            self.limiter.release(climit)
        if self.driver is not None:
            self.driver.connection_closed()

    # -- overload --------------------------------------------------------------------------
    def pressure(
        self,
        lag: float,
        load: float,
        accepted: Sequence[int],
        busy: float | None = None,
        held: Sequence[int] | None = None,
    ) -> float:
        """One pressure check from the mode's readings: ``lag`` (how long a ready client
        waits for its turn), ``load`` (clients per turn), each listener's accept count,
        and when the span began idle, the seconds since work came (``busy``), and what
        the mode accepted but has not served yet (``held``, per listener). Returns the
        seconds until the next check."""
        tiers = self.tiers
        span = tiers.tick()
        admission = self.admission
        standing = admission.check(accepted, span, busy, held)
        self.shed_level = level = tiers.update(lag, load, admission.waiting)
        # Shedding closes half as many kept connections as wait (c10k.server.overload).
        self.close_budget = admission.waiting // 2 if level else 0
        self.degraded = self.failing or level >= 1
        self.accept_guard = level >= 3 or standing
        if self.access_log is not None:
            self.access_log.flush()
        if self.cell is not None:
            self.publish()
        busy = standing or not self.tiers.quiet or self.access_log is not None
        return PRESSURE_INTERVAL if busy else IDLE_INTERVAL

    def shed_keepalive(self) -> bool:
        """While ``degraded``: whether a response that would keep its connection closes
        it. Draining closes every one; shedding as many as its check allowed."""
        if self.failing:
            return True
        if self.close_budget <= 0:
            return False
        self.close_budget -= 1
        self.tiers.shed_keepalive += 1
        return True

    def admit(self, fd: int) -> bool:
        """While ``accept_guard``: False (and ``fd`` closed) for a connection to refuse."""
        if self.shed_level >= 3:
            # Overload tier 3: refuse at once (cheapest: no object, no registration).
            self.tiers.shed_accepts += 1
            os.close(fd)
            return False
        return self.admission.admit(fd)

    def begin_drain(self) -> None:
        """Graceful stop: new responses close their connection; admission lets go of the
        listeners (the supervisor keeps them for the next worker)."""
        self.draining = True
        self.begin_failing()
        self.admission.release()

    def begin_failing(self) -> None:
        """Told to stop: the health check answers 503 and new responses close their
        connection (--drain-delay: still accepting and serving)."""
        self.failing = True
        self.degraded = True

    # -- the status page -------------------------------------------------------------------
    def states(self) -> dict[str, int]:
        """Open connections by state (a walk over them: O(connections))."""
        states = [0] * 6
        active = 0
        if self.driver is not None:
            for session in self.driver.sessions():
                if session.state != CLOSED:
                    states[session.state] += 1
                    active += 1
        return {
            "active": active,
            "reading": states[READING],
            "writing": states[WRITING] + states[LINGERING] + states[CLOSING],
            "waiting": states[IDLE],
        }

    def values(self, states: dict[str, int]) -> dict[str, int]:
        """``states`` and every counter and gauge (``c10k.server.shared.FIELDS``)."""
        tiers = self.tiers
        return {
            **states,
            "accepts": self.accepts,
            "handled": self.handled,
            "requests": self.requests,
            "bytes_sent": self.bytes_sent,
            "timeouts": self.timeouts,
            "offloaded": self.offloaded + diskio.COUNTS.cold,
            "shed_level": self.shed_level,
            "shed_keepalive": tiers.shed_keepalive,
            "shed_503": tiers.shed_503,
            "shed_accepts": tiers.shed_accepts,
            "shed_stale": self.admission.stale,
            "backlog": self.admission.backlog,
            "syn_drop_percent": self.admission.drop_percent,
            "access_log_dropped": self.access_log.dropped if self.access_log else 0,
            "tls_handshakes": self.tls_handshakes,
            "tls_failures": self.tls_failures,
            "tls_plain_http": self.tls_plain_http,
            "proxy_headers": self.proxy_headers,
            "proxy_errors": self.proxy_errors,
            **(self.limiter.values() if self.limiter is not None else NO_LIMITS),
        }

    def status(self) -> dict[str, int]:
        """The counters: nginx stub_status's, plus per-status and shedding ones."""
        st = self.values(self.states())
        st["uptime_seconds"] = int(time.time() - self.started)
        st["pid"] = os.getpid()
        return st

    def counters(self) -> Counters:
        """What the status page shows: this process's numbers, or under a supervisor the
        whole server's and each live worker's (see c10k.server.status)."""
        if self.cell is None:
            return self.status(), self.status_counts, []
        self.publish(walk=True)  # this worker's row as fresh as the page
        board = self.cell.board
        retired, live, exited = board.snapshot()
        st, by_status = aggregate(retired, live)
        now = time.time()
        st["uptime_seconds"] = int(now - board.started)
        st["pid"] = os.getpid()
        st["workers"] = len(live)
        st["workers_exited"] = exited
        for w in live:
            w.values["uptime_seconds"] = max(0, int(now - w.started))
        return st, by_status, live

    # -- the shared board (under a supervisor) ----------------------------------------------
    def share(self, board: Board, index: int, generation: int, slot: int) -> None:
        """From now on keep this process's record in cell ``index`` of ``board``, which
        the supervisor gave to worker ``generation`` in ``slot``."""
        self.cell = Cell(board, index, generation, slot, os.getpid(), self.started)
        self.publish(walk=True)

    def publish(self, walk: bool = False, final: bool = False) -> None:
        """Write this process's record (see GAUGE_INTERVAL for when the connection states
        are walked); ``final``: it serves nothing any more, so no connections."""
        if self.cell is None:
            return
        now = time.monotonic()
        if final:
            self._states = dict.fromkeys(self._states, 0)
        elif self.config.status_path and (walk or now >= self._states_due):
            self._states = self.states()
            self._states_due = now + GAUGE_INTERVAL
        elif self.driver is not None:  # no walk: the count alone, which the driver keeps
            self._states["active"] = self.driver.nconn
        self.cell.write(self.values(self._states), self.status_counts)

    def close(self) -> None:
        sharedfd.close_idle()  # (the process's: another server in it opens them again)
        if self.access_log is not None:
            self.access_log.close()
