"""What the machine is, and where its CPU time went: everything the bench reads from /proc.

Theory of operation
-------------------
**Why pin.**  On a box with few cores, the load generator and the server fight for the same
CPU, and the scheduler decides who wins: a faster generator then looks like a slower server.
Pinning the server to one core and the generator to another (vs-nginx does the same: server on
CPU 0, wrk on CPU 1) makes the server's core a fixed budget that only it spends, so two
servers measured one after the other are compared on the same budget.  When the machine has a
single usable CPU we do not pin, and every report says so.

**Two ways to count the server's CPU, both reported.**

1. *Process time*: ``utime + stime`` of every process in the server's session (we start each
   server with ``start_new_session=True``, so the session id is the leader's pid and covers
   prefork workers), plus ``cutime + cstime`` of each (children already reaped).  This is what
   the server itself executed, in user space and in syscalls on its behalf.
2. *Busy core*: user+nice+system+irq+softirq+steal of the pinned core in ``/proc/stat``
   (the vs-nginx formula: all columns minus idle and iowait).  On loopback most of the TCP
   work for a received packet runs in softirq context on whichever core raised it, and is
   charged to *no* process.  A server that causes more kernel work (more syscalls, more
   packets, more wake-ups) pays for it here.  This is the figure the project is judged on:
   requests per busy second of the server's core.

Both are deltas between two snapshots taken around the measured window.  The clock tick is
``SC_CLK_TCK`` (100 Hz here), so a window shorter than a second has a 1-2 % quantisation error;
the reports print the window length next to the figure.
"""

from __future__ import annotations

import math
import os
import platform
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def raise_nofile() -> tuple[int, int]:
    """Raise the soft RLIMIT_NOFILE to the hard limit (children inherit it).

    Returns:
        The (soft, hard) limits now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    hard_eff = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < hard_eff:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard_eff, hard))
        except (ValueError, OSError):
            pass
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def nofile_soft() -> int:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    return (1 << 20) if soft == resource.RLIM_INFINITY else soft


def usable_cpus() -> list[int]:
    """CPUs this process may run on, in order."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class Pinning:
    """Which core the server and the generator run on; None means not pinned."""

    server_cpu: int | None
    generator_cpus: list[int] | None
    note: str

    @classmethod
    def choose(cls, enabled: bool = True) -> Pinning:
        cpus = usable_cpus()
        if not enabled:
            return cls(
                None,
                None,
                "pinning disabled (--no-pin): server and generator share "
                "all cores; busy-core figures include the generator",
            )
        if len(cpus) < 2:
            return cls(
                None,
                None,
                f"only {len(cpus)} usable CPU: not pinned; busy-core figures include the generator",
            )
        return cls(
            cpus[0], [cpus[1]], f"server pinned to CPU {cpus[0]}, load generator to CPU {cpus[1]}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "server_cpu": self.server_cpu,
            "generator_cpus": self.generator_cpus,
            "note": self.note,
        }


def pin_argv(argv: list[str], cpus: list[int] | None) -> list[str]:
    """Prefix argv with ``taskset -c`` so the pinning shows in the recorded command line."""
    if not cpus:
        return argv
    taskset = shutil.which("taskset")
    if taskset is None:
        return argv  # caller falls back to sched_setaffinity on the pid
    return [taskset, "-c", ",".join(map(str, cpus)), *argv]


def cpu_busy_seconds(cpu: int | None) -> float:
    """Busy seconds of one core (or of all cores when cpu is None) since boot."""
    key = "cpu " if cpu is None else f"cpu{cpu} "
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(key):
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal [guest guest_nice]:
                # guest time is already inside user, so stop at steal (vs-nginx sums v[:8]).
                return (sum(v[:8]) - v[3] - v[4]) / CLK_TCK
    return 0.0


def _read_stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except OSError:
        return None
    # comm (field 2) may hold spaces and parentheses: split after the last ')'.
    return data[data.rindex(")") + 2 :].split()


def session_pids(sid: int, live: bool = False) -> list[int]:
    """Pids of processes whose session id is ``sid`` (``live``: zombies left out)."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        f = _read_stat(int(name))
        # after comm: state(0) ppid(1) pgrp(2) session(3) ...
        if f is not None and int(f[3]) == sid and not (live and f[0] == "Z"):
            pids.append(int(name))
    return pids


def session_cpu_seconds(sid: int) -> float:
    """utime+stime+cutime+cstime summed over the session's processes, in seconds."""
    total = 0
    for pid in session_pids(sid):
        f = _read_stat(pid)
        if f is not None:
            # utime stime cutime cstime are fields 14-17, i.e. 11-14 after comm.
            total += int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])
    return total / CLK_TCK


def session_rss_bytes(sid: int) -> int:
    """Resident set size summed over the session's processes (shared pages counted twice)."""
    total = 0
    for pid in session_pids(sid):
        try:
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * PAGE
        except OSError:
            pass
    return total


def _status_rss_kib(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def pids_rss_bytes(pids: list[int]) -> int:
    """VmRSS from ``/proc/PID/status`` summed over ``pids`` (gone ones count 0)."""
    return sum(_status_rss_kib(p) for p in pids) * 1024


def pids_fd_count(pids: list[int]) -> int:
    """Open fds summed over ``pids`` (entries of ``/proc/PID/fd``)."""
    total = 0
    for pid in pids:
        try:
            total += len(os.listdir(f"/proc/{pid}/fd"))
        except OSError:
            pass
    return total


def meminfo_bytes(*keys: str) -> dict[str, int]:
    """Fields of ``/proc/meminfo`` in bytes, e.g. ``meminfo_bytes("Slab", "SUnreclaim")``."""
    out: dict[str, int] = {}
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in keys:
                    out[name] = int(rest.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return out


# The slab caches a TCP connection allocates from (one socket each side on loopback): the
# sock itself, its inode and dentry, the struct file, epoll's item, the bind bucket.
SLAB_CACHES = (
    "TCP",
    "tcp_bind_bucket",
    "tcp_bind2_bucket",
    "sock_inode_cache",
    "dentry",
    "filp",
    "eventpoll_epi",
    "eventpoll_pwq",
    "skbuff_head_cache",
)


def parse_slabinfo(text: str, names: tuple[str, ...] = SLAB_CACHES) -> dict[str, int]:
    """Bytes in use (active_objs * objsize) of the named caches in ``/proc/slabinfo`` text.

    >>> parse_slabinfo("slabinfo - version: 2.1\\n# name <active_objs> ...\\n"
    ...                "TCP 10 12 2304 14 8 : tunables 0 0 0\\nfilp 4 8 256 16 1 : x\\n")
    {'TCP': 23040, 'filp': 1024}
    """
    out: dict[str, int] = {}
    for line in text.splitlines():
        f = line.split()
        if len(f) >= 4 and f[0] in names and f[1].isdigit():
            out[f[0]] = int(f[1]) * int(f[3])
    return out


def slab_snapshot() -> dict[str, Any]:
    """Kernel slab memory now: meminfo ``Slab``/``SUnreclaim`` and, when ``/proc/slabinfo``
    is readable (root), the TCP-related caches; plus ``/proc/net/sockstat`` TCP pages."""
    out: dict[str, Any] = meminfo_bytes("Slab", "SUnreclaim", "MemAvailable")
    try:
        with open("/proc/slabinfo") as f:
            out["caches"] = parse_slabinfo(f.read())
    except OSError:
        out["caches"] = None
    out["tcp_mem_bytes"] = tcp_mem_pages() * PAGE
    return out


def sockstat_tcp() -> dict[str, int]:
    """The ``TCP:`` line of ``/proc/net/sockstat`` (inuse, orphan, tw, alloc, mem in pages);
    {} where it cannot be read."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()[1:]
                    return {k: int(v) for k, v in zip(parts[::2], parts[1::2], strict=False)}
    except (OSError, ValueError):
        pass
    return {}


def tcp_mem_limits() -> list[int]:
    """``net.ipv4.tcp_mem`` (pages): [no pressure below, pressure from, hard limit]; []
    where it cannot be read."""
    try:
        with open("/proc/sys/net/ipv4/tcp_mem") as f:
            return [int(x) for x in f.read().split()]
    except (OSError, ValueError):
        return []


def _port_of(addr: str) -> int:
    """``127.0.0.1:8001`` or ``[::1]:8001`` -> 8001 (-1 when there is none)."""
    head, _, port = addr.rpartition(":")
    return int(port) if head and port.isdigit() else -1


def tcp_memory_by_side(ss_text: str, server_ports: set[int]) -> dict[str, dict[str, int]]:
    r"""Split established sockets' kernel memory between the server under test and its
    clients, from ``ss -tmnH state established`` output.

    ``/proc/net/sockstat`` gives one total for every TCP socket on the machine; on
    loopback both ends of every connection are counted in it, so what gives out first may
    be the generator's receive queues as much as the server's send buffers.  A socket
    whose local port is a server port is the server's; one whose peer port is, a client's.
    Charged memory is what ``sk_mem_schedule`` reserved: rmem_alloc (``r``) + wmem_queued
    (``w``) + forward_alloc (``f``), as ``ss(8)`` names skmem's fields.

    >>> text = ("0 100 127.0.0.1:8001 127.0.0.2:40000\n"
    ...         "\t skmem:(r0,rb131072,t0,tb87040,f3000,w9000,o0,bl0,d0)\n"
    ...         "50 0 127.0.0.2:40000 127.0.0.1:8001\n"
    ...         "\t skmem:(r4096,rb16384,t0,tb87040,f0,w0,o0,bl0,d0)\n"
    ...         "0 0 127.0.0.1:22 127.0.0.1:5000 skmem:(r0,rb1,t0,tb1,f4096,w0,o0,bl0,d0)\n")
    >>> tcp_memory_by_side(text, {8001})["server"], tcp_memory_by_side(text, {8001})["other"]
    ({'sockets': 1, 'bytes': 12000}, {'sockets': 1, 'bytes': 4096})
    """
    out = {side: {"sockets": 0, "bytes": 0} for side in ("server", "clients", "other")}
    side = "other"
    for line in ss_text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if not line[0].isspace() and len(fields) >= 4:
            local, peer = _port_of(fields[2]), _port_of(fields[3])
            side = (
                "server"
                if local in server_ports
                else "clients"
                if peer in server_ports
                else "other"
            )
        for f in fields:
            if f.startswith("skmem:("):
                kv = {}
                for item in f[7:].rstrip(")").split(","):
                    name = item.rstrip("0123456789")
                    if name and item[len(name) :].isdigit():
                        kv[name] = int(item[len(name) :])
                out[side]["sockets"] += 1
                out[side]["bytes"] += kv.get("r", 0) + kv.get("w", 0) + kv.get("f", 0)
    return out


def tcp_memory_sides(server_ports: set[int]) -> dict[str, Any] | None:
    """``tcp_memory_by_side`` of this machine now (None without a working ``ss``), with the
    sockstat total read at the same moment, in pages."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    try:
        p = subprocess.run(
            [ss, "-tmnH", "state", "established"], capture_output=True, text=True, timeout=30
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if p.returncode != 0:
        return None
    sides: dict[str, Any] = tcp_memory_by_side(p.stdout, server_ports)
    for v in sides.values():
        v["pages"] = math.ceil(v["bytes"] / PAGE)
    sides["sockstat_pages"] = tcp_mem_pages()
    return sides


def tcp_memory_pressure() -> bool | None:
    """Whether the kernel's TCP is under memory pressure now: the ``press`` column of the
    TCP line of ``/proc/net/protocols`` (entered above ``tcp_mem``'s middle value, left
    only below its first, so the page count alone does not say); None where unreadable."""
    try:
        with open("/proc/net/protocols") as f:
            for line in f:
                parts = line.split()
                if parts and parts[0] == "TCP" and len(parts) > 4:
                    return {"yes": True, "no": False}.get(parts[4])
    except OSError:
        pass
    return None


# TcpExt counters (/proc/net/netstat) that show the kernel's socket memory at work: times
# TCP entered memory pressure and milliseconds spent there; receive queues pruned and
# segments dropped for want of receive memory; connections aborted for memory;
# retransmission time-outs.
TCP_MEMORY_COUNTERS = (
    "TCPMemoryPressures",
    "TCPMemoryPressuresChrono",
    "PruneCalled",
    "TCPRcvQDrop",
    "TCPAbortOnMemory",
    "TCPTimeouts",
)


def tcp_memory_counters() -> dict[str, int]:
    """``TCP_MEMORY_COUNTERS`` from ``/proc/net/netstat`` ({} where unreadable)."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for head, vals in zip(lines[::2], lines[1::2], strict=False):
        if head.startswith("TcpExt:"):
            d = dict(zip(head.split()[1:], vals.split()[1:], strict=False))
            return {k: int(d[k]) for k in TCP_MEMORY_COUNTERS if k in d}
    return {}


def tcp_mem_pages() -> int:
    """Kernel memory held by TCP sockets, in pages (``/proc/net/sockstat`` "TCP: ... mem")."""
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1])
    except (OSError, ValueError):
        pass
    return 0


@dataclass
class CpuSnapshot:
    """Counters read at one instant; subtract two to get a window's figures."""

    t: float
    server_proc: float
    server_core: float
    generator_core: float

    @classmethod
    def take(cls, sid: int | None, pin: Pinning) -> CpuSnapshot:
        return cls(
            t=time.perf_counter(),
            server_proc=session_cpu_seconds(sid) if sid else 0.0,
            server_core=cpu_busy_seconds(pin.server_cpu),
            generator_core=(
                sum(cpu_busy_seconds(c) for c in pin.generator_cpus) if pin.generator_cpus else 0.0
            ),
        )

    def delta(self, before: CpuSnapshot) -> dict[str, float]:
        wall = self.t - before.t
        gen = self.generator_core - before.generator_core
        return {
            "window_s": round(wall, 4),
            "server_cpu_s": round(self.server_proc - before.server_proc, 3),
            "server_core_busy_s": round(self.server_core - before.server_core, 3),
            "generator_core_busy_s": round(gen, 3),
        }


def _first_line(cmd: list[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (p.stdout + p.stderr).strip()
    return text.splitlines()[0] if text else None


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def describe() -> dict[str, Any]:
    """The machine description stored in every results file."""
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_total = None
    meminfo = _read("/proc/meminfo") or ""
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            mem_total = int(line.split()[1]) * 1024
    limits = {}
    for name in ("RLIMIT_NOFILE", "RLIMIT_NPROC", "RLIMIT_AS", "RLIMIT_MEMLOCK"):
        lim = getattr(resource, name, None)
        if lim is not None:
            s, h = resource.getrlimit(lim)
            limits[name] = [
                None if s == resource.RLIM_INFINITY else s,
                None if h == resource.RLIM_INFINITY else h,
            ]
    sysctls = {}
    for key in (
        "net/core/somaxconn",
        "net/ipv4/tcp_max_syn_backlog",
        "net/ipv4/tcp_syncookies",
        # What a handshake that finds the accept queue full gets (overload: see report).
        "net/ipv4/tcp_abort_on_overflow",
        "net/ipv4/ip_local_port_range",
        "net/ipv4/tcp_tw_reuse",
        "net/ipv4/tcp_fin_timeout",
        "fs/nr_open",
        "fs/file-max",
        # Both ends of every loopback connection, when conntrack tracks them (count > 0).
        "net/netfilter/nf_conntrack_max",
        "net/netfilter/nf_conntrack_count",
        "net/ipv4/tcp_mem",
        # Big files over loopback: BBR with no fq qdisc paces each socket with its own
        # timers, and that, not the server, is most of a sender's CPU (docs/BENCHMARKS.md).
        "net/ipv4/tcp_congestion_control",
        "net/core/default_qdisc",
    ):
        sysctls[key.replace("/", ".")] = _read(f"/proc/sys/{key}")
    wrk = shutil.which("wrk")
    return {
        "hostname": socket.gethostname(),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "cpu_model": model,
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "mem_total_bytes": mem_total,
        "loadavg_at_start": _read("/proc/loadavg"),
        "rlimits": limits,
        "sysctl": sysctls,
        "wrk": _first_line([wrk, "-v"]) if wrk else None,
        "clk_tck": CLK_TCK,
    }
