"""The contract every backend must honour, over real loopback sockets and real clients.

One server subprocess per backend (module-scoped fixture ``server``); the same tests run
against each. Raw sockets for malformed and pipelined input, http.client and curl as the
clients nobody here wrote.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import (
    ServerProcess,
    backend_params,
    big_content,
    connect,
    curl_base,
    http_connection,
    read_response,
    recv_all,
    request,
)

SMALL = b"0123456789" * 51 + b"AB"


def _with_tls() -> list[object]:
    """Every mode, plain and over TLS (issue 14): the same contract either way."""
    out: list[object] = []
    for p in backend_params():
        name, marks = (p, ()) if isinstance(p, str) else (p.values[0], p.marks)  # type: ignore[attr-defined]
        out += [
            pytest.param((name, tls), id=f"{name}-tls" if tls else name, marks=marks)
            for tls in (False, True)
        ]
    return out


@pytest.fixture(scope="module", params=_with_tls())
def server(request: pytest.FixtureRequest, docroot: Path) -> Iterator[ServerProcess]:
    backend, tls = request.param
    srv = ServerProcess(docroot, backend, tls=tls)
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-4000:]


def get(path: str, extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: t\r\n{extra}\r\n".encode()


def test_server_get_small_file(server: ServerProcess) -> None:
    conn = http_connection(server.port, timeout=5)
    conn.request("GET", "/small.txt")
    resp = conn.getresponse()
    assert resp.status == 200
    assert resp.read() == SMALL
    assert resp.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert resp.getheader("Content-Length") == "512"
    assert resp.getheader("ETag", "").startswith('"')
    assert resp.getheader("Last-Modified", "").endswith("GMT")
    assert resp.getheader("Date", "").endswith("GMT")
    conn.close()


def test_server_head_has_no_body(server: ServerProcess) -> None:
    with connect(server.port) as s:
        s.sendall(b"HEAD /small.txt HTTP/1.1\r\nHost: t\r\n\r\n" + get("/index.html"))
        buf = bytearray()
        status, headers, body = read_response(s, buf, head_only=True)
        assert (status, headers["content-length"], body) == (200, "512", b"")
        # The next response starts right after the head: no body bytes leaked in between.
        status, _, body = read_response(s, buf)
        assert (status, body) == (200, b"<h1>index</h1>\n")


def test_server_head_big_file(server: ServerProcess) -> None:
    status, headers, _body, _ = request(
        server.port, b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\n\r\n", head_only=True
    )
    assert (status, headers["content-length"]) == (200, str(len(big_content())))


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/nope", 404),
        ("/.secret", 404),
        ("/sub", 301),
        ("/sub/", 200),
        ("/a%20b.txt", 200),
        ("/escape.txt", 403),
    ],
)
def test_server_status(server: ServerProcess, path: str, status: int) -> None:
    got, headers, body, _ = request(server.port, get(path))
    assert got == status
    assert b"TOP SECRET" not in body
    if status == 301:
        assert headers["location"] == "/sub/"


def test_server_keepalive_reuses_connection(server: ServerProcess) -> None:
    conn = http_connection(server.port, timeout=5)
    conn.request("GET", "/small.txt")
    r1 = conn.getresponse()
    assert r1.read() == SMALL
    sock = conn.sock
    for path in ("/index.html", "/sub/page.html", "/nope", "/small.txt"):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        assert conn.sock is sock  # http.client would have reconnected after a close
        assert r.getheader("Connection") is None
    conn.close()


def test_server_pipelined_requests_answered_in_order(server: ServerProcess) -> None:
    paths = ["/small.txt", "/index.html", "/nope", "/sub/page.html", "/big.bin", "/small.txt"]
    with connect(server.port) as s:
        s.sendall(b"".join(get(p) for p in paths))
        buf = bytearray()
        got = [read_response(s, buf) for _ in paths]
    assert [g[0] for g in got] == [200, 200, 404, 200, 200, 200]
    assert got[0][2] == SMALL
    assert got[5][2] == SMALL
    assert got[1][2] == b"<h1>index</h1>\n"
    assert got[4][2] == big_content()


def test_server_big_file_via_sendfile(server: ServerProcess) -> None:
    conn = http_connection(server.port, timeout=10)
    for _ in range(3):
        conn.request("GET", "/big.bin")
        resp = conn.getresponse()
        assert resp.status == 200
        assert resp.read() == big_content()
    conn.close()


def test_server_http10_closes_unless_keepalive(server: ServerProcess) -> None:
    status, headers, body, closed = request(
        server.port, get("/small.txt", version="1.0"), check_closed=True
    )
    assert (status, body, closed) == (200, SMALL, True)
    raw = get("/small.txt", "Connection: keep-alive\r\n", version="1.0")
    status, headers, body, closed = request(server.port, raw, check_closed=True)
    assert (status, headers.get("connection"), closed) == (200, "keep-alive", False)


def test_server_connection_close_honoured(server: ServerProcess) -> None:
    status, headers, _, closed = request(
        server.port, get("/small.txt", "Connection: close\r\n"), check_closed=True
    )
    assert (status, headers.get("connection"), closed) == (200, "close", True)


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", 400),
        (b"GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        (b"GET / HTTP/1.1\nHost: a\n\n", 400),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
        (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1_0\r\n\r\n", 400),
        (
            b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: a\r\nX: " + b"b" * 9000 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: a\r\n" + b"X: y\r\n" * 150 + b"\r\n", 431),
    ],
    ids=lambda v: v[:24].decode("latin-1") if isinstance(v, bytes) else str(v),
)
def test_server_malformed_gets_4xx_and_close(
    server: ServerProcess, raw: bytes, status: int
) -> None:
    got, headers, _body, closed = request(server.port, raw, check_closed=True)
    assert got == status
    assert headers.get("connection") == "close"
    assert closed


def test_server_unsupported_method_405_with_allow(server: ServerProcess) -> None:
    with connect(server.port) as s:
        s.sendall(b"DELETE /small.txt HTTP/1.1\r\nHost: t\r\n\r\n" + get("/small.txt"))
        buf = bytearray()
        status, headers, _ = read_response(s, buf)
        assert (status, headers["allow"]) == (405, "GET, HEAD")
        # No body was announced, so the connection stays usable.
        assert read_response(s, buf)[0] == 200


def test_server_unknown_method_501_keeps_connection(server: ServerProcess) -> None:
    with connect(server.port) as s:
        s.sendall(b"BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n" + get("/small.txt"))
        buf = bytearray()
        assert read_response(s, buf)[0] == 501
        assert read_response(s, buf)[0] == 200


def test_server_request_body_never_parsed_as_request(server: ServerProcess) -> None:
    smuggled = get("/small.txt")
    raw = (
        b"POST /small.txt HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n" % len(smuggled)
        + smuggled
    )
    with connect(server.port) as s:
        s.sendall(raw)
        data = recv_all(s)
    assert data.startswith(b"HTTP/1.1 405 ")
    assert b"Connection: close" in data
    assert data.count(b"HTTP/1.1 ") == 1  # the body's "request" was never answered


def test_server_chunked_get_answered_then_closed(server: ServerProcess) -> None:
    raw = b"GET /small.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    raw += b"5\r\nhello\r\n0\r\n\r\n" + get("/index.html")
    with connect(server.port) as s:
        s.sendall(raw)
        data = recv_all(s)
    assert data.count(b"HTTP/1.1 ") == 1
    assert b"Connection: close" in data


@pytest.mark.parametrize(
    "target",
    [
        "/../outside-secret.txt",
        "/%2e%2e/outside-secret.txt",
        "/sub/..%2f..%2foutside-secret.txt",
        "/%2e%2e%2foutside-secret.txt",
        "/sub/%2e%2e/%2e%2e/outside-secret.txt",
        "/..\\outside-secret.txt",
        "/%252e%252e/outside-secret.txt",
        "/%c0%ae%c0%ae/outside-secret.txt",
        "/sub/../../outside-secret.txt",
        "//../outside-secret.txt",
        "/escape.txt",
        "/%00/../outside-secret.txt",
        "/small.txt%00.html",
    ],
)
def test_server_traversal_never_escapes(server: ServerProcess, target: str) -> None:
    status, _, body, _ = request(server.port, get(target))
    assert status in (400, 403, 404)
    assert b"TOP SECRET" not in body
    assert b"/outside" not in body
    assert b"www" not in body


def test_server_client_disconnects_mid_response(server: ServerProcess) -> None:
    baseline = server.fd_count()
    for _ in range(10):
        s = connect(server.port)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(get("/big.bin"))
        assert s.recv(100).startswith(b"HTTP/1.1 200")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # RST while the server is inside sendfile
    status, _, body, _ = request(server.port, get("/small.txt"))
    assert (status, body) == (200, SMALL)
    # Sockets and file fds all released (at most the baseline: module doc of the helper).
    assert server.wait_fd_count_at_most(baseline) <= baseline


def test_server_many_sequential_connections_leak_nothing(server: ServerProcess) -> None:
    baseline = server.fd_count()
    for i in range(200):
        with connect(server.port) as s:
            s.sendall(get("/big.bin" if i % 50 == 0 else "/small.txt", "Connection: close\r\n"))
            recv_all(s)
    assert server.wait_fd_count_at_most(baseline) <= baseline


@pytest.mark.skipif(
    shutil.which("curl") is None, reason="curl is not installed (apt-get install curl)"
)
def test_server_curl_downloads_and_reuses_connection(server: ServerProcess, tmp_path: Path) -> None:
    *trust, base = curl_base(server.port)
    out = subprocess.run(
        [
            "curl",
            *trust,
            "-sS",
            "-v",
            "--http1.1",
            "-o",
            str(tmp_path / "big"),
            f"{base}/big.bin",
            "-o",
            str(tmp_path / "small"),
            f"{base}/small.txt",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert (tmp_path / "big").read_bytes() == big_content()
    assert (tmp_path / "small").read_bytes() == SMALL
    assert "Re-using existing connection" in out.stderr or "Reusing existing" in out.stderr
    head = subprocess.run(
        ["curl", *trust, "-sS", "-I", f"{base}/small.txt"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    assert head.stdout.startswith("HTTP/1.1 200 OK")
    assert "Content-Length: 512" in head.stdout


def test_server_slow_reader_gets_every_byte(server: ServerProcess) -> None:
    # The socket fills; the server must park the response and resume on writability.
    with connect(server.port, timeout=20) as s:
        s.sendall(get("/big.bin") + get("/small.txt"))
        time.sleep(0.3)
        buf = bytearray()
        _, _, body1 = read_response(s, buf)
        _, _, body2 = read_response(s, buf)
    assert body1 == big_content()
    assert body2 == SMALL
