"""Timeouts, connection caps, clean stop on signals: the server's policy, over real sockets."""

from __future__ import annotations

import signal
import socket
import time
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect, read_response, recv_all

pytestmark = pytest.mark.timed  # see conftest.SIBLING_MODES

GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.mark.parametrize("backend", backend_params())
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_server_signal_stops_cleanly(docroot: Path, backend: str, sig: int) -> None:
    srv = ServerProcess(docroot, backend)
    idle = connect(srv.port)  # an open keep-alive connection must not block the stop
    idle.sendall(GET)
    read_response(idle, bytearray())
    code, out, err = srv.stop(sig)
    assert code == 0, err
    assert "c10k stopped after 1 request\n" in out  # 1 request, not "1 requests"
    assert "Traceback" not in err
    assert idle.recv(10) == b""  # the server closed it on the way out
    idle.close()


@pytest.mark.parametrize("backend", backend_params())
def test_server_header_timeout_sends_408(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--header-timeout", "1")
    try:
        with connect(srv.port) as s:
            s.sendall(b"GET /small.txt HTTP/1.1\r\nHost:")  # and never finish
            data = recv_all(s, timeout=10)
        assert data.startswith(b"HTTP/1.1 408 ")
        assert b"Connection: close" in data
    finally:
        assert srv.stop()[0] == 0


@pytest.mark.parametrize("backend", backend_params())
def test_server_keepalive_timeout_closes_idle(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--keepalive-timeout", "1")
    try:
        baseline = srv.fd_count()
        with connect(srv.port) as s:
            s.sendall(GET)
            buf = bytearray()
            assert read_response(s, buf)[0] == 200
            s.settimeout(10)
            assert s.recv(100) == b""  # closed silently (no 408 on idle); TimeoutError if not
        assert srv.wait_fd_count(baseline) == baseline
    finally:
        assert srv.stop()[0] == 0


@pytest.mark.parametrize("backend", backend_params())
def test_server_connection_cap_pauses_accept(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--max-connections", "3")
    held: list[socket.socket] = []
    try:
        assert "capacity 3 connections (--max-connections" in srv.banner
        held += [connect(srv.port) for _ in range(3)]
        for s in held:
            s.sendall(GET)
            assert read_response(s, bytearray())[0] == 200
        # The 4th completes the TCP handshake (kernel backlog) but is not served...
        extra = connect(srv.port)
        held.append(extra)
        extra.sendall(GET)
        extra.settimeout(0.5)
        with pytest.raises(TimeoutError):
            extra.recv(100)
        # ...until a slot frees up.
        held.pop(0).close()
        extra.settimeout(5)
        assert read_response(extra, bytearray())[0] == 200
    finally:
        for s in held:
            s.close()
        assert srv.stop()[0] == 0


def test_server_select_backend_caps_below_fd_setsize(docroot: Path) -> None:
    srv = ServerProcess(docroot, "select")
    try:
        assert "capacity 960 connections" in srv.banner
        assert "FD_SETSIZE" in srv.banner
    finally:
        assert srv.stop()[0] == 0


@pytest.mark.parametrize("backend", backend_params())
def test_server_lingering_close_reads_rest_of_body(docroot: Path, backend: str) -> None:
    # A request with a body we never read: the server answers 405, shuts down its side
    # (the client sees EOF after the response) and keeps the socket, reading and
    # discarding, until the client is done (nginx's lingering close). Closing at once with
    # body bytes unread makes the kernel send RST, which over a real network can destroy
    # the response before the client reads it (RFC 9112 section 9.6).
    srv = ServerProcess(docroot, backend)
    try:
        baseline = srv.fd_count()
        with connect(srv.port) as s:
            s.sendall(
                b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n" + b"z" * 1000
            )
            data = recv_all(s, timeout=10)  # EOF: the server shut down its write side
            assert data.startswith(b"HTTP/1.1 405 ")
            assert b"Connection: close" in data
            assert srv.fd_count() == baseline + 1  # still lingering, not closed
            s.sendall(b"z" * 99000)  # the rest of the body is read and discarded
        assert srv.wait_fd_count(baseline) == baseline  # released once the client closed
    finally:
        assert srv.stop()[0] == 0


def test_server_port_in_use_is_a_clear_error(docroot: Path) -> None:
    import subprocess
    import sys

    from helpers import REPO

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        out = subprocess.run(
            [sys.executable, "-m", "c10k", "serve", str(docroot), "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
        )
    assert out.returncode == 1
    assert "cannot listen on 127.0.0.1:" in out.stderr
    assert "Traceback" not in out.stderr


HUGE = 64 << 20  # more than both socket buffers hold (tcp_wmem + tcp_rmem maxima)


@pytest.fixture(scope="module")
def hugeroot(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("huge")
    with open(root / "huge.bin", "wb") as f:
        f.truncate(HUGE)  # sparse: costs no disk
    (root / "small.txt").write_bytes(b"x" * 512)
    return root


def _start_download(port: int) -> socket.socket:
    slow = connect(port)
    slow.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    return slow


@pytest.mark.parametrize("backend", backend_params())
def test_server_sigterm_drains_in_flight_download(hugeroot: Path, backend: str) -> None:
    # Graceful stop: the listener closes at once, idle keep-alives are closed, a download
    # in progress completes (with Connection: close), then the process exits 0.
    srv = ServerProcess(hugeroot, backend, "--shutdown-timeout", "30")
    idle = connect(srv.port)
    idle.sendall(GET)
    assert read_response(idle, bytearray())[0] == 200
    slow = _start_download(srv.port)
    first = slow.recv(1000)
    assert first.startswith(b"HTTP/1.1 200 ")
    time.sleep(0.2)  # the server has filled the socket buffers and waits for the client
    srv.proc.send_signal(signal.SIGTERM)
    idle.settimeout(5)
    assert idle.recv(10) == b""  # idle keep-alive closed at once
    time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError):  # the listener is closed
        connect(srv.port, timeout=1).close()
    assert srv.proc.poll() is None  # still draining: the download is not finished
    data = first
    slow.settimeout(20)
    while chunk := slow.recv(1 << 20):
        data += chunk
    _head, _, body = data.partition(b"\r\n\r\n")
    assert len(body) == HUGE  # complete, then closed (it began before the signal)
    idle.close()
    slow.close()
    assert srv.proc.wait(timeout=10) == 0
    code, out, err = srv.stop()
    assert code == 0
    assert "Traceback" not in err
    assert "c10k stopped after 2 requests" in out


@pytest.mark.parametrize("backend", backend_params())
def test_server_second_signal_stops_at_once(hugeroot: Path, backend: str) -> None:
    srv = ServerProcess(hugeroot, backend, "--shutdown-timeout", "60")
    slow = _start_download(srv.port)
    assert slow.recv(100).startswith(b"HTTP/1.1 200 ")
    time.sleep(0.2)
    srv.proc.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    assert srv.proc.poll() is None  # draining: the download is not finished
    srv.proc.send_signal(signal.SIGTERM)
    assert srv.proc.wait(timeout=5) == 1  # not the 60 s drain deadline; a response cut
    slow.close()
    code, out, err = srv.stop()
    assert code == 1
    assert "; 1 response cut short" in out
    assert "Traceback" not in err


@pytest.mark.parametrize("backend", backend_params())
def test_server_min_send_rate_drops_a_trickling_reader(hugeroot: Path, backend: str) -> None:
    # Slow-read attack: the client takes a few KB now and then. Each take is progress, so
    # the send timeout alone would never fire; the average-rate rule does.
    srv = ServerProcess(hugeroot, backend, "--send-timeout", "1", "--min-send-rate", "10000000")
    try:
        baseline = srv.fd_count()
        with connect(srv.port, timeout=20) as s:
            s.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
            received = 0
            deadline = time.monotonic() + 15
            closed = False
            while time.monotonic() < deadline:
                try:
                    data = s.recv(4096)
                except ConnectionResetError:
                    closed = True
                    break
                if not data:
                    closed = True
                    break
                received += len(data)
                time.sleep(0.01)  # ~400 KB/s at most
            assert closed, f"still open after {received} bytes"
            assert received < HUGE
        assert srv.wait_fd_count(baseline) == baseline
    finally:
        assert srv.stop()[0] == 0


@pytest.mark.parametrize("backend", backend_params())
def test_server_max_pipelined_yields_but_answers_all_in_order(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--max-pipelined", "8")
    try:
        names = ["small.txt", "index.html", "sub/page.html", "a%20b.txt"]
        expected = {
            "small.txt": (docroot / "small.txt").read_bytes(),
            "index.html": (docroot / "index.html").read_bytes(),
            "sub/page.html": (docroot / "sub" / "page.html").read_bytes(),
            "a%20b.txt": (docroot / "a b.txt").read_bytes(),
        }
        order = [names[i % 4] for i in range(500)]
        with connect(srv.port, timeout=20) as s:
            s.sendall(b"".join(b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n" % n.encode() for n in order))
            buf = bytearray()
            for name in order:
                status, _, body = read_response(s, buf)
                assert (status, body) == (200, expected[name])
            s.sendall(GET)  # still a working keep-alive connection
            assert read_response(s, buf)[0] == 200
    finally:
        assert srv.stop()[0] == 0


@pytest.mark.parametrize("backend", ["epoll", "epoll-et", "poll"])
def test_server_min_send_rate_counts_what_the_client_read(hugeroot: Path, backend: str) -> None:
    # The first sendfile fills the kernel's send buffer (megabytes) at memory speed; a
    # rate over bytes *written* would let this ~40 KB/s reader keep its slot for a long
    # while. The rule counts what the client acknowledged (written minus SIOCOUTQ).
    srv = ServerProcess(hugeroot, backend, "--send-timeout", "1", "--min-send-rate", "200000")
    try:
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        s.settimeout(10)
        s.connect(("127.0.0.1", srv.port))
        s.sendall(b"GET /huge.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        start = time.monotonic()
        closed_after = None
        while time.monotonic() - start < 10:
            try:
                data = s.recv(4096)
            except ConnectionResetError:
                data = b""
            if not data:
                closed_after = time.monotonic() - start
                break
            time.sleep(0.1)
        s.close()
        assert closed_after is not None, "a reader at ~40 KB/s kept its slot for 10 s"
        assert closed_after > 0.9  # the rule waits one send timeout
    finally:
        assert srv.stop()[0] == 0
