"""``c10k bench cluster``: c10k hosts behind a real load balancer, restarted, reloaded and
killed under load (issue 17).

Theory of operation
-------------------
N c10k hosts (default 3), each on its own loopback address 127.0.0.11, .12, ... and one
port, started with ``--health --drain-delay`` on a listening socket the bench binds and
holds across restarts, passed by socket activation (``LISTEN_FDS``; named ``proxy``, a
PROXY header first, behind HAProxy), as docs/DEPLOY.md's systemd socket unit does,
sit behind HAProxy (HTTP mode, health checks on ``/_c10k/health`` every 200 ms, PROXY v2
to the hosts) or nginx (``upstream`` with keep-alive; nginx has no active health checks,
so it learns of a host's going only from errors). Client threads send keep-alive GETs of a
512-byte file through the balancer and record every request (time, success, latency;
for a failure also the wall clock and the client's port, which the balancer's log names).
The run goes through phases: ``steady``; ``restart`` (each host in turn gets SIGTERM,
drains, exits and is started again on the held socket); ``reload`` (SIGHUP to each host in
turn); ``kill`` (SIGKILL to every process of one host and its socket closed, a power cut;
started again a phase later); ``steady`` again. Each balancer runs with retries
off (the strict case: HAProxy ``retries 0``, nginx ``proxy_next_upstream off``) and on
(HAProxy ``retry-on all-retryable-errors`` with ``option redispatch``, nginx
``proxy_next_upstream error timeout http_502 http_503``).

Goals: no failed request in ``restart`` and ``reload`` with retries off; in ``kill`` no
more failures than requests in flight on the killed host, and none with retries on. The
kill's bound is counted by the balancer (cluster_logs.py): the requests it sent to the
killed host and got no answer for, which includes those it sent in the milliseconds
before it knew the host was gone. All hosts share this machine's cores: the run shows correctness
under restarts and failures, not throughput that scales with hosts.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c10k.bench import cluster_logs
from c10k.bench.cluster_logs import HAPROXY_LOG_FORMAT, NGINX_LOG_FORMAT
from c10k.bench.peers import free_port, sbin_binary

SMALL = b"x" * 512
PHASES = ("steady", "restart", "reload", "kill", "steady-after")
CHECK_MS = 200  # HAProxy's health-check interval
# nginx (no active checks) skips a host for this long after an error; a restart waits it
# out before the next host goes, or nginx would have no host left to send to.
NGINX_FAIL_S = 1


@dataclass
class Options:
    hosts: int = 3
    workers: int = 2
    balancers: tuple[str, ...] = ("haproxy", "nginx")
    retries: tuple[str, ...] = ("off", "on")
    clients: int = 8
    phase_seconds: float = 3.0
    drain_delay: float = 1.0
    out: Path = Path("bench-results/cluster")


# -- the hosts ----------------------------------------------------------------------------
# Run in the child before c10k: the held socket becomes fd 3 and LISTEN_PID the child's own
# pid (exec keeps it), which is what systemd does for a socket-activated service.
ACTIVATE = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
    "os.environ['LISTEN_PID'] = str(os.getpid()); os.execv(sys.argv[2], sys.argv[2:])"
)
BACKLOG = 1024  # the held socket's accept queue: a restart's few hundred ms of connects


@dataclass
class Host:
    address: str
    port: int
    argv: list[str]
    fdname: str  # LISTEN_FDNAMES: "proxy" (a PROXY header first) behind HAProxy
    proc: subprocess.Popen[bytes] | None = None
    sock: socket.socket | None = None

    def listen(self) -> None:
        """Bind and hold the host's listening socket, as a systemd socket unit does
        (docs/DEPLOY.md): it stays open while the host restarts or reloads, so the
        balancer's connects wait in its queue instead of being refused, and the queue is
        never reset by the old process's going."""
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((self.address, self.port))
        s.listen(BACKLOG)
        self.sock = s

    def start(self) -> None:
        if self.sock is None:
            self.listen()
        assert self.sock is not None
        fd = self.sock.fileno()
        env = dict(os.environ, PYTHONUNBUFFERED="1", LISTEN_FDS="1", LISTEN_FDNAMES=self.fdname)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", ACTIVATE, str(fd), *self.argv],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            pass_fds=(fd,),
            start_new_session=True,  # its own group: "kill" takes the workers down with it
        )
        assert self.proc.stdout is not None
        banner = self.proc.stdout.readline().decode()
        if f"{self.address}:{self.port}" not in banner:
            self.proc.kill()
            raise RuntimeError(f"host {self.address} did not start: {banner!r}")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()  # drain it

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def crash(self) -> None:
        """SIGKILL to every process of the host, and its socket closed, as a power cut
        would (SIGKILL to the supervisor alone gives its workers SIGTERM, and they drain;
        a socket held on would queue connects for the next start, as systemd does for a
        crashed service, which is the kinder case)."""
        if self.proc is not None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def wait(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)


def make_hosts(opts: Options, root: Path, port: int, proxy: bool) -> list[Host]:
    hosts = []
    for i in range(opts.hosts):
        address = f"127.0.0.{11 + i}"
        argv = [sys.executable, "-m", "c10k", "serve", str(root)]
        argv += ["--workers", str(opts.workers), "--health", "--drain-delay", str(opts.drain_delay)]
        argv += [] if proxy else ["--trusted-proxy", "127.0.0.1"]
        hosts.append(Host(address, port, argv, "proxy" if proxy else "http"))
    return hosts


# -- the balancers ------------------------------------------------------------------------
def haproxy_config(hosts: list[Host], port: int, stats: Path, retries: bool) -> str:
    retry = (
        "  retries 3\n  option redispatch 1\n  retry-on all-retryable-errors\n"
        if retries
        else "  retries 0\n"
    )
    servers = "".join(
        f"  server h{i} {h.address}:{h.port} send-proxy-v2 check check-send-proxy "
        f"inter {CHECK_MS}ms fall 1 rise 2 observe layer4 error-limit 1 on-error mark-down\n"
        for i, h in enumerate(hosts)
    )
    return (
        f"global\n  stats socket {stats} mode 600 level admin\n"
        "  log stdout format raw local0\n"
        f'defaults\n  mode http\n  log global\n  log-format "{HAPROXY_LOG_FORMAT}"\n'
        "  timeout connect 2s\n  timeout client 30s\n"
        "  timeout server 30s\n"
        f"frontend fe\n  bind 127.0.0.1:{port}\n  default_backend be\n"
        f"backend be\n  balance roundrobin\n{retry}"
        "  option httpchk GET /_c10k/health\n  http-check expect status 200\n" + servers
    )


def nginx_config(hosts: list[Host], port: int, d: Path, retries: bool) -> str:
    nxt = "error timeout http_502 http_503" if retries else "off"
    servers = "".join(
        f"    server {h.address}:{h.port} max_fails=1 fail_timeout={NGINX_FAIL_S}s;\n"
        for h in hosts
    )
    return (
        f"daemon off; master_process off; worker_processes 1; error_log {d}/error.log info;\n"
        f"pid {d}/nginx.pid;\nevents {{ worker_connections 4096; }}\n"
        f"http {{ log_format up '{NGINX_LOG_FORMAT}'; access_log {d}/access.log up;\n"
        f"  client_body_temp_path {d}; proxy_temp_path {d};\n"
        f"  fastcgi_temp_path {d}; uwsgi_temp_path {d}; scgi_temp_path {d};\n"
        f"  upstream hosts {{\n{servers}    keepalive 32;\n  }}\n"
        f"  server {{ listen 127.0.0.1:{port};\n"
        "    location / { proxy_pass http://hosts; proxy_http_version 1.1;\n"
        '      proxy_set_header Connection ""; proxy_set_header X-Forwarded-For $remote_addr;\n'
        f"      proxy_next_upstream {nxt}; }} }} }}\n"
    )


class Balancer:
    def __init__(self, kind: str, hosts: list[Host], port: int, d: Path, retries: bool) -> None:
        self.kind, self.port = kind, port
        cfg = d / f"{kind}.cfg"
        if kind == "haproxy":
            self.stats = d / "haproxy.sock"
            cfg.write_text(haproxy_config(hosts, port, self.stats, retries))
            argv = [sbin_binary("haproxy") or "haproxy", "-db", "-f", str(cfg)]
        else:
            cfg.write_text(nginx_config(hosts, port, d, retries))
            argv = [sbin_binary("nginx") or "nginx", "-c", str(cfg)]
        with open(d / f"{kind}.out", "wb") as out:  # HAProxy's log lines and alerts
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
        self.hosts = len(hosts)

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.kind} exited with status {self.proc.returncode}")
            if self.up() == self.hosts:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.kind}: not every host up after {timeout:.0f} s")

    def up(self) -> int:
        """Hosts the balancer would send to now (nginx: all, once it answers)."""
        if self.kind == "nginx":
            try:
                return self.hosts if _get(self.port)[0] == 200 else 0
            except OSError:
                return 0
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(str(self.stats))
                s.sendall(b"show servers state be\n")
                out = b"".join(iter(lambda: s.recv(65536), b""))
        except OSError:
            return 0
        rows = [line.split() for line in out.decode().splitlines() if line[:1].isdigit()]
        return sum(1 for row in rows if len(row) > 5 and row[5] == "2")

    def counters(self) -> dict[str, dict[str, int]]:
        """HAProxy's per-server counters now (nginx has none to read: its log is used)."""
        return cluster_logs.haproxy_counters(self.stats) if self.kind == "haproxy" else {}

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=15)


def _get(port: int) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/small.bin")
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


# -- the load -----------------------------------------------------------------------------
@dataclass
class Load:
    port: int
    clients: int
    start: float = field(default_factory=time.monotonic)
    phase: str = "steady"
    events: list[tuple[float, str, bool, float, str]] = field(default_factory=list)
    # each failure: wall-clock send time, phase, the client's port (HAProxy's %cp), why
    failures: list[tuple[float, str, int, str]] = field(default_factory=list)
    stop_flag: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def run(self) -> None:
        self.threads = [
            threading.Thread(target=self._client, daemon=True) for _ in range(self.clients)
        ]
        for t in self.threads:
            t.start()

    def _client(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        while not self.stop_flag.is_set():
            t0, wall, port = time.monotonic(), time.time(), 0
            try:
                if conn.sock is None:
                    conn.connect()
                port = conn.sock.getsockname()[1]
                conn.request("GET", "/small.bin")
                r = conn.getresponse()
                body = r.read()
                ok, why = (r.status == 200 and body == SMALL), f"status {r.status}"
                if r.getheader("Connection", "").lower() == "close":
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:
                ok, why = False, type(exc).__name__
                conn.close()
            t1 = time.monotonic()
            if not ok:
                self.failures.append((round(wall, 6), self.phase, port, why))
            self.events.append(
                (t1 - self.start, self.phase, ok, (t1 - t0) * 1e3, "" if ok else why)
            )
        conn.close()

    def stop(self) -> None:
        self.stop_flag.set()
        for t in self.threads:
            t.join(timeout=15)


# -- one run: a balancer, a retry setting, the phases ------------------------------------
def run_one(opts: Options, kind: str, retries: bool, root: Path, d: Path) -> dict[str, Any]:
    port, lb_port = free_port("127.0.0.11"), free_port("127.0.0.1")
    hosts = make_hosts(opts, root, port, proxy=kind == "haproxy")
    for h in hosts:
        h.start()
    lb = Balancer(kind, hosts, lb_port, d, retries)
    load = Load(lb_port, opts.clients)
    try:
        lb.wait_ready()
        load.run()
        marks, kill = _phases(opts, hosts, lb, load)
    finally:
        stop_all(load, lb, hosts)
    out = _summary(kind, retries, load, marks)
    out["kill"] = _kill_evidence(kind, d, hosts[0], kill, load)
    out["balancer_log"] = cluster_logs.notable(kind, d)
    return out


def stop_all(load: Load, lb: Balancer, hosts: list[Host]) -> None:
    """The end of a run: the clients, the balancer, then every host (SIGTERM, SIGKILL if
    it does not go) and the sockets held for them."""
    load.stop()
    lb.stop()
    for h in hosts:
        h.signal(signal.SIGTERM)
    for h in hosts:
        try:
            h.wait()
        except subprocess.TimeoutExpired:
            h.signal(signal.SIGKILL)
        h.close()


def _phases(
    opts: Options, hosts: list[Host], lb: Balancer, load: Load
) -> tuple[list[tuple[str, float]], dict[str, Any]]:
    marks: list[tuple[str, float]] = []

    def phase(name: str) -> None:
        load.phase = name
        marks.append((name, time.monotonic() - load.start))

    phase("steady")
    time.sleep(opts.phase_seconds)
    phase("restart")
    for h in hosts:
        h.signal(signal.SIGTERM)
        h.wait()
        h.start()
        _wait_until(lambda: lb.up() == len(hosts), 20)
        time.sleep(NGINX_FAIL_S + 0.5 if lb.kind == "nginx" else 0)
    phase("reload")
    for h in hosts:
        h.signal(signal.SIGHUP)
        time.sleep(opts.phase_seconds / len(hosts))
    phase("kill")
    kill: dict[str, Any] = {"counters_before": lb.counters(), "at": time.time()}
    hosts[0].crash()
    hosts[0].wait()
    time.sleep(opts.phase_seconds)
    hosts[0].start()
    _wait_until(lambda: lb.up() == len(hosts), 20)
    kill |= {"counters_after": lb.counters(), "end": time.time()}
    phase("steady-after")
    time.sleep(opts.phase_seconds)
    return marks, kill


def _kill_evidence(
    kind: str, d: Path, host: Host, kill: dict[str, Any], load: Load
) -> dict[str, Any]:
    """What the balancer says about the kill phase: requests it sent to the killed host
    that were not answered (the goal's bound), with its counters' growth, and the clients'
    failures (send time in ms after the kill, the client's port, why)."""
    if kind == "haproxy":
        name = f"h{int(host.address.rsplit('.', 1)[1]) - 11}"
        sent = cluster_logs.haproxy_unanswered(
            kill["counters_before"], kill["counters_after"], name
        )
    else:
        sent = cluster_logs.nginx_unanswered(
            d / "access.log", f"{host.address}:{host.port}", kill["at"], kill["end"]
        )
    fails = [f for f in load.failures if f[1] == "kill"]
    return {
        "host": host.address,
        "on_killed_host": sent,
        "failures": [[round((f[0] - kill["at"]) * 1e3, 1), f[2], f[3]] for f in fails],
    }


def _wait_until(cond: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        time.sleep(0.05)


def _summary(
    kind: str, retries: bool, load: Load, marks: list[tuple[str, float]]
) -> dict[str, Any]:
    bounds = {
        name: (t, marks[i + 1][1] if i + 1 < len(marks) else None)
        for i, (name, t) in enumerate(marks)
    }
    phases = {}
    for name, (t0, t1) in bounds.items():
        evs = [e for e in load.events if e[1] == name]
        span = (t1 if t1 is not None else max((e[0] for e in load.events), default=t0)) - t0
        lat = sorted(e[3] for e in evs if e[2])
        fails = [e for e in evs if not e[2]]
        phases[name] = {
            "requests": len(evs),
            "failed": len(fails),
            "seconds": round(span, 2),
            "rate": round(len(evs) / span, 1) if span > 0 else 0.0,
            "p50_ms": round(statistics.median(lat), 2) if lat else None,
            "p99_ms": round(lat[int(0.99 * (len(lat) - 1))], 2) if lat else None,
            "failures": sorted({e[4] for e in fails}),
        }
    series = _series(load.events)
    return {"balancer": kind, "retries": "on" if retries else "off", "phases": phases,
            "marks": marks, "series": series}  # fmt: skip


def _series(events: list[tuple[float, str, bool, float, str]]) -> list[list[float]]:
    """Served and failed requests per 0.25 s (the plot's data; every request would be
    hundreds of thousands of rows)."""
    end = max((e[0] for e in events), default=0.0)
    rows = [[round(i * 0.25, 2), 0, 0] for i in range(int(end / 0.25) + 1)]
    for t, _, ok, _, _ in events:
        rows[int(t / 0.25)][1 if ok else 2] += 1
    return rows


# -- the whole run, and its reports -------------------------------------------------------
def goals(run_: dict[str, Any]) -> list[str]:
    ph, name = run_["phases"], f"{run_['balancer']}, retries {run_['retries']}"
    out = []
    for p in ("restart", "reload"):
        n = ph[p]["failed"]
        out.append(f"{name}: {p}: {n} failed (goal 0): {'met' if n == 0 else 'NOT met'}")
    kill = run_["kill"]
    n, limit = ph["kill"]["failed"], 0
    why = ""
    if run_["retries"] == "off":
        # the bound is counted by the balancer, not assumed (see cluster_logs)
        limit = kill["on_killed_host"]["unanswered"]
        why = f", the requests {run_['balancer']} sent to the killed host and got no answer for"
    sent = sorted(f[0] for f in kill["failures"])
    when = (
        f"; sent {sent[0]:+.1f} to {sent[-1]:+.1f} ms from the kill "
        f"({sum(1 for t in sent if t < 0)} before it)"
        if sent
        else ""
    )
    verdict = "met" if n <= limit else "NOT met"
    out.append(f"{name}: kill: {n} failed (goal <= {limit}{why}){when}: {verdict}")
    return out


def missing(opts: Options) -> list[str]:
    need = {"haproxy": "haproxy", "nginx": "nginx"}
    return [
        f"{b}: not installed (apt-get install {need[b]})"
        for b in opts.balancers
        if sbin_binary(b) is None
    ]


def run(opts: Options) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="c10k-cluster-") as tmp:
        root = Path(tmp) / "www"
        root.mkdir()
        (root / "small.bin").write_bytes(SMALL)
        runs = []
        for kind in opts.balancers:
            for retries in opts.retries:
                d = Path(tmp) / f"{kind}-{retries}"
                d.mkdir()
                print(f"cluster: {kind}, retries {retries} ...", file=sys.stderr, flush=True)
                runs.append(run_one(opts, kind, retries == "on", root, d))
    return {"kind": "cluster", "hosts": opts.hosts, "workers": opts.workers,
            "clients": opts.clients, "phase_seconds": opts.phase_seconds,
            "drain_delay": opts.drain_delay, "runs": runs,
            "goals": [g for r in runs for g in goals(r)]}  # fmt: skip


def markdown(doc: dict[str, Any], plot: str | None) -> str:
    lines = [
        "# c10k bench cluster",
        "",
        f"{doc['hosts']} c10k hosts (127.0.0.11...; {doc['workers']} workers each, `--health "
        f"--drain-delay {doc['drain_delay']}`) behind each balancer; {doc['clients']} keep-alive "
        f"clients; phases of {doc['phase_seconds']} s. All on one machine: correctness under "
        "restarts and failures, not scaling.",
        "",
        "| balancer | retries | phase | requests | failed | req/s | p50 ms | p99 ms | failures |",
        "|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in doc["runs"]:
        for name, p in r["phases"].items():
            lines.append(
                f"| {r['balancer']} | {r['retries']} | {name} | {p['requests']} | {p['failed']} "
                f"| {p['rate']} | {p['p50_ms']} | {p['p99_ms']} | {', '.join(p['failures'])} |"
            )
    lines += ["", *(f"- goal: {g}" for g in doc["goals"])]
    for r in doc["runs"]:
        lines += _evidence(r)
    if plot:
        lines += ["", f"![{plot}]({plot})"]
    return "\n".join(lines) + "\n"


def _evidence(r: dict[str, Any]) -> list[str]:
    """The balancer's own lines for failed requests (the first few), and its count of
    what it sent to the killed host: what the table's failures are checked against."""
    failed = [ln for ln in r.get("balancer_log", []) if ln[:1].isdigit()]
    head = f"### {r['balancer']}, retries {r['retries']}: the balancer's record"
    out = [
        "",
        head,
        "",
        f"On the killed host ({r['kill']['host']}): `{r['kill']['on_killed_host']}`.",
    ]
    if failed:
        out += [
            "",
            f"Lines not a plain 200 ({len(failed)}; the first {min(len(failed), 12)}):",
        ]
        out += ["", "```", *failed[:12], "```"]
    return out


def render_plot(doc: dict[str, Any], out: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = doc["runs"]
    fig, axes = plt.subplots(len(runs), 1, figsize=(10, 2.6 * len(runs)), squeeze=False)
    for ax, r in zip(axes[:, 0], runs, strict=True):
        _plot_run(ax, r)
    axes[-1, 0].set_xlabel("seconds")
    fig.tight_layout()
    name = "cluster-over-time.png"
    fig.savefig(out / name, dpi=100)
    plt.close(fig)
    return name


def _plot_run(ax: Any, r: dict[str, Any]) -> None:
    xs = [row[0] for row in r["series"]]
    ax.plot(xs, [row[1] * 4 for row in r["series"]], label="served/s")  # 0.25 s buckets
    failed = [(x, row[2]) for x, row in zip(xs, r["series"], strict=True) if row[2]]
    twin = ax.twinx()  # failures are a handful among thousands: their own axis
    twin.bar([x for x, _ in failed], [n for _, n in failed], width=0.25, align="edge",
             color="red", label="failed (per 0.25 s)")  # fmt: skip
    twin.set_ylim(bottom=0, top=max([n for _, n in failed] + [4]) * 1.2)
    twin.legend(fontsize=7, loc="lower left")
    for name, t in r["marks"]:
        ax.axvline(t, color="grey", linestyle=":")
        ax.text(t, ax.get_ylim()[1] * 0.9, name, fontsize=7)
    ax.set_title(f"{r['balancer']}, retries {r['retries']}", fontsize=9)
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=7, loc="lower right")


def main(opts: Options, plots: bool = True) -> int:
    problems = missing(opts)
    if problems:
        for p in problems:
            print(f"c10k bench cluster: {p}", file=sys.stderr)
        return 2
    doc = run(opts)
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    plot = render_plot(doc, opts.out) if plots else None
    (opts.out / "results.md").write_text(markdown(doc, plot))
    print(markdown(doc, None))
    print(f"wrote {opts.out / 'results.json'}, {opts.out / 'results.md'}")
    return 0  # goals not met are results, reported above, not errors of the run
