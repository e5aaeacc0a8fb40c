"""ServerBase: what every server mode has in common besides the Session and the Policy.

A mode (``c10k.server.modes``) is a driver: it accepts, moves bytes, keeps time and
reports what happened. This base holds what is the same whatever the I/O:

- the listening sockets and the public face (``url``, ``address``, ``capacity``,
  ``requests``, ``backend_name``) that the CLI, the supervisor and the tests use;
- the connection cap, from RLIMIT_NOFILE (raised to the hard limit at start) minus
  ``FD_RESERVE`` and from the mode's own limits (select: FD_SETSIZE; threads: how many
  threads this machine can start). At the cap the mode stops accepting, so excess clients
  wait in the kernel's backlog instead of being accepted and dropped; it resumes when a
  connection closes;
- the housekeeping every mode runs on its own timers: the Date line once a second
  (``_tick``), the pressure check (``_pressure``: overload tier and accept-queue
  admission from the mode's lag/load readings and accept counts), brought forward to
  ``PRESSURE_INTERVAL`` when an accept batch comes back full (``backlog_alert``). A
  process that went a whole second with no accept, request or close, quiet and with
  nothing to flush or to close (a big file's idle fd: c10k.static.sharedfd), sleeps: no
  timers at all (C1M: dozens of workers holding idle connections on one core would
  otherwise wake twice a second each, in step). The next accept, close or response wakes
  it (``Wire.sleep``: the first response renders the Date line again before it is sent);
- signals and the graceful stop: the first SIGINT/SIGTERM drains (stop accepting, close
  idle keep-alive connections after ``DRAIN_IDLE_GRACE``, let responses in flight finish
  with ``Connection: close``, stop when the last connection closes or at
  ``shutdown_timeout``), a second one stops at once. With ``drain_delay`` the first one
  only fails the health check and closes connections after their next response for that
  long (still accepting), then drains; a second one drains at once. Under a supervisor
  the supervisor keeps that delay: it sends ``fail_signals`` (SIGUSR2), then SIGTERM.
- SIGUSR1 (``reopen_signals``, set by process.py and the supervisor's workers) reopens
  the access log after logrotate renamed it (nginx's USR1); SIGHUP to a process on its
  own does too, and says that settings are re-read only with workers.

A mode implements the hooks at the end of the class (``_call_later``, ``sessions``,
``_pause_accepting``, ...); everything else it inherits.
"""

from __future__ import annotations

import logging
import math
import os
import resource
import signal
import socket
import time
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from c10k.core.listener import bind_socket
from c10k.core.transport import CONNRESET_ERRNOS
from c10k.http.events import Request
from c10k.http.writers import Response
from c10k.server.certs import Certificates
from c10k.server.certs import load as load_certificates
from c10k.server.config import ServerConfig
from c10k.server.listeners import HTTP, HTTPS, REDIRECT, listen_proxied, listen_roles
from c10k.server.overload import IDLE_INTERVAL, PRESSURE_INTERVAL
from c10k.server.policy import Policy
from c10k.server.proxylayer import ProxyLayer
from c10k.server.redirect import redirect_handler
from c10k.server.session import CLOSING, WRITING, Session, answer_at_accept
from c10k.server.tls import TLSLayer
from c10k.server.words import plural
from c10k.static import sharedfd

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

Handler = Callable[[Request, float], Response]


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


def listening_sockets(
    config: ServerConfig, sock: socket.socket | list[socket.socket] | None
) -> list[socket.socket]:
    """The sockets a server was given, or one bound from ``config.host``/``config.port``."""
    if sock is None:
        sock = bind_socket(
            config.host, config.port, backlog=config.backlog, reuse_port=config.reuse_port
        )
    return sock if isinstance(sock, list) else [sock]


def session_of(protocol: object) -> Session | None:
    """The Session a mode's transport talks to, directly or through its layers
    (ProxyLayer, then TLSLayer)."""
    while isinstance(protocol, (ProxyLayer, TLSLayer)):
        protocol = protocol.app
    return protocol if isinstance(protocol, Session) else None


def in_flight(session: Session) -> bool:
    """A response begun and not yet out: being written, in the disk pool or waiting its
    turn, or a closing answer still queued. Not a connection waiting for a request, one
    in the middle of a request head (it was promised nothing) or one lingering after its
    last response went out."""
    if session.job is not None or session.state == WRITING:
        return True
    return session.state == CLOSING and session.transport.pending_bytes() > 0


class ServerBase:
    """The part of a server that is the same in every mode (see the module comment).

    Args:
        config: the settings; ``config.port`` 0 picks a free port (see ``address``).
        handler: ``handler(request, now) -> Response``; default StaticFiles(config.root).
        sock: an already-bound listening socket (or a list of them, all served) to use
            instead of binding one from ``config.host``/``config.port``.
    """

    backend_name: ClassVar[str] = "?"
    #: Signals that drain (a second one stops). A worker under a supervisor drains on
    #: SIGTERM only: Ctrl-C reaches the whole process group, and the supervisor decides.
    drain_signals: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)
    #: Signals that reopen the access log (logrotate) and say so. Only a server on its
    #: own sets them (process.py, ``--workers 1``): under a supervisor SIGHUP replaces
    #: the workers, and they ignore it.
    hangup_signals: tuple[int, ...] = ()
    #: Signals that reopen the access log, quietly (logrotate's postrotate ``kill -USR1``,
    #: as nginx). Set by ``c10k serve`` for a process on its own and for each worker.
    reopen_signals: tuple[int, ...] = ()
    #: Signals that begin the --drain-delay window (the health check fails; keep serving).
    #: A worker gets SIGUSR2 from its supervisor, which then sends SIGTERM itself.
    fail_signals: tuple[int, ...] = ()
    #: Whether a drain signal waits out ``config.drain_delay`` first (a process on its
    #: own; a worker's supervisor has waited already).
    delay_drain = True
    #: systemd's NOTIFY_SOCKET for a process on its own (process.py): STOPPING=1 and
    #: WATCHDOG=1 from here; under a supervisor the supervisor notifies.
    notifier: Any = None
    #: Responses in flight that the drain deadline or a second signal cut short (0: the
    #: drain finished them all). Read by whoever reports the stop.
    responses_cut = 0

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None if this mode can run here, else why not (no side effects)."""
        return None

    def __init__(
        self,
        config: ServerConfig,
        handler: Handler | None = None,
        sock: socket.socket | list[socket.socket] | None = None,
        certs: Certificates | None = None,
    ) -> None:
        self.config = config
        self.nofile_soft, self.nofile_hard = raise_nofile_limit()
        self.socks = listening_sockets(config, sock)
        self._listeners(certs)
        self.sock = self.socks[0]
        for s in self.socks:
            s.setblocking(False)
        self.policy = Policy(config, handler, self.socks)
        self.policy.driver = self
        self.handler = self.policy.handler
        self.nconn = 0
        self.accepting_paused = False
        self.draining = False
        self.capacity, self.capacity_reason = 1, ""
        self._pressure_due = 0.0
        self._pressure_timer: Any = None
        self._pressure_delay = 0.0
        # When the next check's span began idle: when work came (a wake-up, or a full
        # accept batch while the checks were a second apart). Admission reads a queue
        # that formed since then over this part of the span, not the idle rest.
        self._busy_since: float | None = None
        self._mark: tuple[int, int, int] | None = None  # activity seen at the last tick
        self._setup()

    def _listeners(self, certs: Certificates | None) -> None:
        """What each listening socket serves (``roles``, in ``socks`` order), and the
        certificates for the TLS ones: ``certs`` as the supervisor loaded them before
        forking (so every worker has the same session-ticket keys), else loaded here."""
        roles = listen_roles(self.config)
        self.roles = roles if len(roles) == len(self.socks) else [HTTP] * len(self.socks)
        proxied = listen_proxied(self.config)
        self.proxied = proxied if len(proxied) == len(self.socks) else [False] * len(self.socks)
        # Listeners whose connections talk to a bare Session (no TLS or PROXY layer, not a
        # redirect): a mode may answer a one-shot client there with answer_at_accept.
        self.plain = [
            role == HTTP and not proxied
            for role, proxied in zip(self.roles, self.proxied, strict=True)
        ]
        self.certs = certs
        if HTTPS in self.roles and certs is None:
            pairs = list(zip(self.config.tls_cert, self.config.tls_key, strict=True))
            self.certs = load_certificates(pairs, self.config.tls_client_ca)
        self.redirect: Handler | None = None
        if REDIRECT in self.roles:
            https = [s for s, r in zip(self.socks, self.roles, strict=True) if r == HTTPS]
            port = https[0].getsockname()[1] if https else 443
            self.redirect = redirect_handler(port)

    def make_protocol(self, loop: Any, index: int) -> Any:
        """A new connection on listener ``index``: its Session, behind a TLSLayer on a
        TLS listener and a ProxyLayer on a --proxy-protocol one (the header comes before
        the handshake). What the mode's transport talks to."""
        served = self._served(loop, index)
        return ProxyLayer(served, self.policy) if self.proxied[index] else served

    def _served(self, loop: Any, index: int) -> Any:
        session = Session(self.policy, loop)
        role = self.roles[index]
        if role == HTTP:
            return session
        if role == REDIRECT:
            session.handle_fast = self.redirect  # type: ignore[assignment]
            session.append = self.policy.append_plain
            return session
        assert self.certs is not None
        return TLSLayer(session, self.certs.default, loop, self.policy)

    def _setup(self) -> None:
        """The mode's own construction (its loop, capacity limits, listeners' watchers),
        after everything above exists."""

    # -- public face -----------------------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        name = self.sock.getsockname()
        if isinstance(name, str):  # a Unix-domain socket: (path, 0)
            return name, 0
        host, port = name[:2]
        return host, port

    @property
    def url(self) -> str:
        host, port = self.address
        if self.sock.family == socket.AF_UNIX:
            return f"http+unix://{host}:/"
        if ":" in host:
            host = f"[{host}]"
        scheme = "https" if self.roles[0] == HTTPS else "http"
        return f"{scheme}://{host}:{port}/"

    @property
    def requests(self) -> int:
        return self.policy.requests

    @property
    def timeouts(self) -> int:
        return self.policy.timeouts

    @property
    def offloaded(self) -> int:
        return self.policy.offloaded

    @property
    def connections(self) -> list[Session]:
        """The open connections' Sessions (a snapshot; O(n))."""
        return list(self.sessions())

    def status(self) -> dict[str, int]:
        return self.policy.status()

    # -- the connection cap ------------------------------------------------------------
    def _set_capacity(self, limits: list[tuple[int, str]] = ()) -> None:  # type: ignore[assignment]
        """The cap: RLIMIT_NOFILE minus FD_RESERVE, the mode's ``limits`` (count, why),
        and --max-connections, whichever is lowest; ``capacity_reason`` names it."""
        cap = self.nofile_soft - FD_RESERVE
        reason = f"RLIMIT_NOFILE {self.nofile_soft} minus {FD_RESERVE} reserved fds"
        for n, why in limits:
            if n < cap:
                cap, reason = n, why
        wanted = self.config.max_connections
        if wanted is not None and wanted < cap:
            cap, reason = wanted, "--max-connections"
        self.capacity, self.capacity_reason = max(cap, 1), reason

    def first_read(self, fd: int, now: float) -> bytes | memoryview | None:
        """A new connection's first read, at once: the listeners defer accept until the
        request is there (TCP_DEFER_ACCEPT). For the plain listeners' modes that read
        synchronously at accept (readiness, io_uring). Returns None when that was the
        whole exchange, the fd closed: a one-shot client answered with no Session
        (``session.answer_at_accept``; Kegel's test 1), or one gone before it sent
        anything. Else what the mode's Session goes on with: ``b""`` (nothing yet: watch
        the fd), the bytes read (give them to it), or a memoryview (the rest of the
        closing answer that the socket did not take: ``Session.send_closing``)."""
        policy = self.policy
        try:
            data = os.read(fd, policy.read_size)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError:
            os.close(fd)  # reset before it sent anything: nothing to answer
            return None
        if not data:
            os.close(fd)
            return None
        wire = answer_at_accept(policy, data, now)
        if wire is None:
            return data
        try:
            n = os.write(fd, wire)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            if exc.errno not in CONNRESET_ERRNOS:
                log.error("connection fd %d: %s", fd, exc)
            n = len(wire)  # the client is gone: nothing more to send it
        if n < len(wire):
            return memoryview(wire)[n:]  # a small send buffer (--sndbuf)
        policy.handled += 1
        os.close(fd)
        return None

    def opened(self) -> None:
        """A connection was accepted and is being served."""
        if self.policy.asleep is not None:
            self.policy.wake()
        self.nconn += 1
        self.policy.handled += 1
        if self.nconn >= self.capacity and not self.accepting_paused:
            self.accepting_paused = True
            self._pause_accepting()

    def connection_closed(self) -> None:
        if self.policy.asleep is not None:
            self.policy.wake()  # the board's count of connections is kept by the checks
        self.nconn -= 1
        if self.draining:
            if not self.nconn:
                self._stop_loop()
        elif self.accepting_paused and self.nconn < self.capacity:
            self.accepting_paused = False
            self._resume_accepting()

    # -- housekeeping ------------------------------------------------------------------
    def _start_housekeeping(self) -> None:
        self._tick()
        self._pressure_due = time.monotonic() + PRESSURE_INTERVAL
        self._pressure_timer = self._call_later(PRESSURE_INTERVAL, self._pressure)

    def _tick(self) -> None:
        # Once a second, just after the wall-clock second changes: the Date line (the wire
        # memo is keyed to it).
        now = time.time()
        self.policy.update_date(now)
        if self.notifier is not None:
            self.notifier.watchdog(time.monotonic())  # a loop that stops turning stops these
        policy = self.policy
        mark = (policy.requests, policy.accepts, self.nconn)
        idle_files = sharedfd.expire(time.monotonic(), self.config.open_file_idle)
        if mark == self._mark and not idle_files and self._may_sleep():
            self._sleep()
            return
        self._mark = mark
        self._call_later(1.0 - (now % 1.0) + 0.001, self._tick)

    def _may_sleep(self) -> bool:
        """Nothing needs a timer: no watchdog, drain, log to flush or busy pressure check."""
        return (
            (self.notifier is None or self.notifier.watchdog_due() is None)
            and not self.draining
            and not self.policy.failing
            and self.policy.access_log is None
            and self._pressure_delay >= IDLE_INTERVAL
        )

    def _sleep(self) -> None:
        if self._pressure_timer is not None:
            self._pressure_timer.cancel()
            self._pressure_timer = None
        self._pressure_due = math.inf  # (backlog_alert then checks at once; aio's lag: 0)
        self.policy.sleep(self._wake_up)

    def _wake_up(self) -> None:
        """The first accept, close or response after a sleep: the Date line, then a check
        (over the slept span, in which nothing happened) that starts the timers again."""
        self._mark = None
        self._tick()
        if self._pressure_timer is not None:
            self._pressure_timer.cancel()
        self._busy_since = time.monotonic()
        self._pressure()

    def _pressure(self) -> None:
        lag, load = self.pressure_reading()
        since, self._busy_since = self._busy_since, None
        busy = None if since is None else time.monotonic() - since
        delay = self.policy.pressure(lag, load, self.accept_counts(), busy, self.held_counts())
        self._pressure_delay = delay
        self._pressure_due = time.monotonic() + delay
        self._pressure_timer = self._call_later(delay, self._pressure)

    def backlog_alert(self) -> None:
        """An accept batch came back full: check the queues within PRESSURE_INTERVAL, not
        at an idle process's next once-a-second check (a flood fills a 4096 backlog in a
        second, and that check would find it seconds deep)."""
        if self.config.max_accept_wait <= 0 or self._pressure_timer is None:
            return
        if self._pressure_due - time.monotonic() > PRESSURE_INTERVAL:
            if self._busy_since is None:
                self._busy_since = time.monotonic()
            self._pressure_timer.cancel()
            self._pressure_due = time.monotonic() + PRESSURE_INTERVAL
            self._pressure_timer = self._call_later(PRESSURE_INTERVAL, self._pressure)

    def admit(self, fd: int) -> bool:
        """A new connection (bare fd): False if it was refused (and closed) under overload."""
        self.policy.accepts += 1
        return not self.policy.accept_guard or self.policy.admit(fd)

    # -- signals and the graceful stop -----------------------------------------------------
    @property
    def handled_signals(self) -> tuple[int, ...]:
        return self.drain_signals + self.hangup_signals + self.reopen_signals + self.fail_signals

    def on_signal(self, signum: int) -> None:
        if signum in self.hangup_signals:
            self.hangup()
            return
        if signum in self.reopen_signals:
            self.reopen_log()
            return
        if signum in self.fail_signals:
            self.policy.begin_failing()
            log.info("signal %d: failing the health check until told to stop", signum)
            return
        if self.notifier is not None and not self.policy.failing:
            self.notifier.stopping(f"stopping on signal {signum}")
        delay = self.config.drain_delay if self.delay_drain else 0.0
        if delay > 0 and not self.policy.failing:
            self.policy.begin_failing()
            log.info(
                "signal %d: failing the health check, still serving for %.1f s, then "
                "draining (again to drain now)",
                signum,
                delay,
            )
            self._call_later(delay, self._drain_after_delay)
            return
        if self.draining:
            log.info("signal %d again: stopping now", signum)
            self._cut_short()
            return
        log.info(
            "signal %d: draining %s (at most %.0f s; again to stop now)",
            signum,
            plural(self.nconn, "connection"),
            self.config.shutdown_timeout,
        )
        self.shutdown()

    def _drain_after_delay(self) -> None:
        if not self.draining:
            self.on_signal(self.drain_signals[0])

    def hangup(self) -> None:
        """SIGHUP to a single process: reopen the access log; settings stay (re-reading
        them means new processes, which only a supervisor makes)."""
        log_ = self.policy.access_log
        if log_ is not None:
            log_.reopen()
        log.warning(
            "SIGHUP: %sthe settings are re-read only with workers (--workers 2 or more, "
            "or auto); restart this process to apply a changed --config",
            "access log reopened; " if log_ is not None else "",
        )

    def reopen_log(self) -> None:
        """SIGUSR1: later access log lines go to a new file at the same path (the writer
        thread switches between two batches: see AccessLog.reopen)."""
        log_ = self.policy.access_log
        if log_ is not None and log_.reopen():  # not for stderr ('-')
            log.info("SIGUSR1: access log reopened")

    def _cut_short(self) -> None:
        """Stop now, counting the responses that had not gone out (see ``in_flight``)."""
        self.responses_cut = sum(1 for s in self.sessions() if in_flight(s))
        if self.responses_cut:
            log.warning("stopping with %s in flight", plural(self.responses_cut, "response"))
        self.stop()

    def shutdown(self, timeout: float | None = None) -> None:
        """Graceful stop (the mode's loop thread; see ``shutdown_threadsafe``): stop
        accepting, close idle keep-alive connections, let in-flight requests finish
        (their responses say ``Connection: close``), and make ``serve_forever`` return
        when the last connection has closed or after ``timeout`` (default
        ``config.shutdown_timeout``), whichever comes first. nginx's SIGQUIT."""
        if self.draining:
            return
        self.draining = True
        self.policy.begin_drain()
        self._close_listeners()
        limit = self.config.shutdown_timeout if timeout is None else timeout
        self._call_later(min(DRAIN_IDLE_GRACE, limit), self._close_idle)
        self._call_later(limit, self._cut_short)
        if not self.nconn:
            self._stop_loop()

    def _close_idle(self) -> None:
        for session in list(self.sessions()):
            session.close_if_idle()

    # -- what each mode provides ----------------------------------------------------------
    def sessions(self) -> Iterable[Session]:
        """The open connections' Sessions (a snapshot is fine)."""
        raise NotImplementedError

    def accept_counts(self) -> list[int]:
        """Connections accepted so far, per listener (in ``socks`` order)."""
        raise NotImplementedError

    def pressure_reading(self) -> tuple[float, float]:
        """(lag, load): see c10k.server.overload."""
        raise NotImplementedError

    def held_counts(self) -> list[int] | None:
        """Connections accepted but not yet served, per listener, when a mode holds some
        (io_uring, past a turn's batch): admission counts them as queue."""
        return None

    def _call_later(self, delay: float, callback: Callable[[], object]) -> Any:
        """Run ``callback`` on the mode's loop thread after ``delay``; return a handle
        with ``cancel()``. Default: the mode's ``loop.call_later``."""
        return self.loop.call_later(delay, callback)  # type: ignore[attr-defined]

    def _pause_accepting(self) -> None:
        raise NotImplementedError

    def _resume_accepting(self) -> None:
        raise NotImplementedError

    def _close_listeners(self) -> None:
        """Stop accepting for good (draining): stop watching, then close the sockets
        (the supervisor keeps its own copies for the next worker)."""
        self._pause_accepting()
        for s in self.socks:
            s.close()

    def _stop_loop(self) -> None:
        """Make ``serve_forever`` return (loop thread)."""
        raise NotImplementedError

    def install_signal_handlers(self) -> None:
        raise NotImplementedError

    def serve_forever(self, install_signals: bool = True) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        """Thread-safe: make ``serve_forever`` return (open connections are closed)."""
        raise NotImplementedError

    def shutdown_threadsafe(self, timeout: float | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError
