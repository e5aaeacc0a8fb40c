"""The PROXY protocol with a real balancer: HAProxy in front of ``c10k serve --proxy-protocol``.

HAProxy (Debian package) runs in TCP mode with ``send-proxy-v2`` (and ``send-proxy``, v1)
to the server, every mode; the client connects to HAProxy from another loopback source
(127.0.0.7), so the access log shows whom the header named, not HAProxy's 127.0.0.1. Its
health checks (``check-send-proxy``: a v2 LOCAL header) must find the server up. Over TLS
HAProxy passes the bytes through and the header comes before the handshake. And a client
that reaches the server directly, without a header, gets nothing and is counted.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from _haproxy import HAProxy

from c10k.http.proxy import build_v1, build_v2
from helpers import ServerProcess, backend_params, free_port, local_ca, make_docroot

needs_haproxy = pytest.mark.skipif(
    shutil.which("haproxy") is None, reason="haproxy is not installed (apt-get install haproxy)"
)
CLIENT = "127.0.0.7"
SMALL = b"0123456789" * 51 + b"AB"
GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("site") / "www")


def _curl(*args: str) -> subprocess.CompletedProcess[bytes]:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    return subprocess.run(
        ["curl", "-sS", "--interface", CLIENT, *args], capture_output=True, timeout=30
    )


@pytest.fixture(params=["send-proxy-v2", "send-proxy"])
def send(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@needs_haproxy
@pytest.mark.parametrize("backend", backend_params())
def test_haproxy_in_front_every_mode(root: Path, tmp_path: Path, backend: str, send: str) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(root, backend, "--proxy-protocol", "--access-log", str(log), "--status")
    lb = HAProxy(tmp_path, srv.port, send)
    try:
        lb.wait_up()  # its health checks (LOCAL headers) were answered
        r = _curl(f"http://127.0.0.1:{lb.port}/small.txt", f"http://127.0.0.1:{lb.port}/nope")
        assert r.returncode == 0, r.stderr
        assert r.stdout.startswith(SMALL)
        # Straight to the server, no header: closed without a byte.
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n")
            assert s.recv(100) == b""
    finally:
        lb.stop()
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-4000:]
    text = log.read_text()
    # HAProxy's health checks (LOCAL headers, HTTP/1.0) are logged as HAProxy's own address
    checks = [line for line in text.splitlines() if "HTTP/1.0" in line]
    lines = [line for line in text.splitlines() if "curl/" in line]
    assert checks, text
    assert all(line.startswith("127.0.0.1 ") for line in checks), checks
    assert len(lines) == 2, text
    # the client HAProxy relayed, not HAProxy itself (127.0.0.1)
    assert all(line.startswith(CLIENT + " ") for line in lines), lines


@needs_haproxy
def test_haproxy_passes_tls_through(root: Path, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(root, "epoll", "--proxy-protocol", "--access-log", str(log), tls=True)
    # No health check: HAProxy's speaks plain HTTP after its header, which a TLS port
    # answers with its plain-HTTP 400 (a TLS check, check-ssl, needs HAProxy's own CA file).
    lb = HAProxy(tmp_path, srv.port, "send-proxy-v2", check=False)
    try:
        lb.wait_listening()
        ca = local_ca()["dir"] / "ca.pem"
        url = f"https://localhost:{lb.port}/small.txt"
        r = _curl("--cacert", str(ca), "--resolve", f"localhost:{lb.port}:127.0.0.1", url)
        assert r.returncode == 0, r.stderr
        assert r.stdout == SMALL
    finally:
        lb.stop()
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert log.read_text().startswith(CLIENT + " "), log.read_text()


@needs_haproxy
def test_status_counts_headers_and_refusals(root: Path, tmp_path: Path) -> None:
    srv = ServerProcess(root, "epoll", "--proxy-protocol", "--status")
    lb = HAProxy(tmp_path, srv.port, "send-proxy-v2")
    try:
        lb.wait_up()
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\n\r\n")
                assert s.recv(100) == b""
        r = _curl(f"http://127.0.0.1:{lb.port}/_c10k/status")
        assert r.returncode == 0, r.stderr
    finally:
        lb.stop()
        srv.stop()
    status = dict(line.split(": ", 1) for line in r.stdout.decode().splitlines() if ": " in line)
    assert int(status["proxy_errors"]) == 3
    assert int(status["proxy_headers"]) >= 2  # HAProxy's checks (LOCAL) and our request


@pytest.mark.parametrize("backend", backend_params())
def test_a_stalled_header_is_closed_silently_at_the_header_timeout(
    root: Path, backend: str
) -> None:
    srv = ServerProcess(root, backend, "--proxy-protocol", "--header-timeout", "0.5")
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(b"PROXY TCP4 192.0.2.1 ")
            start = time.monotonic()
            assert s.recv(100) == b""  # no 408: whatever talks here is not our balancer
            assert time.monotonic() - start < 5
        # the listener still serves a balancer that completes its header
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(build_v1(("192.0.2.1", 1), ("192.0.2.2", 80)) + GET)
            assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def test_proxy_prefix_marks_one_listener(root: Path) -> None:
    plain, proxied = free_port(), free_port()
    srv = ServerProcess(
        root, "epoll", "--listen", f"127.0.0.1:{plain}", "--listen", f"proxy:127.0.0.1:{proxied}"
    )
    try:
        with socket.create_connection(("127.0.0.1", plain), timeout=10) as s:
            s.sendall(GET)
            assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
        with socket.create_connection(("127.0.0.1", proxied), timeout=10) as s:
            s.sendall(GET)
            assert s.recv(100) == b""
        with socket.create_connection(("127.0.0.1", proxied), timeout=10) as s:
            s.sendall(build_v2(("2001:db8::5", 4)) + GET)
            assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def _logged_client(root: Path, tmp_path: Path, *flags: str, raw: bytes) -> str:
    log = tmp_path / "access.log"
    srv = ServerProcess(root, "epoll", "--access-log", str(log), *flags)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as s:
            s.sendall(raw)
            assert s.recv(100).startswith(b"HTTP/1.1 200 OK")
    finally:
        srv.stop()
    last = log.read_text().splitlines()[-1]  # the file is appended to by each call
    return last.split(" ", 1)[0]


XFF = b"GET /small.txt HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 6.6.6.6, 198.51.100.4\r\n\r\n"


def test_trusted_proxy_names_the_client(root: Path, tmp_path: Path) -> None:
    trusted = ("--trusted-proxy", "127.0.0.0/8")
    assert _logged_client(root, tmp_path, *trusted, raw=XFF) == "198.51.100.4"
    fwd = XFF.replace(b"X-Forwarded-For: 6.6.6.6, 198.51.100.4", b'Forwarded: for="[2001:db8::7]"')
    assert _logged_client(root, tmp_path, *trusted, raw=fwd) == "2001:db8::7"
    # an untrusted peer's headers are its own words
    assert _logged_client(root, tmp_path, raw=XFF) == "127.0.0.1"
    # behind a PROXY header naming an untrusted client, the header's client stands
    named = build_v1(("192.0.2.50", 1), ("127.0.0.1", 80)) + XFF
    got = _logged_client(root, tmp_path, "--proxy-protocol", *trusted, raw=named)
    assert got == "192.0.2.50"
