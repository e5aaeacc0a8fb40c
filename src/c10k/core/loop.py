"""The event loop: wait -> dispatch ready fds -> expire timers -> run posted callbacks.

One turn:
  1. ``backend.poll(timeout)``, timeout 0 if callbacks are posted, else until the nearest
     timer or deadline bucket, else forever;
  2. for each ``(fd, events)``: look up the fd's callback and call ``callback(events)``.
     One dict lookup and one call per event: the callback (a bound method of the
     connection) decides what READ/WRITE/ERROR/HUP mean for it;
  3. fire due timers, then due deadlines (``Deadlines``: O(1) re-arm per request);
  4. run the callbacks posted so far (those posted while running wait for the next turn,
     so a callback that re-posts itself cannot starve I/O).

``loop.now`` is the monotonic time read once per turn, after the wait: every handler in
the turn uses it instead of reading the clock again (nginx's ``ngx_current_msec``).

An exception escaping a callback is logged with its traceback and the loop goes on; the
component that raised is expected to have cleaned up (server code catches its own errors).
SystemExit and KeyboardInterrupt are never caught.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

from c10k.core.backend import READ, Backend, Capability
from c10k.core.registry import make_backend
from c10k.core.timers import Deadlines, TimerHandle, TimerHeap
from c10k.core.wakeup import Wakeup

log = logging.getLogger("c10k.loop")

FdCallback = Callable[[int], object]
T = TypeVar("T")


LOAD_ALPHA = 0.2  # EWMA weight of the newest turn: about the last ten turns count


class ThreadRunner:
    """A pool for blocking work whose results come back to a loop: ``post(callback,
    *args)`` must run the callback on the loop's thread and be callable from any thread
    (``call_soon_threadsafe``). Every loop kind (the readiness Loop, the io_uring and
    asyncio modes' loops) runs its disk work through one of these."""

    def __init__(self, threads: int, post: Callable[..., object]) -> None:
        self.threads = max(1, threads)
        self.post = post
        self._pool: ThreadPoolExecutor | None = None

    def run(
        self, fn: Callable[..., T], *args: Any, done: Callable[[Future[T]], object]
    ) -> Future[T]:
        pool = self._pool
        if pool is None:
            pool = self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="c10k-io")
        future = pool.submit(fn, *args)
        post = self.post

        def back(f: Future[T]) -> None:
            try:
                post(done, f)
            except (OSError, RuntimeError):
                pass  # the loop is closed (asyncio says RuntimeError): nobody waits

        future.add_done_callback(back)
        return future

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


class Loop:
    """A single-threaded readiness loop over one Backend.

    Args:
        backend: a Backend instance, or a registry name (``"auto"``, ``"epoll"``, ...).
        threads: threads for ``run_in_thread`` (started on first use).
    """

    def __init__(self, backend: Backend | str = "auto", threads: int = 4) -> None:
        self._runner = ThreadRunner(threads, self.call_soon_threadsafe)
        self.backend = make_backend(backend) if isinstance(backend, str) else backend
        self.capabilities: Capability = self.backend.capabilities
        self.edge = bool(self.capabilities & Capability.EDGE)
        self.now = time.monotonic()
        # Pressure, smoothed over turns (EWMA, weight LOAD_ALPHA): ``lag`` is how long a
        # turn's callbacks ran (what a newly ready fd waits, at worst, before its turn),
        # ``load`` how many fds a wait returned. Overload policy (c10k.server) reads them.
        self.lag = 0.0
        self.load = 0.0
        self.deadlines = Deadlines()
        self._handlers: dict[int, FdCallback] = {}
        self._timers = TimerHeap()
        self._ready: deque[tuple[Callable[..., Any], tuple[Any, ...]]] = deque()
        self._signal_handlers: dict[int, Callable[[int], Any]] = {}
        self._old_signal_handlers: dict[int, Any] = {}
        self._stopping = False
        self._wakeup = Wakeup()
        try:
            self.add_fd(self._wakeup.fileno(), READ, self._on_wakeup)
        except BaseException:
            # e.g. select refusing a wakeup fd >= FD_SETSIZE: close what we opened (STYLE 5).
            self._wakeup.close()
            if isinstance(backend, str):  # ours; an instance passed in stays the caller's
                self.backend.close()
            raise
        self._old_wakeup_fd: int | None = None

    # -- fds ---------------------------------------------------------------------------
    def add_fd(self, fd: int, events: int, callback: FdCallback) -> None:
        """Watch ``fd``; ``callback(events)`` runs when it is ready. Rolls back on error."""
        if fd in self._handlers:
            raise KeyError(f"fd {fd} is already watched")
        self._handlers[fd] = callback
        try:
            self.backend.register(fd, events)
        except BaseException:
            del self._handlers[fd]
            raise

    def modify_fd(self, fd: int, events: int) -> None:
        self.backend.modify(fd, events)

    def remove_fd(self, fd: int) -> None:
        """Stop watching ``fd``. Safe to call for an fd that is not watched."""
        if self._handlers.pop(fd, None) is not None:
            self.backend.unregister(fd)

    def forget_fd(self, fd: int) -> None:
        """Stop watching ``fd`` that the caller is about to close (and never dup()ed);
        saves the unregister syscall where the kernel does it on close (Backend.forget)."""
        if self._handlers.pop(fd, None) is not None:
            self.backend.forget(fd)

    def watching(self, fd: int) -> bool:
        return fd in self._handlers

    def callbacks(self) -> list[FdCallback]:
        """The callbacks of every watched fd (a snapshot)."""
        return list(self._handlers.values())

    def __len__(self) -> int:
        return len(self._handlers)

    # -- callbacks and timers ----------------------------------------------------------
    def call_soon(self, callback: Callable[..., Any], *args: Any) -> None:
        self._ready.append((callback, args))

    def call_soon_threadsafe(self, callback: Callable[..., Any], *args: Any) -> None:
        self._ready.append((callback, args))  # deque.append is atomic
        self._wakeup.wake()

    def run_in_thread(
        self, fn: Callable[..., T], *args: Any, done: Callable[[Future[T]], object]
    ) -> Future[T]:
        """Run the blocking ``fn(*args)`` in one of the loop's threads (open, stat, read of
        a cold file: the page's AMPED note), then ``done(future)`` on the loop's thread.
        The threads start on first use, so a process can fork before any exists."""
        return self._runner.run(fn, *args, done=done)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._timers.call_at(when, callback, *args)

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        return self._timers.call_at(time.monotonic() + delay, callback, *args)

    # -- signals -----------------------------------------------------------------------
    def add_signal_handler(self, signum: int, callback: Callable[[int], Any]) -> None:
        """Run ``callback(signum)`` in the loop when the signal arrives (main thread only)."""
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("signal handlers can only be installed from the main thread")
        if self._old_wakeup_fd is None:
            self._old_wakeup_fd = signal.set_wakeup_fd(
                self._wakeup.wsock.fileno(), warn_on_full_buffer=False
            )
        # Remember what was there so close() can put it back: for SIGINT that is Python's
        # default_int_handler, and SIG_DFL instead would make a later Ctrl-C kill the
        # process without KeyboardInterrupt (asyncio special-cases SIGINT likewise).
        old = signal.signal(signum, _ignore_in_python)
        self._old_signal_handlers.setdefault(signum, old)
        self._signal_handlers[signum] = callback

    def _on_wakeup(self, _events: int) -> None:
        for signum in self._wakeup.drain():
            cb = self._signal_handlers.get(signum)
            if cb is not None:
                cb(signum)

    # -- running -----------------------------------------------------------------------
    def stop(self) -> None:
        """Make ``run()`` return after the current turn (thread-safe)."""
        self._stopping = True
        self._wakeup.wake()

    def run(self) -> None:
        """Run turns until ``stop()``."""
        # _stopping is cleared on the way *out*, not on the way in: a stop() from another
        # thread that lands before run() starts must not be lost (asyncio's run_forever
        # clears it in its finally for the same reason). The try costs nothing per turn.
        try:
            self._run()
        finally:
            self._stopping = False

    def _run(self) -> None:
        poll = self.backend.poll
        get = self._handlers.get
        ready = self._ready
        timers = self._timers
        deadlines = self.deadlines
        # The heads of both heaps are read here, not through a call each: a turn of a
        # busy server is a few calls, and these were five of them. (Both lists are never
        # replaced; the calls still do the work: skip cancelled timers, pop, expire.)
        heap = timers._heap
        keys = deadlines._keys
        monotonic = time.monotonic
        lag = load = 0.0
        alpha = LOAD_ALPHA
        while not self._stopping:
            t = monotonic()
            lag += (t - self.now - lag) * alpha
            self.lag = lag
            if ready:
                timeout: float | None = 0.0
            else:
                when: float | None = None
                if heap:
                    when = timers.next_when() if heap[0].cancelled else heap[0].when
                if keys and (when is None or keys[0] < when):
                    when = keys[0]
                timeout = None if when is None else max(0.0, when - t)
            events = poll(timeout)
            self.now = now = monotonic()
            load += (len(events) - load) * alpha
            self.load = load
            for fd, ev in events:
                cb = get(fd)
                if cb is not None:
                    try:
                        cb(ev)
                    except Exception:
                        log.exception("error in callback for fd %d", fd)
            if heap and heap[0].when <= now:
                for h in timers.pop_due(now):
                    self._run_one(h.callback, h.args)
            if keys and keys[0] <= now:
                deadlines.expire(now)
            for _ in range(len(ready)):
                cb2, args = ready.popleft()
                self._run_one(cb2, args)

    def _run_one(self, cb: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            cb(*args)
        except Exception:
            log.exception("error in callback %r", cb)

    def close(self) -> None:
        """Release the backend and the wakeup pair; restore the previous signal handlers
        (SIG_DFL unless something else was installed) and wakeup fd."""
        for signum, old in self._old_signal_handlers.items():
            # getsignal()/signal() give None for a handler not installed from Python.
            signal.signal(signum, signal.SIG_DFL if old is None else old)
        self._old_signal_handlers.clear()
        self._signal_handlers.clear()
        if self._old_wakeup_fd is not None:
            signal.set_wakeup_fd(self._old_wakeup_fd)
            self._old_wakeup_fd = None
        self._runner.close()
        self.remove_fd(self._wakeup.fileno())
        self._wakeup.close()
        self.backend.close()


def _ignore_in_python(signum: int, frame: object) -> None:
    # The C-level handler already wrote signum to the wakeup fd; the loop does the work.
    pass
