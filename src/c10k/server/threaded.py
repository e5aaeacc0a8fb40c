"""Thread per connection: blocking sockets, one OS thread per client (Kegel strategy 4).

The shape of the classic servers the page starts from (Apache 1.x prefork's thread
cousin, Java's pre-NIO ``ServerSocket`` loop): the main thread accepts; each accepted
client gets a thread that blocks in ``recv``, answers, blocks in ``send``/``sendfile``,
and loops for keep-alive. The kernel's scheduler is the event loop. It serves the same
HTTP as ``c10k.server.app.Server``: the same sans-I/O ``HTTPConnection``, the same
handler, the same response policy (``WirePolicy`` below, also used by the asyncio modes).

Decisions and why:

- **Timeouts are socket options, not a timer thread.** The socket stays in blocking mode
  (``settimeout(None)``) and SO_RCVTIMEO/SO_SNDTIMEO bound each blocking call; a timeout
  comes back as EAGAIN (``BlockingIOError``). Python's own ``settimeout(x)`` would make
  the fd nonblocking and call poll() before *every* recv/send: two syscalls per I/O
  instead of one. SO_RCVTIMEO is re-set only when the wanted value moves by more than
  ``TIMEO_SLACK`` (the phase changed: header -> keep-alive), so a keep-alive request costs
  one recv and one send, as on the event loop. Header timeout -> 408 if part of a head
  came, else a silent close; keep-alive idle -> silent close; send timeout -> close
  (nginx client_header_timeout / keepalive_timeout / send_timeout).
- **Stack size.** ``threading.stack_size(THREAD_STACK_BYTES)``: 256 KiB instead of glibc's
  8 MiB default (RLIMIT_STACK). Since Python 3.11, Python-to-Python calls do not recurse
  on the C stack, so the serving path itself needs little: the whole server suite passes
  with CPython's minimum, 32 KiB. But C-level recursion (repr of nested containers, in a
  log line say) is bounded by CPython's *count* (sys.getrecursionlimit() 1000), not by
  stack bytes: a list nested 990 deep, repr'd in a thread, segfaults with 32, 64 and
  128 KiB stacks and raises RecursionError with 256 KiB (measured here, 3.11 x86_64). So
  256 KiB is the smallest power of two where the interpreter's own guard still works.
  The stack is virtual memory: only touched pages count in RSS, 24.7 KiB per idle
  client thread in all (scripts/thread_ceiling.py).
- **Mass wake-ups are the weak spot.** Thousands of idle threads cost nothing while they
  sleep in recv, but when they all become runnable at once (every client gone, or a
  drain shutting them all down) they convoy on the GIL: with ~19,700 threads woken at
  once, about 200 exited in 3 minutes at 128% CPU. So a drain is bounded by
  ``shutdown_timeout`` and the join by ``JOIN_SECONDS``; the threads are daemons, so the
  process exits anyway.
- **Connection cap** = the smallest of: RLIMIT_NOFILE minus ``FD_RESERVE`` (as the event
  loop); kernel.threads-max, kernel.pid_max and vm.max_map_count / 2 (each thread is a
  task with a pid and two mappings: stack + guard page); RLIMIT_NPROC (counts threads);
  cgroup pids.max; and available memory / ``THREAD_MEMORY_ESTIMATE``. ``capacity_reason``
  names the one that won. At the cap the main thread stops accepting (the backlog holds
  the rest); a failed ``Thread.start`` closes that client and backs off 100 ms.
- **Stopping.** SIGINT/SIGTERM are caught in the main thread through
  ``signal.set_wakeup_fd`` into a socketpair the accept loop polls. The first signal
  drains: listeners close, idle keep-alive clients are shut down (``shutdown(SHUT_RDWR)``
  wakes a thread blocked in recv), in-flight responses finish with
  ``Connection: close``; ``shutdown_timeout`` bounds it. A second signal, or ``stop()``,
  shuts every client socket down at once. Threads are joined with a bound
  (``JOIN_SECONDS``). A client socket is shut down only under ``_lock`` while its thread
  still owns it, so the shutdown can never hit a reused fd number.
- **Counters** are updated under the same lock as the client state (one acquire per
  response): ``+=`` on an attribute is not atomic across threads.

Precedents: Apache worker MPM (threads, ThreadStackSize 8 MiB default, often lowered to
512 KiB), Java's thread-per-connection servers (-Xss), and the page's figures for
LinuxThreads (~1,000s of threads) vs NPTL (100,000 threads started in 2 s).
"""

from __future__ import annotations

import errno
import logging
import os
import resource
import select
import signal
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

from c10k.core.fdio import set_cork
from c10k.http.connection import CONNECTION_CLOSED, HTTPConnection, Limits, method_status
from c10k.http.errors import RemoteProtocolError
from c10k.http.events import NEED_DATA, PAUSED, Request
from c10k.http.writers import Response, error_response, http_date
from c10k.region import FileRegion
from c10k.server.app import FD_RESERVE, listening_sockets, raise_nofile_limit, static_files
from c10k.server.config import ServerConfig
from c10k.server.protocol import CLOSE, CONNECTION_LINES, CONNRESET_ERRNOS, KEEP_10, KEEP_11

log = logging.getLogger("c10k.server")

Handler = Callable[[Request, float], Response]
Item = bytes | FileRegion

THREAD_STACK_BYTES = 256 * 1024
# RSS per idle keep-alive client thread: scripts/thread_ceiling.py measured 24.7 KiB here
# (RSS 24.6 MiB idle -> 483.0 MiB with 19,000 clients; Python 3.11, x86_64), rounded up
# for other builds. Used only to turn available memory into a cap.
THREAD_MEMORY_ESTIMATE = 32 * 1024
RECV_SIZE = 65536
SENDFILE_CHUNK = 1 << 20
TIMEO_SLACK = 0.5  # seconds: re-set SO_RCVTIMEO only when the wanted value moves this much
JOIN_SECONDS = 5.0  # bound on joining client threads at close
ACCEPT_BATCH = 64  # accepts per wakeup (asyncio's backlog loop, bpo-27906)
ACCEPT_BACKOFF = 0.1  # trio SLEEP_TIME after EMFILE & co.
ACCEPT_CAPACITY_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
IDLE, BUSY, DONE = range(3)


def make_handler(config: ServerConfig) -> Handler:
    """The default handler, configured exactly as ``c10k.server.app.Server``'s."""
    return static_files(config).handle


class WirePolicy:
    """What ``app.Server`` + ``protocol.Connection`` decide per request, for servers that
    do their own I/O: which response, which Connection header, the Date line, the wire
    bytes. Safe to share between threads: its dicts are only read, set and cleared (each
    one atomic under the GIL); a lost race rebuilds the same bytes.
    """

    def __init__(self, config: ServerConfig, handler: Handler | None) -> None:
        self.config = config
        self.handler = handler if handler is not None else make_handler(config)
        self.limits = Limits(config.max_header_bytes, config.max_fields)
        self._errors: dict[int, Response] = {}
        self._date_second = -1
        self.date_line = b""
        # Response -> wire bytes per Connection-header kind, valid for one Date second
        # (keyed by the object, which the dict keeps alive: see docs/ARCHITECTURE.md).
        self._memo: dict[Response, list[bytes | None]] = {}

    def refresh_date(self) -> bytes:
        now = time.time()
        second = int(now)
        if second != self._date_second:
            self._memo = {}
            self.date_line = b"Date: " + http_date(now) + b"\r\n"
            self._date_second = second
        return self.date_line

    def error(self, status: int) -> Response:
        resp = self._errors.get(status)
        if resp is None:
            resp = self._errors[status] = error_response(status, close=True)
        return resp

    def method_response(self, status: int) -> Response:
        resp = self._errors.get(-status)
        if resp is None:
            extra = [(b"Allow", b"GET, HEAD")] if status == 405 else None
            resp = self._errors[-status] = error_response(status, extra)
        return resp

    def answer(self, req: Request, out: list[Item], now: float, draining: bool) -> tuple[int, bool]:
        """Append the response to ``req`` to ``out``; return (bytes queued, must close)."""
        method = req.method
        if method == b"GET" or method == b"HEAD":
            try:
                resp = self.handler(req, now)
            except Exception:
                log.exception("handler failed for %r", req.target)
                resp = self.error(500)
        else:
            resp = self.method_response(method_status(method))
        if req.keep_alive and not resp.close and not req.has_body and not draining:
            kind = KEEP_11 if req.minor else KEEP_10
        else:
            kind = CLOSE
        return self.append(out, resp, kind, method == b"HEAD"), kind == CLOSE

    def append(self, out: list[Item], resp: Response, kind: int, head: bool) -> int:
        body = resp.body
        date = self.refresh_date()
        if body is None or body.__class__ is bytes:
            memo = self._memo
            wires = memo.get(resp)
            if wires is None:
                wires = memo[resp] = [None, None, None]
            wire = wires[kind]
            if wire is None:
                wire = wires[kind] = b"".join(
                    (resp.head, date, CONNECTION_LINES[kind], b"\r\n", body or b"")
                )
            if head and body:  # a HEAD answered with a GET's response (error pages)
                wire = wire[: len(wire) - len(body)]
            out.append(wire)
            return len(wire)
        out.append(b"".join((resp.head, date, CONNECTION_LINES[kind], b"\r\n")))
        parts = body if isinstance(body, tuple) else (body,)
        for part in parts:
            if head:
                if isinstance(part, FileRegion):
                    part.release()
            else:
                out.append(part)
        return 4096


def release_items(items: list[Item]) -> None:
    for item in items:
        if isinstance(item, FileRegion):
            item.release()


def thread_ceiling(stack_bytes: int = THREAD_STACK_BYTES) -> tuple[int, str]:
    """How many more threads this process can start, and what limits it."""
    limits: list[tuple[int, str]] = []

    def read_int(path: str) -> int | None:
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    threads_max = read_int("/proc/sys/kernel/threads-max")
    if threads_max is not None:
        limits.append((threads_max, f"kernel.threads-max {threads_max}"))
    pid_max = read_int("/proc/sys/kernel/pid_max")
    if pid_max is not None:
        limits.append((pid_max, f"kernel.pid_max {pid_max}"))
    map_count = read_int("/proc/sys/vm/max_map_count")
    if map_count is not None:
        # Two mappings per thread (stack + guard page); the interpreter holds some itself.
        limits.append(
            (map_count // 2 - 1000, f"vm.max_map_count {map_count} (2 mappings per thread)")
        )
    nproc, _ = resource.getrlimit(resource.RLIMIT_NPROC)
    if nproc != resource.RLIM_INFINITY:
        limits.append((nproc, f"RLIMIT_NPROC {nproc} (threads count as processes)"))
    for cgroup_line in _read_lines("/proc/self/cgroup"):
        parts = cgroup_line.split(":", 2)
        if len(parts) != 3:
            continue
        base = "/sys/fs/cgroup" if parts[0] == "0" else "/sys/fs/cgroup/pids"
        if parts[0] == "0" or "pids" in parts[1].split(","):
            pids = read_int(f"{base}{parts[2]}/pids.max")
            if pids is not None:
                limits.append((pids, f"cgroup pids.max {pids}"))
    available = _mem_available()
    if available is not None:
        per = THREAD_MEMORY_ESTIMATE
        limits.append(
            (available // per, f"{available >> 20} MiB available at ~{per >> 10} KiB per thread")
        )
    if not limits:
        return 1 << 20, "no thread limit found"
    return min(limits)


def _read_lines(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().splitlines()
    except OSError:
        return []


def _mem_available() -> int | None:
    for line in _read_lines("/proc/meminfo"):
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


class _Client:
    __slots__ = ("sock", "state", "thread")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = BUSY  # a fresh client is about to read its first request
        self.thread: threading.Thread | None = None


class ThreadedServer:
    """HTTP/1.1 static server, one blocking OS thread per client (see module comment)."""

    backend_name = "threads"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    def __init__(
        self,
        config: ServerConfig,
        handler: Handler | None = None,
        sock: socket.socket | list[socket.socket] | None = None,
    ) -> None:
        self.config = config
        self.policy = WirePolicy(config, handler)
        self.handler = self.policy.handler
        self.nofile_soft, self.nofile_hard = raise_nofile_limit()
        self.capacity, self.capacity_reason = self._capacity()
        self.socks = listening_sockets(config, sock)
        self.sock = self.socks[0]
        for s in self.socks:
            s.setblocking(False)
        self.requests = 0
        self.timeouts = 0
        self.draining = False
        self._stop_now = False
        self._closed = False
        self._lock = threading.Lock()
        self._clients: set[_Client] = set()
        self._paused = False
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._old_wakeup_fd: int | None = None
        self._old_handlers: dict[int, Any] = {}

    # -- public face (ServerLike) --------------------------------------------------
    @property
    def address(self) -> tuple[str, int]:
        name = self.sock.getsockname()
        if isinstance(name, str):
            return name, 0
        return name[0], name[1]

    @property
    def url(self) -> str:
        host, port = self.address
        if self.sock.family == socket.AF_UNIX:
            return f"http+unix://{host}:/"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{port}/"

    @property
    def connections(self) -> int:
        return len(self._clients)

    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM: drain (a second one stops at once). Main thread only."""
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(
                self._wsock.fileno(), warn_on_full_buffer=False
            )
        for sig in (signal.SIGINT, signal.SIGTERM):
            old = signal.signal(sig, _ignore_in_python)
            self._old_handlers.setdefault(sig, old)

    def serve_forever(self, install_signals: bool = True) -> None:
        if install_signals:
            self.install_signal_handlers()
        old_stack = threading.stack_size(THREAD_STACK_BYTES)
        try:
            self._accept_loop()
        finally:
            threading.stack_size(old_stack)
            self.close()

    def stop(self) -> None:
        """Thread-safe: every client is shut down and ``serve_forever`` returns."""
        self._stop_now = True
        self._wake()

    def shutdown(self) -> None:
        """Thread-safe graceful stop (see the module comment)."""
        self._begin_drain()
        self._wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in self.socks:
            s.close()
        with self._lock:
            clients = list(self._clients)
            for c in clients:
                _shutdown(c.sock)
        deadline = time.monotonic() + JOIN_SECONDS
        for c in clients:
            if c.thread is not None:
                c.thread.join(max(0.0, deadline - time.monotonic()))
        for sig, old in self._old_handlers.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        self._old_handlers.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        self._rsock.close()
        self._wsock.close()

    # -- main thread: accept -------------------------------------------------------
    def _capacity(self) -> tuple[int, str]:
        cap = self.nofile_soft - FD_RESERVE
        reason = f"RLIMIT_NOFILE {self.nofile_soft} minus {FD_RESERVE} reserved fds"
        threads, why = thread_ceiling()
        threads -= threading.active_count() + 16  # the interpreter's own and a margin
        if threads < cap:
            cap, reason = threads, f"threads: {why}"
        if self.config.max_connections is not None and self.config.max_connections < cap:
            cap, reason = self.config.max_connections, "--max-connections"
        return max(cap, 1), reason

    def _wake(self) -> None:
        try:
            self._wsock.send(b"\0")
        except OSError:
            pass  # full (a wake is pending anyway) or closed (we are stopping)

    def _accept_loop(self) -> None:
        poller = select.poll()
        wake_fd = self._rsock.fileno()
        poller.register(wake_fd, select.POLLIN)
        listening: dict[int, socket.socket] = {}
        resume_at = 0.0
        drain_deadline = 0.0
        while not self._stop_now:
            now = time.monotonic()
            if self.draining:
                if not drain_deadline:
                    drain_deadline = now + self.config.shutdown_timeout
                if not self._clients or now >= drain_deadline:
                    break
            want = not self.draining and not self._paused and now >= resume_at
            if want and not listening:
                for s in self.socks:
                    poller.register(s.fileno(), select.POLLIN)
                    listening[s.fileno()] = s
            elif not want and listening:
                for fd in listening:
                    poller.unregister(fd)
                listening.clear()
            timeout: float | None = None
            if self.draining:
                timeout = drain_deadline - now
            elif now < resume_at:
                timeout = resume_at - now
            ms = -1 if timeout is None else max(1, int(timeout * 1000) + 1)
            for fd, _ev in poller.poll(ms):
                if fd == wake_fd:
                    self._on_wakeup()
                elif (
                    fd in listening
                    and not self.draining
                    and not self._paused
                    and not self._accept(listening[fd])
                ):
                    resume_at = time.monotonic() + ACCEPT_BACKOFF

    def _on_wakeup(self) -> None:
        try:
            data = self._rsock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            if signum in (signal.SIGINT, signal.SIGTERM):
                if self.draining:
                    log.info("signal %d again: stopping now", signum)
                    self._stop_now = True
                else:
                    log.info(
                        "signal %d: draining %d connections (at most %.0f s; again to stop now)",
                        signum,
                        len(self._clients),
                        self.config.shutdown_timeout,
                    )
                    self._begin_drain()

    def _begin_drain(self) -> None:
        with self._lock:
            if self.draining:
                return
            self.draining = True
            for c in self._clients:
                if c.state == IDLE:
                    _shutdown(c.sock)
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass

    def _accept(self, listener: socket.socket) -> bool:
        """Accept a batch; False to back off (out of fds, threads or memory)."""
        for _ in range(ACCEPT_BATCH):
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return True
            except OSError as exc:
                if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                    log.warning("accept: %s; pausing %.0f ms", exc, ACCEPT_BACKOFF * 1e3)
                    return False
                if exc.errno == errno.EBADF:  # closed by a drain in another thread
                    return True
                raise
            conn.settimeout(None)
            client = _Client(conn)
            thread = threading.Thread(
                target=self._serve, args=(client,), name="c10k-client", daemon=True
            )
            client.thread = thread
            with self._lock:
                self._clients.add(client)
                if len(self._clients) >= self.capacity:
                    self._paused = True
            try:
                thread.start()
            except RuntimeError as exc:  # "can't start new thread": EAGAIN from clone()
                log.warning("cannot start a client thread: %s; pausing accept", exc)
                with self._lock:
                    self._clients.discard(client)
                    self._paused = len(self._clients) >= self.capacity
                conn.close()
                return False
            if self._paused:
                return True
        return True

    # -- client threads ------------------------------------------------------------
    def _serve(self, client: _Client) -> None:
        sock = client.sock
        out: list[Item] = []
        try:
            self._converse(client, sock, out)
        except OSError as exc:
            if exc.errno not in CONNRESET_ERRNOS and not isinstance(exc, BlockingIOError):
                log.error("client connection: %s", exc)
        except Exception:
            log.exception("client thread failed")
        finally:
            release_items(out)
            with self._lock:
                client.state = DONE
                self._clients.discard(client)
                wake = (self._paused and len(self._clients) < self.capacity) or (
                    self.draining and not self._clients
                )
                if self._paused and len(self._clients) < self.capacity:
                    self._paused = False
                sock.close()
            if wake:
                self._wake()

    def _converse(self, client: _Client, sock: socket.socket, out: list[Item]) -> None:
        config = self.config
        policy = self.policy
        conn = HTTPConnection(policy.limits)
        limit = config.max_pending_output_bytes
        monotonic = time.monotonic
        deadline = monotonic() + config.header_timeout
        timeo = _set_timeo(sock, socket.SO_RCVTIMEO, config.header_timeout)
        _set_timeo(sock, socket.SO_SNDTIMEO, config.send_timeout)
        recv = sock.recv
        while True:
            # Answer every complete request in the buffer, in order (pipelining).
            will_close = False
            pending = 0
            answered = 0
            now = monotonic()
            while True:
                try:
                    event = conn.next_event()
                except RemoteProtocolError as exc:
                    policy.append(out, policy.error(exc.error_status_hint), CLOSE, False)
                    answered += 1
                    will_close = True
                    break
                if event is NEED_DATA:
                    break
                if event is CONNECTION_CLOSED or event is PAUSED:
                    will_close = True
                    break
                assert isinstance(event, Request)
                n, will_close = policy.answer(event, out, now, self.draining)
                answered += 1
                pending += n
                if will_close or pending > limit:
                    break
            if out:
                client.state = BUSY
                self._send(sock, out)
            buffered = bool(conn._buf)
            with self._lock:
                self.requests += answered
                if not will_close:
                    if self.draining and not buffered:
                        will_close = True  # idle now: the drain closes it
                    else:
                        client.state = BUSY if buffered else IDLE
            if will_close:
                self._finish(sock, conn)
                return
            if answered:
                now = monotonic()
                deadline = now + (config.header_timeout if buffered else config.keepalive_timeout)
            if buffered and pending > limit:
                continue  # more complete requests wait in the buffer
            # Wait for bytes, at most until the deadline.
            remaining = deadline - monotonic()
            if remaining <= 0:
                self._timed_out(sock, conn)
                return
            if abs(remaining - timeo) > TIMEO_SLACK:
                timeo = _set_timeo(sock, socket.SO_RCVTIMEO, remaining)
            try:
                data = recv(RECV_SIZE)
            except (BlockingIOError, TimeoutError):
                self._timed_out(sock, conn)
                return
            if not data and client.state == IDLE and self.draining:
                return  # shut down by the drain
            client.state = BUSY
            try:
                conn.receive_data(data)
            except RemoteProtocolError:
                return

    def _send(self, sock: socket.socket, out: list[Item]) -> None:
        """Write ``out`` (emptied as it goes); raises OSError on a dead or stalled peer."""
        fd = sock.fileno()
        run: list[bytes] = []
        while out:
            item = out.pop(0)
            if not isinstance(item, FileRegion):
                run.append(item)
                if out and not isinstance(out[0], FileRegion):
                    continue
                data = run[0] if len(run) == 1 else b"".join(run)
                run.clear()
                if out:  # a header before a file body: cork (nginx tcp_nopush)
                    set_cork(fd, True)
                sock.sendall(data)
                continue
            try:
                while item.count:
                    n = os.sendfile(fd, item.fd, item.offset, min(item.count, SENDFILE_CHUNK))
                    if n == 0:
                        raise OSError(errno.EPIPE, "file shrank while being sent")
                    item.offset += n
                    item.count -= n
            finally:
                item.release()
            set_cork(fd, False)

    def _finish(self, sock: socket.socket, conn: HTTPConnection) -> None:
        """Close after the last response, lingering if the client may still be sending."""
        buf, eof = conn.trailing_data
        if not buf and eof:
            return
        if not buf and not conn._paused:
            return
        # Lingering close (nginx lingering_close): our response is out; read and discard
        # until the client closes or linger_timeout, so unread bytes cause no RST.
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            return
        deadline = time.monotonic() + self.config.linger_timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            _set_timeo(sock, socket.SO_RCVTIMEO, remaining)
            try:
                if not sock.recv(RECV_SIZE):
                    return
            except OSError:
                return

    def _timed_out(self, sock: socket.socket, conn: HTTPConnection) -> None:
        with self._lock:
            self.timeouts += 1
            if conn._buf:
                self.requests += 1  # the 408 counts as a response, as in app.Server
        if conn._buf:
            # RFC 9110 section 15.5.9: 408 for a request the client did not finish.
            wire: list[Item] = []
            self.policy.append(wire, self.policy.error(408), CLOSE, False)
            try:
                sock.send(wire[0])  # type: ignore[arg-type]
            except OSError:
                pass


def _set_timeo(sock: socket.socket, opt: int, seconds: float) -> float:
    seconds = max(seconds, 0.001)
    sec = int(seconds)
    usec = int((seconds - sec) * 1e6)
    sock.setsockopt(socket.SOL_SOCKET, opt, struct.pack("ll", sec, usec))
    return seconds


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _ignore_in_python(signum: int, frame: object) -> None:
    # The C-level handler wrote signum to the wakeup socket; the accept loop acts on it.
    pass
