"""The io_uring server mode beyond the shared contract: in-process stop from a thread,
several listeners, provided buffers running dry, deep pipelining past the read-ahead
limit, and the syscall budget (no read/write per request: the bytes move inside
io_uring_enter). The contract and policy suites run on ``uring`` too (backend_params)."""

from __future__ import annotations

import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import c10k.server.uring as uring_server
from c10k.core.listener import bind_socket
from c10k.server.config import ServerConfig
from c10k.static import sharedfd
from helpers import ServerProcess, connect, read_response, request

# The module imports everywhere (a missing module must fail, not skip); the mode itself
# runs only where the kernel allows io_uring.
UringServer = uring_server.UringServer
REASON = UringServer.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")

SMALL = b"0123456789" * 51 + b"AB"


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def fds() -> int:
    sharedfd.close_idle()  # big files' idle fds, of this test or an earlier one
    return len(os.listdir("/proc/self/fd"))


class Running:
    """A UringServer in a thread of this process; ``stop()`` from the test thread."""

    def __init__(self, server: object) -> None:
        self.server = server
        self.thread = threading.Thread(
            target=server.serve_forever,  # type: ignore[attr-defined]
            kwargs={"install_signals": False},
        )
        self.thread.start()

    def stop(self) -> None:
        self.server.stop()  # type: ignore[attr-defined]
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


@pytest.fixture
def inproc(docroot: Path) -> Iterator[Running]:
    before = fds()
    run = Running(UringServer(ServerConfig(root=str(docroot), port=0)))
    yield run
    run.stop()
    assert fds() == before  # ring, buffers, listener, wakeup pair, clients: all closed


def test_uring_server_face(inproc: Running) -> None:
    srv = inproc.server
    assert srv.backend_name == "uring"  # type: ignore[attr-defined]
    assert srv.url.startswith("http://127.0.0.1:")  # type: ignore[attr-defined]
    assert srv.capacity > 0  # type: ignore[attr-defined]
    assert "RLIMIT_NOFILE" in srv.capacity_reason  # type: ignore[attr-defined]


def test_uring_stop_from_another_thread_closes_clients(inproc: Running) -> None:
    srv = inproc.server
    with socket.create_connection(srv.address, timeout=5) as c:  # type: ignore[attr-defined]
        for _ in range(3):
            c.sendall(get("/small.txt"))
            status, _, body = read_response(c, bytearray())
            assert (status, body) == (200, SMALL)
        inproc.stop()
        assert c.recv(10) == b""  # closed on the way out
    assert srv.requests == 3  # type: ignore[attr-defined]


def test_uring_serves_every_listener(docroot: Path) -> None:
    socks = [bind_socket("127.0.0.1", 0), bind_socket("127.0.0.1", 0)]
    before = fds()
    run = Running(UringServer(ServerConfig(root=str(docroot)), sock=socks))
    try:
        for s in socks:
            with socket.create_connection(s.getsockname(), timeout=5) as c:
                c.sendall(get("/small.txt"))
                status, _, body = read_response(c, bytearray())
                assert (status, body) == (200, SMALL)
    finally:
        run.stop()
    assert fds() == before - 2  # the server closed the listeners it was given


def test_uring_provided_buffers_running_dry(docroot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Two receive buffers for 30 clients that all send at once: recvs fail with ENOBUFS,
    # are re-armed on the next turn, and every client gets its answer.
    monkeypatch.setattr(uring_server, "BUF_COUNT", 2)
    monkeypatch.setattr(uring_server, "BUF_SIZE", 64)
    run = Running(UringServer(ServerConfig(root=str(docroot), port=0)))
    clients = [socket.create_connection(run.server.address, timeout=5) for _ in range(30)]  # type: ignore[attr-defined]
    try:
        for _ in range(3):
            for c in clients:
                c.sendall(get("/small.txt", "X-Pad: " + "p" * 100 + "\r\n"))
            for c in clients:
                status, _, body = read_response(c, bytearray())
                assert (status, body) == (200, SMALL)
    finally:
        for c in clients:
            c.close()
        run.stop()


def test_uring_deep_pipelining_past_read_ahead(docroot: Path) -> None:
    # 3,000 pipelined requests (>64 KiB of heads: past READ_AHEAD_BYTES, so the multishot
    # recv is cancelled and re-armed) whose answers (~2 MB) overflow the socket buffers
    # (short SENDs) and max_pending_output_bytes: all answered, in order.
    srv = ServerProcess(docroot, "uring")
    try:
        paths = ["/small.txt", "/index.html", "/nope"] * 1000
        with connect(srv.port, timeout=20) as s:
            s.sendall(b"".join(get(p) for p in paths))
            buf = bytearray()
            got = [read_response(s, buf) for _ in paths]
        assert [g[0] for g in got] == [200, 200, 404] * 1000
        assert all(g[2] == SMALL for g in got[::3])
    finally:
        code, out, err = srv.stop()
    assert code == 0, err
    assert "c10k stopped after 3,000 requests" in out


@pytest.mark.alone  # a strace count (test_server_modes.test_server_mode_keepalive_syscall_budget)
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_uring_keepalive_get_makes_no_read_or_write_syscall(docroot: Path, tmp_path: Path) -> None:
    # Completion-based I/O: receiving requests and sending cached responses happens in
    # io_uring_enter; there is no read/recv/write/send syscall per request. Count, never time.
    n = 200
    trace = tmp_path / "trace"
    srv = ServerProcess(
        docroot,
        "uring",
        wrap=[
            "strace",
            "-qq",
            "-f",
            "-e",
            "trace=io_uring_enter,read,write,recvfrom,sendto,recvmsg,sendmsg,readv,writev",
            "-o",
            str(trace),
        ],
    )
    server_pid = int(Path(f"/proc/{srv.pid}/task/{srv.pid}/children").read_text().split()[0])
    try:
        with connect(srv.port) as s:
            buf = bytearray()
            for _ in range(n):
                s.sendall(get("/small.txt"))
                assert read_response(s, buf)[2] == SMALL
    finally:
        os.kill(server_pid, signal.SIGTERM)  # the server, not strace
        _, err = srv.proc.communicate(timeout=30)
    assert srv.proc.returncode == 0, err
    calls = [m.group(1) for m in re.finditer(r"^\d+\s+(\w+)\(", trace.read_text(), re.M)]
    # Everything from the first io_uring_enter on is the serving loop.
    serving = calls[calls.index("io_uring_enter") :]
    io_calls = [c for c in serving if c != "io_uring_enter"]
    # A handful: the one read of small.txt into the cache, the signal's wakeup byte.
    assert len(io_calls) < 10, io_calls
    assert n <= serving.count("io_uring_enter") <= 3 * n + 20


def test_uring_sigterm_drains_in_flight_download(tmp_path: Path) -> None:
    # As the readiness server (test_server_policy): the listener closes at once, the idle
    # keep-alive is closed, a download in progress completes, then the process exits 0;
    # a second signal would stop at once.
    huge = 64 << 20  # more than both socket buffers hold
    with open(tmp_path / "huge.bin", "wb") as f:
        f.truncate(huge)
    (tmp_path / "small.txt").write_bytes(SMALL)
    srv = ServerProcess(tmp_path, "uring", "--shutdown-timeout", "30")
    idle = connect(srv.port)
    idle.sendall(get("/small.txt"))
    assert read_response(idle, bytearray())[0] == 200
    slow = connect(srv.port, timeout=20)
    slow.sendall(get("/huge.bin"))
    first = slow.recv(1000)
    assert first.startswith(b"HTTP/1.1 200 ")
    time.sleep(0.2)  # the server has filled the socket buffers and waits (POLL_ADD)
    srv.proc.send_signal(signal.SIGTERM)
    idle.settimeout(5)
    assert idle.recv(10) == b""  # idle keep-alive closed at once
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):
        connect(srv.port, timeout=1).close()
    assert srv.proc.poll() is None  # still draining
    data = first
    while chunk := slow.recv(1 << 20):
        data += chunk
    assert len(data.partition(b"\r\n\r\n")[2]) == huge
    idle.close()
    slow.close()
    assert srv.proc.wait(timeout=10) == 0
    code, out, err = srv.stop()
    assert code == 0
    assert "Traceback" not in err
    assert "c10k stopped after 2 requests" in out


@pytest.mark.slow
def test_uring_holds_10k_connections(docroot: Path) -> None:
    # The C10K test on io_uring: 10,000 connections, each with a multishot recv armed
    # and no buffer pinned; a new client is still answered; no fd leaked afterwards.
    n = 10_000
    srv = ServerProcess(docroot, "uring")
    client = None
    try:
        baseline = srv.fd_count()
        client = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("c10k_client.py")),
                str(srv.port),
                str(n),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert client.stdout is not None
        assert client.stdin is not None
        assert client.stdout.readline().strip() == f"held {n}"
        assert srv.fd_count() >= baseline + n
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        conn.request("GET", "/small.txt")
        assert conn.getresponse().read() == SMALL
        conn.close()
        client.stdin.write("go\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "closed"
        assert client.wait(timeout=30) == 0
        assert srv.wait_fd_count(baseline, timeout=30) == baseline
    finally:
        if client is not None:
            if client.poll() is None:
                client.kill()
                client.wait()
            for f in (client.stdin, client.stdout):
                if f is not None:
                    f.close()
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]


def test_uring_cap_of_one_passes_the_slot_on(docroot: Path) -> None:
    # At the cap the multishot accept is cancelled; each close re-arms it (also when the
    # close comes before the cancel's completion). 15 clients through one slot, each
    # waiting in the backlog until the previous one leaves.
    srv = ServerProcess(docroot, "uring", "--max-connections", "1")
    try:
        current = connect(srv.port)
        current.sendall(get("/small.txt"))
        assert read_response(current, bytearray())[0] == 200
        for _ in range(15):
            nxt = connect(srv.port)
            nxt.sendall(get("/small.txt"))
            current.close()
            nxt.settimeout(5)
            assert read_response(nxt, bytearray())[0] == 200
            current = nxt
        current.close()
    finally:
        code, out, err = srv.stop()
    assert code == 0, err
    assert "c10k stopped after 16 requests" in out


@pytest.mark.parametrize("path", ["/small.txt", "/big.bin"])
def test_uring_send_timeout_closes_a_stalled_reader(docroot: Path, path: str) -> None:
    # A client that asks and never reads: the SEND (small files, pipelined) or the
    # sendfile's POLL_ADD (big file) stays parked in the kernel; after --send-timeout the
    # connection is closed, the parked op cancelled, and nothing leaks.
    srv = ServerProcess(docroot, "uring", "--send-timeout", "1")
    try:
        baseline = srv.fd_count()
        s = connect(srv.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # More than the server socket's send buffer can absorb (tcp_wmem max: 4 MiB).
        s.sendall(get(path) * (8000 if path == "/small.txt" else 12))
        time.sleep(0.5)
        assert srv.fd_count() >= baseline + 1  # still open, stalled
        assert srv.wait_fd_count(baseline, timeout=10) == baseline
        s.close()
        status, _, body, _ = request(srv.port, get("/small.txt"))
        assert (status, body) == (200, SMALL)
    finally:
        code, _, err = srv.stop()
    assert code == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize("path", ["/small.txt", "/big.bin"])
def test_uring_half_close_gets_the_answer_then_close(docroot: Path, path: str) -> None:
    # The client sends its request and shuts down its write side at once; the EOF is
    # received while the answer is still in flight. The answer must arrive whole, and
    # the server must then close (not wait for the 75 s keep-alive timeout).
    srv = ServerProcess(docroot, "uring")
    try:
        baseline = srv.fd_count()
        with connect(srv.port, timeout=10) as s:
            s.sendall(get(path) * 2)
            s.shutdown(socket.SHUT_WR)
            buf = bytearray()
            size = len(SMALL) if path == "/small.txt" else 1_000_000
            for _ in range(2):
                status, _, body = read_response(s, buf)
                assert (status, len(body)) == (200, size)
            assert srv.wait_fd_count(baseline, timeout=5) == baseline
            assert s.recv(10) == b""
    finally:
        code, _, err = srv.stop()
    assert code == 0, err
