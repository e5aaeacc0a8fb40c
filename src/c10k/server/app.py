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
from c10k.core.listener import Acceptor, bind_socket
from c10k.core.loop import Loop
from c10k.http.connection import Limits
from c10k.http.events import Request
from c10k.http.writers import Response, error_response, http_date
from c10k.server.config import ServerConfig
from c10k.server.protocol import IDLE, Connection
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
        # handler_fast answers from memory or returns None; then handler runs in the disk
        # I/O pool (see offload). A custom handler is trusted not to block: it runs inline.
        self.handler_fast: Callable[[Request, float], Response | None]
        if handler is None:
            files = static_files(config)
            handler = files.handle
            self.handler_fast = files.handle_fast
        else:
            self.handler_fast = handler
        self.handler = handler
        self.pool: ThreadPoolExecutor | None = None
        self.offloaded = 0
        self.limits = Limits(config.max_header_bytes, config.max_fields)
        self.nofile_soft, self.nofile_hard = raise_nofile_limit()
        self.loop = Loop(config.backend)
        self.edge = self.loop.edge
        self.capacity, self.capacity_reason = self._capacity()
        if sock is None:
            sock = bind_socket(
                config.host, config.port, backlog=config.backlog, reuse_port=config.reuse_port
            )
        self.socks = sock if isinstance(sock, list) else [sock]
        self.sock = self.socks[0]
        self.acceptors = [Acceptor(self.loop, s, self._on_accept, raw_fds=True) for s in self.socks]
        self.accepting_paused = False
        self.connections: set[Connection] = set()
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
        for acceptor in self.acceptors:
            acceptor.close()
        limit = self.config.shutdown_timeout if timeout is None else timeout
        self.loop.call_later(min(DRAIN_IDLE_GRACE, limit), self._close_idle)
        self.loop.call_later(limit, self.loop.stop)
        if not self.connections:
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
        conn = Connection(self, fd)
        events = (READ | WRITE) if self.edge else READ  # ET: both once, never modified
        try:
            self.loop.add_fd(fd, events, conn._ready)
        except (OSError, ValueError) as exc:
            # e.g. select with an fd >= FD_SETSIZE when files held open pushed the socket
            # past the reserve: refuse this one client, leak nothing.
            log.warning("cannot watch a new connection (fd %d): %s", fd, exc)
            conn.deadline = conn.deadline_key = None
            os.close(fd)
            return
        self.connections.add(conn)
        # Data that arrived before registration is reported too: epoll_ctl(ADD) checks
        # readiness at once, also for EPOLLET.
        if len(self.connections) >= self.capacity:
            self.accepting_paused = True
            for acceptor in self.acceptors:
                acceptor.pause()

    def connection_closed(self, conn: Connection) -> None:
        connections = self.connections
        connections.discard(conn)
        if self.draining:
            if not connections:
                self.loop.stop()
        elif self.accepting_paused and len(connections) < self.capacity:
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
