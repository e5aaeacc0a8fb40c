"""``--error-page`` for the answers the engine makes itself (issue 16; nginx's error_page
covers them too): a malformed request's 400, a header timeout's 408, 431, 405, and the
per-client limits' 429 and 503, over real loopback sockets in every mode. Each keeps its
status, its own fields (Allow, Retry-After) and whether it closes; the page is read when
the server starts (the first 408 has it) and re-read off the loop after an edit.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, make_docroot

PAGE = b"<p>the operator's page</p>\n"
STATUSES = "400,405,408,429,431,503"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    www = make_docroot(tmp_path_factory.mktemp("engine-pages") / "www")
    (www / "oops.html").write_bytes(PAGE)
    return www


def exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data``; everything the server sends until it closes (or the timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        return read_to_close(s)


def read_to_close(s: socket.socket) -> bytes:
    chunks = []
    while chunk := s.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def split(reply: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    fields = dict(line.split(b": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, body


def assert_paged(reply: bytes, status: int) -> dict[bytes, bytes]:
    got, fields, body = split(reply)
    assert (got, body) == (status, PAGE), reply[:300]
    assert fields[b"content-type"] == b"text/html; charset=utf-8"
    assert fields[b"content-length"] == b"%d" % len(PAGE)
    return fields


@pytest.fixture(params=backend_params())
def server(request: pytest.FixtureRequest, root: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    cfg = tmp_path / "c.toml"
    cfg.write_text("max_header_bytes = 4096\n")
    pages = f"{STATUSES}=/oops.html"
    args = ("--error-page", pages, "--header-timeout", "1", "--config", str(cfg))
    srv = ServerProcess(root, request.param, *args)
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err


def test_protocol_errors_get_the_page(server: ServerProcess) -> None:
    fields = assert_paged(exchange(server.port, b"NOT A REQUEST\r\n\r\n"), 400)
    assert fields[b"connection"] == b"close"
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 8192 + b"\r\n\r\n"
    assert_paged(exchange(server.port, big), 431)
    # 405 keeps its Allow field and the connection (the next request is answered).
    reply = exchange(
        server.port,
        b"DELETE /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        b"HEAD /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    first, _, second = reply.partition(PAGE)
    fields = assert_paged(first + PAGE, 405)
    assert fields[b"allow"] == b"GET, HEAD"
    assert second.startswith(b"HTTP/1.1 200 OK\r\n"), reply


@pytest.mark.timed
def test_header_timeout_gets_the_page(server: ServerProcess) -> None:
    # The server's first 408 already has it: the page was read at start.
    started = time.monotonic()
    reply = exchange(server.port, b"GET / HTTP/1.1\r\nHost:")
    assert time.monotonic() - started < 8
    fields = assert_paged(reply, 408)
    assert fields[b"connection"] == b"close"


@pytest.mark.parametrize("mode", backend_params())
def test_limits_get_the_page(root: Path, mode: str) -> None:
    srv = ServerProcess(
        root,
        mode,
        "--error-page",
        f"{STATUSES}=/oops.html",
        "--limit-req",
        "1/m",
        "--limit-conn-per-ip",
        "1",
    )
    try:
        get = b"GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
        with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as held:
            held.sendall(get)
            assert held.recv(65536).startswith(b"HTTP/1.1 200 OK\r\n")
            # A second connection from the same address: 503 with the page, closed.
            fields = assert_paged(exchange(srv.port, get), 503)
            assert fields[b"connection"] == b"close"
            # The held one's second request in the minute: 429, with Retry-After, kept.
            held.sendall(get + b"HEAD /small.txt HTTP/1.1\r\nHost: x\r\n\r\n")
            held.shutdown(socket.SHUT_WR)
            reply = read_to_close(held)
        fields = assert_paged(reply[: reply.index(PAGE) + len(PAGE)], 429)
        assert int(fields[b"retry-after"]) >= 1
        status, fields, body = split(reply[reply.index(PAGE) + len(PAGE) :])
        assert (status, fields[b"content-length"], body) == (429, b"%d" % len(PAGE), b"")
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def test_an_edited_page_is_read_again_off_the_loop(tmp_path: Path) -> None:
    www = make_docroot(tmp_path / "www")
    (www / "oops.html").write_bytes(PAGE)
    cfg = tmp_path / "c.toml"
    cfg.write_text("revalidate_seconds = 0\n")
    srv = ServerProcess(www, "epoll", "--error-page", "400=/oops.html", "--config", str(cfg))
    try:
        assert_paged(exchange(srv.port, b"BAD\r\n\r\n"), 400)
        (www / "oops.html").write_bytes(b"<p>edited</p>\n")
        deadline = time.monotonic() + 10
        while split(exchange(srv.port, b"BAD\r\n\r\n"))[2] != b"<p>edited</p>\n":
            assert time.monotonic() < deadline, "the edited page never showed"
            time.sleep(0.05)
        (www / "oops.html").unlink()  # gone: the built-in page
        while b"<h1>400 Bad Request</h1>" not in exchange(srv.port, b"BAD\r\n\r\n"):
            assert time.monotonic() < deadline, "the deleted page was still sent"
            time.sleep(0.05)
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err


def test_without_pages_the_built_in_answer(root: Path) -> None:
    srv = ServerProcess(root, "epoll", "--error-page", "404=/oops.html")
    try:
        status, _, body = split(exchange(srv.port, b"BAD\r\n\r\n"))
        assert status == 400
        assert b"<h1>400 Bad Request</h1>" in body
    finally:
        srv.stop()
