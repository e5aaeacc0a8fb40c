"""``c10k doctor``: what this machine allows, how many connections it can hold, and the
exact command that lifts each limit standing between it and a target (default C1M).

Theory of operation
-------------------
Kegel's page has a section per wall a server meets on the way to many clients: "Limits on
open filehandles", "Limits on threads", the accept backlog, memory per connection. Each
wall is a number the kernel exposes, so the doctor reads them all, compares each with
what ``--connections N`` needs, and prints the command that moves it.

- **One check per limit, in one table.** ``CHECKS`` lists a small function per limit
  (open files, fs.nr_open, fs.file-max, somaxconn, ...), each taking the same ``Context``
  and returning its ``Limit``; ``collect`` walks the table, then adds what the machine
  offers (backends, modes, io_uring, kTLS) and the capacity each configuration holds. A
  new wall is a new function and a table row.
- **Everything is read through one injectable reader** (``Sources.read``: absolute path
  -> text, or None when absent), so one fake dictionary drives every branch of the
  advice in tests, and the real run is checked against ``/proc`` itself.
- **Statuses.** ``OK``: not in the way. ``LIMIT``: caps the count below the target.
  ``WARN``: does not cap the count but hurts getting there (a truncated accept backlog,
  buffer memory if every connection had data queued at once). ``INFO``: reported for
  understanding, e.g. the thread limits, which only bind the one-thread-per-client mode.
- **Two sides.** A server facing real clients spends one socket per connection. The C1M
  bench on this machine (``--loopback``) spends two (both ends), one ephemeral port per
  connection and (source, destination, listen port) tuple, and twice the kernel memory.
- **Who can fix it.** ``needs_root`` marks a command that needs root. ``raisable`` is
  False when it cannot be done from here at all, and ``blocked_by`` then says why when
  we are root: a hard RLIMIT_NOFILE above the current one needs CAP_SYS_RESOURCE, which a
  default container lacks (``docker run --ulimit`` then sets it from outside); a
  read-only ``/proc/sys`` (unprivileged container) means the sysctl is set on the host;
  memory cannot be raised by a command. A limit that has a no-root way around it says so
  (more worker processes instead of more fds per process).
- **Per-connection memory is measured, not guessed**: ``c10k doctor --measure N`` holds
  N connections to a real ``c10k serve`` and reads its VmRSS and the kernel's Slab; the
  ``*_BYTES_PER_*`` constants are its result on the project machine.

One module, in sections that read top to bottom: sources (facts in), context (vocabulary
and the figures several checks share), checks (the table), features (io_uring, kTLS),
the report (``collect``, capacity), output, measurement, command line. It stays one file
because tests/test_layers.py gives ``doctor.py`` its import rule (core, server, region)
and each section is small; a package would need a rule of its own.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import resource
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

# == sources: where the facts come from =====================================================
# Every fact goes through one ``Sources`` object, and nearly all of them through its
# ``read`` (absolute path -> text, or None when the file is absent or unreadable). Even the
# rlimits come from ``/proc/self/limits`` rather than ``resource.getrlimit``, and the
# capabilities from ``CapEff`` in ``/proc/self/status``, so that one fake dictionary drives
# every branch of the advice in tests while the real run is checked against ``/proc``
# itself. The few facts that are not files (cores, euid, which backends import, whether
# this Python's ``ssl`` has ``OP_ENABLE_KTLS``) are callables on the same object.
#
# The parsers below are total: a missing or garbled file gives an empty result, never an
# exception, because the doctor must report on odd machines, not crash on them.


def _read_real(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _writable_real(path: str) -> bool:
    # access(2) reports EROFS for a read-only mount (docker's /proc/sys), which is the
    # common reason root cannot write a sysctl.
    return os.access(path, os.W_OK)


def _backends_real() -> tuple[list[str], dict[str, str]]:
    from c10k.core.registry import available_backends, unavailable_backends

    return available_backends(), unavailable_backends()


def _modes_real() -> tuple[list[str], dict[str, str]]:
    from c10k.server.modes import available_modes, unavailable_modes

    return available_modes(), unavailable_modes()


def _cores_real() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _ssl_ktls_real() -> bool:
    # ssl.OP_ENABLE_KTLS is new in Python 3.12. Whether OpenSSL itself was built with
    # enable-ktls cannot be seen from Python: the flag is a request OpenSSL may ignore.
    return hasattr(ssl, "OP_ENABLE_KTLS")


def _brotli_real() -> bool:
    # On-the-fly br (c10k.static.compress) needs the optional brotli package; looked up,
    # not imported (the doctor serves nothing).
    return importlib.util.find_spec("brotli") is not None


@dataclass
class Sources:
    """Where the doctor gets its facts; tests replace any of them."""

    read: Callable[[str], str | None] = _read_real
    writable: Callable[[str], bool] = _writable_real
    cores: Callable[[], int] = _cores_real
    euid: Callable[[], int] = os.geteuid
    backends: Callable[[], tuple[list[str], dict[str, str]]] = _backends_real
    modes: Callable[[], tuple[list[str], dict[str, str]]] = _modes_real
    ssl_ktls: Callable[[], bool] = _ssl_ktls_real
    brotli: Callable[[], bool] = _brotli_real
    page_size: int = field(default_factory=lambda: os.sysconf("SC_PAGE_SIZE"))


def sysctl_path(name: str) -> str:
    return "/proc/sys/" + name.replace(".", "/")


def read_sysctl(src: Sources, name: str) -> list[int] | None:
    text = src.read(sysctl_path(name))
    if text is None:
        return None
    try:
        return [int(x) for x in text.split()]
    except ValueError:
        return None


def read_rlimits(src: Sources) -> dict[str, tuple[int | None, int | None]]:
    """``/proc/self/limits`` as {"Max open files": (soft, hard)}; None means unlimited."""
    out: dict[str, tuple[int | None, int | None]] = {}
    for line in (src.read("/proc/self/limits") or "").splitlines()[1:]:
        m = re.match(r"(Max [a-z ]+?)\s{2,}(\d+|unlimited)\s+(\d+|unlimited)", line)
        if m:
            soft, hard = (None if v == "unlimited" else int(v) for v in m.group(2, 3))
            out[m.group(1)] = (soft, hard)
    return out


def read_meminfo(src: Sources) -> dict[str, int]:
    """``/proc/meminfo`` in bytes."""
    out: dict[str, int] = {}
    for line in (src.read("/proc/meminfo") or "").splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def read_status(src: Sources) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (src.read("/proc/self/status") or "").splitlines():
        name, _, value = line.partition(":")
        out[name] = value.strip()
    return out


def read_cap_eff(status: dict[str, str]) -> int:
    """The effective capability set (``CapEff``, hex) of ``read_status``; 0 if absent."""
    try:
        return int(status.get("CapEff", "0"), 16)
    except ValueError:
        return 0


def detect_container(src: Sources) -> str | None:
    if src.read("/.dockerenv") is not None:
        return "docker"
    if src.read("/run/.containerenv") is not None:
        return "podman"
    cgroup = src.read("/proc/self/cgroup") or ""
    for word in ("kubepods", "docker", "lxc", "containerd"):
        if word in cgroup:
            return word
    return None


def proc_sys_read_only(src: Sources) -> bool:
    """True when the mount that holds /proc/sys is read-only (docker mounts /proc/sys
    read-only in every container that is not --privileged)."""
    best, ro = "", False
    for line in (src.read("/proc/self/mounts") or "").splitlines():
        parts = line.split()
        # the deepest of /proc and /proc/sys wins; of equal ones, the last mounted
        if len(parts) >= 4 and parts[1] in ("/proc", "/proc/sys") and len(parts[1]) >= len(best):
            best, ro = parts[1], "ro" in parts[3].split(",")
    return ro


def in_user_namespace(src: Sources) -> bool:
    """True when this process's uid 0 is not the host's (rootless podman/docker, ``unshare
    -r``): the initial namespace maps all 2**32 - 1 ids onto themselves."""
    uid_map = src.read("/proc/self/uid_map")
    return uid_map is not None and uid_map.split() != ["0", "0", "4294967295"]


# == context: the report's vocabulary, and what every check is handed =======================
# ``Context`` reads the facts several checks need once (rlimits, meminfo, CapEff, the
# container, who we are) and derives, on first use, the figures that more than one check or
# the capacity summary uses (``nofile``, ``file_handles``, ``ports``, ``conntrack``). Checks
# therefore never depend on running after another check, and the ``CHECKS`` table can
# be reordered freely: its order is only the order of the report.
#
# Who can raise a limit (``needs_root``, ``raisable``, ``blocked_by``):
# - Raising a hard rlimit needs CAP_SYS_RESOURCE (kernel/sys.c ``do_prlimit`` asks
#   ``capable()``, i.e. in the host's user namespace), not merely euid 0: a default docker
#   container runs as root without it.
# - Writing a sysctl needs the host's uid 0 (``proc_sys_permission``) on a writable
#   ``/proc/sys``; docker mounts it read-only unless ``--privileged``, and remounting it
#   needs CAP_SYS_ADMIN.
# - So when we are root and still cannot, ``blocked_by`` names the missing capability or
#   the read-only mount instead of a useless "needs root".

SCHEMA = 1
DEFAULT_TARGET = 1_000_000
# Same reserve as c10k.server.app.FD_RESERVE (listeners, epoll, wakeup pair, files being
# sent, logs); repeated here so the doctor does not import the whole server to read limits.
FD_RESERVE = 64
# ServerConfig.backlog: listen(2) backlog c10k asks for (nginx: 511; haproxy: maxconn).
SERVER_BACKLOG = 4096

# `c10k doctor --measure 10000`, three runs on the project machine (2 cores, 24 GiB,
# Python 3.11, epoll backend), 2026-11-27: server VmRSS +394/+397/+397 bytes per
# connection; Slab +5,011/+4,851/+4,768 bytes per socket (a tcp_sock, its inode, dentry
# and file, the epoll item, slab slack); the measuring client's own VmRSS +94 bytes
# per connection (it keeps a socket.socket each). Rounded up.
SERVER_PY_BYTES_PER_CONN = 400
KERNEL_BYTES_PER_SOCKET = 5_000
CLIENT_PY_BYTES_PER_CONN = 100

# Linux capability bits (include/uapi/linux/capability.h).
CAP_SYS_ADMIN = 21
CAP_SYS_RESOURCE = 24
# PID_MAX_LIMIT on 64-bit (include/linux/threads.h): 4 * 1024 * 1024.
PID_MAX_LIMIT = 4 * 1024 * 1024

OK, LIMIT, WARN, INFO = "OK", "LIMIT", "WARN", "INFO"
SYSCTL_D = "/etc/sysctl.d/60-c10k.conf"


def _fmt(n: float) -> str:
    return f"{int(n):,}"


@dataclass
class Limit:
    """One line of the report (and one entry of ``limits`` in the JSON)."""

    value: Any
    status: str
    meaning: str
    needed: int | None = None
    fix: list[str] = field(default_factory=list)
    needs_root: bool = False
    raisable: bool = True
    # ways around it that need no root (e.g. more worker processes)
    workaround: list[str] = field(default_factory=list)
    # why it cannot be done from here although we are root (a missing capability, a
    # read-only /proc/sys); None when it can, or when "needs root" already says why
    blocked_by: str | None = None


class Nofile(NamedTuple):
    """RLIMIT_NOFILE and what it means for one worker process."""

    soft: int | None  # None: unlimited
    hard: int | None
    soft_eff: int  # unlimited read as fs.nr_open, the kernel's ceiling
    hard_eff: int
    nr_open: int
    per_process: int  # connections one worker can hold
    per_proc_need: int  # fds each of `cores` workers needs for the target


class Context:
    """The target, the facts read once, and the figures derived from them."""

    def __init__(self, target: int, loopback: bool, src: Sources) -> None:
        self.target = target
        self.loopback = loopback
        # a server facing real clients spends one socket per connection; on loopback
        # both ends are here
        self.sides = 2 if loopback else 1
        self.src = src
        self.page = src.page_size
        self.cores = max(1, src.cores())
        self.euid = src.euid()
        self.container = detect_container(src)
        self.status = read_status(src)
        self.cap_eff = read_cap_eff(self.status)
        self.userns = in_user_namespace(src)
        self.proc_sys_ro = proc_sys_read_only(src)
        self.mem = read_meminfo(src)
        self.rlim = read_rlimits(src)

    def sysctl(self, name: str) -> list[int] | None:
        return read_sysctl(self.src, name)

    def sysctl1(self, name: str, default: int) -> int:
        """The first number of a sysctl, or ``default`` when it is absent or garbled."""
        return (self.sysctl(name) or [default])[0]

    def writable(self, name: str) -> bool:
        return self.src.writable(sysctl_path(name))

    # -- who can fix it ----------------------------------------------------------------
    def cap_missing(self, bit: int, name: str) -> str | None:
        """Why root does not hold capability ``name`` here, or None when it does."""
        if not self.cap_eff >> bit & 1:
            return f"root, but CapEff lacks {name}"
        if self.userns:
            # capable() checks the host's user namespace, and ours is not it
            return f"root of a user namespace: its {name} does not count on the host"
        return None

    @property
    def cap_sys_resource(self) -> bool:
        return self.cap_missing(CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE") is None

    @property
    def cap_sys_admin(self) -> bool:
        return self.cap_missing(CAP_SYS_ADMIN, "CAP_SYS_ADMIN") is None

    def sysctl_blocker(self) -> str | None:
        """Why root cannot write /proc/sys here; None when not root ("needs root" is why)."""
        if self.euid != 0:
            return None
        if self.userns:  # proc_sys_permission() wants the host's uid 0
            return "root of a user namespace (/proc/self/uid_map), not of the host"
        if self.proc_sys_ro:
            if self.cap_eff >> CAP_SYS_ADMIN & 1:
                return "/proc/sys is mounted read-only (mount -o remount,rw /proc/sys)"
            return "/proc/sys is mounted read-only, and CapEff lacks CAP_SYS_ADMIN to remount it"
        cap = self.cap_missing(CAP_SYS_ADMIN, "CAP_SYS_ADMIN")
        return cap or "/proc/sys is not writable to this root process"

    # -- figures several checks and the capacity summary share ---------------------------
    @cached_property
    def nofile(self) -> Nofile:
        nr_open = self.sysctl1("fs.nr_open", 1024 * 1024)
        soft, hard = self.rlim.get("Max open files", (None, None))
        hard_eff = nr_open if hard is None else hard
        soft_eff = nr_open if soft is None else soft
        # On loopback the bench client processes hold the other ends; they face the same
        # hard limit, so per process the need is the same as the server's share.
        need = math.ceil(self.target / self.cores) + FD_RESERVE
        return Nofile(soft, hard, soft_eff, hard_eff, nr_open, max(hard_eff - FD_RESERVE, 0), need)

    @cached_property
    def file_handles(self) -> tuple[int, list[int], int]:
        """fs.file-max, fs.file-nr, and the handles in use now."""
        file_max = self.sysctl1("fs.file-max", 0)
        file_nr = self.sysctl("fs.file-nr") or [0, 0, file_max]
        return file_max, file_nr, file_nr[0] - file_nr[1]

    @cached_property
    def ports(self) -> tuple[int, int, int, int]:
        """Ephemeral port range (lo, hi), ports per tuple, tuples the target needs."""
        lo, hi = (self.sysctl("net.ipv4.ip_local_port_range") or [32768, 60999])[:2]
        ports = hi - lo + 1
        return lo, hi, ports, math.ceil(self.target / ports) if ports > 0 else 0

    @cached_property
    def conntrack(self) -> tuple[int | None, int]:
        """nf_conntrack_max (None: no conntrack module) and the entries in use."""
        ct_max = self.sysctl("net.netfilter.nf_conntrack_max")
        count = self.sysctl("net.netfilter.nf_conntrack_count")
        return (ct_max[0] if ct_max else None), (count[0] if count else 0)

    @property
    def mem_available(self) -> int:
        return self.mem.get("MemAvailable", 0)


# == checks: one per limit, and the table collect walks =====================================
# Each check takes the ``Context`` and returns {name: Limit} for the limit it owns (a few
# own a pair that only make sense together: fs.file-max with fs.file-nr, the two buffer
# sizes). A check reads what it needs through the context and never another check's
# result, so the table order is just the order of the report, following Kegel's page:
# file handles, the accept backlog, ports, socket memory, memory, threads.
#
# A sysctl that is in the way gets three things from ``sysctl_fix``: the runtime command,
# the line for ``/etc/sysctl.d`` that keeps it after a reboot, and who can run them.

Check = Callable[[Context], dict[str, Limit]]


def sysctl_fix(ctx: Context, name: str, value: str) -> Limit:
    """The fix fields for a sysctl: runtime command, persistent file, and who can do it."""
    writable = ctx.writable(name)
    bare = value.strip('"')  # sysctl.d files take the value unquoted
    fix = [f"sysctl -w {name}={value}", f"echo '{name} = {bare}' >> {SYSCTL_D}"]
    lim = Limit(None, OK, "", fix=fix, needs_root=True, raisable=writable)
    if not writable:
        lim.blocked_by = ctx.sysctl_blocker()
        where = "on the host"
        if ctx.container and name.startswith("net."):
            # net.* sysctls are per network namespace: settable per container.
            where += f" or `docker run --sysctl {name}={value}`"
        lim.fix.append(f"/proc/sys is read-only here: set it {where}")
    return lim


def _sysctl_limit(
    ctx: Context,
    name: str,
    value: Any,
    ok: bool,
    want: str,
    meaning: str,
    bad: str = LIMIT,
    needed: int | None = None,
) -> dict[str, Limit]:
    """{name: Limit}: OK when ``ok``, else status ``bad`` with the fix to ``want``."""
    if ok:
        return {name: Limit(value, OK, meaning, needed)}
    lim = sysctl_fix(ctx, name, want)
    lim.value, lim.status, lim.meaning, lim.needed = value, bad, meaning, needed
    return {name: lim}


# -- file descriptors (the page: "Limits on open filehandles") -------------------------------
def check_open_files(ctx: Context) -> dict[str, Limit]:
    nf = ctx.nofile
    meaning = (
        f"open files per process (soft {nf.soft_eff:,}, hard {nf.hard_eff:,}); c10k raises "
        f"soft to hard at start and keeps {FD_RESERVE} in reserve, so one worker holds "
        f"{nf.per_process:,} connections; {ctx.cores} worker(s) (one per core) need "
        f"{nf.per_proc_need:,} each"
    )
    value = {"soft": nf.soft, "hard": nf.hard}
    if nf.hard_eff >= nf.per_proc_need:
        lim = Limit(value, OK, meaning, nf.per_proc_need)
        if nf.soft_eff < nf.per_proc_need:
            lim.fix.append(f"ulimit -n {nf.hard_eff}  # for other programs; c10k does it itself")
        return {"RLIMIT_NOFILE": lim}
    lim = Limit(value, LIMIT, meaning, nf.per_proc_need, needs_root=True)
    lim.fix = _nofile_fix(ctx, nf.per_proc_need)
    lim.raisable = ctx.cap_sys_resource
    if not lim.raisable and ctx.euid == 0:
        lim.blocked_by = ctx.cap_missing(CAP_SYS_RESOURCE, "CAP_SYS_RESOURCE")
    workers = math.ceil(ctx.target / nf.per_process) if nf.per_process else 0
    lim.workaround.append(
        f"c10k serve --workers {workers}  ({nf.per_process:,} connections per worker)"
    )
    return {"RLIMIT_NOFILE": lim}


def _nofile_fix(ctx: Context, n: int) -> list[str]:
    fix = []
    if n > ctx.nofile.nr_open:
        fix.append(f"sysctl -w fs.nr_open={n}  # the ceiling of any hard limit")
    fix += [
        f"ulimit -Hn {n} && ulimit -Sn {n}  # in the shell that starts c10k",
        f"/etc/security/limits.conf: '* soft nofile {n}' and '* hard nofile {n}'",
        f"systemd unit [Service]: LimitNOFILE={n}",
    ]
    if not ctx.cap_sys_resource:
        why = "without CAP_SYS_RESOURCE" if ctx.euid == 0 else "as non-root"
        outside = f"`docker run --ulimit nofile={n}:{n}`" if ctx.container else "root"
        fix.append(f"the hard limit cannot be raised {why} here: use {outside}")
    return fix


def check_nr_open(ctx: Context) -> dict[str, Limit]:
    nf = ctx.nofile
    return _sysctl_limit(
        ctx,
        "fs.nr_open",
        nf.nr_open,
        nf.nr_open >= nf.per_proc_need,
        str(nf.per_proc_need),
        "ceiling for any process's hard RLIMIT_NOFILE",
        needed=nf.per_proc_need,
    )


def check_file_max(ctx: Context) -> dict[str, Limit]:
    file_max, file_nr, in_use = ctx.file_handles
    need = ctx.target * ctx.sides + in_use
    out = _sysctl_limit(
        ctx,
        "fs.file-max",
        file_max,
        file_max >= need,
        str(max(need * 5 // 4, file_max)),
        f"open files system-wide; {in_use:,} in use now (fs.file-nr), "
        f"{ctx.sides} socket(s) per connection",
        needed=need,
    )
    out["fs.file-nr"] = Limit(file_nr, INFO, "allocated, free, max file handles")
    return out


# -- accept and SYN backlogs ----------------------------------------------------------------
def check_somaxconn(ctx: Context) -> dict[str, Limit]:
    v = ctx.sysctl1("net.core.somaxconn", 0)
    return _sysctl_limit(
        ctx,
        "net.core.somaxconn",
        v,
        v >= SERVER_BACKLOG,
        str(SERVER_BACKLOG),
        f"the listen(2) backlog is silently cut to this; c10k asks for {SERVER_BACKLOG}. "
        "With the accept queue full a SYN is dropped and resent after 1 s",
        bad=WARN,
        needed=SERVER_BACKLOG,
    )


def check_syn_backlog(ctx: Context) -> dict[str, Limit]:
    # tcp_conn_request() consults tcp_max_syn_backlog only when SYN cookies are off;
    # with them on, a full SYN queue answers with cookies instead of dropping.
    v = ctx.sysctl1("net.ipv4.tcp_max_syn_backlog", 0)
    cookies = ctx.sysctl1("net.ipv4.tcp_syncookies", 1)
    return _sysctl_limit(
        ctx,
        "net.ipv4.tcp_max_syn_backlog",
        v,
        v >= SERVER_BACKLOG or cookies != 0,
        str(SERVER_BACKLOG),
        f"half-open (SYN_RECV) connections per listener, used only when "
        f"net.ipv4.tcp_syncookies=0 (here {cookies})",
        bad=WARN,
        needed=SERVER_BACKLOG if cookies == 0 else None,
    )


def check_abort_on_overflow(ctx: Context) -> dict[str, Limit]:
    # When the accept queue is full at the client's ACK, Linux drops the ACK: the client
    # believes it is connected and sends its request, which is dropped too until a
    # retransmission finds room, seconds later. c10k's readiness-loop server keeps its
    # queue from filling under overload (SYNs dropped by a socket filter), so it gains
    # little from abort_on_overflow; servers without admission control (nginx) and c10k's
    # uring, threads and asyncio modes gain much.
    v = ctx.sysctl1("net.ipv4.tcp_abort_on_overflow", 0)
    return _sysctl_limit(
        ctx,
        "net.ipv4.tcp_abort_on_overflow",
        v,
        v == 1,
        "1",
        "1: a handshake that finds the accept queue full is reset at once; 0: its ACK is "
        "dropped and the client, thinking it is connected, waits seconds for a slot. "
        "Under a connection flood at 3x the peak, 1 raised nginx's goodput from 76 % to "
        "101 % of its peak; c10k's default server drops SYNs itself before its queue fills "
        "(99 % with 0, 96 % with 1), its uring, threads and asyncio modes do not "
        "(docs/BENCHMARKS.md, Overload); with 0 a short burst over the backlog recovers. "
        "To set: sysctl -w net.ipv4.tcp_abort_on_overflow=1",
        bad=INFO,
    )


def check_netdev_backlog(ctx: Context) -> dict[str, Limit]:
    v = ctx.sysctl1("net.core.netdev_max_backlog", 0)
    meaning = "packets queued per CPU before the stack takes them (loopback uses it too)"
    return {"net.core.netdev_max_backlog": Limit(v, INFO, meaning)}


# -- ports and TIME_WAIT --------------------------------------------------------------------
def check_port_range(ctx: Context) -> dict[str, Limit]:
    lo, hi, ports, tuples = ctx.ports
    return _sysctl_limit(
        ctx,
        "net.ipv4.ip_local_port_range",
        [lo, hi],
        not ctx.loopback or ctx.target <= ports,
        '"1024 65535"',
        f"{ports:,} ephemeral ports per (source IP, destination IP, port) tuple; "
        f"{ctx.target:,} loopback connections need {tuples} tuples "
        "(127.0.0.x sources x listen ports, bound with IP_BIND_ADDRESS_NO_PORT)",
        bad=WARN,
        needed=ctx.target if ctx.loopback else None,
    )


def check_tw_reuse(ctx: Context) -> dict[str, Limit]:
    v = ctx.sysctl1("net.ipv4.tcp_tw_reuse", 0)
    return _sysctl_limit(
        ctx,
        "net.ipv4.tcp_tw_reuse",
        v,
        v != 0 or not ctx.loopback,
        "1",
        "reuse TIME_WAIT ports for new outgoing connections (0 off, 1 on, 2 loopback only)",
        bad=WARN,
    )


def check_fin_timeout(ctx: Context) -> dict[str, Limit]:
    v = ctx.sysctl1("net.ipv4.tcp_fin_timeout", 0)
    meaning = "seconds an orphaned connection stays in FIN_WAIT2 (holds memory, not a fd)"
    return {"net.ipv4.tcp_fin_timeout": Limit(v, INFO, meaning)}


# -- socket buffer memory -------------------------------------------------------------------
def _buffer_sizes(ctx: Context) -> tuple[list[int], list[int]]:
    rmem = ctx.sysctl("net.ipv4.tcp_rmem") or [4096, 131072, 6291456]
    wmem = ctx.sysctl("net.ipv4.tcp_wmem") or [4096, 16384, 4194304]
    return rmem, wmem


def check_buffer_sizes(ctx: Context) -> dict[str, Limit]:
    rmem, wmem = _buffer_sizes(ctx)
    sockets = ctx.target * ctx.sides
    return {
        "net.ipv4.tcp_rmem": Limit(
            rmem,
            INFO,
            f"receive buffer per socket: min/default/max bytes; {sockets:,} sockets x "
            f"default = {_fmt(sockets * rmem[1] / 2**30)} GiB if all were full (idle ones "
            "hold none)",
        ),
        "net.ipv4.tcp_wmem": Limit(
            wmem,
            INFO,
            f"send buffer per socket: min/default/max bytes; {sockets:,} x default = "
            f"{_fmt(sockets * wmem[1] / 2**30)} GiB if all were full",
        ),
    }


def check_tcp_mem(ctx: Context) -> dict[str, Limit]:
    tcp_mem = ctx.sysctl("net.ipv4.tcp_mem") or [0, 0, 0]
    rmem, wmem = _buffer_sizes(ctx)
    page = ctx.page
    busy_min = ctx.target * ctx.sides * (rmem[0] + wmem[0])
    max_bytes = tcp_mem[2] * page
    # never advise more than half the RAM for socket buffers
    half_ram = ctx.mem.get("MemTotal", 0) // 2 // page
    want = max(tcp_mem[2], min(math.ceil(busy_min / page), half_ram))
    return _sysctl_limit(
        ctx,
        "net.ipv4.tcp_mem",
        tcp_mem,
        max_bytes >= busy_min,
        f'"{max(tcp_mem[0], want // 2)} {max(tcp_mem[1], want * 3 // 4)} {want}"',
        f"pages for all TCP buffers (low/pressure/max; max = {_fmt(max_bytes / 2**20)} MiB): "
        f"idle keep-alive connections hold none, but {_fmt(max_bytes // (rmem[0] + wmem[0]))} "
        f"sockets with one page queued each way reach the max, where allocations fail",
        bad=WARN,
        needed=want,
    )


# -- memory ---------------------------------------------------------------------------------
def check_memory(ctx: Context) -> dict[str, Limit]:
    per_conn = SERVER_PY_BYTES_PER_CONN + KERNEL_BYTES_PER_SOCKET
    if ctx.loopback:
        per_conn += KERNEL_BYTES_PER_SOCKET + CLIENT_PY_BYTES_PER_CONN
    avail = ctx.mem_available
    need = ctx.target * per_conn
    fits = avail >= need
    return {
        "memory": Limit(
            {"MemTotal": ctx.mem.get("MemTotal", 0), "MemAvailable": avail},
            OK if fits else LIMIT,
            f"{per_conn:,} bytes per connection (measured, see `c10k doctor --measure`): "
            f"{_fmt(need / 2**20)} MiB needed, {_fmt(avail / 2**20)} MiB available",
            needed=need,
            fix=[] if fits else ["more RAM, or fewer connections per machine"],
            raisable=fits,  # no command adds RAM
        )
    }


# -- conntrack (loopback connections are tracked too when netfilter hooks are on) ---------
def check_conntrack(ctx: Context) -> dict[str, Limit]:
    ct_max, in_use = ctx.conntrack
    if ct_max is None:  # no nf_conntrack module: nothing is tracked
        return {}
    tracking = in_use > 0
    out = _sysctl_limit(
        ctx,
        "net.netfilter.nf_conntrack_max",
        ct_max,
        not tracking or ct_max >= ctx.target,
        str(ctx.target * 5 // 4),
        f"connection-tracking entries ({in_use:,} in use); "
        + ("one per tracked connection" if tracking else "not tracking here (0 entries)"),
        needed=ctx.target if tracking else None,
    )
    if tracking and ct_max < ctx.target:
        out["net.netfilter.nf_conntrack_max"].fix.append(
            "or do not track: iptables -t raw -A PREROUTING -j NOTRACK; "
            "iptables -t raw -A OUTPUT -j NOTRACK"
        )
    return out


# -- threads (the page: "Limits on threads"; bind only one-thread-per-client) ------------
def thread_terms(ctx: Context) -> dict[str, int]:
    """What caps the number of threads, hence clients of --backend threads."""
    threads_max = ctx.sysctl1("kernel.threads-max", 0)
    nproc_soft = ctx.rlim.get("Max processes", (None, None))[0]
    return {
        "kernel.threads-max": threads_max,
        "kernel.pid_max": ctx.sysctl1("kernel.pid_max", 0),
        # each thread stack is a mapping plus its guard page
        "vm.max_map_count/2": ctx.sysctl1("vm.max_map_count", 0) // 2,
        "RLIMIT_NPROC": nproc_soft if nproc_soft is not None else threads_max,
        "RLIMIT_NOFILE": ctx.nofile.per_process,
    }


def check_thread_sysctls(ctx: Context) -> dict[str, Limit]:
    out = {}
    target = ctx.target
    for name, meaning, want in (
        ("kernel.threads-max", "threads system-wide", target + 10_000),
        ("kernel.pid_max", "a thread is a pid", min(target + 10_000, PID_MAX_LIMIT)),
        ("vm.max_map_count", "memory mappings per process", 2 * target + 65530),
    ):
        v = ctx.sysctl1(name, 0)
        lim = sysctl_fix(ctx, name, str(want))
        lim.value, lim.status, lim.needed = v, INFO, want
        lim.meaning = f"{meaning}; binds only --backend threads (one thread per client)"
        if v >= want:
            lim.fix, lim.blocked_by = [], None
        out[name] = lim
    return out


def check_nproc(ctx: Context) -> dict[str, Limit]:
    soft, hard = ctx.rlim.get("Max processes", (None, None))
    enough = (soft or 1 << 62) >= ctx.target
    return {
        "RLIMIT_NPROC": Limit(
            {"soft": soft, "hard": hard},
            INFO,
            "processes+threads per user; binds only --backend threads",
            fix=[] if enough else [f"ulimit -u {ctx.target + 10_000}"],
        )
    }


# -- io_uring -------------------------------------------------------------------------------
def check_io_uring_disabled(ctx: Context) -> dict[str, Limit]:
    u = io_uring(ctx)
    if not u["io_uring_disabled"]:  # absent (older kernel) or 0: nothing to report
        return {}
    lim = sysctl_fix(ctx, "kernel.io_uring_disabled", "0")
    lim.value, lim.status = u["io_uring_disabled"], WARN if u["allowed"] is False else INFO
    lim.meaning = "0 allowed, 1 only CAP_SYS_ADMIN / kernel.io_uring_group, 2 disabled"
    return {"kernel.io_uring_disabled": lim}


# The report, in this order. Kegel's sections first (file handles, backlog, ports, memory),
# then what binds only one mode (threads, io_uring).
CHECKS: tuple[Check, ...] = (
    check_open_files,
    check_nr_open,
    check_file_max,
    check_somaxconn,
    check_syn_backlog,
    check_abort_on_overflow,
    check_netdev_backlog,
    check_port_range,
    check_tw_reuse,
    check_fin_timeout,
    check_buffer_sizes,
    check_tcp_mem,
    check_memory,
    check_conntrack,
    check_thread_sysctls,
    check_nproc,
    check_io_uring_disabled,
)


# == features: io_uring and kernel TLS (informational) ======================================
# What this machine offers beyond limits: io_uring and kernel TLS. Informational: a
# missing feature narrows the choice of server mode, it never stands in the way of the
# target, so neither is ever a LIMIT.
#
# io_uring: ``kernel.io_uring_disabled`` (Linux 6.6) is 0 allowed, 2 disabled, and 1
# allowed only to CAP_SYS_ADMIN and members of ``kernel.io_uring_group``. A seccomp filter
# (docker's default profile since 25.0) may refuse ``io_uring_setup`` whatever the sysctl.
#
# kTLS: the kernel encrypts TLS records itself, so ``sendfile`` works under TLS. It takes
# three things, each reported with why it is missing:
# - the ``tls`` TCP ULP: listed in ``/proc/sys/net/ipv4/tcp_available_ulp`` once the tls
#   module is loaded or built in (net/tls/tls_main.c registers it at init);
# - if not there, a module that could be loaded: ``/proc/modules`` exists only in kernels
#   built with CONFIG_MODULES, ``kernel.modules_disabled=1`` forbids loading, and
#   ``/lib/modules/<release>/modules.dep`` lists ``net/tls/tls.ko`` when it was built;
# - ``ssl.OP_ENABLE_KTLS`` in this Python (3.12+), which asks OpenSSL to use it.


def io_uring(ctx: Context) -> dict[str, Any]:
    """The ``io_uring`` section: the sysctls, the seccomp mode, and whether we may."""
    disabled = ctx.sysctl("kernel.io_uring_disabled")
    level = disabled[0] if disabled else None
    seccomp = int(ctx.status.get("Seccomp", "0") or 0)
    group = ctx.sysctl1("kernel.io_uring_group", -1)  # -1: nobody
    gids = {int(g) for g in ctx.status.get("Groups", "").split()}
    gids.update(int(g) for g in ctx.status.get("Gid", "").split()[1:2])  # effective gid
    allowed = not level or (level == 1 and (ctx.cap_sys_admin or group in gids))
    return {
        "io_uring_disabled": level,
        "io_uring_group": group,
        "seccomp": seccomp,
        "allowed": allowed,
        "note": "seccomp filter active: a container profile may refuse io_uring_setup "
        "(docker's default does since 25.0; `--security-opt seccomp=<profile>`)"
        if seccomp == 2
        else "no seccomp filter",
    }


def ktls(src: Sources) -> dict[str, Any]:
    """The ``ktls`` section: {available, tcp_available_ulp, tls_module,
    ssl_op_enable_ktls, why} where ``why`` is None when available."""
    ulps = (src.read("/proc/sys/net/ipv4/tcp_available_ulp") or "").split()
    module, module_why = _tls_module(src)
    python = src.ssl_ktls()
    why = []
    if "tls" not in ulps:
        listed = " ".join(ulps) or "nothing"
        why.append(f"the kernel offers no tls ULP (tcp_available_ulp lists {listed}); {module_why}")
    if not python:
        why.append("this Python's ssl has no OP_ENABLE_KTLS (Python 3.12+)")
    return {
        "available": not why,
        "tcp_available_ulp": ulps,
        "tls_module": module,
        "ssl_op_enable_ktls": python,
        "why": "; ".join(why) or None,
    }


def compression(src: Sources) -> dict[str, Any]:
    """The ``compression`` section: the codings ``c10k serve`` makes on the fly, and what
    to install for the ones it cannot (``install`` None when nothing is missing)."""
    br = src.brotli()
    return {
        "codings": ["br", "gzip"] if br else ["gzip"],
        "install": None if br else "pip install 'c10k[brotli]'",
    }


def _tls_module(src: Sources) -> tuple[str, str]:
    # (state, why in words): loaded | loadable | absent | unknown | no-module-support |
    # modules-disabled
    modules = src.read("/proc/modules")
    if modules is None:
        return "no-module-support", "this kernel loads no modules (no /proc/modules)"
    if any(line.split()[:1] == ["tls"] for line in modules.splitlines()):
        return "loaded", "the tls module is loaded"
    if (src.read("/proc/sys/kernel/modules_disabled") or "0").strip() == "1":
        return "modules-disabled", "module loading is off (kernel.modules_disabled=1)"
    release = (src.read("/proc/sys/kernel/osrelease") or "").strip()
    dep = src.read(f"/lib/modules/{release}/modules.dep") if release else None
    if dep is None:
        # containers rarely see the host's /lib/modules
        return "unknown", f"no /lib/modules/{release}/modules.dep to tell if a tls module exists"
    if re.search(r"^(\S*/)?net/tls/tls\.ko\S*:", dep, re.MULTILINE):
        return "loadable", "the tls module is not loaded: modprobe tls (needs root)"
    return "absent", f"no tls module in /lib/modules/{release}"


# == the report: collect and capacity =======================================================
# ``collect``: walk the check table, add what the machine offers, and sum it up as
# capacity: how many connections each configuration holds and which term binds it.
#
# Capacity is a minimum over terms, one per resource a connection spends (fds per worker
# times workers, system-wide file handles, memory, conntrack entries when tracking is on).
# "Any workers" drops the per-process fd term: with as many processes as it takes, what
# remains is the machine's.


def collect(
    target: int = DEFAULT_TARGET, loopback: bool = False, src: Sources | None = None
) -> dict[str, Any]:
    """Read every limit and build the report (the ``--json`` structure, see ``main``).

    Args:
        target: concurrent connections to plan for.
        loopback: both ends on this machine (two sockets and one port per connection).
        src: where facts come from; the real machine when None.

    Returns:
        The report; ``ok`` is False when a limit is in the way (named in ``in_the_way``).
    """
    ctx = Context(target, loopback, src or Sources())
    limits: dict[str, Limit] = {}
    for check in CHECKS:
        limits.update(check(ctx))
    in_the_way = sorted(n for n, lim in limits.items() if lim.status == LIMIT)
    b_ok, b_no = ctx.src.backends()
    m_ok, m_no = ctx.src.modes()
    return {
        "schema": SCHEMA,
        "target": target,
        "loopback": loopback,
        "verdict": OK if not in_the_way else LIMIT,
        "ok": not in_the_way,
        "in_the_way": in_the_way,
        "machine": _machine(ctx),
        "limits": {name: asdict(lim) for name, lim in limits.items()},
        "backends": {"available": b_ok, "unavailable": b_no},
        "modes": {"available": m_ok, "unavailable": m_no},
        "io_uring": io_uring(ctx),
        "ktls": ktls(ctx.src),
        "compression": compression(ctx.src),
        "capacity": capacity(ctx),
    }


def _machine(ctx: Context) -> dict[str, Any]:
    return {
        "cores": ctx.cores,
        "page_size": ctx.page,
        "mem_total": ctx.mem.get("MemTotal", 0),
        "mem_available": ctx.mem_available,
        "euid": ctx.euid,
        "container": ctx.container,
        "cap_sys_resource": ctx.cap_sys_resource,
        "cap_sys_admin": ctx.cap_sys_admin,
        "user_namespace": ctx.userns,
        "proc_sys_read_only": ctx.proc_sys_ro,
    }


def _bound(terms: dict[str, int]) -> dict[str, Any]:
    key = min(terms, key=lambda k: terms[k])
    return {"connections": terms[key], "bound_by": key, "terms": terms}


def _any_workers(terms: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in terms.items() if k != "fds_per_process_x_workers"}


def capacity(ctx: Context) -> dict[str, Any]:
    """Connections each configuration can hold, and the term that binds it."""
    per_process = ctx.nofile.per_process
    file_max, _, in_use = ctx.file_handles
    free_files = max(file_max - in_use, 0)
    avail = ctx.mem_available
    server_py = SERVER_PY_BYTES_PER_CONN
    server = {
        "fds_per_process_x_workers": per_process * ctx.cores,
        "fs.file-max": free_files,
        "memory": avail // (server_py + KERNEL_BYTES_PER_SOCKET),
    }
    loop = {
        "fds_per_process_x_workers": per_process * ctx.cores,
        "fs.file-max": free_files // 2,
        "memory": avail // (server_py + 2 * KERNEL_BYTES_PER_SOCKET + CLIENT_PY_BYTES_PER_CONN),
    }
    ct_max, ct_in_use = ctx.conntrack
    if ct_max is not None and ct_in_use > 0:
        server["net.netfilter.nf_conntrack_max"] = ct_max
        loop["net.netfilter.nf_conntrack_max"] = ct_max
    _, _, ports, tuples = ctx.ports
    return {
        "workers": ctx.cores,
        "fds_per_process": per_process,
        "server": _bound(server),
        "server_any_workers": _bound(_any_workers(server)),
        "loopback": {**_bound(loop), "ports_per_tuple": ports, "tuples_needed": tuples},
        "loopback_any_workers": _bound(_any_workers(loop)),
        "threads_mode": _bound(thread_terms(ctx)),
        "bytes_per_connection": {
            "server_python": SERVER_PY_BYTES_PER_CONN,
            "kernel_per_socket": KERNEL_BYTES_PER_SOCKET,
            "client_python": CLIENT_PY_BYTES_PER_CONN,
        },
    }


# == output =================================================================================
# The human table: one line per limit, its marker, what it means, how to raise it; then
# capacity, what runs here, and the verdict. Everything it prints is in the report dict, so
# the text and ``--json`` cannot disagree.

WIDTH = 100  # text output columns


def _value_text(name: str, v: Any) -> str:
    if name == "memory":
        return f"{v['MemAvailable'] / 2**30:.1f} GiB free"
    if isinstance(v, dict):
        return " ".join(f"{k}={'unlimited' if x is None else _fmt(x)}" for k, x in v.items())
    if isinstance(v, list):
        return " ".join(str(x) for x in v)
    if isinstance(v, int):
        return _fmt(v)
    return str(v)


def _machine_line(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['cores']} cores, {_fmt(m['mem_total'] / 2**20)} MiB RAM "
        f"({_fmt(m['mem_available'] / 2**20)} MiB available), euid {m['euid']}"
        + (f", in a {m['container']} container" if m["container"] else "")
        + ("" if m["cap_sys_resource"] else ", no CAP_SYS_RESOURCE (hard rlimits fixed)")
    )


def _fix_lines(lim: dict[str, Any]) -> list[str]:
    tags = ["needs root"] if lim["needs_root"] else []
    if not lim["raisable"]:
        tags.append("cannot be done from here")
        if lim.get("blocked_by"):
            # we are root: "needs root" would send the reader the wrong way; what is
            # missing is a capability or a writable /proc/sys
            tags = [f"cannot be done from here: {lim['blocked_by']}"]
    lines = []
    if lim["fix"]:
        head = "to raise it" + (f" ({', '.join(tags)})" if tags else "") + ":"
        lines += textwrap.wrap(head, WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 8)
        lines.extend(f"{'':8}{cmd}" for cmd in lim["fix"])
    if lim["workaround"]:
        lines.append(f"{'':6}or, without root:")
        lines.extend(f"{'':8}{cmd}" for cmd in lim["workaround"])
    return lines


def _limit_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"{'':5} {'limit':32} value"]
    for name, lim in report["limits"].items():
        lines.append(f"{lim['status']:5} {name:32} {_value_text(name, lim['value'])}")
        lines.extend(
            textwrap.wrap(lim["meaning"], WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
        )
        if lim["status"] in (LIMIT, WARN):
            lines.extend(_fix_lines(lim))
    return lines


def _capacity_lines(report: dict[str, Any]) -> list[str]:
    cap = report["capacity"]
    lines = ["capacity (concurrent connections):"]
    for key, label in (
        ("server", f"server side, {cap['workers']} worker(s)"),
        ("server_any_workers", "server side, with enough workers"),
        ("loopback", f"loopback, both ends here, {cap['workers']} worker(s)"),
        ("loopback_any_workers", "loopback, with enough workers"),
        ("threads_mode", "--backend threads (a thread each)"),
    ):
        c = cap[key]
        mark = OK if c["connections"] >= report["target"] else LIMIT
        lines.append(f"{mark:5} {label:42} {c['connections']:>12,}  bound by {c['bound_by']}")
    lb = cap["loopback"]
    b = cap["bytes_per_connection"]
    return [
        *lines,
        f"{'':5} loopback ports: {lb['ports_per_tuple']:,} per (source, listen port) tuple; "
        f"{lb['tuples_needed']} tuples for the target",
        f"{'':5} bytes per connection (measured): server Python {b['server_python']:,}, "
        f"kernel {b['kernel_per_socket']:,} per socket",
    ]


def _feature_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"backends here: {', '.join(report['backends']['available']) or '-'}"]
    lines += [f"  {name}: {why}" for name, why in report["backends"]["unavailable"].items()]
    lines.append(f"server modes here: {', '.join(report['modes']['available']) or '-'}")
    lines += [f"  {name}: {why}" for name, why in report["modes"]["unavailable"].items()]
    u = report["io_uring"]
    lines.append(
        f"io_uring: {'allowed' if u['allowed'] else 'NOT allowed'} "
        f"(kernel.io_uring_disabled={u['io_uring_disabled']}, Seccomp={u['seccomp']}: "
        f"{u['note']})"
    )
    k = report["ktls"]
    ktls = "kTLS: " + ("available" if k["available"] else f"not available: {k['why']}")
    c = report["compression"]
    lines += textwrap.wrap(ktls, WIDTH, subsequent_indent=" " * 6)
    more = f" (br: {c['install']})" if c["install"] else ""
    return [*lines, f"on-the-fly compression: {', '.join(c['codings'])}{more}"]


def render_text(report: dict[str, Any]) -> str:
    """The report of ``collect`` as the text ``c10k doctor`` prints."""
    side = "on loopback (both ends here)" if report["loopback"] else "server side"
    in_the_way = report["in_the_way"]
    lines = [
        f"c10k doctor: can this machine hold {report['target']:,} connections {side}?",
        *textwrap.wrap(_machine_line(report["machine"]), WIDTH, subsequent_indent=" " * 9),
        "",
        *_limit_lines(report),
        "",
        *_capacity_lines(report),
        "",
        *_feature_lines(report),
        "",
        f"verdict: {report['verdict']}"
        + (f" - in the way: {', '.join(in_the_way)}" if in_the_way else ""),
    ]
    return "\n".join(lines) + "\n"


def render_measure(result: dict[str, Any]) -> str:
    """The result of ``measure`` as ``key: value`` lines, notes last, one per line."""
    lines = [
        f"{k}: {'not measured (see notes)' if v is None else v}"
        for k, v in result.items()
        if k != "notes"
    ]
    lines += [f"note: {note}" for note in result.get("notes", [])]
    return "\n".join(lines) + "\n"


# == measurement ============================================================================
# ``c10k doctor --measure N``: the memory a connection costs, measured, not guessed.
#
# Method: start ``c10k serve --workers 1`` (epoll), hold N keep-alive connections that each
# completed one GET, and divide the growth of the server's VmRSS by N and of the kernel's
# Slab (``/proc/meminfo``: both ends of every loopback connection are sockets) by 2N.
#
# - **Measure the process that holds the connections.** With the default ``--workers
#   auto`` the process we start is a supervisor: it forks the workers and holds no
#   connection, so its VmRSS does not move and the figure came out as 0. ``--workers 1``
#   serves from the one process; and rather than trust that, the process measured is the
#   one among the server and its descendants holding the most sockets, and the measure
#   fails loudly if it does not hold all N.
# - **Resolution.** VmRSS moves in whole pages and Slab is system-wide, so a growth under
#   ``MIN_GROWTH_PAGES`` pages cannot be told from noise: that figure is None, with a note
#   saying N is too small and which N would do, never a silent 0.
# - **Bounds.** N connections cost N sockets here and N in the server, and N ephemeral ports
#   from 127.0.0.1 to one port; ``measure_bound`` says the most this process can hold, so
#   the command line refuses more before starting anything.

# fds this process and the server need besides the connections: the server keeps
# FD_RESERVE (64) for its listeners, epoll, wakeup pair and logs; we keep a pipe or two.
FD_SLACK = 100
# A growth of 16 pages is known to +-1/16 (6 %) despite rounding to whole pages; below
# that the per-connection figure is mostly rounding (and, for the system-wide Slab,
# other processes' noise).
MIN_GROWTH_PAGES = 16
PAGE = os.sysconf("SC_PAGE_SIZE")


def measure_bound(src: Sources | None = None) -> tuple[int, str]:
    """The largest N ``measure`` can hold from this process, and what sets it."""
    src = src or Sources()
    hard = read_rlimits(src).get("Max open files", (None, None))[1]
    if hard is None:  # unlimited still stops at fs.nr_open
        hard = (read_sysctl(src, "fs.nr_open") or [1024 * 1024])[0]
    lo, hi = (read_sysctl(src, "net.ipv4.ip_local_port_range") or [32768, 60999])[:2]
    by_fds, by_ports = hard - FD_SLACK, hi - lo + 1
    if by_fds <= by_ports:
        return by_fds, (
            f"RLIMIT_NOFILE hard {hard:,} less {FD_SLACK} for the rest: each connection "
            "is a socket here and one in the server"
        )
    return by_ports, (
        f"{by_ports:,} ephemeral ports (net.ipv4.ip_local_port_range {lo} {hi}) "
        "from 127.0.0.1 to one port"
    )


def measure(n: int = 10_000) -> dict[str, Any]:
    """Hold ``n`` idle keep-alive connections to a fresh ``c10k serve`` and measure the
    memory they cost.

    Args:
        n: connections to hold; see ``measure_bound`` for the most this process can.

    Returns:
        {connections, server_sockets (sockets the measured process held), the three
        per-connection figures (None when N is too small to measure one), method, notes}.

    Raises:
        ValueError: ``n`` is not positive.
        RuntimeError: the server did not start, or did not hold the connections.
    """
    if n < 1:
        raise ValueError(f"cannot measure {n} connections")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + FD_SLACK <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + FD_SLACK, hard))
    socks: list[socket.socket] = []
    with tempfile.TemporaryDirectory() as root, _serving(root) as (pid, port):
        try:
            connect = _connector(port)
            connect().close()  # warm the cache and the wire memo
            time.sleep(0.5)
            rss0 = {p: _vm_rss(p) for p in _tree(pid)}
            slab0, me0 = _slab(), _vm_rss(os.getpid())
            socks.extend(connect() for _ in range(n))
            time.sleep(1.0)
            holder = max(_tree(pid), key=_sockets)
            held = _sockets(holder)
            rss1, slab1, me1 = _vm_rss(holder), _slab(), _vm_rss(os.getpid())
        finally:
            for s in socks:
                s.close()
    if held < n or holder not in rss0:
        raise RuntimeError(
            f"no server process holds the {n} connections (the most sockets in one is "
            f"{held}, pid {holder}): cannot tell whose memory they cost"
        )
    return _result(n, held, rss1 - rss0[holder], slab1 - slab0, me1 - me0)


def _result(n: int, held: int, server: int, slab: int, client: int) -> dict[str, Any]:
    notes: list[str] = []
    return {
        "connections": n,
        "server_sockets": held,
        "server_rss_bytes_per_conn": _per(
            "the server's VmRSS", server, n, 1, SERVER_PY_BYTES_PER_CONN, notes
        ),
        # both ends of a loopback connection are kernel sockets
        "slab_bytes_per_socket": _per("Slab", slab, n, 2, KERNEL_BYTES_PER_SOCKET, notes),
        "client_rss_bytes_per_conn": _per(
            "this process's VmRSS", client, n, 1, CLIENT_PY_BYTES_PER_CONN, notes
        ),
        "method": "VmRSS of the server process holding the connections (c10k serve "
        "--workers 1) and Slab in /proc/meminfo, before and after "
        f"{n} keep-alive connections that each completed one GET",
        "notes": notes,
    }


def _per(
    what: str, growth: int, n: int, per_conn: int, expected: int, notes: list[str]
) -> int | None:
    # growth / (n * per_conn), or None and a note when the growth is too small to tell
    floor = MIN_GROWTH_PAGES * PAGE
    if growth >= floor:
        return round(growth / (n * per_conn))
    # the N that would grow it by twice the floor at the planning figure, in hundreds
    suggest = math.ceil(2 * floor / (expected * per_conn) / 100) * 100
    notes.append(
        f"{what} grew {growth:,} bytes, under the {floor:,} ({MIN_GROWTH_PAGES} pages) it "
        f"takes to stand out from page rounding and noise: {n:,} connections are too few "
        f"to measure it; try --measure {suggest:,} or more"
    )
    return None


@contextmanager
def _serving(root: str) -> Iterator[tuple[int, int]]:
    """``c10k serve`` on a free loopback port: yields (pid, port), stops it after."""
    Path(root, "i.txt").write_bytes(b"x")
    argv = [sys.executable, "-m", "c10k", "serve", root, "--bind", "127.0.0.1", "--port", "0"]
    argv += ["--backend", "epoll", "--workers", "1"]  # one process: see "Measure the process" above
    # this c10k, wherever it is imported from (installed or a source tree)
    src_dir = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(p for p in (src_dir, os.environ.get("PYTHONPATH")) if p)
    env = dict(os.environ, PYTHONPATH=path)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    try:
        assert proc.stdout is not None
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline().decode())
        if m is None:
            raise RuntimeError("c10k serve did not start")
        yield proc.pid, int(m.group(1))
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def _connector(port: int) -> Callable[[], socket.socket]:
    req = b"GET /i.txt HTTP/1.1\r\nHost: m\r\n\r\n"

    def connect() -> socket.socket:
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(req)
            got = b""
            while not got.endswith(b"\r\n\r\nx"):
                chunk = s.recv(4096)
                if not chunk:
                    raise RuntimeError("server closed a measuring connection")
                got += chunk
        except BaseException:
            s.close()
            raise
        return s

    return connect


def _tree(pid: int) -> list[int]:
    # pid and its descendants, from the ppid field of /proc/*/stat (the children files
    # need CONFIG_PROC_CHILDREN)
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:  # exited meanwhile
                continue
            ppid = int(stat.rpartition(")")[2].split()[1])  # comm may hold spaces and ")"
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _sockets(pid: int) -> int:
    n = 0
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return 0
    for fd in fds:
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    return n


def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _slab() -> int:
    return read_meminfo(Sources()).get("Slab", 0)


# == command line ===========================================================================
# ``c10k doctor`` on the command line: arguments, output, exit status.
#
# Exit status is for people and shell conditionals: 1 when a limit is in the way, so
# ``c10k doctor && c10k serve`` stops short. ``--json`` is for scripts, which read the
# verdict from the JSON; there exit 1 would only abort a ``set -o pipefail`` pipeline such as
# ``c10k doctor --json | jq ...`` before jq reads the answer, so ``--json`` exits 0 whenever
# it printed a report (``jq -e .ok`` turns the verdict back into a status).

EPILOG = """\
exit status:
  0  nothing is in the way of the target, or --measure ran
  1  a LIMIT is in the way of the target (text output only), or --measure failed
  2  bad arguments
With --json the exit status is 0 whenever the report was printed, so that
`set -o pipefail` pipelines go on; the verdict is in the JSON: "ok" (false
when a limit is in the way), "verdict" ("OK"/"LIMIT") and "in_the_way" (the
names of the limits in the way). To get a status from it:
  c10k doctor --json | jq -e .ok
"""


class _Parser(argparse.ArgumentParser):
    # A usage error is one line on stderr and exit 2; argparse's default adds the whole
    # usage block above it.
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see --help)\n")


def _count(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not a positive number of connections")
    return n


def _parser() -> _Parser:
    p = _Parser(
        prog="c10k doctor",
        description="What this machine allows, how many connections it can hold, and how "
        "to raise each limit in the way.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--json", action="store_true", help="machine-readable output; exits 0 (see below)"
    )
    p.add_argument(
        "--connections",
        type=_count,
        default=DEFAULT_TARGET,
        metavar="N",
        help=f"target number of concurrent connections (default {DEFAULT_TARGET:,})",
    )
    p.add_argument(
        "--loopback",
        action="store_true",
        help="client and server both on this machine (2 sockets per connection)",
    )
    p.add_argument(
        "--measure",
        type=_count,
        default=None,
        metavar="N",
        help="measure the memory of N idle connections to c10k serve, and exit",
    )
    return p


def main(argv: list[str]) -> int:
    """``c10k doctor [--json] [--connections N] [--loopback] [--measure N]``.

    Exit status: 0 when nothing is in the way of the target, 1 when a LIMIT is (text
    output only: ``--json`` exits 0 and says it in ``ok``), 2 for bad arguments.

    ``--json`` prints one object (schema 1):

    - ``schema``, ``target``, ``loopback``, ``verdict`` ("OK"/"LIMIT"), ``ok`` (verdict is
      OK), ``in_the_way`` (names of the LIMIT entries);
    - ``machine``: cores, page_size, mem_total, mem_available (bytes), euid, container
      (null or "docker", ...), cap_sys_resource, cap_sys_admin (effective, in the host's
      user namespace), user_namespace, proc_sys_read_only;
    - ``limits``: name (sysctl dotted name, ``RLIMIT_NOFILE``, ``RLIMIT_NPROC``, ``memory``)
      -> {value, status (OK/LIMIT/WARN/INFO), meaning, needed, fix (commands), needs_root,
      raisable, workaround, blocked_by (why not from here although root, or null)};
      sysctl values are lists of ints when the file holds several, rlimits {soft, hard}
      with null for unlimited;
    - ``backends`` / ``modes``: {available: [names], unavailable: {name: reason}};
    - ``io_uring``: {io_uring_disabled, io_uring_group, seccomp, allowed, note};
    - ``ktls``: {available, tcp_available_ulp, tls_module, ssl_op_enable_ktls, why}
      (informational, never in the way);
    - ``capacity``: workers, fds_per_process, and server / server_any_workers / loopback /
      loopback_any_workers / threads_mode, each {connections, bound_by, terms} ("any
      workers": as many processes as it takes, so the per-process fd limit drops out);
      loopback adds ports_per_tuple and tuples_needed; bytes_per_connection gives the
      measured costs used.
    """
    p = _parser()
    ns = p.parse_args(argv)
    if ns.measure is not None:
        return _measure(p, ns.measure, ns.json)
    report = collect(ns.connections, ns.loopback)
    if ns.json:
        print(json.dumps(report, indent=2))
        return 0
    sys.stdout.write(render_text(report))
    return 0 if report["ok"] else 1


def _measure(p: _Parser, n: int, as_json: bool) -> int:
    # refuse what would run out of fds or ports halfway, before starting a server
    most, why = measure_bound()
    if n > most:
        p.error(f"--measure {n:,} is more than this process can hold ({most:,}: {why})")
    try:
        result = measure(n)
    except (RuntimeError, OSError) as exc:  # the server would not start, or hold them
        print(f"c10k doctor: --measure {n:,} failed: {exc}", file=sys.stderr)
        return 1
    sys.stdout.write(json.dumps(result, indent=2) + "\n" if as_json else render_measure(result))
    return 0
