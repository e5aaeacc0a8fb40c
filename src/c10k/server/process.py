"""``c10k serve`` as one process, or a supervisor and its workers.

One event loop uses one core. To use every core, c10k runs several worker processes, each
with its own loop, the way nginx (master + worker_processes), gunicorn (arbiter) and
uvicorn (``--workers``) do. This module decides how many and starts them: the listening
sockets are c10k.server.listeners', the supervisor c10k.server.supervisor's.

Workers (``serve``)
- ``workers == 1``: no supervisor; the server runs in this process.
- ``workers == 0``: one per CPU this process may run on (``sched_getaffinity``; nginx
  ``worker_processes auto``). If ``max_connections`` is more than workers x the
  per-process cap (RLIMIT_NOFILE hard limit minus ``FD_RESERVE``; for select, FD_SETSIZE
  minus it), enough workers are
  started to hold it, and the banner says so. ``max_connections`` is split evenly over the
  workers. An explicit worker count is obeyed; the banner warns if it is too small.
- Each worker *slot* has its own SO_REUSEPORT socket per TCP address, so the kernel spreads
  connections over the slots by a 4-tuple hash and no worker wakes for another's client.
  Without SO_REUSEPORT (and always for Unix sockets, which have no reuseport group) the
  slots share one socket; see c10k.core.listener on EPOLLEXCLUSIVE for that case.
- The supervisor holds every listening socket for its whole life; a worker inherits its
  slot's sockets through fork. So when a worker dies or is replaced, connections already
  in its slot's accept queue are not reset: they wait for the slot's next worker. (Were
  the socket closed, the kernel would drop its queue.)
- Workers are forked, not spawned: the supervisor imports everything once and starts no
  thread, so fork is safe. A worker builds its Server (loop, epoll, cache, io threads)
  after the fork; nothing of that kind is ever shared across processes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import resource
import signal
import socket
import sys
from collections.abc import Callable

from c10k.core.backend import BackendUnavailable, Capability
from c10k.core.listener import reuse_port_supported
from c10k.core.registry import get_backend_class
from c10k.server.base import FD_RESERVE
from c10k.server.certs import CertError
from c10k.server.config import ServerConfig
from c10k.server.listeners import (
    Address,
    bind_listeners,
    bind_slots,
    close_listeners,
    listen_addresses,
    remove_unix_files,
    serving_line,
    unix_files,
)
from c10k.server.modes import SERVER_MODES, ModeUnavailable, check_settings
from c10k.server.supervisor import Supervisor, build_server, keep_heap, stopped
from c10k.server.systemd import Activation, Notifier, listen_fds
from c10k.server.words import plural
from c10k.static.compress import BROTLI_INSTALL, brotli_available

log = logging.getLogger("c10k.process")

MAX_AUTO_WORKERS = 256  # beyond this, raise the hard RLIMIT_NOFILE instead


# -- how many workers ----------------------------------------------------------------------
def per_process_cap(backend: str = "auto") -> tuple[int, int]:
    """(connections one worker can hold, RLIMIT_NOFILE hard limit): each worker raises its
    soft limit to the hard one and keeps FD_RESERVE fds for everything else; a backend with
    an fd limit of its own (select: FD_SETSIZE) caps it further, as Server does."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20  # as c10k.server.app.raise_nofile_limit
    cap = hard - FD_RESERVE
    if backend not in SERVER_MODES:
        cls = get_backend_class(backend)
        if cls.capabilities & Capability.FD_LIMIT and cls.max_fd is not None:
            cap = min(cap, cls.max_fd - FD_RESERVE)
    return max(cap, 1), hard


def plan_workers(config: ServerConfig) -> tuple[int, str]:
    """(number of workers, why that many for the banner, possibly empty)."""
    cap, hard = per_process_cap(config.backend)
    wanted = config.max_connections
    if config.workers > 0:
        n = config.workers
        if wanted is not None and wanted > n * cap:
            need = math.ceil(wanted / cap)
            return n, (
                f"WARNING: they hold at most {n * cap:,} connections, fewer than "
                f"--max-connections {wanted:,}; --workers 0 would start {need}"
            )
        return n, ""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    if wanted is not None and wanted > cores * cap:
        n = math.ceil(wanted / cap)
        if n > MAX_AUTO_WORKERS:
            raise ValueError(
                f"--max-connections {wanted:,} needs {n} workers of {cap:,} connections "
                f"(RLIMIT_NOFILE hard limit {hard}); raise the hard limit instead"
            )
        return n, (
            f"not one per core ({cores}): {n} hold --max-connections {wanted:,} at {cap:,} "
            f"per process (RLIMIT_NOFILE hard {hard} minus {FD_RESERVE})"
        )
    return cores, "one per core"


# -- serve -------------------------------------------------------------------------------
def preflight(config: ServerConfig) -> list[str]:
    """What ``serve`` checks before it binds a socket or forks, as problems (``c10k serve
    --check-config``; settings.resolve has checked each value and TLS file already):
    the backend, how many workers, the listen addresses."""
    problems = []
    checks: list[Callable[[], object]] = [
        lambda: check_settings(config),
        lambda: plan_workers(config) if config.workers != 1 else None,
        lambda: listen_addresses(config),
    ]
    for check in checks:
        try:
            check()
        except (BackendUnavailable, ModeUnavailable, ValueError) as exc:
            problems.append(str(exc))
    return problems


def serve(
    config: ServerConfig,
    announce: Callable[[str], object] = print,
    reload_config: Callable[[], ServerConfig] | None = None,
) -> int:
    """The whole ``c10k serve`` run. Returns the exit status.

    Args:
        config: the settings (``workers``, ``listen``, ``shutdown_timeout``, ...).
        announce: gets the banner lines and the final "c10k stopped after N requests".
            stdout is flushed after each call, so ``print`` reaches a pipe at once.
        reload_config: called on SIGHUP for the settings of the new workers (see the
            module comment); None: they get ``config`` again.
    """

    def say(text: str) -> None:
        try:
            announce(text)
            sys.stdout.flush()
        except BrokenPipeError:
            # Whoever read the banner is gone (`c10k serve | head -2`): serving goes on;
            # point stdout at /dev/null so the exit-time flush does not complain again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)

    notifier = Notifier()
    try:
        check_settings(config)
        activation = listen_fds()
        if activation is not None:
            config, reload_config = _activated(config, activation, reload_config)
        passed = activation.sockets if activation is not None else []
        n, note = plan_workers(config) if config.workers != 1 else (1, "")
        addresses = listen_addresses(config)
    except (BackendUnavailable, ModeUnavailable, ValueError) as exc:
        print(f"c10k serve: {exc}", file=sys.stderr)
        return 2
    if config.compress and not brotli_available():
        # Clients that accept br would get it; say once, at start, what adds it.
        print(
            f"c10k serve: note: compressing with gzip only; `{BROTLI_INSTALL}` adds br",
            file=sys.stderr,
        )
    if config.workers == 1:
        return _serve_here(config, addresses, say, passed, notifier)
    if note.startswith("not one per core"):  # said before forking, not after
        print(f"c10k serve: note: starting {plural(n, 'worker')}, {note}", file=sys.stderr)
    reuse = reuse_port_supported()
    try:
        slots = bind_slots(config, addresses, n, reuse, passed)
    except OSError as exc:
        print(f"c10k serve: cannot listen on {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    files = unix_files([s for s in slots[0] if s not in passed])  # systemd's stay
    try:
        try:
            sup = Supervisor(config, slots, say, reload_config)
        except CertError as exc:
            print(f"c10k serve: {exc}", file=sys.stderr)
            return 2
        sup.notifier = notifier
        return sup.run(reuse, note)
    finally:
        close_listeners([s for slot in slots for s in slot])
        remove_unix_files(files)


def _activated(
    config: ServerConfig,
    activation: Activation,
    reload_config: Callable[[], ServerConfig] | None,
) -> tuple[ServerConfig, Callable[[], ServerConfig] | None]:
    """The settings with systemd's sockets as the listeners (a reload keeps them)."""
    if config.listen:
        print(
            f"c10k serve: note: systemd passed {plural(len(activation.specs), 'socket')}; "
            f"serving on those, not on --listen {' '.join(config.listen)}",
            file=sys.stderr,
        )
    specs = activation.specs
    if reload_config is None:
        return dataclasses.replace(config, listen=specs), None
    again = reload_config
    return dataclasses.replace(config, listen=specs), lambda: dataclasses.replace(
        again(), listen=specs
    )


def _serve_here(
    config: ServerConfig,
    addresses: list[tuple[int, Address]],
    say: Callable[[str], None],
    passed: list[socket.socket],
    notifier: Notifier,
) -> int:
    try:
        socks = bind_listeners(config, config.reuse_port, addresses, passed)
    except OSError as exc:
        print(f"c10k serve: cannot listen on {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    files = unix_files([s for s in socks if s not in passed])  # systemd's stay
    try:
        try:
            server = build_server(config, socks)
        except (BackendUnavailable, ModeUnavailable, CertError) as exc:
            print(f"c10k serve: {exc}", file=sys.stderr)
            return 2
        except OSError as exc:  # e.g. the root is not a directory
            print(f"c10k serve: {exc}", file=sys.stderr)
            return 1
        server.hangup_signals = (signal.SIGHUP,)  # a process on its own: see ServerBase
        server.reopen_signals = (signal.SIGUSR1,)  # logrotate's postrotate, as nginx
        server.notifier = notifier
        server.install_signal_handlers()
        say(serving_line(config, socks))
        say(
            f"  backend {server.backend_name}; 1 process; capacity "
            f"{plural(server.capacity, 'connection')} ({server.capacity_reason}; "
            f"RLIMIT_NOFILE soft {server.nofile_soft}, hard {server.nofile_hard})"
        )
        keep_heap()
        notifier.ready(f"serving, 1 process, capacity {server.capacity:,} connections")
        server.serve_forever(install_signals=False)
        return stopped(say, server.requests, server.responses_cut)
    finally:
        close_listeners(socks)
        remove_unix_files(files)
