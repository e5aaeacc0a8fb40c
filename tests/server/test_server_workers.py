"""Worker processes, listeners and the supervisor (c10k.server.process and its kin).

Every server here is ``python -m c10k serve --workers N`` in a subprocess. Which worker
holds a connection is read from the kernel: the server side of each client socket is found
in /proc/net/tcp (its inode) and then among the workers' /proc/PID/fd links. Worker PIDs
are the supervisor's children from /proc/*/stat. Waits are bounded polls; nothing asserts
how fast anything is.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from c10k.core import Acceptor, Loop
from c10k.core.listener import (
    bind_socket,
    bind_unix_socket,
    exclusive_accept_flag,
    remove_unix_socket,
    reuse_port_supported,
    unix_socket_identity,
)
from c10k.server.config import ServerConfig
from c10k.server.listeners import listen_addresses, parse_listen
from c10k.server.process import per_process_cap, plan_workers
from c10k.server.supervisor import COUNT_INTERVAL, RestartPolicy, worker_config
from helpers import (
    REPO,
    ServerProcess,
    backend_params,
    big_content,
    connect,
    make_docroot,
    read_response,
)

GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
SMALL = b"0123456789" * 51 + b"AB"


# -- helpers ---------------------------------------------------------------------------------
def children(pid: int) -> set[int]:
    """Live (non-zombie) child processes of ``pid``."""
    found = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.add(int(entry))
    return found


def wait_until(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def owner_pids(port: int, clients: list[socket.socket], pids: set[int]) -> list[int | None]:
    """The worker PID holding the server side of each client connection."""
    inode_pid: dict[int, int] = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if link.startswith("socket:["):
                inode_pid[int(link[8:-1])] = pid
    server_side: dict[int, int] = {}  # client port -> inode of the accepted socket
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            cols = line.split()
            local_port = int(cols[1].split(":")[1], 16)
            remote_port = int(cols[2].split(":")[1], 16)
            if local_port == port:
                server_side[remote_port] = int(cols[9])
    return [inode_pid.get(server_side.get(c.getsockname()[1], -1)) for c in clients]


def get(port: int, path: str = "/small.txt", host: str = "127.0.0.1") -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Hammer(threading.Thread):
    """GETs on a new connection each, back to back, until stopped; records failures."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                status, body = get(self.port)
                if status == 200 and body == SMALL:
                    self.ok += 1
                else:
                    self.failures.append(f"status {status}, {len(body)} bytes")
            except Exception as exc:
                self.failures.append(repr(exc))
            time.sleep(0.002)

    def stop(self) -> None:
        self.halt.set()
        self.join(30)


@pytest.fixture
def workers2(docroot: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(docroot, "epoll", "--workers", "2")
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-3000:]


# -- pure parts --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("127.0.0.1:8080", (socket.AF_INET, ("127.0.0.1", 8080))),
        ("[::1]:0", (socket.AF_INET6, ("::1", 0))),
        ("[::]:443", (socket.AF_INET6, ("::", 443))),
        (":80", (socket.AF_INET, ("0.0.0.0", 80))),
        ("8000", (socket.AF_INET, ("10.1.2.3", 8000))),  # on default_host (--bind)
        ("unix:/run/c10k.sock", (socket.AF_UNIX, "/run/c10k.sock")),
        ("localhost:81", None),  # resolved: AF_INET or AF_INET6 loopback
    ],
)
def test_process_parse_listen_accepts(spec: str, expected: object) -> None:
    got = parse_listen(spec, default_host="10.1.2.3")
    if expected is None:
        family, addr = got
        assert family in (socket.AF_INET, socket.AF_INET6)
        assert isinstance(addr, tuple)
        assert addr[1] == 81
    else:
        assert got == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("unix:", "unix:/path"),
        ("::1:8080", "brackets"),
        ("[::1]8080", "[IPV6]:PORT"),
        ("[nothost]:80", "not an IPv6 address"),
        ("127.0.0.1:http", "port must be a number"),
        ("127.0.0.1:70000", "port must be a number"),
        ("localhost", "expected HOST:PORT"),
        ("", "expected HOST:PORT"),
        ("no-such-host.invalid:80", "cannot resolve"),
    ],
)
def test_process_parse_listen_refuses(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_listen(spec)


def test_process_listen_addresses_default_to_host_and_port() -> None:
    assert listen_addresses(ServerConfig(host="::1", port=0)) == [(socket.AF_INET6, ("::1", 0))]
    assert listen_addresses(ServerConfig(host="127.0.0.1", port=8000, listen=["9000"])) == [
        (socket.AF_INET, ("127.0.0.1", 9000))
    ]


def test_process_restart_policy_backs_off_and_resets() -> None:
    p = RestartPolicy(base=0.1, cap=5.0, stable=10.0)
    assert [p.next_delay(0.2, served=False) for _ in range(8)] == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.6,
        3.2,
        5.0,
        5.0,
    ]
    assert p.next_delay(9.0, served=True) == 5.0  # not stable long enough: still capped
    assert p.next_delay(11.0, served=True) == 0.1  # served 11 s: start over
    assert p.next_delay(11.0, served=False) == 0.2  # never ready: a failure, however long


def test_process_plan_workers_scales_to_max_connections() -> None:
    cap, _ = per_process_cap()
    cores = len(os.sched_getaffinity(0))
    assert plan_workers(ServerConfig(workers=0)) == (cores, "one per core")
    n, note = plan_workers(ServerConfig(workers=0, max_connections=cap * cores + 1))
    assert n == cores + 1
    assert note.startswith(f"not one per core ({cores}): {cores + 1} hold --max-connections")
    n, note = plan_workers(ServerConfig(workers=2, max_connections=cap * 2 + 1))
    assert n == 2
    assert "WARNING" in note
    assert worker_config(ServerConfig(max_connections=10), 3).max_connections == 4
    with pytest.raises(ValueError, match="raise the hard limit"):
        plan_workers(ServerConfig(workers=0, max_connections=cap * 1000))
    # select watches fds below FD_SETSIZE (1024) only: 960 connections per worker.
    assert per_process_cap("select")[0] == 1024 - 64
    n, _ = plan_workers(ServerConfig(workers=0, backend="select", max_connections=5000))
    assert n == max(cores, 6)


# -- workers -----------------------------------------------------------------------------------
def test_process_workers_all_serve(workers2: ServerProcess) -> None:
    pids = children(workers2.pid)
    assert len(pids) == 2
    assert "2 workers" in workers2.banner
    assert "SO_REUSEPORT" in workers2.banner
    clients = [connect(workers2.port) for _ in range(24)]
    try:
        for c in clients:
            c.sendall(GET)
            assert read_response(c, bytearray())[2] == SMALL
        owners = owner_pids(workers2.port, clients, pids)
        assert None not in owners
        assert set(owners) == pids  # 24 connections over a 4-tuple hash: both got some
    finally:
        for c in clients:
            c.close()


def test_process_killed_worker_is_restarted(docroot: Path) -> None:
    workers2 = ServerProcess(docroot, "epoll", "--workers", "2")
    pids = children(workers2.pid)
    clients = [connect(workers2.port) for _ in range(24)]
    try:
        for c in clients:
            c.sendall(GET)
            read_response(c, bytearray())
        owners = owner_pids(workers2.port, clients, pids)
        victim = owners[0]
        assert victim is not None
        survivor_conn = next(c for c, o in zip(clients, owners, strict=True) if o != victim)
        time.sleep(4 * COUNT_INTERVAL)  # its count reaches shared memory (not a speed check)
        os.kill(victim, signal.SIGKILL)
        # The survivor serves throughout, on the keep-alive connection it already holds.
        buf = bytearray()
        served = 0

        def restarted() -> bool:
            nonlocal served
            survivor_conn.sendall(GET)
            assert read_response(survivor_conn, buf)[2] == SMALL
            served += 1
            now = children(workers2.pid)
            return len(now) == 2 and victim not in now

        assert wait_until(restarted), children(workers2.pid)
        assert served >= 1
        new = children(workers2.pid) - pids
        assert len(new) == 1
        # Both slots serve again: new connections spread over the survivor and the new one.
        fresh = [connect(workers2.port) for _ in range(24)]
        try:
            for c in fresh:
                c.sendall(GET)
                assert read_response(c, bytearray())[2] == SMALL
            assert (
                set(owner_pids(workers2.port, fresh, children(workers2.pid)))
                == (pids - {victim}) | new
            )
        finally:
            for c in fresh:
                c.close()
    finally:
        for c in clients:
            c.close()
        code, out, err = workers2.stop()
    assert code == 0, err[-3000:]
    # The victim's requests count too: it copied them to shared memory before it died.
    assert f"c10k stopped after {24 + served + 24} requests" in out


def start_in_own_session(root: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    """``c10k serve`` as the leader of a new process group, like a shell job, so that a
    test can do what Ctrl-C does: signal the whole group."""
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "c10k", "serve", str(root), "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    assert proc.stdout is not None
    m = re.search(rb"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
    if m is None:
        proc.kill()
        raise RuntimeError(f"server did not start: {proc.communicate()[1][-2000:]!r}")
    proc.stdout.readline()
    return proc, int(m.group(1))


@pytest.mark.timed
@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("how", ["sigterm", "ctrl-c"])
def test_process_sigterm_drains_slow_download(tmp_path: Path, how: str, backend: str) -> None:
    root = make_docroot(tmp_path / "www")
    # 8 MB: more than the kernel can hold for a slow reader (tcp_wmem max is 4 MiB on
    # common kernels, and the reader's window is 4 KiB), so the worker is still sending
    # when the signal comes. A 1 MB body would already sit in the socket buffer and
    # survive even a worker that stops at once.
    huge = big_content() * 8
    (root / "huge.bin").write_bytes(huge)
    args = ("--backend", backend, "--workers", "2", "--shutdown-timeout", "30")
    proc, port = start_in_own_session(root, *args)
    try:
        idle = connect(port)
        idle.sendall(GET)
        read_response(idle, bytearray())
        slow = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.settimeout(10)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        got = bytearray()
        while len(got) < 65536:
            got += slow.recv(4096)
        if how == "sigterm":
            proc.send_signal(signal.SIGTERM)
        else:
            # The terminal sends SIGINT to every process of the job. Workers ignore it and
            # wait for the supervisor's SIGTERM: had they taken SIGINT as a first signal,
            # the SIGTERM would be a second one, which stops at once.
            os.killpg(proc.pid, signal.SIGINT)
        idle.settimeout(10)
        assert idle.recv(100) == b""  # the idle keep-alive is closed
        idle.close()
        time.sleep(0.5)  # the workers are draining now
        while chunk := slow.recv(65536):  # to EOF: the worker closes it after the body
            got += chunk
        slow.close()
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert b"200 OK" in head
        assert len(body) == len(huge)
        assert body == huge
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()[-3000:]
        assert "c10k stopped after 2 requests" in out.decode()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()


def test_process_sigterm_deadline_stops_a_stalled_download(docroot: Path) -> None:
    srv = ServerProcess(docroot, "epoll", "--workers", "2", "--shutdown-timeout", "1")
    stalled = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        stalled.connect(("127.0.0.1", srv.port))
        stalled.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        stalled.recv(100)  # it started; now never read again
        srv.proc.send_signal(signal.SIGTERM)
        out, err = srv.proc.communicate(timeout=15)  # 1 s drain + kill margin, bounded
        # The download was cut: the operator is told, and the exit status says so.
        assert srv.proc.returncode == 1, err.decode()[-3000:]
        assert "; 1 response cut short" in out.decode()
    finally:
        stalled.close()
        srv.stop(signal.SIGKILL)


@pytest.mark.parametrize("backend", backend_params())
def test_process_sighup_reloads_without_failed_requests(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--workers", "2")
    hammer = Hammer(srv.port)
    try:
        old = children(srv.pid)
        hammer.start()
        assert wait_until(lambda: hammer.ok >= 20)
        srv.proc.send_signal(signal.SIGHUP)

        def replaced() -> bool:
            now = children(srv.pid)
            return len(now) == 2 and not now & old

        assert wait_until(replaced), children(srv.pid)
        after = hammer.ok
        assert wait_until(lambda: hammer.ok >= after + 20)
    finally:
        hammer.stop()
        code, out, err = srv.stop()
    assert hammer.failures == []
    assert code == 0, err[-3000:]
    # Every request is counted once: old workers report at their exit, new ones at stop.
    assert f"c10k stopped after {hammer.ok:,} requests" in out


def test_process_crash_looping_worker_backs_off(tmp_path: Path) -> None:
    root = make_docroot(tmp_path / "www")
    srv = ServerProcess(root, "epoll", "--workers", "2")
    try:
        victim = min(children(srv.pid))
        # A worker that starts now fails: its root is gone (StaticFiles refuses it).
        root.rename(tmp_path / "moved")
        os.kill(victim, signal.SIGKILL)
        time.sleep(2.5)  # a window for failed restarts; counted below, not timed
        (tmp_path / "moved").rename(root)
        assert wait_until(lambda: len(children(srv.pid)) == 2)
        assert get(srv.port)[0] == 200
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-3000:]
    delays = [float(d) for d in re.findall(r"restarting in (\d+\.\d) s", err)]
    failed = err.count("(NotADirectoryError: ")  # one per failed start
    # Back-off doubles from 0.1 s: 2.5 s hold at most 0.1+0.2+0.4+0.8 (+1.6 started).
    assert delays[:3] == [0.1, 0.2, 0.4], err[-3000:]
    assert delays == [min(0.1 * 2**i, 5.0) for i in range(len(delays))]
    assert 2 <= failed <= 6, err[-3000:]  # a spinning supervisor would fork hundreds


def test_process_auto_workers_honour_max_connections(docroot: Path) -> None:
    cap, _ = per_process_cap()
    cores = len(os.sched_getaffinity(0))
    want = cap * cores + 1
    srv = ServerProcess(docroot, "epoll", "--workers", "0", "--max-connections", str(want))
    try:
        assert f"{cores + 1} workers, pids " in srv.banner
        assert f"(not one per core ({cores}): {cores + 1} hold --max-connections" in srv.banner
        assert len(children(srv.pid)) == cores + 1
        assert get(srv.port)[0] == 200
    finally:
        assert srv.stop()[0] == 0


# -- listeners ---------------------------------------------------------------------------------
def _ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("workers", ["1", "2"])
def test_process_listen_several_addresses(docroot: Path, tmp_path: Path, workers: str) -> None:
    if not _ipv6_loopback():
        pytest.skip("no IPv6 loopback here")
    path = str(tmp_path / "c10k.sock")
    stale = socket.socket(socket.AF_UNIX)  # a socket file left by a crashed server
    stale.bind(path)
    stale.close()
    srv = ServerProcess(
        docroot,
        "epoll",
        "--workers",
        workers,
        *("--listen", "127.0.0.1:0", "--listen", "127.0.0.1:0"),
        *("--listen", "[::1]:0", "--listen", f"unix:{path}"),
    )
    try:
        first = srv.banner.splitlines()[0]
        ports = [int(p) for p in re.findall(r"http://127\.0\.0\.1:(\d+)/", first)]
        v6 = re.search(r"http://\[::1\]:(\d+)/", first)
        assert len(set(ports)) == 2, first
        assert v6 is not None, first
        assert f"unix:{path}" in first
        for port in ports:
            assert get(port) == (200, SMALL)
        assert get(int(v6.group(1)), host="::1") == (200, SMALL)
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        assert curl_unix(path, "/small.txt") == SMALL
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-3000:]
    assert not os.path.exists(path)  # removed at exit


def curl_unix(path: str, target: str) -> bytes:
    return subprocess.run(
        ["curl", "-sS", "--max-time", "20", "--unix-socket", path, f"http://c10k{target}"],
        capture_output=True,
        timeout=30,
        check=True,
    ).stdout


def test_process_unix_socket_serves_large_file(docroot: Path, tmp_path: Path) -> None:
    path = str(tmp_path / "big.sock")
    srv = ServerProcess(docroot, "epoll", "--listen", "127.0.0.1:0", "--listen", f"unix:{path}")
    try:
        assert curl_unix(path, "/big.bin") == big_content()
    finally:
        assert srv.stop()[0] == 0


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    return subprocess.run(
        [sys.executable, "-m", "c10k", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )


def test_process_listen_refuses_occupied_addresses(
    docroot: Path, tmp_path: Path, workers2: ServerProcess
) -> None:
    # SO_REUSEPORT would let a second server join the first one's port and take half its
    # clients; it is refused instead.
    r = _serve(str(docroot), "--workers", "2", "--listen", f"127.0.0.1:{workers2.port}")
    assert r.returncode == 1
    assert "cannot listen on 127.0.0.1:" in r.stderr
    live = tmp_path / "live.sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(live))
        s.listen()
        r = _serve(str(docroot), "--listen", f"unix:{live}")
        assert r.returncode == 1
        assert "already listens" in r.stderr
    plain = tmp_path / "plain"
    plain.write_text("not a socket")
    r = _serve(str(docroot), "--workers", "2", "--listen", f"unix:{plain}")
    assert r.returncode == 1
    assert "is not a socket" in r.stderr
    assert plain.read_text() == "not a socket"  # never removed
    # A failed bind undoes the ones before it, Unix socket file included.
    partial = tmp_path / "partial.sock"
    r = _serve(
        str(docroot), "--listen", f"unix:{partial}", "--listen", f"127.0.0.1:{workers2.port}"
    )
    assert r.returncode == 1
    assert not partial.exists()
    r = _serve(str(docroot), "--listen", "[::1]8080")
    assert r.returncode == 2
    assert "[IPV6]:PORT" in r.stderr


# -- reload with new settings (the launcher stands in for the CLI's --config re-read) ------
LAUNCHER = """
import json, logging, sys
from c10k.server.config import ServerConfig
from c10k.server.process import serve
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
def load():
    with open(sys.argv[1]) as f:
        return ServerConfig(**json.load(f))
sys.exit(serve(load(), print, reload_config=load))
"""


def test_process_sighup_applies_reloaded_config(tmp_path: Path) -> None:
    a = tmp_path / "a"
    b = tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "only-a.txt").write_text("a")
    (b / "only-b.txt").write_text("b")
    cfg = tmp_path / "c10k.json"
    cfg.write_text(json.dumps({"root": str(a), "port": 0, "workers": 2}))
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
        assert m is not None
        port = int(m.group(1))
        assert get(port, "/only-a.txt") == (200, b"a")
        old = children(proc.pid)
        # A new root applies; a new port cannot (the sockets are the supervisor's).
        cfg.write_text(json.dumps({"root": str(b), "port": 1, "workers": 2}))
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: len(children(proc.pid)) == 2 and not children(proc.pid) & old)
        assert get(port, "/only-b.txt") == (200, b"b")
        assert get(port, "/only-a.txt")[0] == 404
        # An invalid configuration keeps the running workers.
        current = children(proc.pid)
        cfg.write_text(json.dumps({"root": str(a), "port": 0, "workers": 2, "backend": "nope"}))
        proc.send_signal(signal.SIGHUP)
        time.sleep(1.0)  # time to (wrongly) start workers; checked, not timed
        assert children(proc.pid) == current
        assert get(port, "/only-b.txt") == (200, b"b")
        proc.send_signal(signal.SIGINT)  # Ctrl-C: the same graceful stop as SIGTERM
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "port cannot change without a restart" in err
    assert "the new configuration is invalid; workers kept" in err
    assert "c10k stopped after 4 requests" in out


# -- c10k.core.listener helpers used above ---------------------------------------------------
def test_process_listener_probes() -> None:
    assert reuse_port_supported()  # Linux >= 3.9
    assert exclusive_accept_flag() == getattr(select, "EPOLLEXCLUSIVE", 0)


def test_process_bind_unix_socket_stale_live_and_removal(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(path)
    stale.close()  # the file stays, nobody listens
    sock = bind_unix_socket(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o666
        with pytest.raises(OSError, match="already listens"):
            bind_unix_socket(path)
        ident = unix_socket_identity(path)
        with socket.socket(socket.AF_UNIX) as c:
            c.connect(path)
    finally:
        sock.close()
    # Another server replaced the file (bound beside it and renamed over it, so the two
    # inodes coexisted and differ): not ours to remove.
    other = socket.socket(socket.AF_UNIX)
    other.bind(path + ".new")
    os.rename(path + ".new", path)
    remove_unix_socket(path, ident)
    assert os.path.exists(path)
    remove_unix_socket(path, unix_socket_identity(path))
    assert not os.path.exists(path)
    other.close()


def test_process_workers_stop_when_the_supervisor_dies(docroot: Path) -> None:
    srv = ServerProcess(docroot, "epoll", "--workers", "2")
    workers = children(srv.pid)
    assert len(workers) == 2
    srv.proc.kill()  # not srv.stop(): orphaned workers would hold its pipes open
    srv.proc.wait()

    def gone(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            return True

    try:
        assert wait_until(lambda: all(gone(p) for p in workers))
    finally:
        for pid in workers:  # leave no orphan behind if the test fails
            if not gone(pid):
                os.kill(pid, signal.SIGKILL)
        srv.proc.communicate(timeout=10)


def _epoll_events(epfd: int, fd: int) -> int:
    """The event mask the kernel holds for ``fd`` in epoll instance ``epfd`` (fdinfo)."""
    with open(f"/proc/self/fdinfo/{epfd}") as f:
        for line in f:
            cols = line.split()
            if cols[:1] == ["tfd:"] and int(cols[1]) == fd:
                return int(cols[3], 16)
    raise AssertionError(f"fd {fd} is not in epoll {epfd}")


@pytest.mark.skipif(not hasattr(select, "EPOLLEXCLUSIVE"), reason="no EPOLLEXCLUSIVE here")
@pytest.mark.parametrize(
    ("backend", "exclusive"),
    [("epoll", True), ("epoll-et", False)],  # epoll-et's EPOLLRDHUP: EINVAL, plain fallback
)
def test_process_acceptor_registers_exclusive(backend: str, exclusive: bool) -> None:
    loop = Loop(backend)
    sock = bind_socket("127.0.0.1", 0)
    accepted: list[socket.socket] = []

    def on_accept(conn: socket.socket, _addr: object) -> None:
        accepted.append(conn)
        loop.stop()

    try:
        if not getattr(loop.backend, "exclusive_accept", 0):  # until io_epoll declares it
            setattr(loop.backend, "exclusive_accept", select.EPOLLEXCLUSIVE)  # noqa: B010
        acceptor = Acceptor(loop, sock, on_accept, exclusive=True)
        acceptor.start()
        events = _epoll_events(loop.backend._ep.fileno(), sock.fileno())  # type: ignore[attr-defined]
        assert bool(events & select.EPOLLEXCLUSIVE) == exclusive
        assert events & select.EPOLLIN
        with socket.create_connection(sock.getsockname()[:2], timeout=5):
            timer = threading.Timer(10, loop.stop)  # a bound on the wait, not a speed check
            timer.start()
            loop.run()
            timer.cancel()
        assert len(accepted) == 1
        acceptor.pause()
        acceptor.resume()  # remove + add: EPOLL_CTL_MOD would be EINVAL with the flag
        events = _epoll_events(loop.backend._ep.fileno(), sock.fileno())  # type: ignore[attr-defined]
        assert bool(events & select.EPOLLEXCLUSIVE) == exclusive
        acceptor.close()
    finally:
        for c in accepted:
            c.close()
        sock.close()
        loop.close()


@pytest.mark.parametrize("backend", backend_params())
def test_process_two_workers_on_every_backend(docroot: Path, backend: str) -> None:
    """Every backend and server mode runs as workers on their slot's listener list."""
    srv = ServerProcess(docroot, backend, "--workers", "2", "--listen", "127.0.0.1:0")
    try:
        assert f"backend {backend}" in srv.banner
        assert len(children(srv.pid)) == 2
        assert get(srv.port) == (200, SMALL)
        assert get(srv.port, "/big.bin") == (200, big_content())
    finally:
        code, out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "c10k stopped after 2 requests" in out


HANGING_LAUNCHER = """
import logging, os, sys, time
import c10k.server.process as process
import c10k.server.supervisor as supervisor
from c10k.server.config import ServerConfig
logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
flag, root = sys.argv[1], sys.argv[2]
real_build = supervisor.build_server
def build_server(config, socks, certs=None):
    while os.path.exists(flag):  # a worker that hangs while starting
        time.sleep(0.05)
    return real_build(config, socks, certs)
supervisor.build_server = build_server
supervisor.START_TIMEOUT = 2.0
sys.exit(process.serve(ServerConfig(root=root, port=0, workers=2)))
"""


def test_process_reload_keeps_old_workers_while_new_hang(docroot: Path, tmp_path: Path) -> None:
    flag = tmp_path / "hang"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    proc = subprocess.Popen(
        [sys.executable, "-c", HANGING_LAUNCHER, str(flag), str(docroot)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stdout is not None
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", proc.stdout.readline())
        assert m is not None
        port = int(m.group(1))
        old = children(proc.pid)
        flag.touch()
        proc.send_signal(signal.SIGHUP)
        assert wait_until(lambda: len(children(proc.pid)) == 4)  # 2 old + 2 starting
        # The new ones never report ready: killed after START_TIMEOUT, retried with
        # back-off, while the old ones serve on.
        served = 0

        def retried() -> bool:
            nonlocal served
            assert get(port) == (200, SMALL)
            served += 1
            now = children(proc.pid)
            return old <= now and len(now - old) == 2 and served > 20

        assert wait_until(retried, timeout=20)
        time.sleep(2.5)  # past START_TIMEOUT: the first hanging pair has been killed
        assert old <= children(proc.pid)
        flag.unlink()  # the next attempt starts
        assert wait_until(lambda: not children(proc.pid) & old and len(children(proc.pid)) == 2)
        assert get(port) == (200, SMALL)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-3000:]
    assert "did not start within 2 s: SIGKILL" in err
    assert re.search(r"restarting in 0\.1 s", err)
