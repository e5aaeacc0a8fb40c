"""Realtime signals: F_SETSIG + O_ASYNC, events taken with sigtimedwait (Linux 2.4 style).

Kegel's strategy 2 as Linux 2.4 servers (phhttpd, the rtsig patches of thttpd and
Zeus) did it, before epoll existed:

    fcntl(fd, F_SETOWN, getpid())      whom to signal
    fcntl(fd, F_SETSIG, SIGRTMIN + k)  which realtime signal, instead of plain SIGIO
    fcntl(fd, F_SETFL, O_ASYNC | ...)  start signalling on I/O readiness changes

The signal is blocked, so it is never *delivered*: it waits in the thread's queue with a
siginfo that names the fd (``si_fd``) and what happened (``si_band``, POLLIN/POLLOUT/...
bits). ``poll()`` takes them with ``sigtimedwait``, the first one with the caller's
timeout, then up to ``MAX_EVENTS`` more with a zero timeout (one syscall each; there is
no batch dequeue, which is one reason epoll replaced this).

Some facts that shape this code:

- **si_fd cannot be read from Python.** ``signal.sigtimedwait`` returns a
  ``struct_siginfo`` with si_signo, si_code, si_pid, si_uid, si_status and si_band, but no
  si_fd. So libc's ``sigtimedwait`` is called through ctypes with our own ``siginfo_t``.
  Its layout (glibc ``bits/types/siginfo_t.h`` and the kernel's ``asm-generic/siginfo.h``,
  identical on x86_64 and aarch64, the two LP64 ABIs accepted here)::

      offset  0  int  si_signo
      offset  4  int  si_errno
      offset  8  int  si_code        (MIPS swaps si_code and si_errno: refused)
      offset 12  int  (padding: the union is 8-byte aligned on LP64)
      offset 16  union; for SIGPOLL { long si_band; int si_fd; }
                 -> si_band at 16 (8 bytes), si_fd at 24 (4 bytes)
      size 128 (SI_MAX_SIZE)

  ``tests/core/test_core_rtsig.py`` checks these offsets and, end to end, that a signal
  for a pipe's read end carries that fd and POLLIN. The GIL is released during the call
  (ctypes does so for every CDLL function).
- **Whom to signal.** ``F_SETOWN(getpid())`` makes the signal process-directed: the
  kernel gives it to any thread that does not block it, and a realtime signal's default
  action is to kill the process. A 2.4 server was single-threaded; a Python process has
  helper threads (tests, ``ThreadPoolExecutor``) that never blocked our signal. So we
  direct it with ``F_SETOWN_EX``/``F_OWNER_TID`` (Linux 2.6.32) at the one thread that
  blocks it and waits: the thread that polls. ``F_SETOWN(getpid())`` remains the fallback
  where F_SETOWN_EX is refused. If ``poll`` is later called from another thread, the
  backend re-owns every fd to it, blocks the signals there and rescans.
- **Queue overflow.** Queued realtime signals count against RLIMIT_SIGPENDING (per user).
  When the kernel cannot queue one more, ``send_sigio_to_task`` falls back to a plain
  SIGIO with no siginfo (fs/fcntl.c: "fall back on the old plain SIGIO signal"): from then
  on, events were lost. As the page says, the cure is a full ``poll()`` over every
  registered fd. We block and wait for SIGIO too; on SIGIO we flush our queued realtime
  signals (setting the signal to SIG_IGN discards its queue, then the old disposition is
  put back; from a non-main thread, where Python cannot do that, we drain them) and then
  rescan with one ``poll()`` call. Flushing first is what makes this exact: an event
  before the flush shows in the rescan's level state, an event after it queues a new
  signal. ``overflows`` counts rescans.
- **Edge-triggered semantics**, close to epoll-ET but not equal:
  a socket signals POLL_IN on *every* arrival of data (sock_def_readable), not just on
  the empty -> non-empty transition, so several signals for one fd are merged into one
  event per poll; POLL_OUT comes only when a writer had hit a full buffer and space came
  back (SOCKWQ_ASYNC_NOSPACE), which is an edge; nothing is signalled for the state an fd
  is already in when O_ASYNC is set. So, like ``epoll_ctl`` ADD/MOD, ``register`` and
  ``modify`` probe the fd once with ``poll()`` and report what is already ready. A
  consumer must therefore read/write/accept until EAGAIN (or a short read), exactly as
  for epoll-ET, and must tolerate a spurious event: a signal queued for an fd that has
  since been closed and whose number was reused by a new registration is reported for
  the new fd (it then just sees EAGAIN). Signals for fds no longer registered are dropped.
  A FIN signals POLL_IN just like data, so when several signals for one fd merge into
  one event, a ``poll()`` over those fds adds POLLRDHUP (== EPOLLRDHUP) if the peer's FIN
  is queued: the consumer must then read on to the EOF, as with epoll-et's RDHUP.
- **A write edge needs arming.** The kernel signals POLL_OUT only if a writer found the
  buffer full *while O_ASYNC was on*: ``sk_set_bit(SOCKWQ_ASYNC_NOSPACE)`` does nothing
  without SOCK_FASYNC. ``tcp_poll`` arms it when it finds a TCP socket unwritable, so the
  probe arms TCP sockets; ``unix_poll`` never does, so an AF_UNIX socket that filled up
  before it was registered would never signal. Such fds (WRITE wanted, probe says not
  writable) are kept in a small watch set that ``poll`` re-checks with ``poll()`` at least
  every ``WATCH_INTERVAL`` until they become writable; after that, a write that hits
  EAGAIN arms the edge by itself. A server never has any (a new socket is writable).
- **Cost.** ``register`` is five syscalls (F_SETOWN_EX, F_SETSIG, F_GETFL, F_SETFL, the
  probe poll); each event is one sigtimedwait. poll's cost does not grow with idle fds
  (SCALABLE), but per-event it is dearer than one ``epoll_wait`` returning many: a
  wakeup with one event costs two sigtimedwait, the second finding the queue empty
  (strace, 300 keep-alive requests on one connection: 603 rt_sigtimedwait + 300 read +
  300 write, against 303 epoll_wait + 300 + 300 for epoll-et).
- **Signals in the Loop.** The Loop's wakeup socket is registered like any fd, so a
  ``call_soon_threadsafe`` byte, and SIGINT/SIGTERM written there by
  ``signal.set_wakeup_fd``, queue our realtime signal and end the wait. A handled signal
  also interrupts sigtimedwait itself (EINTR), which returns an empty list.
- **Closing.** ``forget`` skips the fcntl: closing the last reference to a file removes
  it from the fasync list (``__fput`` -> ``fasync(-1, ...)``). ``close`` clears O_ASYNC on
  what is left, drains our signals and, in the owning thread, unblocks the signals it
  blocked once no other instance there needs them. Each live instance holds its own
  realtime signal number (SIGRTMIN+2 .. SIGRTMAX), so two loops never read each other's.
"""

from __future__ import annotations

import errno
import fcntl
import os
import platform
import select
import signal
import struct
import sys
import threading
from typing import Any, ClassVar

from c10k.core.backend import ERROR, HUP, READ, WRITE, Backend, Capability

try:
    import ctypes
except ImportError as exc:  # a Python built without _ctypes (libffi)
    CTYPES_ERROR: str | None = str(exc)
else:
    CTYPES_ERROR = None

F_SETSIG = getattr(fcntl, "F_SETSIG", 10)  # linux/fcntl.h: F_SETSIG 10
F_SETOWN_EX = 15  # asm-generic/fcntl.h
F_GETOWN_EX = 16
F_OWNER_TID = 0  # struct f_owner_ex.type: a single thread
O_ASYNC = getattr(os, "O_ASYNC", 0o20000)
MAX_EVENTS = 1024  # signals taken per poll() (epoll backend: 1024 events per wait)
EVENT_BITS = READ | WRITE | ERROR | HUP
POLLNVAL = getattr(select, "POLLNVAL", 0x20)
POLLRDHUP = getattr(select, "POLLRDHUP", 0x2000)  # == EPOLLRDHUP, part of READ_MASK
# Re-check of fds registered for WRITE while full (see "A write edge needs arming"): 20 ms,
# the tick of Linux 2.4-era servers that polled as a fallback (thttpd's 1 s was coarser).
WATCH_INTERVAL = 0.02
LAYOUT_MACHINES = ("x86_64", "amd64", "aarch64", "arm64")


if CTYPES_ERROR is None:

    class SigInfo(ctypes.Structure):
        """``siginfo_t`` for SIGPOLL on x86_64/aarch64 (see the module comment)."""

        _fields_ = (
            ("si_signo", ctypes.c_int),
            ("si_errno", ctypes.c_int),
            ("si_code", ctypes.c_int),
            ("_pad", ctypes.c_int),
            ("si_band", ctypes.c_long),
            ("si_fd", ctypes.c_int),
            ("_rest", ctypes.c_byte * (128 - 28)),
        )

    class Timespec(ctypes.Structure):
        _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))

    SigSet = ctypes.c_ulong * (1024 // (8 * ctypes.sizeof(ctypes.c_ulong)))  # glibc sigset_t

    def _load_libc() -> Any:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.sigtimedwait
        fn.argtypes = (ctypes.POINTER(SigSet), ctypes.POINTER(SigInfo), ctypes.POINTER(Timespec))
        fn.restype = ctypes.c_int
        for name in ("sigemptyset", "sigaddset"):
            getattr(libc, name).restype = ctypes.c_int
        return libc


_libc: Any = None


def _get_libc() -> Any:
    global _libc
    if _libc is None:
        _libc = _load_libc()
    return _libc


class RtsigBackend(Backend):
    name = "rtsig"
    capabilities = Capability.EDGE | Capability.SCALABLE

    _lock: ClassVar[threading.Lock] = threading.Lock()
    _signals_in_use: ClassVar[set[int]] = set()
    # thread id -> [instances owned there, whether SIGIO was blocked before the first]
    _threads: ClassVar[dict[int, list[Any]]] = {}

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if CTYPES_ERROR is not None:
            return f"ctypes is missing ({CTYPES_ERROR}): rtsig needs it to read si_fd"
        if not sys.platform.startswith("linux"):
            return "realtime-signal I/O (F_SETSIG) exists only on Linux; use epoll or kqueue"
        if not hasattr(signal, "SIGRTMIN") or not hasattr(signal, "pthread_sigmask"):
            return "this Python has no realtime signals (signal.SIGRTMIN, pthread_sigmask)"
        machine = platform.machine().lower()
        if machine not in LAYOUT_MACHINES:
            return (
                f"the siginfo_t layout is only known for x86_64 and aarch64, not {machine}; "
                "use epoll"
            )
        try:
            _get_libc()
        except (OSError, AttributeError) as exc:
            return f"libc sigtimedwait is not reachable through ctypes ({exc})"
        return None

    def __init__(self) -> None:
        reason = self.unavailable_reason()
        if reason is not None:
            from c10k.core.backend import BackendUnavailable

            raise BackendUnavailable(reason)
        self._libc = _get_libc()
        self.signum = self._take_signal()
        self._events: dict[int, int] = {}
        self._pending: dict[int, int] = {}
        self._watch: set[int] = set()
        self._probe = select.poll()
        self.overflows = 0
        self._closed = False
        self._info = SigInfo()
        self._info_ref = ctypes.byref(self._info)
        self._zero = Timespec(0, 0)
        self._timespec = Timespec(0, 0)
        self._set = SigSet()
        self._set_ref = ctypes.byref(self._set)
        self._libc.sigemptyset(self._set_ref)
        self._libc.sigaddset(self._set_ref, self.signum)
        self._libc.sigaddset(self._set_ref, int(signal.SIGIO))
        self._tid = 0
        self._ident = 0  # threading.get_ident() of the owner: pthread_self, no syscall
        self._owner_arg = b""
        self._setown_ex = True
        self._adopt_thread()

    # -- signal numbers and threads --------------------------------------------------
    def _take_signal(self) -> int:
        with self._lock:
            for sig in range(int(signal.SIGRTMIN) + 2, int(signal.SIGRTMAX) + 1):
                if sig not in self._signals_in_use:
                    self._signals_in_use.add(sig)
                    return sig
        raise OSError(errno.EAGAIN, "every realtime signal is taken by an rtsig backend")

    def _adopt_thread(self) -> None:
        """Make the calling thread the one that blocks our signals and receives them."""
        old_tid = self._tid
        tid = threading.get_native_id()
        with self._lock:
            entry = self._threads.get(tid)
            if entry is None:
                before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGIO, self.signum})
                entry = self._threads[tid] = [0, signal.SIGIO in before]
            else:
                signal.pthread_sigmask(signal.SIG_BLOCK, {self.signum})
            entry[0] += 1
        if old_tid:
            self._release_thread(old_tid, unblock=False)
        self._tid = tid
        self._ident = threading.get_ident()
        self._owner_arg = struct.pack("ii", F_OWNER_TID, tid)
        for fd in self._events:
            self._set_owner(fd)
        if old_tid:
            self._rescan()  # signals queued for the old thread stay there: look again

    def _release_thread(self, tid: int, unblock: bool) -> None:
        with self._lock:
            entry = self._threads.get(tid)
            if entry is None:
                return
            entry[0] -= 1
            last = entry[0] <= 0
            if last:
                del self._threads[tid]
        if unblock and tid == threading.get_native_id():
            self._drain()
            sigs = {self.signum}
            if last and not entry[1]:
                sigs.add(signal.SIGIO)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, sigs)

    def _set_owner(self, fd: int) -> None:
        if self._setown_ex:
            try:
                fcntl.fcntl(fd, F_SETOWN_EX, self._owner_arg)
                return
            except OSError as exc:
                if exc.errno != errno.EINVAL:
                    raise
                self._setown_ex = False  # a pre-2.6.32 kernel: the 2.4 way
        fcntl.fcntl(fd, fcntl.F_SETOWN, os.getpid())

    # -- registration ----------------------------------------------------------------
    def _fds(self) -> dict[int, int]:
        return self._events

    def register(self, fd: int, events: int) -> None:
        if fd in self._events:
            raise KeyError(f"fd {fd} is already registered")
        self._set_owner(fd)
        fcntl.fcntl(fd, F_SETSIG, self.signum)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
        fcntl.fcntl(fd, fcntl.F_SETFL, flags | O_ASYNC)
        self._events[fd] = events
        self._probe_fd(fd, events)

    def modify(self, fd: int, events: int) -> None:
        if fd not in self._events:
            raise KeyError(f"fd {fd} is not registered")
        self._events[fd] = events
        self._pending.pop(fd, None)
        self._probe_fd(fd, events)

    def _probe_fd(self, fd: int, events: int) -> None:
        # O_ASYNC reports changes only: report the state the fd is in now, as epoll_ctl
        # ADD/MOD does (O_ASYNC is already set, so nothing falls between the two).
        probe = self._probe
        probe.register(fd, events)
        try:
            ready = probe.poll(0)
        finally:
            probe.unregister(fd)
        now = 0
        for _fd, ev in ready:
            now = ev
            ev &= events | ERROR | HUP
            if ev:
                self._pending[fd] = self._pending.get(fd, 0) | ev
        if events & WRITE and not now & (WRITE | ERROR | HUP):
            self._watch.add(fd)
        else:
            self._watch.discard(fd)

    def unregister(self, fd: int) -> None:
        del self._events[fd]
        self._pending.pop(fd, None)
        self._watch.discard(fd)
        try:
            if not self._owns(fd):
                # O_ASYNC and the owner belong to the open file, which another process may
                # share and have taken over since (a listener during a reload: the new
                # worker owns it now); clearing O_ASYNC would silence its accepts.
                return
            flags = fcntl.fcntl(fd, fcntl.F_GETFL)
            fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~O_ASYNC)
        except OSError:  # already closed elsewhere: its fasync entry went with it
            pass

    def _owns(self, fd: int) -> bool:
        if self._setown_ex:
            owner = fcntl.fcntl(fd, F_GETOWN_EX, bytes(len(self._owner_arg)))
            return bool(owner == self._owner_arg)
        return bool(fcntl.fcntl(fd, fcntl.F_GETOWN) == os.getpid())

    def forget(self, fd: int) -> None:
        # Closing the file drops it from the fasync list (__fput), so no fcntl is needed.
        del self._events[fd]
        self._pending.pop(fd, None)
        self._watch.discard(fd)

    # -- waiting ---------------------------------------------------------------------
    def poll(self, timeout: float | None) -> list[tuple[int, int]]:
        # get_ident() is pthread_self(); get_native_id() would be a gettid syscall per wait.
        if self._ident != threading.get_ident():
            self._adopt_thread()
        ready = self._pending
        self._pending = {}
        if ready:
            timeout = 0.0
        elif self._watch and (timeout is None or timeout > WATCH_INTERVAL):
            timeout = WATCH_INTERVAL
        sigtimedwait = self._libc.sigtimedwait
        set_ref = self._set_ref
        info = self._info
        info_ref = self._info_ref
        if timeout is None:
            ts_ref = None
        elif timeout <= 0:
            ts_ref = ctypes.byref(self._zero)
        else:
            ts = self._timespec
            ts.tv_sec = int(timeout)
            # Round up to the microsecond, like ms_timeout rounds up: never wake early.
            ts.tv_nsec = min(999_999_999, int((timeout - int(timeout)) * 1e9) + 1000)
            ts_ref = ctypes.byref(ts)
        events = self._events
        mysig = self.signum
        overflow = False
        merged: list[int] = []
        for _ in range(MAX_EVENTS):
            sig = sigtimedwait(set_ref, info_ref, ts_ref)
            if sig < 0:
                break  # EAGAIN (timeout, or the queue is empty) or EINTR (a handler ran)
            ts_ref = ctypes.byref(self._zero)
            if sig == mysig:
                fd = info.si_fd
                interest = events.get(fd)
                if interest is None:
                    continue  # queued before the fd was unregistered or forgotten
                ev = info.si_band & EVENT_BITS & (interest | ERROR | HUP)
                if ev:
                    prev = ready.get(fd)
                    if prev is None:
                        ready[fd] = ev
                    else:
                        ready[fd] = prev | ev
                        if ev & READ:
                            merged.append(fd)
            else:  # SIGIO: the realtime queue overflowed and events were lost
                overflow = True
                break
        if merged:
            self._check_rdhup(merged, ready)
        if self._watch:
            self._check_watch(ready)
        if overflow:
            self.overflows += 1
            self._flush_queue()
            self._rescan()
            for fd, ev in self._pending.items():
                ready[fd] = ready.get(fd, 0) | ev
            self._pending = {}
        return list(ready.items())

    def _check_rdhup(self, fds: list[int], ready: dict[int, int]) -> None:
        # Several signals merged into one event may hide a FIN behind data: tcp_fin
        # signals POLL_IN like data does, and a consumer that stops at a short read would
        # never learn of the EOF (no later signal comes). One poll() over just those fds
        # says whether the peer's FIN is queued (POLLRDHUP), which is what epoll-et
        # reports with EPOLLRDHUP; the server then reads on to the EOF.
        scan = select.poll()
        for fd in set(fds):
            scan.register(fd, select.POLLIN | POLLRDHUP)
        for fd, ev in scan.poll(0):
            if ev & POLLRDHUP:
                ready[fd] |= POLLRDHUP

    def _check_watch(self, ready: dict[int, int]) -> None:
        scan = select.poll()
        for fd in self._watch:
            scan.register(fd, WRITE)
        for fd, ev in scan.poll(0):
            ev &= WRITE | ERROR | HUP
            if ev:
                self._watch.discard(fd)
                ready[fd] = ready.get(fd, 0) | ev

    def _flush_queue(self) -> None:
        if threading.current_thread() is threading.main_thread():
            # The kernel discards a signal's queue when its action becomes SIG_IGN.
            old = signal.signal(self.signum, signal.SIG_IGN)
            signal.signal(self.signum, signal.SIG_DFL if old is None else old)
        self._drain()

    def _drain(self) -> int:
        """Take every queued signal of ours (and a pending SIGIO) without a wait."""
        sigtimedwait = self._libc.sigtimedwait
        zero = ctypes.byref(self._zero)
        n = 0
        while sigtimedwait(self._set_ref, self._info_ref, zero) >= 0:
            n += 1
        return n

    def _rescan(self) -> None:
        """One poll() over every registered fd: the page's fallback after an overflow."""
        scan = select.poll()
        for fd, interest in self._events.items():
            scan.register(fd, interest)
        pending = self._pending
        events = self._events
        for fd, ev in scan.poll(0):
            if ev & POLLNVAL:
                continue
            ev &= events[fd] | ERROR | HUP
            if ev:
                pending[fd] = pending.get(fd, 0) | ev

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for fd in list(self._events):
            self.unregister(fd)
        self._release_thread(self._tid, unblock=True)
        with self._lock:
            self._signals_in_use.discard(self.signum)
