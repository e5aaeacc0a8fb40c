"""The supervisor and its workers: forked processes, each a whole server on its slot's sockets.

Supervisor (``Supervisor``): a loop over poll(2) of a signal wakeup pipe and one pipe per
worker, plus waitpid(WNOHANG); no event loop is needed for a handful of fds.
- Worker -> supervisor pipe, one JSON object per line: ``{"ready": ...}`` with the worker's
  backend and capacity once it is serving (the banner is printed when every worker is
  ready), ``{"requests": N, "cut": M}`` when it stops (summed into "c10k stopped after N
  requests; M responses cut short", exit status 1 when any response was cut: a drain that
  hit --shutdown-timeout or a second signal), ``{"error": ...}`` if it could not start
  (one line; its traceback goes to stderr only with -v).
- Shared records (``c10k.server.shared.Board``, an anonymous shared mmap made before the
  first fork): each worker gets a cell, claimed under a new generation, and writes all
  its status counters there at its mode's pressure check (``Policy.publish``; so at most
  ``COUNT_INTERVAL`` old) and once more when it stops. Any worker's status page reads
  every cell, so it shows the whole server. When a worker is reaped, its last record is
  folded into the board's "retired" record and the cell freed: totals never go back,
  and the count of a worker that is SIGKILLed or crashes is not lost.
- Per-client limits (``c10k.server.clientlimit.Table``, made before the first fork that
  needs it): each worker counts its connections in its cell's column; when a worker is
  reaped its column is zeroed, so a killed worker's connections stop counting.
- A worker that dies unexpectedly is restarted after a back-off: 0.1 s doubling to 5 s,
  reset once a worker has served for 10 s (systemd RestartSec=100ms; Kubernetes
  CrashLoopBackOff doubles from 10 s to 5 min and resets after 10 min; our cap is short
  because connections hashed to the dead slot wait in its queue until the restart). A
  worker that fails while the server is first starting is a configuration error: the
  supervisor stops and exits 1 with the worker's message (gunicorn's "Worker failed to
  boot"). A worker that has not reported ready ``START_TIMEOUT`` after its fork is
  killed and counts as a failed start, so neither the first start nor a reload can wait
  on a hung worker forever.
- SIGTERM/SIGINT: SIGTERM to every worker, which drains (stops accepting, finishes
  in-flight responses, closes idle keep-alives) within ``shutdown_timeout``; SIGKILL to
  any still alive ``KILL_MARGIN`` later; exit 0, or 1 if a drain cut responses short. A
  second SIGTERM/SIGINT is forwarded as a second SIGTERM, which makes a draining worker
  stop at once.
- SIGHUP: graceful reload (nginx SIGHUP, gunicorn HUP). Each slot gets a new worker on the
  same sockets; once it reports ready, the slot's old worker gets SIGTERM and drains. If
  the new one fails, the old one keeps serving and the new one is retried with back-off.
  Workers are forked from the supervisor, so a reload renews processes, caches and open
  files, not the code (that needs a restart; nginx's binary upgrade is SIGUSR2). With
  ``reload_config`` (the CLI re-reads --config and the flags) the new workers get the new
  settings; an invalid one is logged and the old workers stay (nginx). Listeners, worker
  count and backlog are fixed for the supervisor's life: changing them is logged and
  ignored. Without workers (``workers == 1``) SIGHUP keeps its default action.
- SIGUSR1: every worker reopens its access log (logrotate's postrotate, nginx's USR1).
  A ready worker gets SIGUSR1 at once; one still starting gets it when it reports ready
  (its handler exists only then, and it may have opened the file before the rename).
- --drain-delay: SIGUSR2 to the workers makes them fail the health check while serving
  on; SIGTERM follows after the delay. SIGUSR2, not SIGUSR1 (which means "reopen the
  log", the convention logrotate configurations assume) and not SIGWINCH (a terminal
  sends that to its whole foreground process group when resized, so a server started
  in a terminal would fail its health check on every resize); realtime signals belong
  to the rtsig backend. Nothing else in c10k sends or handles SIGUSR2.
- A worker whose supervisor dies (SIGKILL, OOM killer) gets SIGTERM from the kernel
  (prctl PR_SET_PDEATHSIG, Linux) and drains, instead of serving on as an orphan that
  nothing restarts or stops; gunicorn workers poll getppid() for the same reason.
- Workers ignore SIGINT and SIGHUP (and SIGUSR1 until their handler is set): Ctrl-C
  reaches the whole process group, and the supervisor alone decides (a worker getting
  SIGINT and then the forwarded SIGTERM would count two signals and skip its drain).
"""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import gc
import json
import logging
import math
import os
import select
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from c10k.server.base import ServerBase
from c10k.server.certs import Certificates
from c10k.server.certs import load as load_certificates
from c10k.server.clientlimit import Table
from c10k.server.config import ServerConfig
from c10k.server.listeners import listen_addresses, listen_roles, serving_line
from c10k.server.modes import check_settings, server_class
from c10k.server.overload import IDLE_INTERVAL
from c10k.server.shared import Board, aggregate
from c10k.server.systemd import Notifier
from c10k.server.words import plural

log = logging.getLogger("c10k.process")

RESTART_BASE = 0.1  # seconds; systemd RestartSec default
RESTART_CAP = 5.0  # seconds; see the module comment
STABLE_SECONDS = 10.0  # a worker that served this long resets the back-off
KILL_MARGIN = 2.0  # seconds past shutdown_timeout before SIGKILL
STATUS_EVERY = 5.0  # seconds between systemd STATUS= lines (connections, requests)
# A worker not serving this long after its fork is killed and counts as a failed start
# (a reload must not wait forever for it; gunicorn's --timeout covers hung workers).
START_TIMEOUT = 30.0
# The longest a live worker's shared record waits for its next write: its pressure
# check's interval when it is quiet (busy, it writes every PRESSURE_INTERVAL).
COUNT_INTERVAL = IDLE_INTERVAL
SUPERVISOR_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1, signal.SIGCHLD)
REOPEN_SIGNAL = signal.SIGUSR1  # reopen the access log (logrotate; nginx USR1)
FAIL_SIGNAL = signal.SIGUSR2  # --drain-delay: fail the health check (see the module comment)
# Settings a reload cannot change: the supervisor's sockets and slots are made once.
FIXED_FIELDS = ("listen", "host", "port", "workers", "backlog", "reuse_port", "redirect_https")


def worker_config(config: ServerConfig, n: int) -> ServerConfig:
    """The config each of ``n`` workers runs with: the connection cap split evenly."""
    mc = config.max_connections
    return dataclasses.replace(
        config, workers=1, max_connections=None if mc is None else max(1, math.ceil(mc / n))
    )


def build_server(
    config: ServerConfig, socks: list[socket.socket], certs: Certificates | None = None
) -> ServerBase:
    return server_class(config.backend)(config, sock=socks, certs=certs)


# Net new GC-tracked objects that start a young collection (CPython's default: 700). A
# batch of 64 accepts on the asyncio and uvloop modes makes ~1,300 (transports, handles,
# futures) before any is freed, so the default collected once per batch: ~1,600 young
# collections and ~150 older ones per 8 s of new connections, ~4 % of the process's time
# (scripts/gc_pauses.py).
# Nothing the server makes per connection needs the collector (no cycles): it only
# bounds what a cyclic leak would hold before being reclaimed.
YOUNG_THRESHOLD = 10_000


def keep_heap() -> None:
    """Take what exists once the server is built (modules, settings, tables, the loop) out
    of the cyclic GC's walks for the process's life (``gc.freeze``, as Instagram does for
    its forked workers): a full collection then walks only what serving made. On the
    asyncio and uvloop modes, whose transports churn through the collector at a thousand
    connections a second, full collections took 118-136 ms per 8 s of churn, the longest
    14-18 ms, and 20-23 ms in all frozen (docs/BENCHMARKS.md). Garbage is collected first
    so that none is kept for good; young collections start at ``YOUNG_THRESHOLD``. The
    ``c10k serve`` paths call this; a program embedding the server decides for itself."""
    gc.collect()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    gc.freeze()


def load_certs(config: ServerConfig) -> Certificates | None:
    """The TLS contexts, made here before the workers fork: they share the session
    ticket keys, so a client resumes on any worker. None without certificates.

    Raises:
        CertError: a file cannot be used.
    """
    if not config.tls_cert:
        return None
    pairs = list(zip(config.tls_cert, config.tls_key, strict=True))
    return load_certificates(pairs, config.tls_client_ca, share=True)


# -- restart policy ------------------------------------------------------------------------
class RestartPolicy:
    """Exponential back-off for one worker slot.

    >>> p = RestartPolicy()
    >>> [p.next_delay(lifetime=0.5, served=False) for _ in range(8)]
    [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    >>> p.next_delay(lifetime=60.0, served=True)  # it ran fine for a minute: start over
    0.1
    """

    def __init__(
        self, base: float = RESTART_BASE, cap: float = RESTART_CAP, stable: float = STABLE_SECONDS
    ) -> None:
        self.base = base
        self.cap = cap
        self.stable = stable
        self.failures = 0

    def next_delay(self, lifetime: float, served: bool) -> float:
        """Seconds to wait before restarting a worker that died after ``lifetime`` seconds
        (``served``: it had reported ready)."""
        if served and lifetime >= self.stable:
            self.failures = 0
        delay: float = min(self.base * float(2**self.failures), self.cap)
        self.failures += 1
        return round(delay, 6)


# -- the supervisor --------------------------------------------------------------------------
@dataclasses.dataclass(eq=False)
class Worker:
    pid: int
    slot: int
    rfd: int  # read end of its status pipe
    started: float
    ready: bool = False
    info: dict[str, Any] = dataclasses.field(default_factory=dict)
    requests: int = 0
    cut: int = 0  # responses its drain cut short
    counted: bool = False  # its final count arrived through the pipe
    cell: int = -1  # its record on the shared board, -1: none
    error: str = ""
    stopping: bool = False
    reopen: bool = False  # SIGUSR1 came while it was starting: send it once it is ready
    kill_at: float | None = None
    buf: bytes = b""


@dataclasses.dataclass(eq=False)
class Slot:
    index: int
    socks: list[socket.socket]
    current: Worker | None = None
    pending: Worker | None = None  # its replacement during a reload, until ready
    restart_at: float | None = None
    policy: RestartPolicy = dataclasses.field(default_factory=RestartPolicy)


class Supervisor:
    """Forks one worker per slot and keeps them running; see the module comment."""

    def __init__(
        self,
        config: ServerConfig,
        slots: list[list[socket.socket]],
        say: Callable[[str], None],
        reload_config: Callable[[], ServerConfig] | None = None,
    ) -> None:
        self.full_config = config
        self.config = worker_config(config, len(slots))  # what each worker runs with
        self.certs = load_certs(config)
        self.reload_config = reload_config
        self.pid = os.getpid()
        self.slots = [Slot(i, socks) for i, socks in enumerate(slots)]
        self.say = say
        self.workers: dict[int, Worker] = {}  # pid -> worker
        self.by_fd: dict[int, Worker] = {}
        self.requests = 0  # of workers that have exited
        self.cut = 0  # responses cut short by their drains
        self.stopping = False
        self.drain_at: float | None = None  # --drain-delay: when the workers get SIGTERM
        self.notifier = Notifier({})  # systemd's NOTIFY_SOCKET (process.py sets it)
        self.reloading = False  # a SIGHUP's new workers are starting (RELOADING=1 sent)
        self.status_at = 0.0  # when systemd gets the next STATUS= line
        self.booted = False
        self.boot_error = ""
        self._signals: list[int] = []
        self._wake_r = self._wake_w = -1
        self._old_handlers: dict[int, Any] = {}
        self._poll = select.poll()
        # Cells for status records: a slot has at most a worker serving, one starting and
        # some draining; a worker spawned when none is free reports through its pipe only
        # (and is missing from the status page until it exits).
        cells = 4 * len(slots) + 4
        self.board = Board(cells)  # MAP_SHARED | MAP_ANONYMOUS, inherited by every fork
        self._free_cells = list(range(cells - 1, -1, -1))
        # Per-client limits (c10k.server.clientlimit): one table for every worker, a
        # connection-count column per cell, made before the first fork that needs it.
        self.limit_table: Table | None = None
        self._limit_table_for(config)
        self._generation = 0  # of the last worker given a cell

    def _limit_table_for(self, config: ServerConfig) -> None:
        if self.limit_table is None and (config.limit_conn_per_ip or config.limit_req):
            self.limit_table = Table(cells=self.board.ncells, shared=True)

    # -- life cycle ----------------------------------------------------------------------
    def run(self, reuse: bool, note: str) -> int:
        self._install_signals()
        try:
            for slot in self.slots:
                self._spawn(slot)
            while not self.booted and not self.stopping and not self.boot_error:
                self._step()
            if self.boot_error:
                # One write, newline included: a sibling worker's traceback goes to the
                # same stderr at the same moment, and print's two writes (unbuffered, as
                # under PYTHONUNBUFFERED) let it land inside this line.
                sys.stderr.write(f"c10k serve: a worker failed to start: {self.boot_error}\n")
                sys.stderr.flush()
                self._shutdown()
                while self.workers:
                    self._step()
                return 1
            if self.booted:
                self._announce(self.full_config, reuse, note)
                self.notifier.ready(self._status_line())
            while self.workers or not self.stopping:
                self._step()
            return self._goodbye()
        finally:
            for w in list(self.workers.values()):  # only on an exception: leave no orphans
                _kill(w.pid, signal.SIGKILL)
            self._restore_signals()

    def _goodbye(self) -> int:
        return stopped(self.say, self.requests, self.cut)

    def _announce(self, full_config: ServerConfig, reuse: bool, note: str) -> None:
        first = self.slots[0].socks
        infos = [s.current.info for s in self.slots if s.current is not None]
        info = infos[0] if infos else {}
        total = sum(int(i.get("capacity", 0)) for i in infos)
        n = len(self.slots)
        pids = ", ".join(str(s.current.pid) for s in self.slots if s.current is not None)
        tcp = any(s.family != socket.AF_UNIX for s in first)
        if n == 1:
            listeners = "one listener per address"
        elif reuse and tcp:
            listeners = "an SO_REUSEPORT listener per worker and TCP address"
            if len(first) > 1 and not all(s.family != socket.AF_UNIX for s in first):
                listeners += "; Unix sockets shared by all workers"
        elif reuse:
            listeners = "Unix sockets shared by all workers"
        else:
            listeners = "one listener per address shared by all workers (no SO_REUSEPORT)"
        self.say(serving_line(full_config, first))
        self.say(
            f"  backend {info.get('backend')}; {plural(n, 'worker')}, {'pid' if n == 1 else 'pids'}"
            f" {pids}"
            + (f" ({note})" if note else "")
            + f"; capacity {plural(total, 'connection')} ({n} x "
            f"{int(info.get('capacity', 0)):,}: "
            f"{info.get('reason')}; RLIMIT_NOFILE soft {info.get('soft')}, hard "
            f"{info.get('hard')}); {listeners}; supervisor pid {self.pid} (SIGHUP reloads, "
            "SIGUSR1 reopens the access log)"
        )

    def _install_signals(self) -> None:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._poll.register(self._wake_r, select.POLLIN)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in SUPERVISOR_SIGNALS:
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)

    def _restore_signals(self) -> None:
        for sig, old in self._old_handlers.items():
            signal.signal(sig, signal.SIG_DFL if old is None else old)
        self._old_handlers.clear()
        signal.set_wakeup_fd(self._old_wakeup)
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self._signals.append(signum)

    # -- one turn: wait, then handle signals, pipes, exits, timers ---------------------
    def _step(self) -> None:
        now = time.monotonic()
        due = [s.restart_at for s in self.slots if s.restart_at is not None]
        due += [w.kill_at for w in self.workers.values() if w.kill_at is not None]
        due += [self.drain_at] if self.drain_at is not None else []
        ping = self.notifier.watchdog_due()
        due += [ping] if ping is not None else []
        due += [self.status_at] if self.notifier.enabled and self.booted else []
        timeout = None if not due else max(0.0, min(due) - now)
        events = self._poll.poll(None if timeout is None else math.ceil(timeout * 1e3))
        for fd, _mask in events:
            if fd == self._wake_r:
                try:
                    while os.read(fd, 512):
                        pass
                except BlockingIOError:
                    pass
            elif fd in self.by_fd:
                self._read_status(self.by_fd[fd])
        signals, self._signals = self._signals, []
        for sig in signals:
            self._handle_signal(sig)
        self._reap()
        now = time.monotonic()
        self.notifier.watchdog(now)
        if self.notifier.enabled and self.booted and now >= self.status_at:
            self.status_at = now + STATUS_EVERY
            self.notifier.status(self._status_line())
        if self.drain_at is not None and now >= self.drain_at:
            self.drain_at = None
            log.info("drain delay over: stopping %s", plural(len(self.workers), "worker"))
            self._shutdown()
        for w in list(self.workers.values()):
            if w.kill_at is not None and now >= w.kill_at:
                what = "stop" if w.stopping else f"start within {START_TIMEOUT:.0f} s"
                log.warning("worker %d did not %s: SIGKILL", w.pid, what)
                _kill(w.pid, signal.SIGKILL)
                w.kill_at = None
        for slot in self.slots:
            if slot.restart_at is not None and now >= slot.restart_at:
                slot.restart_at = None
                if not self.stopping and self.drain_at is None:
                    self._spawn(slot)

    def _handle_signal(self, sig: int) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            if self.drain_at is not None:
                log.info("signal %d again: draining now", sig)
                self.drain_at = None
                self._shutdown()
            elif self.stopping:
                log.info("signal %d again: workers stop now", sig)
                for w in self.workers.values():
                    _kill(w.pid, signal.SIGTERM)
            elif self.config.drain_delay > 0:
                self._fail(sig)
            else:
                log.info(
                    "signal %d: stopping %s (drain at most %.0f s)",
                    sig,
                    plural(len(self.workers), "worker"),
                    self.config.shutdown_timeout,
                )
                self._shutdown()
        elif sig == signal.SIGHUP and not self.stopping and self.drain_at is None:
            self._reload()
        elif sig == REOPEN_SIGNAL:
            self._reopen_logs()

    def _reopen_logs(self) -> None:
        """SIGUSR1: every worker reopens its access log, draining ones too (their last
        lines belong in the new file). One still starting has no handler yet."""
        log.info("SIGUSR1: %s reopen the access log", plural(len(self.workers), "worker"))
        for w in self.workers.values():
            if w.ready:
                _kill(w.pid, REOPEN_SIGNAL)
            else:
                w.reopen = True

    def _fail(self, sig: int) -> None:
        """--drain-delay: the workers fail their health check and keep serving; SIGTERM
        follows after the delay (``_step``). No restarts or reloads meanwhile: a new
        worker would pass the check."""
        delay = self.config.drain_delay
        log.info(
            "signal %d: failing the health check, still serving for %.1f s, then stopping "
            "%s (again to drain now)",
            sig,
            delay,
            plural(len(self.workers), "worker"),
        )
        self.drain_at = time.monotonic() + delay
        self.notifier.stopping(f"failing the health check for {delay:g} s, then stopping")
        for slot in self.slots:
            slot.restart_at = None
        for w in self.workers.values():
            if w.ready and not w.stopping:  # one still starting has no handler yet
                _kill(w.pid, FAIL_SIGNAL)

    def _shutdown(self) -> None:
        if not self.stopping and self.drain_at is None:  # _fail said it already
            self.notifier.stopping(f"stopping {plural(len(self.workers), 'worker')}")
        self.stopping = True
        for slot in self.slots:
            slot.restart_at = None
        for w in self.workers.values():
            self._terminate(w)

    def _terminate(self, w: Worker) -> None:
        if not w.stopping:
            w.stopping = True
            w.kill_at = time.monotonic() + self.config.shutdown_timeout + KILL_MARGIN
            _kill(w.pid, signal.SIGTERM)

    def _reload(self) -> None:
        if self.reload_config is not None:
            try:
                new = self.reload_config()
                check_settings(new)
                listen_addresses(new)
                if listen_roles(new) != listen_roles(self.full_config):
                    raise ValueError("turning TLS on or off for a listener needs a restart")
                certs = load_certs(new)
            except Exception as exc:
                log.error("SIGHUP: the new configuration is invalid; workers kept: %s", exc)
                return
            fixed = [f for f in FIXED_FIELDS if getattr(new, f) != getattr(self.full_config, f)]
            if fixed:
                log.warning(
                    "SIGHUP: %s cannot change without a restart; keeping the old values",
                    ", ".join(fixed),
                )
                new = dataclasses.replace(new, **{f: getattr(self.full_config, f) for f in fixed})
            self.full_config = new
            self.config = worker_config(new, len(self.slots))
            self._limit_table_for(new)
            self.certs = certs
        log.info("SIGHUP: reloading %s", plural(len(self.slots), "worker"))
        self.notifier.reloading()
        self.reloading = True
        for slot in self.slots:
            if slot.pending is None and slot.current is not None:
                self._spawn(slot)

    # -- workers -------------------------------------------------------------------------
    def _spawn(self, slot: Slot) -> None:
        rfd, wfd = os.pipe()
        cell = self._free_cells.pop() if self._free_cells else -1
        if cell >= 0:
            self._generation += 1
            self.board.claim(cell, self._generation, slot.index)
        sys.stdout.flush()  # else the child inherits and later repeats buffered output
        sys.stderr.flush()
        # Signals are blocked across fork: one arriving in the child before it resets the
        # handlers would run the supervisor's handler there and be lost (a SIGTERM sent
        # at shutdown to a worker just forked). The child unblocks them once they have
        # their worker dispositions.
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
        try:
            pid = os.fork()
        except BaseException:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            raise
        if pid == 0:  # the worker; never returns
            os.close(rfd)
            keep = {s.fileno() for s in slot.socks}
            others = {s.fileno() for sl in self.slots for s in sl.socks} - keep
            others |= set(self.by_fd)  # other workers' status pipes
            others |= {self._wake_r, self._wake_w}
            share = (cell, self._generation, slot.index) if cell >= 0 else None
            # Workers per listener: a socket in every slot (no SO_REUSEPORT, systemd's)
            # is one queue that all of them drain (admission reads its length).
            sharers = [sum(any(x is s for x in sl.socks) for sl in self.slots) for s in slot.socks]
            _worker_main(
                self.pid,
                self.config,
                self.certs,
                slot.socks,
                wfd,
                others,
                mask,
                self.board,
                share,
                self.limit_table,
                sharers,
            )
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        os.close(wfd)
        os.set_blocking(rfd, False)
        w = Worker(pid, slot.index, rfd, time.monotonic(), cell=cell)
        w.kill_at = w.started + START_TIMEOUT  # until it reports ready
        self.workers[pid] = w
        self.by_fd[rfd] = w
        self._poll.register(rfd, select.POLLIN)
        if slot.current is None:
            slot.current = w
        else:
            slot.pending = w
        log.info("worker %d started in slot %d", pid, slot.index)

    def _read_status(self, w: Worker) -> bool:
        """Read what is in the worker's pipe; False once it is at EOF (and closed)."""
        try:
            data = os.read(w.rfd, 65536)
        except BlockingIOError:
            return True
        if not data:
            self._close_pipe(w)
            return False
        *lines, w.buf = (w.buf + data).split(b"\n")
        for line in lines:
            try:
                msg = json.loads(line)
            except ValueError:
                continue
            if "ready" in msg:
                self._on_ready(w, msg)
            elif "requests" in msg:
                w.requests = int(msg["requests"])
                w.cut = int(msg.get("cut", 0))
                w.counted = True
            elif "error" in msg:
                w.error = str(msg["error"])
        return True

    def _close_pipe(self, w: Worker) -> None:
        if w.rfd >= 0:
            self._poll.unregister(w.rfd)
            del self.by_fd[w.rfd]
            os.close(w.rfd)
            w.rfd = -1

    def _on_ready(self, w: Worker, msg: dict[str, Any]) -> None:
        w.ready = True
        w.info = msg
        if not w.stopping:
            w.kill_at = None
        slot = self.slots[w.slot]
        if slot.pending is w:
            old, slot.current, slot.pending = slot.current, w, None
            if old is not None:
                log.info("worker %d ready in slot %d; retiring %d", w.pid, slot.index, old.pid)
                self._terminate(old)
        if self.stopping and not w.stopping:
            self._terminate(w)
        elif self.drain_at is not None and not w.stopping:  # started before the signal
            _kill(w.pid, FAIL_SIGNAL)
        if w.reopen:
            w.reopen = False
            _kill(w.pid, REOPEN_SIGNAL)
        if not self.booted and all(s.current is not None and s.current.ready for s in self.slots):
            self.booted = True
        if self.reloading and all(s.pending is None for s in self.slots):
            self.reloading = False
            self.notifier.ready(self._status_line())

    def _status_line(self) -> str:
        """systemd's STATUS=: workers, open connections and requests served, from the
        workers' shared records (as of their last pressure check)."""
        n = sum(1 for s in self.slots if s.current is not None and s.current.ready)
        retired, live, _ = self.board.snapshot()
        st, _ = aggregate(retired, live)
        return (
            f"serving, {plural(n, 'worker')}, {plural(st['active'], 'connection')}, "
            f"{plural(st['requests'], 'request')}"
        )

    def _reap(self) -> None:
        while self.workers:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is not None:
                self._on_exit(w, status)

    def _on_exit(self, w: Worker, status: int) -> None:
        # The last status lines (requests served) are in the pipe; its write end closed
        # with the process, so this reads to EOF.
        while w.rfd >= 0:
            try:
                data_left = self._read_status(w)
            except OSError:
                data_left = False
            if not data_left or w.rfd < 0:
                break
        self._close_pipe(w)
        final = self.board.retire(w.cell, w.requests)
        if w.cell >= 0:
            if final is not None and not w.counted:  # killed or crashed: its last record
                w.requests = final.values["requests"]
            if self.limit_table is not None:  # its connections (a killed one's) stop counting
                self.limit_table.forget_cell(w.cell)
            self._free_cells.append(w.cell)
        self.requests += w.requests
        self.cut += w.cut
        slot = self.slots[w.slot]
        how = _describe_status(status)
        if w.stopping:
            cut = f"; {plural(w.cut, 'response')} cut short" if w.cut else ""
            log.info("worker %d %s after %s%s", w.pid, how, plural(w.requests, "request"), cut)
            return
        lifetime = time.monotonic() - w.started
        if slot.current is w:
            slot.current, slot.pending = slot.pending, None
            replaced = slot.current is not None  # its replacement is already starting
        elif slot.pending is w:  # a reload's new worker failed; the old one serves on
            slot.pending = None
            replaced = False
        else:
            return
        if self.stopping:
            return
        if not self.booted:
            self.boot_error = f"worker {w.pid} {how}" + (f": {w.error}" if w.error else "")
            return
        if replaced:
            return
        delay = slot.policy.next_delay(lifetime, w.ready)
        log.warning(
            "worker %d (slot %d) %s after %.1f s%s; restarting in %.1f s",
            w.pid,
            slot.index,
            how,
            lifetime,
            f" ({w.error})" if w.error else "",
            delay,
        )
        slot.restart_at = time.monotonic() + delay


def stopped(say: Callable[[str], None], requests: int, cut: int) -> int:
    """The last line of a run (one process or many), and its exit status: 1 if
    responses were cut short by the drain deadline or a second signal."""
    line = f"c10k stopped after {plural(requests, 'request')}"
    say(line + (f"; {plural(cut, 'response')} cut short" if cut else ""))
    return 1 if cut else 0


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _describe_status(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"was killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exited with status {os.waitstatus_to_exitcode(status)}"


def _one_line(exc: BaseException) -> str:
    """``FileNotFoundError: [Errno 2] No such file or directory: '/x.log'``."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _send(fd: int, msg: dict[str, Any]) -> None:
    try:
        os.write(fd, json.dumps(msg).encode() + b"\n")
    except OSError as exc:
        if exc.errno != errno.EPIPE:
            raise


def _die_with_parent(parent: int) -> None:
    # PR_SET_PDEATHSIG = 1 (linux/prctl.h). Best effort: without it (not Linux, no libc
    # found) an orphaned worker serves on until it is stopped by hand.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # it died before prctl took effect: nothing to drain yet
        os._exit(0)


def _worker_main(
    supervisor: int,
    config: ServerConfig,
    certs: Certificates | None,
    socks: list[socket.socket],
    wfd: int,
    other_fds: set[int],
    sigmask: set[int | signal.Signals],
    board: Board,
    share: tuple[int, int, int] | None,
    limit_table: Table | None = None,
    sharers: Sequence[int] = (),
) -> NoReturn:
    """A worker: build a server on its slot's sockets, report, serve, report, _exit.

    Never returns into the supervisor's stack (os._exit), so no finally block or atexit
    handler of the supervisor runs twice."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        # SIGUSR1 too until the server's handler is set (its default would kill): the
        # supervisor sends one that came meanwhile again once this worker is ready.
        for sig in (signal.SIGINT, signal.SIGHUP, REOPEN_SIGNAL):
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, sigmask)  # blocked by _spawn
        _die_with_parent(supervisor)
        for fd in other_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        server = build_server(config, socks, certs)
        if sharers:
            server.policy.admission.share(sharers)
        if share is not None:  # (cell, generation, slot)
            server.policy.share(board, *share)
        if limit_table is not None:  # count in its cell's column (-1: none free, no counts)
            server.policy.share_limits(limit_table, share[0] if share is not None else -1)
        server.drain_signals = (signal.SIGTERM,)  # SIGINT stays ignored: see the module comment
        server.fail_signals = (FAIL_SIGNAL,)  # --drain-delay, kept by the supervisor
        server.reopen_signals = (REOPEN_SIGNAL,)
        server.delay_drain = False
        server.install_signal_handlers()
        keep_heap()
        _send(
            wfd,
            {
                "ready": os.getpid(),
                "backend": server.backend_name,
                "capacity": server.capacity,
                "reason": server.capacity_reason,
                "soft": server.nofile_soft,
                "hard": server.nofile_hard,
            },
        )
        server.serve_forever(install_signals=False)
        server.policy.publish(final=True)  # its last record, then its last count
        cut = getattr(server, "responses_cut", 0)  # ServerBase's, once it counts them
        _send(wfd, {"requests": server.requests, "cut": cut})
        code = 0
    except BaseException as exc:
        try:
            if log.isEnabledFor(logging.DEBUG):  # -v; else the supervisor's one line says it
                # One write: two workers failing at once would interleave line by line.
                os.write(2, traceback.format_exc().encode(errors="replace"))
            _send(wfd, {"error": _one_line(exc)})
        except BaseException:
            pass
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)
