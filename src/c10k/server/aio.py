"""The asyncio and uvloop modes: the same Session on the loops Python users already run.

Kegel's page files these under "user-level threads" (coroutines multiplexed on one OS
thread over a readiness API); asyncio is that, uvloop the same API on libuv. Here they
are drivers like the others: ``AioConnection`` is an asyncio protocol on one side and the
Session's transport on the other, so the HTTP is exactly every other mode's.

Decisions and why:

- **Protocols, not streams.** ``asyncio.BufferedProtocol`` callbacks cost one Python call
  per read; ``StreamReader`` adds a coroutine switch, a future and a buffer copy per read
  (uvicorn's httptools path and vmbench's "protocol" variant are protocol-based for the
  same reason). No task per connection or per request exists. One receive buffer serves
  every connection: a plain Protocol makes asyncio ``recv(256 KiB)`` into a fresh bytes
  object per read, which glibc serves with mmap + mremap + munmap, three syscalls per
  request (strace). ``get_buffer`` and ``buffer_updated`` run back to back for one read on
  the loop thread, so sharing it is safe, and an idle connection holds none.
- **Accept is ours.** We ``add_reader`` the listening sockets, accept bare fds (so
  accept-queue admission can look at each before anything is built), and build each
  connection's transport at once. ``loop.create_server`` cannot pause accepting, and the
  connection cap needs that. On asyncio's own loop the transport is made directly
  (``_make_socket_transport``, what ``connect_accepted_socket`` calls inside): the public
  coroutine costs a task, a coroutine and a waiter future per connection, and with them the
  asyncio mode accepted ~770 new connections a second under a tenth of a core where it
  answered 1,050 (docs/BENCHMARKS.md, issue 20 per mode). The method is private, so it is
  used only where the loop has it; uvloop and any other loop go through the coroutine.
  Before any of that, a plain listener's new fd is read at once (``ServerBase.first_read``,
  as the readiness and io_uring modes do: the listeners defer accept until the request is
  there): a one-shot GET of a cached file is answered and closed with no transport,
  protocol or Session at all (``answer_at_accept``); anything else is handed to the
  Session in ``connection_made``.
- **Flow control** with a high-water mark of 0: asyncio calls ``pause_writing`` as soon as
  anything stays buffered, and ``resume_writing`` when it has drained, which is what the
  Session wants to hear (Rule 2 of c10k.core.transport).
- **Files.** asyncio: ``loop.sendfile`` (``os.sendfile`` from the page cache; reading is
  paused while it runs). uvloop has no ``loop.sendfile`` for TCP transports (it raises
  NotImplementedError), so files are pumped with ``os.pread`` chunks of ``PUMP_CHUNK``
  through ``transport.write`` under flow control.
- **Deadlines** are the core's ``Deadlines`` buckets, expired by one asyncio timer armed
  at the earliest bucket (``_Deadlines`` re-arms it when a Session files an earlier one):
  one ``call_at`` per second of timeouts, not a TimerHandle per request.
- **Overload readings**: the lag is how late the pressure check's own timer fires; the
  load, the reads during one lag's worth of time (reads per check x lag / interval).

Precedents: uvicorn's ``httptools_impl``, aiohttp's ``web_protocol``, MagicStack vmbench.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar, TypeVar

from c10k.core import diskio
from c10k.core import transport as tp
from c10k.core.fdio import reset_on_close, set_nonblocking, unsent_bytes
from c10k.core.listener import ACCEPT_BATCH, ACCEPT_CAPACITY_ERRNOS, CAPACITY_SLEEP, accept_fds
from c10k.core.loop import ThreadRunner
from c10k.core.timers import Deadlines, HasDeadline
from c10k.core.transport import DETACHED, BaseTransport, Item, coalesce, release
from c10k.region import FileRegion
from c10k.server.base import ServerBase, session_of
from c10k.server.session import Session

log = logging.getLogger("c10k.server")
T = TypeVar("T")

PUMP_CHUNK = 256 * 1024  # uvloop file pump: asyncio's sendfile fallback reads 16 KiB
# asyncio sendfile per call: the region's count is brought up to date between calls, so
# a slow reader's steps shrink (a step that took over a second is quartered, down to the
# least): what the send-rate check and the send-queue fit see of a client's progress
# is then at most that old (server/session.py's module doc).
SENDFILE_STEP = 1 << 20
SENDFILE_STEP_MIN = 64 * 1024
LAG_ALPHA = 0.5  # one lag sample per pressure check: smoothed over the last few


def _abort(transport: Any) -> None:
    # CPython 3.11 selector transports: while loop.sendfile runs, the transport keeps its
    # "empty waiter" future, already done; aborting then makes _call_connection_lost call
    # set_exception on that done future and log InvalidStateError. Drop the done future
    # first (sendfile's own finally resets it to None anyway).
    waiter = getattr(transport, "_empty_waiter", None)
    if waiter is not None and waiter.done():
        transport._empty_waiter = None
    if transport.is_closing() and not transport.get_write_buffer_size():
        # close() with nothing buffered has already scheduled connection_lost; abort()
        # would schedule it again (3.11 _force_close does not check _closing), and the
        # second call fails on the cleared protocol. Seen with TLS: close_notify, close,
        # then the Session's deadline aborts.
        return
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


class _Deadlines(Deadlines):
    """Deadlines whose earliest bucket is watched by one asyncio timer."""

    def __init__(self, aloop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = aloop
        self.armed_at: float | None = None
        self.timer: asyncio.TimerHandle | None = None

    def schedule(self, item: HasDeadline) -> None:
        super().schedule(item)
        when = self.next_when()
        if when is not None and (self.armed_at is None or when < self.armed_at):
            self._arm(when)

    def _arm(self, when: float) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.armed_at = when
        self.timer = self.loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self.timer = None
        self.armed_at = None
        self.expire(self.loop.time())
        when = self.next_when()
        if when is not None and self.armed_at is None:
            self._arm(when)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _ignore(_future: object) -> None:
    """A pool job's loop-side callback where a coroutine awaits the future instead."""


class AioLoop:
    """What a Session needs of a loop, over an asyncio event loop."""

    def __init__(self, aloop: asyncio.AbstractEventLoop, threads: int) -> None:
        self.loop = aloop
        self.deadlines = _Deadlines(aloop)
        self.call_soon = aloop.call_soon
        self.call_later = aloop.call_later
        self._runner = ThreadRunner(threads, aloop.call_soon_threadsafe)
        self.run_in_thread = self._runner.run

    @property
    def now(self) -> float:
        return self.loop.time()

    def close(self) -> None:
        self.deadlines.close()
        self._runner.close()


class AioConnection(asyncio.BufferedProtocol, BaseTransport):
    """asyncio's protocol for one connection, and its Session's transport."""

    def __init__(
        self, server: AsyncioServer, peer: object, index: int = 0, first: Any = b""
    ) -> None:
        self.server = server
        self.peer = peer
        # What ServerBase.first_read read at accept: the request (given to the Session in
        # connection_made), the rest of a closing answer (a memoryview), or b"" (nothing).
        self.first = first
        # The Session, or the TLSLayer in front of it on a TLS listener.
        self.session = server.make_protocol(server.session_loop, index)
        self.protocol = self.session
        self.atransport: Any = None
        self.attaching = True  # counted in server._attaching until connection_made
        self.fd = -1
        self._flags = 0
        self._out: deque[Item] = deque()
        self._aio_paused = False  # asyncio's buffer holds bytes (pause_writing)
        self._task: asyncio.Task[None] | None = None  # a loop.sendfile in progress
        self._resuming = False  # inside asyncio's resume_writing callback

    # -- asyncio's side -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.atransport = transport
        server = self.server
        if server._closed:  # made directly, and the server closed before this callback
            self._flags = tp.CLOSED
            self.session = self.protocol = DETACHED
            _abort(transport)
            server._attached(self)
            return
        transport.set_write_buffer_limits(high=0)  # type: ignore[attr-defined]
        sock = transport.get_extra_info("socket")
        self.fd = sock.fileno() if sock is not None else -1
        server.live.add(self)
        self.session.connection_made(self)
        server.opened()
        server._attached(self)
        first, self.first = self.first, b""
        if first.__class__ is memoryview:
            self.session.send_closing(first)
        elif first:
            self._received(first)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.server.recv_view

    def buffer_updated(self, nbytes: int) -> None:
        self._received(bytes(self.server.recv_view[:nbytes]))

    def _received(self, data: bytes) -> None:
        self.server.reads += 1
        reply = self.session.data_received(data)
        if reply is not None:
            if self._flags or self._out or self._task is not None or self._aio_paused:
                self.write(reply)
            else:
                self.atransport.write(reply)  # calls pause_writing if it stays buffered

    def eof_received(self) -> bool:
        self._flags |= tp.READ_EOF
        self.session.eof_received()
        return True  # we close when our response is out

    def pause_writing(self) -> None:
        self._aio_paused = True
        self._blocked()

    def resume_writing(self) -> None:
        self._aio_paused = False
        self._resuming = True
        try:
            self._pump()
        finally:
            self._resuming = False

    def connection_lost(self, exc: BaseException | None) -> None:
        self._flags = tp.CLOSED
        # CPython 3.11's selector transport keeps a bound method of itself
        # (``_read_ready_cb``) until it is freed: a reference cycle per connection that only
        # the cyclic GC reclaims (transport, socket, dict and method: at a thousand
        # connections a second, a 25-60 ms full collection every half second). 3.12 clears
        # it in close() (gh-100348); this does the same on 3.11.
        if getattr(self.atransport, "_read_ready_cb", None) is not None:
            self.atransport._read_ready_cb = None
        if self._task is not None:
            # Deferred: asyncio's transport sets its sendfile "empty waiter" right after
            # this callback returns; cancelling the task now would cancel that future
            # first and make asyncio raise InvalidStateError (3.11 _call_connection_lost).
            self.server.loop.call_soon(self._task.cancel)
        release(self._out)
        self._out.clear()
        self.server.live.discard(self)
        session = self.session
        self.session = self.protocol = DETACHED  # no cycle left: freed at once
        session.connection_lost(exc)

    # -- the Session's side ---------------------------------------------------------------
    def writelines(self, items: Iterable[Item]) -> None:
        if self._refused(items):
            return
        self._out.extend(coalesce(items))
        self._pump()

    def _pump(self) -> None:
        """Write queued items until done or flow control says stop."""
        queue = self._out
        transport = self.atransport
        while queue and not self._aio_paused and self._task is None:
            if self._flags & tp.CLOSED or transport.is_closing():
                return  # ours, or asyncio's after a reset (connection_lost comes next)
            item = queue[0]
            if not isinstance(item, FileRegion):
                transport.write(item)
                queue.popleft()
            elif self.server.native_sendfile:
                # The region stays queued while the task sends it, its count going down
                # chunk by chunk, so pending_bytes (the send-rate check) sees the rest.
                self._task = self.server.loop.create_task(self._sendfile(item))
            elif not self._pump_chunk(item):
                return
        if queue or self._aio_paused or self._task is not None:
            self._blocked()
        else:
            self._drained()

    def _pump_chunk(self, item: FileRegion) -> bool:
        size = min(item.count, PUMP_CHUNK)
        if diskio.cold(item, size):
            self._task = self.server.loop.create_task(self._warm_then_pump(item))
            self._blocked()
            return False
        try:
            chunk = os.pread(item.fd, size, item.offset)
        except OSError as exc:
            log.error("reading a file to send: %s", exc)
            chunk = b""
        if not chunk:  # the file shrank: its length was promised
            log.warning("file shrank while being sent; closing the connection")
            self.abort()
            return False
        self.atransport.write(chunk)
        item.offset += len(chunk)
        item.count -= len(chunk)
        if not item.count:
            item.release()
            self._out.popleft()
        return True

    async def _warm(self, region: FileRegion) -> None:
        """Bring a cold chunk into memory in the disk pool (c10k.core.diskio) while the
        loop serves others."""
        run = self.server.session_loop.run_in_thread
        job = run(diskio.warm, *diskio.warm_region(region), done=_ignore)
        try:
            await asyncio.wrap_future(job)
        except OSError:
            diskio.COUNTS.warm_errors += 1  # the send that follows reports it

    async def _warm_then_pump(self, region: FileRegion) -> None:
        try:
            await self._warm(region)
        finally:
            self._task = None
        if not self._flags & tp.CLOSED:
            self._pump()

    async def _sendfile(self, region: FileRegion) -> None:
        try:
            size = SENDFILE_STEP
            while region.count:
                step = min(region.count, size)
                if diskio.cold(region, step):
                    await self._warm(region)
                    if self._flags & tp.CLOSED:
                        return
                began = time.monotonic()
                sent = await self.server.loop.sendfile(
                    self.atransport,
                    _RegionFile(region.fd),  # type: ignore[arg-type]
                    region.offset,
                    step,
                    fallback=False,
                )
                region.offset += sent
                region.count -= sent
                if time.monotonic() - began > 1.0:
                    size = max(SENDFILE_STEP_MIN, size // 4)
                if sent < step:
                    # asyncio stops at the file's end: the file shrank under us, and the
                    # Content-Length promised cannot be kept.
                    log.warning("file shrank while being sent; closing the connection")
                    self.abort()
                    return
        except (OSError, RuntimeError) as exc:
            # Peer gone, or the transport closed under us. A failure before the first
            # byte is SendfileNotAvailableError (a RuntimeError): never fall back to
            # asyncio's read-into-a-buffer copy for a dead peer.
            if not self._flags & tp.CLOSED:
                if isinstance(exc, OSError) and exc.errno not in tp.CONNRESET_ERRNOS:
                    log.error("connection fd %d: %s", self.fd, exc)  # e.g. EIO from the disk
                else:
                    log.debug("sendfile: %s", exc)
                _abort(self.atransport)
            return
        finally:
            region.release()
            self._task = None
        if not self._flags & tp.CLOSED:
            if self._out and self._out[0] is region:
                self._out.popleft()
            self._pump()

    def _blocked(self) -> None:
        if not self._flags & (tp.WRITING | tp.CLOSED):
            self._flags |= tp.WRITING
            self.session.pause_writing()

    def _drained(self) -> None:
        flags = self._flags
        if flags & tp.WRITING:
            self._flags = flags = flags & ~tp.WRITING
            self.session.resume_writing()
            flags = self._flags
            if self._out or self._task is not None or self._aio_paused:
                return
        if flags & tp.CLOSED:
            return
        if flags & tp.CLOSING:
            self._flags |= tp.CLOSED
            if self._resuming:
                # 3.11 selector transports call resume_writing from _write_ready, which
                # calls connection_lost itself once the buffer is empty and the transport
                # closing; a close() from inside would schedule connection_lost a second
                # time (a traceback on the cleared protocol). Close after it returns.
                self.server.loop.call_soon(self.atransport.close)
            else:
                self.atransport.close()
        elif flags & tp.SHUTTING and self.atransport.can_write_eof():
            self.atransport.write_eof()

    def pause_reading(self) -> None:
        if not self._flags & (tp.PAUSED | tp.CLOSED):
            self._flags |= tp.PAUSED
            self.atransport.pause_reading()

    def resume_reading(self) -> None:
        if self._flags & tp.PAUSED and not self._flags & tp.CLOSED:
            self._flags &= ~tp.PAUSED
            self.atransport.resume_reading()

    def close(self) -> None:
        flags = self._flags
        if flags & (tp.CLOSED | tp.CLOSING):
            return
        self._flags = flags | tp.CLOSING
        if not flags & tp.WRITING and not self._out and self._task is None:
            self._drained()

    def write_eof(self) -> None:
        flags = self._flags
        if flags & (tp.CLOSED | tp.CLOSING | tp.SHUTTING):
            return
        self._flags = flags | tp.SHUTTING
        if not flags & tp.WRITING and not self._out and self._task is None:
            self._drained()

    def abort(self, reset: bool = False) -> None:
        if self._flags & tp.CLOSED:
            return
        if reset and self.fd >= 0:
            reset_on_close(self.fd)
        self._flags |= tp.CLOSED
        _abort(self.atransport)

    def pending_bytes(self) -> int:
        if self._flags & tp.CLOSED or self.atransport is None:
            return 0
        queued = sum(len(item) for item in self._out)
        kernel = unsent_bytes(self.fd) if self.fd >= 0 else 0
        buffered: int = self.atransport.get_write_buffer_size()
        return queued + buffered + kernel


class AsyncioServer(ServerBase):
    """The server on an asyncio event loop (see the module comment)."""

    backend_name: ClassVar[str] = "asyncio"
    native_sendfile: ClassVar[bool] = True

    @classmethod
    def new_loop(cls) -> asyncio.AbstractEventLoop:
        return asyncio.new_event_loop()

    def _setup(self) -> None:
        config = self.config
        self._set_capacity()
        self.loop = self.new_loop()
        self.session_loop = AioLoop(self.loop, max(1, config.io_threads))
        self.live: set[AioConnection] = set()
        self.recv_view = memoryview(bytearray(self.policy.read_size))
        self.accepted = [0] * len(self.socks)
        self.reads = 0
        self.lag = 0.0
        self._reads_seen = 0
        self._last_reading = time.monotonic()
        self._attaching = 0
        self._make_transport = self._direct_transport()
        # Read once: each read of .family / .type builds an enum member.
        self._kinds = [(s.family, s.type | socket.SOCK_NONBLOCK, s.proto) for s in self.socks]
        self._accepting = False
        self._signals: list[int] = []
        self._closed = False
        self._placeholders: list[socket.socket] = []
        self._warm_up()

    def _warm_up(self) -> None:
        """Allocate what the loop allocates lazily on its first connection, so an fd count
        taken after start is the steady state."""

    def _direct_transport(self) -> Any:
        """asyncio's synchronous transport constructor where the loop has it (see the
        module comment), else None: accepted sockets then go through the coroutine."""
        if not isinstance(self.loop, asyncio.selector_events.BaseSelectorEventLoop):
            return None
        return getattr(self.loop, "_make_socket_transport", None)

    # -- running ---------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        if self._signals:
            return
        for sig in self.handled_signals:
            self.loop.add_signal_handler(sig, self.on_signal, sig)
            self._signals.append(sig)

    def serve_forever(self, install_signals: bool = True) -> None:
        if install_signals:
            self.install_signal_handlers()
        self._start_accepting()
        self._start_housekeeping()
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

    def shutdown_threadsafe(self, timeout: float | None = None) -> None:
        self.loop.call_soon_threadsafe(self.shutdown, timeout)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = self.loop
        self.policy.close()
        self._stop_accepting()
        for s in self.socks:
            s.close()
        for conn in list(self.live):
            if conn.atransport is not None:
                _abort(conn.atransport)
        self.session_loop.close()
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

    # -- ServerBase hooks ------------------------------------------------------------
    def sessions(self) -> Iterator[Session]:
        return (s for c in list(self.live) if (s := session_of(c.session)) is not None)

    def accept_counts(self) -> list[int]:
        return list(self.accepted)

    def pressure_reading(self) -> tuple[float, float]:
        now = time.monotonic()
        late = max(0.0, now - self._pressure_due)  # how late this check's timer fired
        self.lag += (late - self.lag) * LAG_ALPHA
        span = max(now - self._last_reading, 1e-3)
        self._last_reading = now
        reads, self._reads_seen = self.reads - self._reads_seen, self.reads
        return self.lag, reads * self.lag / span

    def _pause_accepting(self) -> None:
        self._stop_accepting()

    def _resume_accepting(self) -> None:
        self._start_accepting()

    def _stop_loop(self) -> None:
        # Not while close() settles the loop itself, nor while a connection is being
        # attached (it would be dropped half made).
        if not self._attaching and not self._closed:
            self.loop.stop()

    # -- accepting -------------------------------------------------------------------
    def _start_accepting(self) -> None:
        if self._accepting or self.draining or self._closed or self.accepting_paused:
            return
        self._accepting = True
        for i, s in enumerate(self.socks):
            self.loop.add_reader(s.fileno(), self._on_listen_ready, i, s)

    def _stop_accepting(self) -> None:
        if not self._accepting:
            return
        self._accepting = False
        for s in self.socks:
            if s.fileno() >= 0:
                self.loop.remove_reader(s.fileno())

    def _on_listen_ready(self, index: int, listener: socket.socket) -> None:
        n = 0
        try:
            for fd, addr in accept_fds(listener, ACCEPT_BATCH):
                n += 1
                self._take(index, fd, addr)
                if self.nconn + self._attaching >= self.capacity:
                    self.accepting_paused = True  # resumed as connections close
                    self._stop_accepting()
                    return
        except OSError as exc:
            if exc.errno not in ACCEPT_CAPACITY_ERRNOS:
                raise
            log.warning("accept: %s; pausing %.0f ms", exc, CAPACITY_SLEEP * 1e3)
            self._stop_accepting()
            self.loop.call_later(CAPACITY_SLEEP, self._start_accepting)
            return
        if n == ACCEPT_BATCH:
            self.backlog_alert()

    def _take(self, index: int, fd: int, addr: object) -> None:
        self.accepted[index] += 1
        if not self.admit(fd):
            return
        # Nonblocking before anything reads it: a client that sends nothing within the
        # listener's deferred-accept time is accepted without its request.
        set_nonblocking(fd)
        first: bytes | memoryview | None = b""
        if self.plain[index]:  # the request is mostly there (TCP_DEFER_ACCEPT): read it now
            first = self.first_read(fd, self.session_loop.now)
            if first is None:
                return  # answered and closed with no Session (answer_at_accept), or gone
        # Family, type (nonblocking, so Python sets nothing) and protocol given: socket()
        # asks the kernel for none of them.
        sock = socket.socket(*self._kinds[index], fileno=fd)
        # Until connection_made counts it (ServerBase.opened), it counts here against the
        # cap: a listener wakeup in between must not accept past it.
        self._attaching += 1
        conn = AioConnection(self, addr if self.policy.keep_peer else None, index, first)
        make = self._make_transport
        if make is None:
            self.loop.create_task(self._attach(sock, conn))
            return
        try:
            make(sock, conn)  # connection_made runs on the loop's next turn
        except (OSError, RuntimeError) as exc:
            self._not_attached(sock, conn, exc)

    async def _attach(self, sock: socket.socket, conn: AioConnection) -> None:
        try:
            await self.loop.connect_accepted_socket(lambda: conn, sock)
        except (OSError, RuntimeError) as exc:
            self._not_attached(sock, conn, exc)

    def _not_attached(self, sock: socket.socket, conn: AioConnection, exc: Exception) -> None:
        log.warning("cannot attach an accepted connection: %s", exc)
        sock.close()
        self._attached(conn)

    def _attached(self, conn: AioConnection) -> None:
        """``conn`` is counted by ``opened`` now, or never will be."""
        if not conn.attaching:
            return
        conn.attaching = False
        self._attaching -= 1
        if self.draining:
            if not self._closed and not self.nconn and not self._attaching:
                self.loop.stop()
        elif self.accepting_paused and self.nconn + self._attaching < self.capacity:
            # A listener wakeup while this one was counted twice stopped accepting one
            # short of the cap; no close may come to resume it.
            self.accepting_paused = False
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
                self.on_signal(signum)

    def install_signal_handlers(self) -> None:
        # uvloop's add_signal_handler before run_forever writes a signal into a wakeup
        # socketpair that run_forever then replaces: a SIGTERM sent right after the
        # banner was lost (1 start in ~25 here). Until the loop runs, plain Python
        # handlers note the signal; _running() installs uvloop's.
        if self._signals or self._early_handlers:
            return
        for sig in self.handled_signals:
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
