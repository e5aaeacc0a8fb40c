"""Where a 28.8k modem user's server CPU goes, and why nginx closes some (docs/BENCHMARKS.md,
Kegel test 2).

One server pinned to CPU 0 (nginx with the bench's configuration, one process per port, or
``c10k serve --workers N`` on N ports), the bench's Python generator on CPU 1 adding a user
every 10 ms, each reading 3,600 B/s as ``c10k bench modem`` does.  Once all are in and
``--settle`` seconds have passed, over ``--hold`` seconds: the server's utime and stime per
user-second, its core's busy time, its system calls per user-second (``perf stat``
tracepoints, when perf is installed), then kernel TCP memory split by side (``ss``).
``--info-log`` sets nginx's error_log to info (it names the connections it closes and
why); ``--until-failure`` stops 10 s after the first user fails and prints the failures,
the pressure state and TcpExt.

    flock /tmp/c10k-cpu.lock python scripts/modem_per_user.py --server nginx --users 5000
    flock /tmp/c10k-cpu.lock python scripts/modem_per_user.py --server c10k --users 5000
    flock /tmp/c10k-cpu.lock python scripts/modem_per_user.py --server nginx --users 19500 \\
        --ports 3 --info-log --until-failure
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from c10k.bench import client as gen
from c10k.bench.machine import (
    cpu_busy_seconds,
    sockstat_tcp,
    tcp_memory_counters,
    tcp_memory_pressure,
    tcp_memory_sides,
)
from c10k.bench.peers import nginx_binary, nginx_conf

SYSCALLS = ("sendfile64", "preadv2", "epoll_wait", "ioctl", "writev", "getsockopt")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _proc_cpu(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    tck = os.sysconf("SC_CLK_TCK")
    return int(v[11]) / tck, int(v[12]) / tck


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--server", choices=["nginx", "c10k"], required=True)
    ap.add_argument("--users", type=int, default=5000)
    ap.add_argument("--hold", type=float, default=10.0)
    # A new user's socket starts with a burst of tens of KiB (its first sndbuf), minutes of
    # data at 3,600 B/s: measure once the last users' bursts are mostly read.
    ap.add_argument("--settle", type=float, default=60.0, help="seconds after the ramp")
    ap.add_argument("--ports", type=int, default=1, help="nginx processes / c10k workers")
    ap.add_argument("--read-packets", type=int, default=4)
    ap.add_argument("--info-log", action="store_true")
    ap.add_argument("--until-failure", action="store_true")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="modem-per-user-"))
    root = work / "www"
    root.mkdir()
    (root / "modem.bin").write_bytes(os.urandom(4 << 20))
    ports = [_free_port() for _ in range(a.ports)]
    procs, dirs = [], []
    if a.server == "nginx":
        for port in ports:
            d = work / f"nginx-{port}"
            (d / "tmp").mkdir(parents=True)
            conf = nginx_conf(d, port, root)
            if a.info_log:
                conf = conf.replace(f"error_log {d}/error.log;", f"error_log {d}/error.log info;")
            (d / "nginx.conf").write_text(conf)
            dirs.append(d)
            argv = [nginx_binary() or "nginx", "-p", str(d), "-c", str(d / "nginx.conf")]
            procs.append(argv)
    else:
        listen = [x for p in ports for x in ("--listen", f"127.0.0.1:{p}")]
        serve = [sys.executable, "-m", "c10k", "serve", str(root), "--workers", str(a.ports)]
        procs.append([*serve, *listen, "--keepalive-timeout", "3600"])
    servers = [
        subprocess.Popen(
            ["taskset", "-c", "0", *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        for argv in procs
    ]
    time.sleep(2.0)
    k = gen.plan_processes(a.users)
    ramp = a.users * 0.01
    cfgs = [
        {
            "mode": "modem",
            "host": "127.0.0.1",
            "port": ports[0],
            "ports": ports,
            "mss": 1460,
            "path": "/modem.bin",
            "rate": 3600,
            "packet": 1460,
            "read_packets": a.read_packets,
            "grace_packets": 10,
            "min_fraction": 0.75,
            "rcvbuf": 8192,
            "interval": 0.01,
            "max_users": n,
            "workers": k,
            "index": i,
            "sources": gen.source_addresses(a.users),
            "timeout": 5.0,
            "cpus": [1],
            "max_lifetime": ramp + a.settle + a.hold + 120,
        }
        for i, n in enumerate(gen.split_evenly(a.users, k))
    ]
    pids = [s.pid for s in servers]
    if a.server == "c10k":  # the workers are the session's other processes
        time.sleep(1.0)
        out = subprocess.run(["pgrep", "-s", str(pids[0])], capture_output=True, text=True)
        pids = [int(p) for p in out.stdout.split()]
    fails: list[dict] = []
    counters0 = tcp_memory_counters()
    pressure: list[tuple[float, int, bool | None]] = []
    try:
        with gen.LoadGenerator(cfgs, work / "logs") as lg:
            lg.wait_all("ready", 30.0)
            lg.send({"cmd": "go"})
            t0 = time.perf_counter()
            end = t0 + ramp + a.settle
            nxt = t0
            while time.perf_counter() < end:
                now = time.perf_counter()
                if now >= nxt:
                    mem = sockstat_tcp().get("mem", 0)
                    pressure.append((round(now - t0, 1), mem, tcp_memory_pressure()))
                    nxt += 1.0
                item = lg.next_event(0.2)
                if item and item[1].get("event") == "fail":
                    fails.append(item[1])
                    if a.until_failure and len(fails) == 1:
                        lg.send({"cmd": "stop-adding"})
                        end = time.perf_counter() + 10.0
            users = a.users
            cpu0 = [_proc_cpu(p) for p in pids]
            c0, t1 = cpu_busy_seconds(0), time.perf_counter()
            perf = shutil.which("perf")
            stat = ""
            if perf and not a.until_failure:
                ev = ",".join(f"syscalls:sys_enter_{n}" for n in SYSCALLS)
                ev = "raw_syscalls:sys_enter," + ev
                pid_list = ",".join(map(str, pids))
                cmd = [perf, "stat", "-x,", "-e", ev, "-p", pid_list, "sleep", str(a.hold)]
                stat = subprocess.run(cmd, capture_output=True, text=True).stderr
            else:
                time.sleep(0 if a.until_failure else a.hold)
            cpu1 = [_proc_cpu(p) for p in pids]
            c1, t2 = cpu_busy_seconds(0), time.perf_counter()
            sides = tcp_memory_sides(set(ports))
            lg.send({"cmd": "stop"})
            results = lg.wait_all("result", 30.0)
    finally:
        for s in servers:
            os.killpg(s.pid, 15)
            s.wait()
    alive = sum(r["alive"] for r in results)
    started = sum(r["started"] for r in results)
    print(f"{a.server}: {started} users started, {alive} alive, {len(fails)} failed")
    if not a.until_failure:
        w = t2 - t1
        ut = sum(b[0] - x[0] for x, b in zip(cpu0, cpu1, strict=True))
        st = sum(b[1] - x[1] for x, b in zip(cpu0, cpu1, strict=True))
        print(
            f"over {w:.1f} s, per user-second: utime {1e6 * ut / w / users:.2f} us, stime "
            f"{1e6 * st / w / users:.2f} us, CPU 0 busy {1e6 * (c1 - c0) / w / users:.2f} us"
        )
        for line in stat.splitlines():
            parts = line.split(",")
            if len(parts) > 3 and parts[0].strip().isdigit():
                print(f"  {parts[2]}: {int(parts[0]) / w / users:.3f} per user-second")
    print("TCP memory by side:", json.dumps(sides))
    if a.until_failure:
        print("first failures:", fails[:5])
        print("reasons:", dict(collections.Counter(f["reason"] for f in fails)))
        on = [p for p in pressure if p[2]]
        print("under TCP memory pressure from", on[0] if on else None, "to", on[-1] if on else None)
        c1_ = tcp_memory_counters()
        print("TcpExt:", {n: v - counters0.get(n, 0) for n, v in c1_.items()})
    for d in dirs:
        lines = (d / "error.log").read_text(errors="replace").splitlines()
        keep = [x for x in lines if "[notice]" not in x and "prematurely closed" not in x]
        msgs = collections.Counter(re.sub(r"^\S+ \S+ ", "", x)[:160] for x in keep)
        print(f"nginx {d.name} error.log (besides the final resets):", msgs.most_common(5))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
