"""Where CPU 0's microseconds go per small-file request, nginx against c10k (issue 18).

A docroot holds one 512-byte file (``--size``: another). Each server in turn (nginx as
scripts/files_vs_nginx.py starts it, then ``c10k serve --workers 1`` plus ``--backend
uring`` with ``--c10k-backend uring`` and any ``--c10k-arg``) runs pinned to CPU 0; wrk runs
pinned to CPU 1 for 8 s, either Kegel's test 1 (``--close``: ``Connection: close``, one
request per connection, 50 connections by default) or keep-alive (100 connections by
default). From the 2nd to the 7th second ``perf record -g -C 0`` samples everything CPU 0
runs (so the kernel work the server causes, softirqs included, is charged to it) and
/proc/stat gives CPU 0's busy time over the same window; the requests in the window are
wrk's rate times its length.

Every sample is classified from its call chain (``perf script``), leaf first:

- idle: the idle task halting (``*_safe_halt``, cpuidle, ``do_idle`` with nothing else), left
  out; the idle task switching back to the server counts as scheduler;
- user space of the server: ``user: libc``, ``user: ctypes+ffi`` (c10k's libc calls go
  through ctypes), ``user: interpreter`` (python/libpython for c10k, the nginx binary) and
  ``user: other`` (extension modules, vdso, ld.so);
- kernel code under a system call is charged to that call (``sys: write``, ``sys: accept4``,
  ...), named from the entry frame (``__x64_sys_NAME``, ``__do_sys_NAME``, ``ksys_NAME``) or,
  failing that, from the libc wrapper that made it. On loopback a send's stack holds the
  receiver's softirq processing too (``__local_bh_enable_ip`` -> ``net_rx_action``): that is
  work the call causes, so it stays with the call. A context switch inside a call (a
  blocking ``epoll_wait``) counts as scheduler;
- ``softirq outside syscalls``: softirqs run from an interrupt or by ksoftirqd (TCP timers,
  RCU freeing sockets, net rx that no call of ours ran);
- ``kernel: scheduler``, ``kernel: irq`` (interrupt handlers), ``kernel: page faults``,
  ``kernel: io-wq`` (io_uring's worker threads), ``kernel: other``;
- ``kernel threads`` (kworkers freeing what RCU defers, rcu_preempt, kdamond) are charged;
  other processes that ran on CPU 0 (the other CPU-lock-free work of the machine: shells,
  compilers) are not, and are printed apart with their names.

Each table gives the bucket's share of the non-idle samples and its microseconds per request
(share x busy CPU-0 seconds / requests), so the rows add up to 1e6 / (requests per busy CPU-0
second), busy time being /proc/stat's tick-sampled user+nice+system+irq+softirq as in the
*_vs_nginx scripts. Other estimates are printed beside it as a check: the non-idle share of
perf's samples (4000 a second against the ticks' 250), one minus /proc/stat's idle share
(measured by the nohz idle code, not sampled by ticks) and its steal; so are the TCP
segments and RSTs sent on loopback per request (both sides, from /proc/net/snmp), all read
by perf record's workload so that they cover the sampled window exactly. A second 8 s wrk
run on the same server counts the system calls per request (``perf stat`` on their
tracepoints, 2nd to 7th second), which gives the microseconds per call of each ``sys:``
row. Then the per-bucket difference c10k - nginx, and the top user-space functions (leaf)
of each server.

    .venv/bin/python scripts/conn_cost.py --close                       # Kegel test 1
    .venv/bin/python scripts/conn_cost.py --close --c10k-backend uring
    .venv/bin/python scripts/conn_cost.py                               # keep-alive

Limits: one run, no rounds: read it beside files_vs_nginx.py-style medians, not instead of
them. The machine has no PMU here, so perf samples on cpu-clock (an hrtimer): time spent with
interrupts disabled (hard irq handlers, some lock sections) shows up at the point they are
re-enabled, and the sampling interrupt's own cost is in /proc/stat's busy time but in no
sample. Python frames are not unwound (no frame pointers): user time is split by DSO and by
the interpreter's C function, not by Python function. Needs perf (Debian: linux-perf) and
root.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _pinned import busy0, free_port, start, stop
from files_vs_nginx import server_argv

FILE = "f512.bin"
OTHER = "other processes"  # sampled on CPU 0 but not charged to the server
WINDOW = 5  # seconds of perf record, from the 2nd second of an 8 s wrk run
KERNEL = "[kernel.kallsyms]"
IDLE = {
    "pv_native_safe_halt",
    "native_safe_halt",
    "default_idle",
    "default_enter_idle",
    "default_idle_call",
    "arch_cpu_idle",
    "cpuidle_enter",
    "cpuidle_enter_state",
    "cpuidle_idle_call",
    "call_cpuidle",
    "do_idle",
    "cpu_startup_entry",
    "haltpoll_reflect",
    "poll_idle",
    "acpi_idle_enter",
    "intel_idle",
    "mwait_idle",
    "tick_nohz_idle_enter",
    "tick_nohz_idle_exit",
    "tick_nohz_idle_stop_tick",
    "tick_nohz_idle_retain_tick",
}
SCHED = {
    "__schedule",
    "schedule",
    "schedule_idle",
    "schedule_preempt_disabled",
    "preempt_schedule",
    "preempt_schedule_common",
    "preempt_schedule_irq",
    "preempt_schedule_notrace",
    "finish_task_switch",
    "context_switch",
    "__switch_to",
    "__switch_to_asm",
}
ENTRY = re.compile(r"^(?:__x64_sys_|__do_sys_|__se_sys_|__ia32_sys_|ksys_|__sys_)(\w+)$")
# libc wrappers that name their call when the kernel frames do not (a sample in
# do_syscall_64 itself, or in the exit work after the call: task_work, signals).
LIBC_PREFIXES = ("__GI___libc_", "__GI___", "__libc_", "__GI_", "__")
LIBC_ALIASES = {"recv": "recvfrom", "send": "sendto", "open": "openat", "fstat": "newfstat"}
# The calls counted per request in the second run (tracepoints; a glob over all of them
# takes perf ten seconds to set up).
COUNTED = [
    "accept4",
    "read",
    "readv",
    "recvfrom",
    "recvmsg",
    "write",
    "writev",
    "sendto",
    "sendmsg",
    "sendfile64",
    "close",
    "shutdown",
    "epoll_wait",
    "epoll_pwait",
    "epoll_ctl",
    "io_uring_enter",
    "setsockopt",
    "getsockopt",
    "ioctl",
    "fcntl",
    "openat",
    "newfstat",
    "newfstatat",
    "statx",
    "futex",
    "getsockname",
    "getpeername",
]


@dataclass
class Sample:
    comm: str
    pid: int
    period: int
    frames: list[tuple[str, str]]  # (symbol, dso), leaf first


@dataclass
class Result:
    name: str
    requests: float
    busy: float
    rate: float
    secs: float = WINDOW  # the busy and requests window, read by perf record's workload
    idle: float = 0.0  # /proc/stat idle+iowait share of the window (nohz: measured, not ticks)
    steal: float = 0.0
    segs: float = 0.0  # TCP segments sent on loopback per request, both sides
    rsts: float = 0.0
    calls: dict[str, float] = field(default_factory=dict)  # per request, from the 2nd run
    total_ns: int = 0
    busy_ns: int = 0
    buckets: collections.Counter[str] = field(default_factory=collections.Counter)
    user_syms: collections.Counter[str] = field(default_factory=collections.Counter)
    comms: collections.Counter[tuple[str, str]] = field(default_factory=collections.Counter)

    @property
    def charged_ns(self) -> int:
        return self.busy_ns - self.buckets[OTHER]

    def us_per_request(self, ns: int) -> float:
        return ns / max(self.busy_ns, 1) * self.busy / max(self.requests, 1e-9) * 1e6


def make_root(work: Path, size: int = 512) -> Path:
    root = work / "www"
    root.mkdir()
    (root / FILE).write_bytes((bytes(range(256)) * (size // 256 + 1))[:size])
    return root


def wrk_argv(port: int, conns: int, secs: int, close: bool) -> list[str]:
    argv = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "30s"]
    if close:
        argv += ["-H", "Connection: close"]
    return [*argv, f"http://127.0.0.1:{port}/{FILE}"]


def wrk_rate(out: str) -> float:
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if m is None:
        sys.exit(f"wrk said: {out}")
    if "Non-2xx" in out or "Socket errors" in out:
        print(f"  wrk reported errors: {out.splitlines()[-5:]}", file=sys.stderr)
    return float(m.group(1))


def idle0() -> tuple[float, float]:
    """CPU 0's idle+iowait and steal seconds from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu0 "):
            v = [int(x) for x in line.split()[1:]]
            return (v[3] + v[4]) / os.sysconf("SC_CLK_TCK"), v[7] / os.sysconf("SC_CLK_TCK")
    raise RuntimeError("no cpu0 line in /proc/stat")


def tcp_out() -> tuple[int, int]:
    """TCP segments and RSTs sent, all sockets (/proc/net/snmp)."""
    lines = [x.split() for x in Path("/proc/net/snmp").read_text().splitlines()]
    head, vals = [x for x in lines if x[0] == "Tcp:"][:2]
    return int(vals[head.index("OutSegs")]), int(vals[head.index("OutRsts")])


def snapshot() -> list[float]:
    return [time.monotonic(), busy0(), *idle0(), *tcp_out()]


def window(secs: float, out: Path) -> None:
    """perf record's workload: CPU 0's counters around exactly the sampled window."""
    before = snapshot()
    time.sleep(secs)
    out.write_text(json.dumps([before, snapshot()]))


def record(name: str, port: int, conns: int, close: bool, data: Path) -> Result:
    load = subprocess.Popen(wrk_argv(port, conns, 8, close), stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    # perf itself on CPU 1 beside wrk, so that only its sampling interrupts land on CPU 0.
    perf = ["taskset", "-c", "1", "perf", "record", "-q", "-g", "-C", "0", "-F", "4000"]
    snaps = data.with_suffix(".window")
    me = [sys.executable, __file__, "--window", str(WINDOW), str(snaps)]
    subprocess.run([*perf, "-o", str(data), "--", *me], check=True)
    rate = wrk_rate(load.communicate()[0])
    (t0, b0, i0, st0, sg0, r0), (t1, b1, i1, st1, sg1, r1) = json.loads(snaps.read_text())
    secs = t1 - t0
    res = Result(name, rate * secs, b1 - b0, rate, secs=secs)
    res.idle, res.steal = (i1 - i0) / secs, (st1 - st0) / secs
    res.segs, res.rsts = (sg1 - sg0) / res.requests, (r1 - r0) / res.requests
    return res


def count_calls(port: int, conns: int, close: bool, pids: list[str]) -> dict[str, float]:
    """System calls per request: a second wrk run, perf stat on the calls' tracepoints."""
    events = ",".join(f"syscalls:sys_enter_{c}" for c in COUNTED)
    load = subprocess.Popen(wrk_argv(port, conns, 8, close), stdout=subprocess.PIPE, text=True)
    time.sleep(2)
    perf = ["taskset", "-c", "1", "perf", "stat", "-x,", "-e", events, "-p", ",".join(pids)]
    err = subprocess.run([*perf, "--", "sleep", str(WINDOW)], capture_output=True, text=True)
    # the counters run for the life of ``sleep``, not perf's start-up
    requests = wrk_rate(load.communicate()[0]) * WINDOW
    calls = {}
    for line in err.stderr.splitlines():
        f = line.split(",")
        if len(f) > 3 and f[0].strip().isdigit() and int(f[0]):
            name = f[2].split("sys_enter_")[-1].removesuffix("64")
            calls[name] = int(f[0]) / requests
    return calls


def samples(data: Path) -> list[Sample]:
    fields = "comm,pid,tid,period,ip,sym,dso"
    argv = ["perf", "script", "-i", str(data), "-F", fields]
    text = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    got = []
    for block in text.split("\n\n"):
        lines = block.strip("\n").splitlines()
        if not lines:
            continue
        m = re.match(r"^(.*?)\s+(\d+)/\d+\s+(\d+)\s*$", lines[0])
        if m is None:
            continue
        frames = []
        for line in lines[1:]:
            _addr, _, rest = line.strip().partition(" ")
            sym, _, dso = rest.rpartition(" (")
            frames.append((sym, dso.rstrip(")")))
        got.append(Sample(m.group(1), int(m.group(2)), int(m.group(3)), frames))
    return got


def libc_call(sym: str) -> str:
    for p in LIBC_PREFIXES:
        if sym.startswith(p):
            sym = sym[len(p) :]
            break
    sym = sym.removesuffix("_nocancel").removesuffix("64")
    return LIBC_ALIASES.get(sym, sym)


def user_bucket(dso: str) -> str:
    base = dso.rsplit("/", 1)[-1]
    if base.startswith("libc.so"):
        return "user: libc"
    if base.startswith(("libffi", "_ctypes")):
        return "user: ctypes+ffi"
    if base.startswith(("libpython", "python", "nginx")):
        return "user: interpreter"
    return "user: other"


def syscall_name(kernel: list[str], user: list[tuple[str, str]], at: int) -> str:
    """The call whose entry is frame ``at`` (do_syscall_64) of the kernel chain."""
    for sym in reversed(kernel[:at]):  # outermost first, from do_syscall_64 inwards
        m = ENTRY.match(sym)
        if m:
            return m.group(1).removesuffix("64")
        if sym not in ("x64_sys_call",) and not sym.startswith(("srso_", "__x86_")):
            break
    for sym, dso in user:  # the libc wrapper that entered the kernel
        if dso.rsplit("/", 1)[-1].startswith("libc.so") and sym != "[unknown]":
            return libc_call(sym)
    return "?"


def kernel_bucket(kernel: list[str], user: list[tuple[str, str]]) -> str | None:
    """Leaf outwards, the first context boundary met decides; None is the idle loop."""
    for i, sym in enumerate(kernel):
        base = sym.split(".")[0]
        if base in ("handle_softirqs", "__do_softirq"):
            # from an interrupt's exit or ksoftirqd; from local_bh_enable inside a
            # call (loopback's receive path) it belongs to that call
            if any("irq_exit" in k or k == "run_ksoftirqd" for k in kernel[i:]):
                return "softirq outside syscalls"
        elif base.startswith(("asm_sysvec", "asm_common_interrupt", "sysvec_", "__sysvec_")):
            return "kernel: irq"
        elif base in SCHED:
            return "kernel: scheduler"
        elif base in IDLE:
            return None
        elif base == "asm_exc_page_fault":
            return "kernel: page faults"
        elif base == "io_wq_worker":
            return "kernel: io-wq"
        elif base == "do_syscall_64":
            return f"sys: {syscall_name(kernel, user, i)}"
    return "kernel: other"


def classify(s: Sample, server: set[int]) -> str | None:
    if s.pid != 0 and s.pid not in server and not s.comm.startswith("ksoftirqd"):
        if all(dso == KERNEL for _, dso in s.frames) and "ret_from_fork" in (
            sym for sym, _ in s.frames
        ):
            return "kernel threads"
        return OTHER
    if s.frames and s.frames[0][1] != KERNEL:
        return user_bucket(s.frames[0][1])
    kernel = [sym for sym, dso in s.frames if dso == KERNEL]
    if s.comm.startswith("ksoftirqd"):
        return "softirq outside syscalls"
    return kernel_bucket(kernel, [f for f in s.frames if f[1] != KERNEL])


def account(res: Result, data: Path, server: set[int]) -> None:
    for s in samples(data):
        res.total_ns += s.period
        bucket = classify(s, server)
        if bucket is None:
            continue
        res.busy_ns += s.period
        res.buckets[bucket] += s.period
        if bucket in (OTHER, "kernel threads"):
            res.comms[bucket, s.comm] += s.period
        if bucket.startswith("user:"):
            sym, dso = s.frames[0]
            res.user_syms[f"{sym} ({dso.rsplit('/', 1)[-1]})"] += s.period


def order(results: list[Result]) -> list[str]:
    tot: collections.Counter[str] = collections.Counter()
    for r in results:
        for b, ns in r.buckets.items():
            tot[b] += round(r.us_per_request(ns) * 1000)
    del tot[OTHER]
    return sorted(tot, key=lambda b: (b.split(":")[0] != "user", -tot[b]))


def comms(r: Result, bucket: str) -> str:
    got = [(c, ns) for (b, c), ns in r.comms.most_common() if b == bucket][:4]
    return ", ".join(f"{c} {r.us_per_request(ns):.2f}" for c, ns in got)


def report(results: list[Result], top: int) -> None:
    for r in results:
        us = r.us_per_request(r.charged_ns)
        perf_busy = r.charged_ns / max(r.total_ns, 1)
        print(
            f"\n{r.name}: {r.rate:.0f} req/s, {r.requests:.0f} requests in {r.secs:.2f} s, "
            f"CPU 0 busy {r.busy:.2f} s (/proc/stat ticks), {us:.2f} us per request charged "
            f"to the server = {1e6 / max(us, 1e-9):.0f} requests per busy CPU-0 second"
        )
        print(
            f"  check: busy share {r.busy / r.secs:.0%} by ticks, "
            f"{r.busy_ns / max(r.total_ns, 1):.0%} by perf samples ({perf_busy / r.rate * 1e6:.2f}"
            f" us per request charged), 1 - idle {1 - r.idle:.0%}, steal {r.steal:.0%}; "
            f"loopback TCP per request (both sides): {r.segs:.2f} segments, {r.rsts:.2f} RSTs"
        )
        print(f"  {'bucket':32} {'share':>7} {'us/req':>8} {'calls/req':>9} {'us/call':>8}")
        for k in order([r]):
            ns = r.buckets[k]
            us = r.us_per_request(ns)
            n = r.calls.get(k.removeprefix("sys: "), 0.0) if k.startswith("sys: ") else 0.0
            per_call = f"{n:9.2f} {us / n:8.2f}" if n > 0.005 else ""
            print(f"  {k:32} {ns / max(r.charged_ns, 1):7.1%} {us:8.2f} {per_call}")
        print(f"  {'total charged':32} {1:7.1%} {r.us_per_request(r.charged_ns):8.2f}")
        print(
            f"  ({OTHER}, not charged: {r.us_per_request(r.buckets[OTHER]):.2f} us per request:"
            f" {comms(r, OTHER)})"
        )
        if r.buckets["kernel threads"]:
            print(f"  (kernel threads: {comms(r, 'kernel threads')})")
        unsampled = {c: n for c, n in r.calls.items() if f"sys: {c}" not in r.buckets}
        if unsampled:
            print(
                "  calls/req with no sample: "
                + ", ".join(f"{c} {n:.2f}" for c, n in unsampled.items())
            )
    if len(results) == 2:
        a, b = results
        print(f"\n{b.name} - {a.name}, us per request:")
        print(f"  {'bucket':32} {a.name:>8} {b.name:>8} {'diff':>8}")
        for k in order(results):
            x, y = a.us_per_request(a.buckets[k]), b.us_per_request(b.buckets[k])
            print(f"  {k:32} {x:8.2f} {y:8.2f} {y - x:+8.2f}")
        x, y = a.us_per_request(a.charged_ns), b.us_per_request(b.charged_ns)
        print(f"  {'total charged':32} {x:8.2f} {y:8.2f} {y - x:+8.2f}")
    for r in results:
        print(f"\n{r.name}: top {top} user-space functions (leaf), us per request")
        for sym, ns in r.user_syms.most_common(top):
            print(f"  {r.us_per_request(ns):7.2f}  {ns / max(r.busy_ns, 1):6.1%}  {sym}")


def main() -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--close", action="store_true", help="Kegel test 1: Connection: close")
    ap.add_argument("--conns", type=int, help="wrk connections (default 50 close, 100 keep-alive)")
    ap.add_argument("--c10k-backend", help="c10k serve --backend (e.g. uring; default auto)")
    ap.add_argument("--c10k-arg", action="append", default=[], help="extra c10k serve flag")
    ap.add_argument("--keep", metavar="DIR", help="leave nginx.data/c10k.data in DIR")
    ap.add_argument("--size", type=int, default=512, help="the file's bytes (big files: issue 15)")
    ap.add_argument("--top", type=int, default=15, help="user-space functions listed")
    ap.add_argument("--window", nargs=2, help=argparse.SUPPRESS)  # perf record's workload
    args = ap.parse_args()
    if args.window:
        window(float(args.window[0]), Path(args.window[1]))
        return 0
    if shutil.which("perf") is None:
        sys.exit("perf not found: apt-get install linux-perf")
    conns = args.conns or (50 if args.close else 100)
    extra = list(args.c10k_arg)
    if args.c10k_backend:
        extra += ["--backend", args.c10k_backend]
    work = Path(tempfile.mkdtemp(prefix="conn-cost-"))
    keep = Path(args.keep) if args.keep else work
    keep.mkdir(parents=True, exist_ok=True)
    print(
        f"{'Connection: close' if args.close else 'keep-alive'}, {conns} connections, "
        f"{args.size}-byte file, c10k {' '.join(extra) or '(defaults)'}",
        flush=True,
    )
    results = []
    try:
        root = make_root(work, args.size)
        for name in ("nginx", "c10k"):
            port = free_port()
            proc = start(server_argv(name, port, root, work, extra), port)
            try:
                warm = wrk_argv(port, min(conns, 10), 1, args.close)
                subprocess.run(warm, capture_output=True, check=True)
                pids = subprocess.run(
                    ["pgrep", "-g", str(proc.pid)], capture_output=True, text=True
                ).stdout.split()
                data = keep / f"{name}.data"
                res = record(name, port, conns, args.close, data)
                res.calls = count_calls(port, conns, args.close, pids)
            finally:
                stop(proc)
            account(res, data, {int(p) for p in pids})
            results.append(res)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(results, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
