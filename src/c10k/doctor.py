"""``c10k doctor``: what this machine allows, how many connections it can hold, and the
exact command that lifts each limit standing between it and a target (default C1M).

Theory of operation
-------------------
Kegel's page has a section per wall a server meets on the way to many clients: "Limits on
open filehandles", "Limits on threads", the accept backlog, memory per connection. Each
wall is a number the kernel exposes, so the doctor reads them all, compares each with
what ``--connections N`` needs, and prints the command that moves it.

- **Everything is read through one injectable reader** (``Sources.read``: absolute path
  -> text, or None when absent). Even the rlimits come from ``/proc/self/limits`` rather
  than ``resource.getrlimit``, so one fake dictionary drives every branch of the advice in
  tests, and the real run is checked against ``/proc`` itself.
- **Statuses.** ``OK``: not in the way. ``LIMIT``: caps the count below the target.
  ``WARN``: does not cap the count but hurts getting there (a truncated accept backlog,
  buffer memory if every connection had data queued at once). ``INFO``: reported for
  understanding, e.g. the thread limits, which only bind the one-thread-per-client mode.
- **Two sides.** A server facing real clients spends one socket per connection. The C1M
  bench on this machine (``--loopback``) spends two (both ends), one ephemeral port per
  connection and (source, destination, listen port) tuple, and twice the kernel memory.
- **Who can fix it.** ``needs_root`` marks a command that needs root. ``raisable`` is
  False when it cannot be done from here at all: a hard RLIMIT_NOFILE above the current
  one needs CAP_SYS_RESOURCE, which a default container lacks (``docker run --ulimit``
  then sets it from outside); a read-only ``/proc/sys`` (unprivileged container) means the
  sysctl is set on the host; memory cannot be raised by a command. A limit that has a
  no-root way around it says so (more worker processes instead of more fds per process).
- **Per-connection memory is measured, not guessed**: ``c10k doctor --measure N`` starts
  ``c10k serve`` (epoll), holds N keep-alive connections that each completed a request,
  and divides the growth of the server's VmRSS by N and of the kernel's Slab
  (``/proc/meminfo``: both ends of every loopback connection are sockets, so by 2N). The
  constants below are its result on the project machine. Slab is system-wide, so other
  activity adds noise; the figure is a planning number, rounded up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

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
WIDTH = 100  # text output columns


# -- sources --------------------------------------------------------------------------------
def _read_real(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return None


def _writable_real(path: str) -> bool:
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


@dataclass
class Sources:
    """Where the doctor gets its facts; tests replace any of them."""

    read: Callable[[str], str | None] = _read_real
    writable: Callable[[str], bool] = _writable_real
    cores: Callable[[], int] = _cores_real
    euid: Callable[[], int] = os.geteuid
    backends: Callable[[], tuple[list[str], dict[str, str]]] = _backends_real
    modes: Callable[[], tuple[list[str], dict[str, str]]] = _modes_real
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
        m = re.match(r"(Max [a-z ]+?)\s{2,}(\S+)\s+(\S+)", line)
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


# -- the report -----------------------------------------------------------------------------
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


def _fmt(n: float) -> str:
    return f"{int(n):,}"


def _sysctl_fix(name: str, value: str, writable: bool, container: str | None) -> Limit:
    """The fix fields for a sysctl: runtime command, persistent file, and who can do it."""
    bare = value.strip('"')  # sysctl.d files take the value unquoted
    fix = [f"sysctl -w {name}={value}", f"echo '{name} = {bare}' >> {SYSCTL_D}"]
    lim = Limit(None, OK, "", fix=fix, needs_root=True, raisable=writable)
    if not writable:
        where = "on the host"
        if container and name.startswith("net."):
            # net.* sysctls are per network namespace: settable per container.
            where += f" or `docker run --sysctl {name}={value}`"
        lim.fix.append(f"/proc/sys is read-only here: set it {where}")
    return lim


def collect(
    target: int = DEFAULT_TARGET, loopback: bool = False, src: Sources | None = None
) -> dict[str, Any]:
    """Read every limit and build the report (the ``--json`` structure, see ``main``)."""
    src = src or Sources()
    page = src.page_size
    cores = max(1, src.cores())
    euid = src.euid()
    container = detect_container(src)
    status = read_status(src)
    cap_eff = int(status.get("CapEff", "0"), 16)
    has_sys_resource = euid == 0 and bool(cap_eff >> CAP_SYS_RESOURCE & 1)
    mem = read_meminfo(src)
    rlim = read_rlimits(src)
    limits: dict[str, Limit] = {}
    sides = 2 if loopback else 1

    def sysctl(name: str) -> list[int] | None:
        return read_sysctl(src, name)

    def writable(name: str) -> bool:
        return src.writable(sysctl_path(name))

    def put_sysctl(
        name: str,
        value: Any,
        ok: bool,
        want: str,
        meaning: str,
        bad: str = LIMIT,
        needed: int | None = None,
    ) -> None:
        if ok:
            limits[name] = Limit(value, OK, meaning, needed)
            return
        lim = _sysctl_fix(name, want, writable(name), container)
        lim.value, lim.status, lim.meaning, lim.needed = value, bad, meaning, needed
        limits[name] = lim

    # --- file descriptors (the page: "Limits on open filehandles") ---------------------
    nr_open = (sysctl("fs.nr_open") or [1024 * 1024])[0]
    soft, hard = rlim.get("Max open files", (None, None))
    hard_eff = nr_open if hard is None else hard
    soft_eff = nr_open if soft is None else soft
    per_process = max(hard_eff - FD_RESERVE, 0)
    # On loopback the bench client processes hold the other ends; they face the same hard
    # limit, so per process the need is the same as the server's share.
    per_proc_need = math.ceil(target / cores) + FD_RESERVE
    workers_needed = math.ceil(target / per_process) if per_process else 0
    meaning = (
        f"open files per process (soft {soft_eff:,}, hard {hard_eff:,}); c10k raises soft "
        f"to hard at start and keeps {FD_RESERVE} in reserve, so one worker holds "
        f"{per_process:,} connections; {cores} worker(s) (one per core) need "
        f"{per_proc_need:,} each"
    )
    if hard_eff >= per_proc_need:
        lim = Limit({"soft": soft, "hard": hard}, OK, meaning, per_proc_need)
        if soft_eff < per_proc_need:
            lim.fix.append(f"ulimit -n {hard_eff}  # for other programs; c10k does it itself")
    else:
        n = per_proc_need
        lim = Limit({"soft": soft, "hard": hard}, LIMIT, meaning, n, needs_root=True)
        lim.raisable = has_sys_resource
        if n > nr_open:
            lim.fix.append(f"sysctl -w fs.nr_open={n}  # the ceiling of any hard limit")
        lim.fix += [
            f"ulimit -Hn {n} && ulimit -Sn {n}  # in the shell that starts c10k",
            f"/etc/security/limits.conf: '* soft nofile {n}' and '* hard nofile {n}'",
            f"systemd unit [Service]: LimitNOFILE={n}",
        ]
        if not has_sys_resource:
            why = "without CAP_SYS_RESOURCE" if euid == 0 else "as non-root"
            outside = f"`docker run --ulimit nofile={n}:{n}`" if container else "root"
            lim.fix.append(f"the hard limit cannot be raised {why} here: use {outside}")
        lim.workaround.append(
            f"c10k serve --workers {workers_needed}  ({per_process:,} connections per worker)"
        )
    limits["RLIMIT_NOFILE"] = lim

    put_sysctl(
        "fs.nr_open",
        nr_open,
        nr_open >= per_proc_need,
        str(per_proc_need),
        "ceiling for any process's hard RLIMIT_NOFILE",
        needed=per_proc_need,
    )
    file_max = (sysctl("fs.file-max") or [0])[0]
    file_nr = sysctl("fs.file-nr") or [0, 0, file_max]
    in_use = file_nr[0] - file_nr[1]
    fds_needed = target * sides + in_use
    put_sysctl(
        "fs.file-max",
        file_max,
        file_max >= fds_needed,
        str(max(fds_needed * 5 // 4, file_max)),
        f"open files system-wide; {in_use:,} in use now (fs.file-nr), "
        f"{sides} socket(s) per connection",
        needed=fds_needed,
    )
    limits["fs.file-nr"] = Limit(file_nr, INFO, "allocated, free, max file handles")

    # --- accept and SYN backlogs ---------------------------------------------------------
    v = (sysctl("net.core.somaxconn") or [0])[0]
    put_sysctl(
        "net.core.somaxconn",
        v,
        v >= SERVER_BACKLOG,
        str(SERVER_BACKLOG),
        f"the listen(2) backlog is silently cut to this; c10k asks for {SERVER_BACKLOG}. "
        "With the accept queue full a SYN is dropped and resent after 1 s",
        bad=WARN,
        needed=SERVER_BACKLOG,
    )
    # tcp_conn_request() consults tcp_max_syn_backlog only when SYN cookies are off;
    # with them on, a full SYN queue answers with cookies instead of dropping.
    v = (sysctl("net.ipv4.tcp_max_syn_backlog") or [0])[0]
    cookies = (sysctl("net.ipv4.tcp_syncookies") or [1])[0]
    put_sysctl(
        "net.ipv4.tcp_max_syn_backlog",
        v,
        v >= SERVER_BACKLOG or cookies != 0,
        str(SERVER_BACKLOG),
        f"half-open (SYN_RECV) connections per listener, used only when "
        f"net.ipv4.tcp_syncookies=0 (here {cookies})",
        bad=WARN,
        needed=SERVER_BACKLOG if cookies == 0 else None,
    )
    # When the accept queue is full at the client's ACK, Linux drops the ACK: the client
    # believes it is connected and sends its request, which is dropped too until a
    # retransmission finds room, seconds later. c10k's readiness-loop server keeps its
    # queue from filling under overload (SYNs dropped by a socket filter), so it gains
    # little from abort_on_overflow; servers without admission control (nginx) and c10k's
    # uring, threads and asyncio modes gain much.
    v = (sysctl("net.ipv4.tcp_abort_on_overflow") or [0])[0]
    put_sysctl(
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
    v = (sysctl("net.core.netdev_max_backlog") or [0])[0]
    limits["net.core.netdev_max_backlog"] = Limit(
        v, INFO, "packets queued per CPU before the stack takes them (loopback uses it too)"
    )

    # --- ports and TIME_WAIT -------------------------------------------------------------
    lo, hi = (sysctl("net.ipv4.ip_local_port_range") or [32768, 60999])[:2]
    ports = hi - lo + 1
    tuples = math.ceil(target / ports) if ports > 0 else 0
    meaning = (
        f"{ports:,} ephemeral ports per (source IP, destination IP, port) tuple; "
        f"{target:,} loopback connections need {tuples} tuples "
        "(127.0.0.x sources x listen ports, bound with IP_BIND_ADDRESS_NO_PORT)"
    )
    put_sysctl(
        "net.ipv4.ip_local_port_range",
        [lo, hi],
        not loopback or target <= ports,
        '"1024 65535"',
        meaning,
        bad=WARN,
        needed=target if loopback else None,
    )
    v = (sysctl("net.ipv4.tcp_tw_reuse") or [0])[0]
    put_sysctl(
        "net.ipv4.tcp_tw_reuse",
        v,
        v != 0 or not loopback,
        "1",
        "reuse TIME_WAIT ports for new outgoing connections (0 off, 1 on, 2 loopback only)",
        bad=WARN,
    )
    v = (sysctl("net.ipv4.tcp_fin_timeout") or [0])[0]
    limits["net.ipv4.tcp_fin_timeout"] = Limit(
        v, INFO, "seconds an orphaned connection stays in FIN_WAIT2 (holds memory, not a fd)"
    )

    # --- socket buffer memory ------------------------------------------------------------
    tcp_mem = sysctl("net.ipv4.tcp_mem") or [0, 0, 0]
    rmem = sysctl("net.ipv4.tcp_rmem") or [4096, 131072, 6291456]
    wmem = sysctl("net.ipv4.tcp_wmem") or [4096, 16384, 4194304]
    sockets = target * sides
    busy_min = sockets * (rmem[0] + wmem[0])
    max_bytes = tcp_mem[2] * page
    limits["net.ipv4.tcp_rmem"] = Limit(
        rmem,
        INFO,
        f"receive buffer per socket: min/default/max bytes; {sockets:,} sockets x default = "
        f"{_fmt(sockets * rmem[1] / 2**30)} GiB if all were full (idle ones hold none)",
    )
    limits["net.ipv4.tcp_wmem"] = Limit(
        wmem,
        INFO,
        f"send buffer per socket: min/default/max bytes; {sockets:,} x default = "
        f"{_fmt(sockets * wmem[1] / 2**30)} GiB if all were full",
    )
    # never advise more than half the RAM for socket buffers
    want_pages = max(
        tcp_mem[2], min(math.ceil(busy_min / page), mem.get("MemTotal", 0) // 2 // page)
    )
    put_sysctl(
        "net.ipv4.tcp_mem",
        tcp_mem,
        max_bytes >= busy_min,
        f'"{max(tcp_mem[0], want_pages // 2)} {max(tcp_mem[1], want_pages * 3 // 4)} {want_pages}"',
        f"pages for all TCP buffers (low/pressure/max; max = {_fmt(max_bytes / 2**20)} MiB): "
        f"idle keep-alive connections hold none, but {_fmt(max_bytes // (rmem[0] + wmem[0]))} "
        f"sockets with one page queued each way reach the max, where allocations fail",
        bad=WARN,
        needed=want_pages,
    )

    # --- memory --------------------------------------------------------------------------
    per_conn = SERVER_PY_BYTES_PER_CONN + KERNEL_BYTES_PER_SOCKET
    if loopback:
        per_conn += KERNEL_BYTES_PER_SOCKET + CLIENT_PY_BYTES_PER_CONN
    avail = mem.get("MemAvailable", 0)
    mem_need = target * per_conn
    limits["memory"] = Limit(
        {"MemTotal": mem.get("MemTotal", 0), "MemAvailable": avail},
        OK if avail >= mem_need else LIMIT,
        f"{per_conn:,} bytes per connection (measured, see `c10k doctor --measure`): "
        f"{_fmt(mem_need / 2**20)} MiB needed, {_fmt(avail / 2**20)} MiB available",
        needed=mem_need,
        fix=[] if avail >= mem_need else ["more RAM, or fewer connections per machine"],
        raisable=avail >= mem_need,
    )

    # --- conntrack (loopback connections are tracked too when netfilter hooks are on) ----
    ct_max = sysctl("net.netfilter.nf_conntrack_max")
    ct_count = sysctl("net.netfilter.nf_conntrack_count")
    if ct_max is not None:
        tracking = bool(ct_count and ct_count[0] > 0)
        meaning = f"connection-tracking entries ({ct_count[0] if ct_count else 0:,} in use); " + (
            "one per tracked connection" if tracking else "not tracking here (0 entries)"
        )
        put_sysctl(
            "net.netfilter.nf_conntrack_max",
            ct_max[0],
            not tracking or ct_max[0] >= target,
            str(target * 5 // 4),
            meaning,
            needed=target if tracking else None,
        )
        if tracking and ct_max[0] < target:
            limits["net.netfilter.nf_conntrack_max"].fix.append(
                "or do not track: iptables -t raw -A PREROUTING -j NOTRACK; "
                "iptables -t raw -A OUTPUT -j NOTRACK"
            )

    # --- threads (the page: "Limits on threads"; bind only one-thread-per-client) --------
    threads_max = (sysctl("kernel.threads-max") or [0])[0]
    pid_max = (sysctl("kernel.pid_max") or [0])[0]
    map_max = (sysctl("vm.max_map_count") or [0])[0]
    nproc_soft, nproc_hard = rlim.get("Max processes", (None, None))
    thread_terms = {
        "kernel.threads-max": threads_max,
        "kernel.pid_max": pid_max,
        # each thread stack is a mapping plus its guard page
        "vm.max_map_count/2": map_max // 2,
        "RLIMIT_NPROC": nproc_soft if nproc_soft is not None else threads_max,
        "RLIMIT_NOFILE": per_process,
    }
    threads_cap = min(thread_terms.values())
    threads_bound = min(thread_terms, key=lambda k: thread_terms[k])
    for name, v, meaning, want in (
        ("kernel.threads-max", threads_max, "threads system-wide", target + 10_000),
        ("kernel.pid_max", pid_max, "a thread is a pid", min(target + 10_000, PID_MAX_LIMIT)),
        ("vm.max_map_count", map_max, "memory mappings per process", 2 * target + 65530),
    ):
        lim = _sysctl_fix(name, str(want), writable(name), container)
        lim.value, lim.status, lim.needed = v, INFO, want
        lim.meaning = f"{meaning}; binds only --backend threads (one thread per client)"
        if v >= want:
            lim.fix = []
        limits[name] = lim
    limits["RLIMIT_NPROC"] = Limit(
        {"soft": nproc_soft, "hard": nproc_hard},
        INFO,
        "processes+threads per user; binds only --backend threads",
        fix=[] if (nproc_soft or 1 << 62) >= target else [f"ulimit -u {target + 10_000}"],
    )

    # --- backends, modes, io_uring -------------------------------------------------------
    b_ok, b_no = src.backends()
    m_ok, m_no = src.modes()
    uring_disabled = sysctl("kernel.io_uring_disabled")
    seccomp = int(status.get("Seccomp", "0") or 0)
    # kernel.io_uring_disabled=1 still lets CAP_SYS_ADMIN and members of
    # kernel.io_uring_group (-1: nobody) create rings (Linux 6.6).
    uring_group = (sysctl("kernel.io_uring_group") or [-1])[0]
    gids = {int(g) for g in status.get("Groups", "").split()}
    gids.update(int(g) for g in status.get("Gid", "").split()[1:2])  # effective gid
    io_uring = {
        "io_uring_disabled": uring_disabled[0] if uring_disabled else None,
        "io_uring_group": uring_group,
        "seccomp": seccomp,
        "allowed": (uring_disabled is None or uring_disabled[0] == 0)
        or (
            uring_disabled[0] == 1
            and ((euid == 0 and bool(cap_eff >> CAP_SYS_ADMIN & 1)) or uring_group in gids)
        ),
        "note": "seccomp filter active: a container profile may refuse io_uring_setup "
        "(docker's default does since 25.0; `--security-opt seccomp=<profile>`)"
        if seccomp == 2
        else "no seccomp filter",
    }
    if uring_disabled and uring_disabled[0] != 0:
        lim = _sysctl_fix(
            "kernel.io_uring_disabled", "0", writable("kernel.io_uring_disabled"), container
        )
        lim.value, lim.status = uring_disabled[0], WARN if io_uring["allowed"] is False else INFO
        lim.meaning = "0 allowed, 1 only CAP_SYS_ADMIN / kernel.io_uring_group, 2 disabled"
        limits["kernel.io_uring_disabled"] = lim

    # --- capacity ------------------------------------------------------------------------
    server_py = SERVER_PY_BYTES_PER_CONN
    server_terms = {
        "fds_per_process_x_workers": per_process * cores,
        "fs.file-max": max(file_max - in_use, 0),
        "memory": avail // (server_py + KERNEL_BYTES_PER_SOCKET),
    }
    loop_terms = {
        "fds_per_process_x_workers": per_process * cores,
        "fs.file-max": max(file_max - in_use, 0) // 2,
        "memory": avail // (server_py + 2 * KERNEL_BYTES_PER_SOCKET + CLIENT_PY_BYTES_PER_CONN),
    }
    if ct_max is not None and ct_count and ct_count[0] > 0:
        server_terms["net.netfilter.nf_conntrack_max"] = ct_max[0]
        loop_terms["net.netfilter.nf_conntrack_max"] = ct_max[0]

    def any_workers(terms: dict[str, int]) -> dict[str, int]:
        return {k: v for k, v in terms.items() if k != "fds_per_process_x_workers"}

    def bound(terms: dict[str, int]) -> dict[str, Any]:
        key = min(terms, key=lambda k: terms[k])
        return {"connections": terms[key], "bound_by": key, "terms": terms}

    capacity = {
        "workers": cores,
        "fds_per_process": per_process,
        "server": bound(server_terms),
        # With --workers auto (more processes than cores) the per-process fd limit stops
        # mattering; what remains is the machine's.
        "server_any_workers": bound(any_workers(server_terms)),
        "loopback": {
            **bound(loop_terms),
            "ports_per_tuple": ports,
            "tuples_needed": tuples,
        },
        "loopback_any_workers": bound(any_workers(loop_terms)),
        "threads_mode": {
            "connections": threads_cap,
            "bound_by": threads_bound,
            "terms": thread_terms,
        },
        "bytes_per_connection": {
            "server_python": SERVER_PY_BYTES_PER_CONN,
            "kernel_per_socket": KERNEL_BYTES_PER_SOCKET,
            "client_python": CLIENT_PY_BYTES_PER_CONN,
        },
    }
    in_the_way = sorted(n for n, lim in limits.items() if lim.status == LIMIT)
    return {
        "schema": SCHEMA,
        "target": target,
        "loopback": loopback,
        "verdict": OK if not in_the_way else LIMIT,
        "in_the_way": in_the_way,
        "machine": {
            "cores": cores,
            "page_size": page,
            "mem_total": mem.get("MemTotal", 0),
            "mem_available": avail,
            "euid": euid,
            "container": container,
            "cap_sys_resource": has_sys_resource,
        },
        "limits": {name: asdict(lim) for name, lim in limits.items()},
        "backends": {"available": b_ok, "unavailable": b_no},
        "modes": {"available": m_ok, "unavailable": m_no},
        "io_uring": io_uring,
        "capacity": capacity,
    }


# -- output ---------------------------------------------------------------------------------
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


def render_text(report: dict[str, Any]) -> str:
    """The human table: one line per limit, its marker, what it means, how to raise it."""
    t = report["target"]
    side = "on loopback (both ends here)" if report["loopback"] else "server side"
    m = report["machine"]
    machine = (
        f"machine: {m['cores']} cores, {_fmt(m['mem_total'] / 2**20)} MiB RAM "
        f"({_fmt(m['mem_available'] / 2**20)} MiB available), euid {m['euid']}"
        + (f", in a {m['container']} container" if m["container"] else "")
        + ("" if m["cap_sys_resource"] else ", no CAP_SYS_RESOURCE (hard rlimits fixed)")
    )
    lines = [
        f"c10k doctor: can this machine hold {t:,} connections {side}?",
        *textwrap.wrap(machine, WIDTH, subsequent_indent=" " * 9),
        "",
        f"{'':5} {'limit':32} value",
    ]
    for name, lim in report["limits"].items():
        val = _value_text(name, lim["value"])
        lines.append(f"{lim['status']:5} {name:32} {val}")
        lines.extend(
            textwrap.wrap(lim["meaning"], WIDTH, initial_indent=" " * 6, subsequent_indent=" " * 6)
        )
        if lim["status"] in (LIMIT, WARN):
            tags = ["needs root"] if lim["needs_root"] else []
            if not lim["raisable"]:
                tags.append("cannot be done from here")
            if lim["fix"]:
                lines.append(f"{'':6}to raise it" + (f" ({', '.join(tags)})" if tags else "") + ":")
                lines.extend(f"{'':8}{cmd}" for cmd in lim["fix"])
            if lim["workaround"]:
                lines.append(f"{'':6}or, without root:")
                lines.extend(f"{'':8}{cmd}" for cmd in lim["workaround"])
    cap = report["capacity"]
    lines += ["", "capacity (concurrent connections):"]
    for key, label in (
        ("server", f"server side, {cap['workers']} worker(s)"),
        ("server_any_workers", "server side, with enough workers"),
        ("loopback", f"loopback, both ends here, {cap['workers']} worker(s)"),
        ("loopback_any_workers", "loopback, with enough workers"),
        ("threads_mode", "--backend threads (a thread each)"),
    ):
        c = cap[key]
        mark = OK if c["connections"] >= t else LIMIT
        lines.append(f"{mark:5} {label:42} {c['connections']:>12,}  bound by {c['bound_by']}")
    lb = cap["loopback"]
    lines.append(
        f"{'':5} loopback ports: {lb['ports_per_tuple']:,} per (source, listen port) tuple; "
        f"{lb['tuples_needed']} tuples for the target"
    )
    b = cap["bytes_per_connection"]
    lines.append(
        f"{'':5} bytes per connection (measured): server Python {b['server_python']:,}, "
        f"kernel {b['kernel_per_socket']:,} per socket"
    )
    lines += ["", f"backends here: {', '.join(report['backends']['available']) or '-'}"]
    for name, why in report["backends"]["unavailable"].items():
        lines.append(f"  {name}: {why}")
    lines.append(f"server modes here: {', '.join(report['modes']['available']) or '-'}")
    for name, why in report["modes"]["unavailable"].items():
        lines.append(f"  {name}: {why}")
    u = report["io_uring"]
    lines.append(
        f"io_uring: {'allowed' if u['allowed'] else 'NOT allowed'} "
        f"(kernel.io_uring_disabled={u['io_uring_disabled']}, Seccomp={u['seccomp']}: "
        f"{u['note']})"
    )
    verdict = report["verdict"]
    lines += [
        "",
        f"verdict: {verdict}"
        + (f" - in the way: {', '.join(report['in_the_way'])}" if report["in_the_way"] else ""),
    ]
    return "\n".join(lines) + "\n"


# -- measurement ----------------------------------------------------------------------------
def _vm_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _slab() -> int:
    return read_meminfo(Sources()).get("Slab", 0)


def measure(n: int = 10_000) -> dict[str, Any]:
    """Hold ``n`` idle keep-alive connections to a fresh ``c10k serve`` and measure the
    server's VmRSS growth per connection and the kernel Slab growth per socket."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n + 100 <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (n + 100, hard))
    with tempfile.TemporaryDirectory() as root:
        Path(root, "i.txt").write_bytes(b"x")
        argv = [
            sys.executable,
            "-m",
            "c10k",
            "serve",
            root,
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--backend",
            "epoll",
        ]
        # this c10k, wherever it is imported from (installed or a source tree)
        src_dir = str(Path(__file__).resolve().parent.parent)
        path = os.pathsep.join(p for p in (src_dir, os.environ.get("PYTHONPATH")) if p)
        env = dict(os.environ, PYTHONPATH=path)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
        socks: list[socket.socket] = []
        try:
            assert proc.stdout is not None
            m = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline().decode())
            if m is None:
                raise RuntimeError("c10k serve did not start")
            port = int(m.group(1))
            req = b"GET /i.txt HTTP/1.1\r\nHost: m\r\n\r\n"

            def one() -> socket.socket:
                s = socket.create_connection(("127.0.0.1", port), timeout=10)
                s.sendall(req)
                got = b""
                while not got.endswith(b"\r\n\r\nx"):
                    chunk = s.recv(4096)
                    if not chunk:
                        raise RuntimeError("server closed a measuring connection")
                    got += chunk
                return s

            one().close()  # warm the cache and the wire memo
            time.sleep(0.5)
            rss0, slab0, me0 = _vm_rss(proc.pid), _slab(), _vm_rss(os.getpid())
            socks.extend(one() for _ in range(n))
            time.sleep(1.0)
            rss1, slab1, me1 = _vm_rss(proc.pid), _slab(), _vm_rss(os.getpid())
        finally:
            for s in socks:
                s.close()
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
    return {
        "connections": n,
        "server_rss_bytes_per_conn": round((rss1 - rss0) / n),
        "slab_bytes_per_socket": round((slab1 - slab0) / (2 * n)),
        "client_rss_bytes_per_conn": round((me1 - me0) / n),
        "method": "VmRSS of the server and Slab in /proc/meminfo, before and after "
        f"{n} keep-alive connections that each completed one GET",
    }


# -- command line ---------------------------------------------------------------------------
def main(argv: list[str]) -> int:
    """``c10k doctor [--json] [--connections N] [--loopback] [--measure N]``.

    Exit status: 0 when nothing is in the way of the target, 1 when a LIMIT is.

    ``--json`` prints one object (schema 1):

    - ``schema``, ``target``, ``loopback``, ``verdict`` ("OK"/"LIMIT"), ``in_the_way``
      (names of the LIMIT entries);
    - ``machine``: cores, page_size, mem_total, mem_available (bytes), euid, container
      (null or "docker", ...), cap_sys_resource;
    - ``limits``: name (sysctl dotted name, ``RLIMIT_NOFILE``, ``RLIMIT_NPROC``, ``memory``)
      -> {value, status (OK/LIMIT/WARN/INFO), meaning, needed, fix (commands), needs_root,
      raisable}; sysctl values are lists of ints when the file holds several, rlimits
      {soft, hard} with null for unlimited;
    - ``backends`` / ``modes``: {available: [names], unavailable: {name: reason}};
    - ``io_uring``: {io_uring_disabled, io_uring_group, seccomp, allowed, note};
    - ``capacity``: workers, fds_per_process, and server / server_any_workers / loopback /
      loopback_any_workers / threads_mode, each {connections, bound_by, terms} ("any
      workers": as many processes as it takes, so the per-process fd limit drops out);
      loopback adds ports_per_tuple and tuples_needed; bytes_per_connection gives the
      measured costs used.
    """
    p = argparse.ArgumentParser(
        prog="c10k doctor",
        description="What this machine allows, how many connections it can hold, and how "
        "to raise each limit in the way.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument(
        "--connections",
        type=int,
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
        type=int,
        default=None,
        metavar="N",
        help="measure the memory of N idle connections to c10k serve, and exit",
    )
    ns = p.parse_args(argv)
    if ns.connections < 1:
        p.error("--connections must be at least 1")
    if ns.measure is not None:
        result = measure(ns.measure)
        print(
            json.dumps(result, indent=2)
            if ns.json
            else "\n".join(f"{k}: {v}" for k, v in result.items())
        )
        return 0
    report = collect(ns.connections, ns.loopback)
    if ns.json:
        print(json.dumps(report, indent=2))
    else:
        sys.stdout.write(render_text(report))
    return 0 if report["verdict"] == OK else 1
