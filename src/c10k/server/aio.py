"""The same static server on asyncio and on uvloop: the loops Python users already run.

Kegel's page files these under "user-level threads" (coroutines multiplexed on one OS
thread over a readiness API); asyncio is that, uvloop is the same API on libuv. This mode
lets the benchmark compare our own ``Loop`` with them, serving identical HTTP: the same
sans-I/O ``HTTPConnection``, handler and response policy (``WirePolicy``, shared with the
thread-per-connection mode).

Decisions and why:

- **Protocols, not streams.** ``asyncio.Protocol`` callbacks (``data_received``) cost
  one Python call per read; ``StreamReader`` adds a coroutine switch, a future and a
  buffer copy per read (uvicorn's httptools path and vmbench's "protocol" variant are
  protocol-based for the same reason). No task per connection or per request exists.
  It is a ``BufferedProtocol`` over one receive buffer per server: a plain Protocol makes
  asyncio ``recv(256 KiB)`` into a fresh bytes object per read, which glibc serves with
  mmap + mremap + munmap, three syscalls per request (strace). ``get_buffer`` and
  ``buffer_updated`` run back to back for one read on the one loop thread, so sharing
  the buffer is safe, and an idle connection holds none.
- **Accept is ours.** We ``add_reader`` the listening sockets, accept up to
  ``ACCEPT_BATCH`` per wakeup and hand each socket to ``loop.connect_accepted_socket``.
  ``loop.create_server`` cannot pause accepting, and the connection cap needs that: at
  the cap the listener is unwatched and the kernel backlog holds the rest, as in
  ``app.Server``. EMFILE & co. unwatch it for 100 ms (trio's SLEEP_TIME).
- **Files.** asyncio: ``loop.sendfile`` (``os.sendfile`` from the page cache, zero copy;
  reading is paused while it runs). uvloop has no ``loop.sendfile`` for TCP transports
  (it raises NotImplementedError), so files are pumped with ``os.pread`` chunks of
  ``PUMP_CHUNK`` bytes through ``transport.write`` under flow control.
- **Flow control.** Bytes go to ``transport.write`` at once. When the transport says
  ``pause_writing`` (its buffer passed the high-water mark) or a file is in flight, we
  ``pause_reading`` and leave pipelined requests unparsed in the buffer; both resume when
  the output drains (h2o/nginx stop reading while a response is pending).
- **Timeouts** use one ``loop.call_at`` handle per connection, re-armed lazily: a request
  stores ``deadline``; when the handle fires early it re-arms itself at the new deadline.
  Cancelling and re-creating a TimerHandle per request would cost a heap push and
  garbage each time (the same idea as ``c10k.core.timers.Deadlines``). Header timeout ->
  408 if part of a head came, else a silent close; keep-alive -> silent close; output
  pending longer than send_timeout (refreshed on each ``resume_writing``) -> abort.
- **Closing** as in ``protocol.Connection``: ``transport.close()`` after the last
  response, or, when the client may still be sending, ``write_eof()`` and read-and-discard
  for ``linger_timeout`` (lingering close).
- **Signals** through ``loop.add_signal_handler``: the first SIGINT/SIGTERM drains (stop
  accepting, close idle keep-alives, finish in-flight with ``Connection: close``, at most
  ``shutdown_timeout``), a second stops at once.

Precedents: uvicorn's ``httptools_impl`` (Protocol, flow control, timeouts by
``call_later``), aiohttp's ``web_protocol``, MagicStack vmbench (asyncio vs uvloop).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import signal
import socket
import threading
from collections import deque
from typing import Any, ClassVar

from c10k.http.connection import CONNECTION_CLOSED, HTTPConnection
from c10k.http.errors import RemoteProtocolError
from c10k.http.events import NEED_DATA, PAUSED, Request
from c10k.region import FileRegion
from c10k.server.app import FD_RESERVE, listening_sockets, raise_nofile_limit
from c10k.server.config import ServerConfig
from c10k.server.protocol import CLOSE
from c10k.server.threaded import Handler, Item, WirePolicy, release_items

log = logging.getLogger("c10k.server")

ACCEPT_BATCH = 64  # asyncio's accept loop: backlog per wakeup (bpo-27906)
ACCEPT_BACKOFF = 0.1  # trio SLEEP_TIME after EMFILE & co.
ACCEPT_CAPACITY_ERRNOS = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS))
RECV_SIZE = 65536  # per read, as protocol.RECV_SIZE
PUMP_CHUNK = 256 * 1024  # uvloop file pump: asyncio's sendfile fallback reads 16 KiB
IDLE, WRITING, LINGERING, CLOSED = range(4)


def _abort(transport: Any) -> None:
    # CPython 3.11 selector transports: while loop.sendfile runs, the transport keeps its
    # "empty waiter" future, already done; aborting then makes _call_connection_lost call
    # set_exception on that done future and log InvalidStateError. Drop the done future
    # first (sendfile's own finally resets it to None anyway).
    waiter = getattr(transport, "_empty_waiter", None)
    if waiter is not None and waiter.done():
        transport._empty_waiter = None
    transport.abort()


class _RegionFile:
    """The file-like face ``loop.sendfile`` wants, over a FileRegion's fd (not owned)."""

    mode = "rb"

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def fileno(self) -> int:
        return self._fd

    def seek(self, offset: int, whence: int = 0) -> int:
        return offset  # asyncio seeks after sending; the region tracks its own offset


class _HTTPProtocol(asyncio.BufferedProtocol):
    def __init__(self, server: AsyncioServer) -> None:
        self.server = server
        self.loop = server.loop
        self.get_buffer = server.get_buffer  # type: ignore[method-assign]
        self.conn = HTTPConnection(server.policy.limits)
        self.transport: Any = None
        self.queue: deque[Item] = deque()
        self.busy = False  # a loop.sendfile task is running
        self.task: asyncio.Task[None] | None = None
        self.writing_paused = False
        self.reading_paused = False
        self.will_close = False
        self.state = IDLE
        self.deadline = 0.0
        self.timer: asyncio.TimerHandle | None = None
        self.timer_when = 0.0

    # -- asyncio callbacks -----------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        server = self.server
        server.connections.add(self)
        self.timer_when = self.deadline = self.loop.time() + server.config.header_timeout
        self.timer = self.loop.call_at(self.deadline, self._on_timer)

    def _set_deadline(self, when: float) -> None:
        # Later than the armed timer: one store, the timer re-arms itself when it fires.
        # Earlier (keep-alive after a header timeout, linger): re-arm now.
        self.deadline = when
        if when < self.timer_when and self.state != CLOSED:
            if self.timer is not None:
                self.timer.cancel()
            self.timer_when = when
            self.timer = self.loop.call_at(when, self._on_timer)

    def get_buffer(self, sizehint: int) -> memoryview:  # replaced per instance
        return self.server.get_buffer(sizehint)

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(bytes(self.server.recv_view[:nbytes]))

    def data_received(self, data: bytes) -> None:
        if self.state >= LINGERING:
            return  # lingering: read and discard
        try:
            self.conn.receive_data(data)
        except RemoteProtocolError:
            self.transport.abort()
            return
        if not (self.queue or self.busy or self.writing_paused):
            self._process()

    def eof_received(self) -> bool:
        if self.state >= LINGERING:
            return False  # the client is done: close
        self.conn.receive_data(b"")
        if not (self.queue or self.busy or self.writing_paused):
            self._process()
        return True  # we close when our response is out

    def pause_writing(self) -> None:
        self.writing_paused = True

    def resume_writing(self) -> None:
        self.writing_paused = False
        self._set_deadline(self.loop.time() + self.server.config.send_timeout)
        self._pump()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.state = CLOSED
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if self.task is not None:
            # Deferred: asyncio's transport sets its sendfile "empty waiter" right after
            # this callback returns; cancelling the task now would cancel that future
            # first and make asyncio raise InvalidStateError (3.11 _call_connection_lost).
            self.loop.call_soon(self.task.cancel)
        release_items(list(self.queue))
        self.queue.clear()
        self.server.connection_closed(self)

    # -- requests --------------------------------------------------------------------
    def _process(self) -> None:
        """Answer the complete requests in the buffer, in order, until output is pending."""
        server = self.server
        policy = server.policy
        conn = self.conn
        limit = server.config.max_pending_output_bytes
        answered = 0
        any_answered = False
        while self.state < LINGERING:
            out: list[Item] = []
            pending = 0
            more = False
            now = self.loop.time()
            while True:
                try:
                    event = conn.next_event()
                except RemoteProtocolError as exc:
                    policy.append(out, policy.error(exc.error_status_hint), CLOSE, False)
                    answered += 1
                    self.will_close = True
                    break
                if event is NEED_DATA:
                    break
                if event is CONNECTION_CLOSED or event is PAUSED:
                    self.will_close = True
                    break
                assert isinstance(event, Request)
                n, close = policy.answer(event, out, now, server.draining)
                answered += 1
                if close:
                    self.will_close = True
                    break
                pending += n
                if pending > limit:
                    more = True
                    break
            if answered:
                server.requests += answered
                answered = 0
                any_answered = True
            if out:
                self.queue.extend(out)
                if not self._pump(done=False):
                    return  # output pending: _pump calls us again when it drains
            if self.will_close:
                self._finish()
                return
            if not more:
                break
        if self.state >= LINGERING:
            return
        if self.reading_paused:
            self.reading_paused = False
            self.transport.resume_reading()
        if any_answered or self.state == WRITING:
            # Output is all out: a keep-alive wait, or the rest of a pipelined head. A
            # partial head alone does not move the deadline (no slowloris extension).
            self.state = IDLE
            config = server.config
            self._set_deadline(
                self.loop.time()
                + (config.header_timeout if conn._buf else config.keepalive_timeout)
            )

    # -- output ----------------------------------------------------------------------
    def _pump(self, done: bool = True) -> bool:
        """Write queued items until done or flow control says stop; True when all out.
        With ``done``, call ``_process`` once the queue has drained."""
        queue = self.queue
        transport = self.transport
        while queue and not self.writing_paused and not self.busy:
            if self.state == CLOSED:
                return False
            item = queue[0]
            if not isinstance(item, FileRegion):
                transport.write(item)
                queue.popleft()
                continue
            if self.server.native_sendfile:
                queue.popleft()
                self.busy = True
                self.task = self.loop.create_task(self._sendfile(item))
                break
            try:
                chunk = os.pread(item.fd, min(item.count, PUMP_CHUNK), item.offset)
            except OSError as exc:
                log.error("reading a file to send: %s", exc)
                chunk = b""
            if not chunk:  # the file shrank: Content-Length cannot be honoured
                log.warning("file shrank while being sent; closing the connection")
                transport.abort()
                return False
            transport.write(chunk)
            item.offset += len(chunk)
            item.count -= len(chunk)
            if not item.count:
                item.release()
                queue.popleft()
        if queue or self.busy or self.writing_paused:
            if self.state != WRITING:
                self.state = WRITING
                self._set_deadline(self.loop.time() + self.server.config.send_timeout)
            if not self.reading_paused:
                self.reading_paused = True
                transport.pause_reading()
            return False
        if done and self.state == WRITING:
            self._process()
        return True

    async def _sendfile(self, region: FileRegion) -> None:
        try:
            await self.loop.sendfile(
                self.transport,
                _RegionFile(region.fd),  # type: ignore[arg-type]
                region.offset,
                region.count,
                fallback=False,
            )
        except (OSError, RuntimeError) as exc:
            # Peer gone, or the transport closed under us. A failure before the first
            # byte is SendfileNotAvailableError (a RuntimeError): never fall back to
            # asyncio's read-into-a-buffer copy for a dead peer.
            if self.state != CLOSED:
                log.debug("sendfile: %s", exc)
                self.transport.abort()
            return
        finally:
            region.release()
            self.busy = False
            self.task = None
        if self.state != CLOSED:
            self._pump()

    # -- closing and timeouts --------------------------------------------------------
    def _finish(self) -> None:
        conn = self.conn
        buf, eof = conn.trailing_data
        # Linger only while the client may still send: after its EOF every byte it sent
        # has been read, and nothing will ever come to end the lingering.
        if not eof and (buf or conn._paused):
            self.state = LINGERING
            self._set_deadline(self.loop.time() + self.server.config.linger_timeout)
            if self.reading_paused:
                self.reading_paused = False
                self.transport.resume_reading()
            if self.transport.can_write_eof():
                self.transport.write_eof()
            return
        self.state = CLOSED
        self.transport.close()

    def _on_timer(self) -> None:
        self.timer = None
        if self.state == CLOSED:
            return
        now = self.loop.time()
        if now < self.deadline:
            self.timer_when = self.deadline
            self.timer = self.loop.call_at(self.deadline, self._on_timer)
            return
        self.server.timeouts += 1
        if self.state == WRITING or self.state == LINGERING:
            _abort(self.transport)
            return
        if self.conn._buf:
            # RFC 9110 section 15.5.9: 408 for a request the client did not finish in time.
            wire: list[Item] = []
            policy = self.server.policy
            policy.append(wire, policy.error(408), CLOSE, False)
            self.transport.write(wire[0])
            self.server.requests += 1  # the 408 counts as a response, as in app.Server
        self.state = CLOSED
        self.transport.close()

    def close_if_idle(self) -> None:
        if self.state == IDLE and not self.queue and not self.busy and not self.conn._buf:
            self.state = CLOSED
            self.transport.close()


class AsyncioServer:
    """The static server on an asyncio event loop (see the module comment)."""

    backend_name: ClassVar[str] = "asyncio"
    native_sendfile: ClassVar[bool] = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        return None

    @classmethod
    def new_loop(cls) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

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
        self.loop = self.new_loop()
        self.connections: set[_HTTPProtocol] = set()
        self.recv_view = memoryview(bytearray(RECV_SIZE))
        self.requests = 0
        self.timeouts = 0
        self.draining = False
        self._attaching = 0
        self._accepting = False
        self._signals: list[int] = []
        self._closed = False
        self._placeholders: list[socket.socket] = []
        self._warm_up()

    def _warm_up(self) -> None:
        """Allocate what the loop allocates lazily on its first connection, so an fd count
        taken after start is the steady state."""

    # -- public face (ServerLike) ----------------------------------------------------
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

    def install_signal_handlers(self) -> None:
        if self._signals:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self.loop.add_signal_handler(sig, self._on_signal, sig)
            self._signals.append(sig)

    def serve_forever(self, install_signals: bool = True) -> None:
        if install_signals:
            self.install_signal_handlers()
        self._start_accepting()
        self.loop.call_soon(self._running)
        try:
            self.loop.run_forever()
        finally:
            self.close()

    def _running(self) -> None:
        """First callback of ``serve_forever``'s loop run."""

    def stop(self) -> None:
        """Thread-safe: close every connection and make ``serve_forever`` return."""
        try:
            self.loop.call_soon_threadsafe(self.loop.stop)
        except RuntimeError:  # the loop is already closed
            pass

    def shutdown(self) -> None:
        """Graceful stop (loop thread): see the module comment."""
        if self.draining:
            return
        self.draining = True
        self._stop_accepting()
        for s in self.socks:
            s.close()
        for proto in list(self.connections):
            proto.close_if_idle()
        self.loop.call_later(self.config.shutdown_timeout, self.loop.stop)
        if not self.connections and not self._attaching:
            self.loop.stop()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self.loop
        self._stop_accepting()
        for s in self.socks:
            s.close()
        for proto in list(self.connections):
            if proto.transport is not None:
                _abort(proto.transport)
        if not loop.is_closed():
            # Let connection_lost callbacks and cancelled tasks run, then close the loop.
            loop.run_until_complete(self._settle())
            for sig in self._signals:
                loop.remove_signal_handler(sig)
            self._signals.clear()
            loop.close()

    async def _settle(self) -> None:
        # Let connection_lost callbacks run and the sendfile tasks they end finish on
        # their own (cancelling a task that waits on asyncio's sendfile "empty waiter"
        # before the transport completes that future makes asyncio log InvalidStateError);
        # cancel whatever is still pending after that.
        me = asyncio.current_task()
        for _ in range(20):
            if not [t for t in asyncio.all_tasks(self.loop) if t is not me]:
                return
            await asyncio.sleep(0)
        tasks = [t for t in asyncio.all_tasks(self.loop) if t is not me]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.recv_view

    # -- policy ----------------------------------------------------------------------
    def _capacity(self) -> tuple[int, str]:
        cap = self.nofile_soft - FD_RESERVE
        reason = f"RLIMIT_NOFILE {self.nofile_soft} minus {FD_RESERVE} reserved fds"
        if self.config.max_connections is not None and self.config.max_connections < cap:
            cap, reason = self.config.max_connections, "--max-connections"
        return max(cap, 1), reason

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

    def connection_closed(self, proto: _HTTPProtocol) -> None:
        self.connections.discard(proto)
        if self._closed:
            return  # close() is settling the loop itself
        if self.draining:
            if not self.connections and not self._attaching:
                self.loop.stop()
        elif not self._accepting and len(self.connections) + self._attaching < self.capacity:
            self._start_accepting()

    # -- accepting -------------------------------------------------------------------
    def _start_accepting(self) -> None:
        if self._accepting or self.draining or self._closed:
            return
        self._accepting = True
        for s in self.socks:
            self.loop.add_reader(s.fileno(), self._on_listen_ready, s)

    def _stop_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        for s in self.socks:
            if s.fileno() >= 0:
                self.loop.remove_reader(s.fileno())

    def _on_listen_ready(self, listener: socket.socket) -> None:
        for _ in range(ACCEPT_BATCH):
            if len(self.connections) + self._attaching >= self.capacity:
                self._stop_accepting()
                return
            try:
                conn, _addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in ACCEPT_CAPACITY_ERRNOS:
                    log.warning("accept: %s; pausing %.0f ms", exc, ACCEPT_BACKOFF * 1e3)
                    self._stop_accepting()
                    self.loop.call_later(ACCEPT_BACKOFF, self._start_accepting)
                    return
                raise
            self._attaching += 1
            self.loop.create_task(self._attach(conn))

    async def _attach(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: _HTTPProtocol(self), conn)
        except (OSError, RuntimeError) as exc:
            log.warning("cannot attach an accepted connection: %s", exc)
            conn.close()
        finally:
            self._attaching -= 1
        if self.draining and not self._closed and not self.connections and not self._attaching:
            self.loop.stop()
        elif not self._accepting and len(self.connections) + self._attaching < self.capacity:
            # Between connection_made (which adds the protocol to ``connections``) and
            # this point the connection was counted twice; a listener wakeup in that
            # window stopped accepting one short of the cap, and with no connection closing
            # nothing would start it again (found by test_server_connection_cap_pauses_accept,
            # about 1 run in 15).
            self._start_accepting()


class UvloopServer(AsyncioServer):
    """The same server on uvloop (libuv); files are pumped (see the module comment)."""

    backend_name: ClassVar[str] = "uvloop"
    native_sendfile: ClassVar[bool] = False
    _early_handlers: dict[int, Any]
    _early_signals: list[int]

    @classmethod
    def unavailable_reason(cls) -> str | None:
        try:
            import uvloop  # noqa: F401
        except ImportError:
            return "uvloop is not installed: pip install uvloop (or pip install 'c10k[uvloop]')"
        return None

    def _running(self) -> None:
        # uvloop opens a socketpair for signals each time run_forever starts in the main
        # thread (and closes it at stop), so the fd count would jump by 2 just after the
        # server announced itself. Two placeholder fds, held from __init__ to here, keep
        # the count steady across that start (fd-leak checks compare with a baseline).
        for placeholder in self._placeholders:
            placeholder.close()
        self._placeholders = []
        if self._early_handlers:
            # The loop runs now, with the signal socketpair it will keep: hand SIGINT and
            # SIGTERM to uvloop, then act on any that came in before.
            self._early_handlers.clear()
            super().install_signal_handlers()
            early, self._early_signals = self._early_signals, []
            for signum in early:
                self._on_signal(signum)

    def install_signal_handlers(self) -> None:
        # uvloop's add_signal_handler before run_forever writes a signal into a wakeup
        # socketpair that run_forever then replaces: a SIGTERM sent right after the
        # banner was lost (1 start in ~25 here, every test run's first start). Until the
        # loop runs, plain Python handlers note the signal; _running() installs uvloop's.
        if self._signals or self._early_handlers:
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._early_handlers[sig] = signal.signal(sig, self._early_signal)

    def _early_signal(self, signum: int, frame: object) -> None:
        self._early_signals.append(signum)

    def close(self) -> None:
        for sig, old in self._early_handlers.items():  # never ran: put the old ones back
            signal.signal(sig, old)
        self._early_handlers.clear()
        self._running()
        super().close()

    def _warm_up(self) -> None:
        self._early_handlers = {}
        self._early_signals = []
        if threading.current_thread() is threading.main_thread():
            self._placeholders = list(socket.socketpair())
        # libuv opens /dev/null once, at the first TCP handle (its reserve fd for the
        # EMFILE accept trick); do that now rather than in the middle of serving.
        a, b = socket.socketpair()
        lost: asyncio.Future[None] = self.loop.create_future()

        class _Probe(asyncio.Protocol):
            def connection_lost(self, exc: Exception | None) -> None:
                lost.set_result(None)

        async def attach() -> None:
            transport, _ = await self.loop.connect_accepted_socket(_Probe, a)
            transport.close()
            await lost  # the handle is closed (libuv closes it on a later iteration)
            await asyncio.sleep(0)

        try:
            self.loop.run_until_complete(asyncio.wait_for(attach(), 5))
        finally:
            a.close()
            b.close()

    @classmethod
    def new_loop(cls) -> asyncio.AbstractEventLoop:
        import uvloop

        loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
        return loop
