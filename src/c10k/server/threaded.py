"""Thread per connection: blocking sockets, one OS thread per client (Kegel strategy 4).

The shape of the classic servers the page starts from (Apache's worker MPM, Java's
pre-NIO ``ServerSocket`` loop): the main thread accepts; each client gets a thread that
blocks in ``recv``, runs the connection's ``Session`` (the same engine as every other
mode), blocks in ``send``/``sendfile``, and loops for keep-alive. The kernel's scheduler
is the event loop.

How the Session is driven here:

- **One lock around the engine.** The Session and the per-process Policy are written for
  one thread at a time; each client thread holds ``lock`` while it calls into its
  Session (and the accept thread while it runs timers and signals). Everything that
  blocks happens outside the lock: ``recv``, ``send``/``sendfile``, and the disk work a
  Session offloads (``ThreadLoop.run_in_thread`` runs it on the client's own thread, after
  the lock is released: that thread *is* its pool, so ``--io-threads`` has no meaning
  here and is refused).
- **Writes are collected, then sent.** ``ThreadTransport`` tries a write at once with
  MSG_DONTWAIT (so a response that fits the socket is written as on the event loop), and
  queues what does not fit, and file bodies; the client thread sends the queue with
  blocking calls once it lets the lock go, then reports ``resume_writing``.
- **Timeouts are socket options, not a timer thread.** SO_RCVTIMEO is set from the
  Session's deadline (header, keep-alive, linger) and re-set only when the wanted value
  moves by more than ``TIMEO_SLACK``, so a keep-alive request costs one recv and one send;
  SO_SNDTIMEO is the send timeout. A timeout comes back as EAGAIN and becomes
  ``Session.on_deadline``. Python's own ``settimeout`` would make the fd nonblocking and
  poll() before every call: two syscalls per I/O instead of one. File bodies go out in
  ``SENDFILE_CHUNK`` pieces so the Session's send-rate check runs between them.
- **Closing from another thread** (a drain closing idle keep-alives, a stop): the
  transport is marked and its socket shut down (``shutdown(SHUT_RDWR)`` wakes a thread
  blocked in recv), under the lock while the client thread still owns the socket, so the
  shutdown can never hit a reused fd number; the client thread itself closes the fd.
- **Stack size.** ``threading.stack_size(THREAD_STACK_BYTES)``: 256 KiB instead of glibc's
  8 MiB default. Since Python 3.11 Python-to-Python calls do not recurse on the C stack,
  but C-level recursion (repr of nested containers in a log line) is bounded by
  CPython's *count*, not by stack bytes: a list nested 990 deep, repr'd in a thread,
  segfaults with 32-128 KiB stacks and raises RecursionError with 256 KiB (3.11 x86_64).
  The stack is virtual memory: 24.7 KiB of RSS per idle client thread in all
  (scripts/thread_ceiling.py).
- **Mass wake-ups are the weak spot.** Thousands of idle threads cost nothing while they
  sleep in recv, but woken at once (a drain) they convoy on the GIL: so a drain is
  bounded by ``shutdown_timeout`` and the join by ``JOIN_SECONDS``; the threads are
  daemons, so the process exits anyway.
- **Connection cap** = the smallest of RLIMIT_NOFILE minus FD_RESERVE, kernel.threads-max,
  kernel.pid_max, vm.max_map_count / 2 (stack + guard page per thread), RLIMIT_NPROC,
  cgroup pids.max, and available memory / ``THREAD_MEMORY_ESTIMATE``; ``capacity_reason``
  names the one that won. A failed ``Thread.start`` closes that client and backs off.
- **Overload readings**: the lag is how late the accept thread's timers fire (GIL and run
  queue), the load the most client threads inside a request at once since the last check.

Precedents: Apache worker MPM (ThreadStackSize), Java's thread-per-connection servers
(-Xss), and the page's figures for LinuxThreads (~1,000s of threads) vs NPTL (100,000
threads started in 2 s).
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
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import Any, ClassVar, TypeVar

from c10k.core import transport as tp
from c10k.core.fdio import reset_on_close, set_cork, unsent_bytes
from c10k.core.listener import ACCEPT_BATCH, ACCEPT_CAPACITY_ERRNOS, CAPACITY_SLEEP, accept_fds
from c10k.core.loop import LOAD_ALPHA
from c10k.core.timers import TimerHandle, TimerHeap
from c10k.core.transport import DETACHED, BaseTransport, Item, coalesce, release
from c10k.region import FileRegion
from c10k.server.base import ServerBase, session_of
from c10k.server.session import Session

log = logging.getLogger("c10k.server")
T = TypeVar("T")

THREAD_STACK_BYTES = 256 * 1024
# RSS per idle keep-alive client thread: scripts/thread_ceiling.py measured 24.7 KiB here
# (RSS 24.6 MiB idle -> 483.0 MiB with 19,000 clients; Python 3.11, x86_64), rounded up
# for other builds. Used only to turn available memory into a cap.
THREAD_MEMORY_ESTIMATE = 32 * 1024
SENDFILE_CHUNK = 1 << 20
TIMEO_SLACK = 0.5  # seconds: re-set SO_RCVTIMEO only when the wanted value moves this much
JOIN_SECONDS = 5.0  # bound on joining client threads at close
# Transport flags beyond c10k.core.transport's: close now, dropping the queue (abort); the
# write side was shut down (write_eof done).
ABORTING = 64
SHUT_DONE = 128


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


class _NoDeadlines:
    """Deadlines in this mode are each client thread's socket timeouts: nothing to file."""

    def schedule(self, item: object) -> None:
        pass

    def discard(self, item: object) -> None:
        pass


class ThreadLoop:
    """What a Session needs of a loop, for one client thread: its own clock (read when
    asked), and callbacks and disk work that wait until the thread lets go of the lock."""

    __slots__ = ("jobs", "soon")
    deadlines = _NoDeadlines()
    # No timers: the Session's early look at a fast client's speed is skipped (its send
    # queue still grows at the end of a blocked write).
    call_later = None

    def __init__(self) -> None:
        self.soon: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self.jobs: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...], Any]] = []

    @property
    def now(self) -> float:
        return time.monotonic()

    def call_soon(self, callback: Callable[..., object], *args: object) -> None:
        self.soon.append((callback, args))

    def run_in_thread(
        self, fn: Callable[..., T], *args: Any, done: Callable[[Future[T]], object]
    ) -> Future[T]:
        future: Future[T] = Future()
        self.jobs.append((future, fn, args, done))
        return future


class ThreadTransport(BaseTransport):
    """One client's transport: writes are tried at once without blocking, the rest is
    queued for the client thread to send when it lets go of the lock."""

    __slots__ = ("_flags", "_out", "fd", "owner", "peer", "protocol", "sock")

    def __init__(self, sock: socket.socket, peer: object) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.peer = peer
        self.protocol: Any = None
        self.owner = 0  # the client thread's ident
        self._out: list[Item] | None = None
        self._flags = 0

    # -- what a Session calls (under the server's lock) --------------------------------
    def writelines(self, items: Iterable[Item]) -> None:
        if self._refused(items, tp.CLOSING | tp.SHUTTING | ABORTING):
            return
        flags = self._flags
        batch = coalesce(items)
        if self._out is None and len(batch) == 1 and not isinstance(batch[0], FileRegion):
            data = batch[0]
            try:
                n = self.sock.send(data, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                n = 0  # the client thread's blocking send reports it
            if n == len(data):
                return
            batch[0] = memoryview(data)[n:]
        if not batch:
            return
        self._enqueue(batch)
        if not flags & tp.WRITING:
            self._flags |= tp.WRITING
            self.protocol.pause_writing()

    def pause_reading(self) -> None:
        self._flags |= tp.PAUSED

    def resume_reading(self) -> None:
        self._flags &= ~tp.PAUSED

    def close(self) -> None:
        if not self._flags & tp.CLOSED:
            self._flags |= tp.CLOSING
            self._wake_owner()

    def write_eof(self) -> None:
        self._flags |= tp.SHUTTING

    def abort(self, reset: bool = False) -> None:
        if self._flags & tp.CLOSED:
            return
        if reset:
            reset_on_close(self.fd)
        self._flags |= ABORTING
        self._wake_owner()

    def _wake_owner(self) -> None:
        # From another thread (a drain, a stop): wake the client thread if it sleeps in
        # recv; it closes the socket itself. Under the lock while it owns the socket, so
        # this never hits a reused fd number.
        if threading.get_ident() != self.owner:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def pending_bytes(self) -> int:
        if self._flags & tp.CLOSED:
            return 0
        queued = sum(len(item) for item in self._out) if self._out else 0
        return queued + unsent_bytes(self.fd)

    def drained(self) -> None:
        """The client thread sent the queue (called under the lock)."""
        self._out = None
        if self._flags & tp.WRITING:
            self._flags &= ~tp.WRITING
            self.protocol.resume_writing()


_NO_PACING = (
    "a client thread blocks in sendfile and has no timers to pace with "
    "(every loop mode paces with timers)"
)


class ThreadedServer(ServerBase):
    """HTTP/1.1 server, one blocking OS thread per client (see the module comment)."""

    backend_name: ClassVar[str] = "threads"
    # Settings this mode cannot honour, refused at start when set (c10k.server.modes).
    refused: ClassVar[dict[str, str]] = {
        "io_threads": "each client's own thread does its disk I/O: there is no pool to size",
        "limit_rate": _NO_PACING,
        "limit_rate_paths": _NO_PACING,
    }

    def _setup(self) -> None:
        threads, why = thread_ceiling()
        threads -= threading.active_count() + 16  # the interpreter's own and a margin
        self._set_capacity([(threads, f"threads: {why}")])
        self.lock = threading.Lock()
        self.transports: set[ThreadTransport] = set()
        self.threads: set[threading.Thread] = set()
        self.accepted = [0] * len(self.socks)
        self.busy: list[None] = []  # one entry per client thread inside a request
        self.busy_peak = 0  # the most at once since the last pressure reading
        self.timers = TimerHeap()
        self.soon: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        self.lag = 0.0
        self._stop_now = False
        self._closed = False
        self._accept_retry_at = 0.0
        self._accept_thread = 0  # (its ident once serving)
        self._rsock, self._wsock = socket.socketpair()
        self._rsock.setblocking(False)
        self._wsock.setblocking(False)
        self._old_wakeup_fd: int | None = None
        self._old_handlers: dict[int, Any] = {}

    # -- the accept thread ------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM: drain (a second one stops at once). Main thread only."""
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(
                self._wsock.fileno(), warn_on_full_buffer=False
            )
        for sig in self.handled_signals:
            old = signal.signal(sig, _ignore_in_python)
            self._old_handlers.setdefault(sig, old)

    def serve_forever(self, install_signals: bool = True) -> None:
        if install_signals:
            self.install_signal_handlers()
        old_stack = threading.stack_size(THREAD_STACK_BYTES)
        self._accept_thread = threading.get_ident()
        try:
            with self.lock:
                self._start_housekeeping()
            self._accept_loop()
        finally:
            threading.stack_size(old_stack)
            self.close()

    def _accept_loop(self) -> None:
        poller = select.poll()
        wake_fd = self._rsock.fileno()
        poller.register(wake_fd, select.POLLIN)
        listening: dict[int, tuple[int, socket.socket]] = {}
        while not self._stop_now:
            self._run_timers()
            want = not (self.draining or self.accepting_paused or self._accept_retry_at)
            if want and not listening:
                for i, s in enumerate(self.socks):
                    poller.register(s.fileno(), select.POLLIN)
                    listening[s.fileno()] = (i, s)
            elif not want and listening:
                for fd in listening:
                    poller.unregister(fd)
                listening.clear()
            when = self.timers.next_when()
            if self._accept_retry_at and (when is None or self._accept_retry_at < when):
                when = self._accept_retry_at
            ms = -1 if when is None else max(1, int((when - time.monotonic()) * 1000) + 1)
            for fd, _ev in poller.poll(0 if self.soon else ms):
                if fd == wake_fd:
                    self._on_wakeup()
                elif fd in listening and not self.draining and not self.accepting_paused:
                    self._accept(*listening[fd])

    def _run_timers(self) -> None:
        now = time.monotonic()
        if self._accept_retry_at and now >= self._accept_retry_at:
            self._accept_retry_at = 0.0
        due = self.timers.pop_due(now)
        if not due and not self.soon:
            return
        with self.lock:
            late = time.monotonic()
            for h in due:
                # How late a timer runs, the engine's lock taken, is how long a client
                # that has its bytes waits for its turn (lock, GIL, run queue): this
                # mode's loop lag.
                self.lag += (late - h.when - self.lag) * LOAD_ALPHA
                _run_one(h.callback, h.args)
            soon, self.soon = self.soon, []
            for callback, args in soon:
                _run_one(callback, args)

    def _on_wakeup(self) -> None:
        try:
            data = self._rsock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        for signum in data:
            if signum in self.handled_signals:
                with self.lock:
                    self.on_signal(signum)

    def _wake(self) -> None:
        try:
            self._wsock.send(b"\\0")
        except OSError:
            pass  # full (a wake is pending anyway) or closed (we are stopping)

    def _accept(self, index: int, listener: socket.socket) -> None:
        """Accept a batch; back off on EMFILE & co. (out of fds, threads or memory)."""
        n = 0
        try:
            for fd, addr in accept_fds(listener, ACCEPT_BATCH):
                n += 1
                self.accepted[index] += 1
                with self.lock:
                    if self.admit(fd) and not self._start_client(fd, addr, index):
                        self._accept_retry_at = time.monotonic() + CAPACITY_SLEEP
                        return
                    if self.accepting_paused:
                        return
        except OSError as exc:
            if exc.errno == errno.EBADF:
                return  # closed by a drain meanwhile
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            log.warning("accept: %s; pausing %.0f ms", exc, CAPACITY_SLEEP * 1e3)
            self._accept_retry_at = time.monotonic() + CAPACITY_SLEEP
            return
        if n == ACCEPT_BATCH:
            with self.lock:
                self.backlog_alert()

    def _start_client(self, fd: int, addr: object, index: int = 0) -> bool:
        """(Under the lock.) A thread for the new client; False if none could start."""
        sock = socket.socket(fileno=fd)
        transport = ThreadTransport(sock, addr if self.policy.keep_peer else None)
        thread = threading.Thread(
            target=self._serve, args=(transport, index), name="c10k-client", daemon=True
        )
        self.transports.add(transport)
        self.threads.add(thread)
        self.opened()
        try:
            thread.start()
        except RuntimeError as exc:  # "can't start new thread": EAGAIN from clone()
            log.warning("cannot start a client thread: %s; pausing accept", exc)
            self.transports.discard(transport)
            self.threads.discard(thread)
            sock.close()
            self.connection_closed()
            return False
        return True

    # -- client threads ---------------------------------------------------------------
    def _serve(self, transport: ThreadTransport, index: int) -> None:
        loop = ThreadLoop()
        with self.lock:
            transport.owner = threading.get_ident()
            protocol = self.make_protocol(loop, index)
            session = session_of(protocol)
            assert session is not None
            transport.protocol = protocol
            protocol.connection_made(transport)
        try:
            self._converse(transport, protocol, session, loop)
        except OSError as exc:
            if exc.errno not in tp.CONNRESET_ERRNOS and not isinstance(exc, BlockingIOError):
                log.error("client connection: %s", exc)
        except Exception:
            log.exception("client thread failed")
        finally:
            with self.lock:
                out, transport._out = transport._out, None
                if out:
                    release(out)
                transport._flags = tp.CLOSED
                self.transports.discard(transport)
                self.threads.discard(threading.current_thread())
                transport.sock.close()
                transport.protocol = DETACHED  # no cycle left: freed at once
                protocol.connection_lost(None)

    def _converse(
        self, t: ThreadTransport, protocol: Any, session: Session, loop: ThreadLoop
    ) -> None:
        """Read and hand the bytes to ``protocol`` (the Session, or its TLSLayer); the
        Session's deadline bounds each wait."""
        sock = t.sock
        lock = self.lock
        recv = sock.recv
        read_size = self.policy.read_size
        monotonic = time.monotonic
        _set_timeo(sock, socket.SO_SNDTIMEO, self.config.send_timeout)
        timeo = 0.0
        while True:
            if (loop.jobs or loop.soon or t._out or t._flags) and not self._settle(
                t, session, loop
            ):
                return
            deadline = session.deadline
            remaining = None if deadline is None else deadline - monotonic()
            if t._flags & (tp.PAUSED | tp.READ_EOF):
                # Nothing to read until the engine says so: wait out its deadline.
                remaining = 0.0 if remaining is None else remaining
                time.sleep(max(0.0, min(remaining, 0.05)))
                data = None
            elif remaining is not None and remaining <= 0:
                data = None
            else:
                wanted = 0.0 if remaining is None else max(remaining, 0.001)
                if abs(wanted - timeo) > TIMEO_SLACK or (wanted == 0.0) != (timeo == 0.0):
                    timeo = _set_timeo(sock, socket.SO_RCVTIMEO, wanted)
                try:
                    data = recv(read_size)
                except (BlockingIOError, TimeoutError):
                    data = None
            if data is None:
                with lock:
                    if t._flags & (tp.CLOSING | ABORTING | tp.CLOSED):
                        return  # closed by a drain or a stop while we waited
                    if session.deadline is not None and monotonic() >= session.deadline:
                        session.on_deadline()
                continue
            # Counted from here, waiting for the lock included: the load reading.
            busy = self.busy
            busy.append(None)  # (list appends and pops are atomic under the GIL)
            if len(busy) > self.busy_peak:
                self.busy_peak = len(busy)
            reply = None
            try:
                with lock:
                    if t._flags & (tp.CLOSING | ABORTING | tp.CLOSED):
                        return  # closed by a drain or a stop while we waited
                    if data:
                        reply = protocol.data_received(data)
                        if reply is not None and (t._out or t._flags):
                            t.write(reply)
                            reply = None
                    else:
                        t._flags |= tp.READ_EOF
                        protocol.eof_received()
            finally:
                busy.pop()
            if reply is not None:
                self._send_reply(t, reply)

    def _send_reply(self, t: ThreadTransport, reply: bytes) -> None:
        """The hot path's one write, outside the lock (SO_SNDTIMEO bounds it); what the
        socket did not take is queued through the transport, and the Session told."""
        try:
            n = t.sock.send(reply)
        except (BlockingIOError, TimeoutError):
            n = 0
        if n != len(reply):
            with self.lock:
                t.write(memoryview(reply)[n:])

    def _settle(self, t: ThreadTransport, session: Session, loop: ThreadLoop) -> bool:
        """Do what the engine left for this thread, outside the lock: disk work, posted
        callbacks, the queued output, a half-close. False once the connection is over."""
        lock = self.lock
        while True:
            if loop.jobs:
                future, fn, args, done = loop.jobs.pop(0)
                try:
                    future.set_result(fn(*args))
                except Exception as exc:
                    future.set_exception(exc)
                with lock:
                    done(future)
                continue
            if loop.soon:
                with lock:
                    soon, loop.soon = loop.soon, []
                    for callback, args in soon:
                        _run_one(callback, args)
                continue
            flags = t._flags
            if flags & (ABORTING | tp.CLOSED):
                return False
            if t._out:
                if not self._flush(t, session):
                    return False
                with lock:
                    t.drained()
                continue
            if flags & tp.CLOSING:
                return False
            if flags & tp.SHUTTING and not flags & SHUT_DONE:
                try:
                    t.sock.shutdown(socket.SHUT_WR)
                except OSError:
                    return False
                t._flags = flags | SHUT_DONE
            return True

    def _flush(self, t: ThreadTransport, session: Session) -> bool:
        """Send the queue with blocking calls (SO_SNDTIMEO: a send_timeout without
        progress ends one); between pieces the Session's send deadline is checked."""
        out = t._out
        assert out is not None
        sock = t.sock
        fd = t.fd
        while out:
            if t._flags & (ABORTING | tp.CLOSED):
                return False
            item = out[0]
            try:
                if isinstance(item, FileRegion):
                    n = os.sendfile(fd, item.fd, item.offset, min(item.count, SENDFILE_CHUNK))
                    if n == 0 and item.count:
                        log.warning("file shrank while being sent; closing the connection")
                        return False
                    item.offset += n
                    item.count -= n
                    if not item.count:
                        item.release()
                        del out[0]
                        set_cork(fd, False)
                else:
                    if len(out) > 1 and isinstance(out[1], FileRegion):
                        set_cork(fd, True)  # the head and the body share full segments
                    n = sock.send(item)
                    if n == len(item):
                        del out[0]
                    else:
                        out[0] = memoryview(item)[n:]
            except (BlockingIOError, TimeoutError):
                pass  # a whole send_timeout without progress: the deadline decides
            deadline = session.deadline
            if deadline is not None and time.monotonic() >= deadline:
                with self.lock:
                    session.on_deadline()
        return True

    # -- ServerBase hooks ---------------------------------------------------------------
    def sessions(self) -> Iterator[Session]:
        for t in list(self.transports):
            session = session_of(t.protocol)
            if session is not None and not t.closed:
                yield session

    def accept_counts(self) -> list[int]:
        return list(self.accepted)

    def pressure_reading(self) -> tuple[float, float]:
        # The most client threads inside a request at once since the last reading: the
        # accept thread takes the engine's lock after them, so at the reading itself
        # the crowd may already be gone.
        peak, self.busy_peak = self.busy_peak, len(self.busy)
        return self.lag, float(peak)

    def _call_later(self, delay: float, callback: Callable[[], object]) -> TimerHandle:
        handle = self.timers.call_at(time.monotonic() + delay, callback)
        if threading.get_ident() != self._accept_thread:
            # (The accept thread's own timers, the Date tick and the pressure check, need
            # no wake: it reads the next due time before it waits again.)
            self._wake()
        return handle

    def _pause_accepting(self) -> None:
        self._wake()

    def _resume_accepting(self) -> None:
        self._wake()

    def _stop_loop(self) -> None:
        self._stop_now = True
        self._wake()

    def stop(self) -> None:
        """Thread-safe: every client is shut down and ``serve_forever`` returns."""
        self._stop_loop()

    def shutdown_threadsafe(self, timeout: float | None = None) -> None:
        self.soon.append((self.shutdown, (timeout,)))
        self._wake()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for s in self.socks:
            s.close()
        with self.lock:
            self.policy.close()
            for t in list(self.transports):
                t.abort()
            threads = list(self.threads)
        deadline = time.monotonic() + JOIN_SECONDS
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        for sig, old in self._old_handlers.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        self._old_handlers.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        self._rsock.close()
        self._wsock.close()


def _run_one(callback: Callable[..., object], args: tuple[object, ...]) -> None:
    try:
        callback(*args)
    except Exception:
        log.exception("error in callback %r", callback)


def _set_timeo(sock: socket.socket, opt: int, seconds: float) -> float:
    """SO_RCVTIMEO/SO_SNDTIMEO; 0 means no timeout."""
    sec = int(seconds)
    usec = int((seconds - sec) * 1e6)
    sock.setsockopt(socket.SOL_SOCKET, opt, struct.pack("ll", sec, usec))
    return seconds


def _ignore_in_python(signum: int, frame: object) -> None:
    # The C-level handler wrote signum to the wakeup socket; the accept loop acts on it.
    pass
