"""A directory without an index, listings off: a 404 that hints at ``--autoindex``.

``python -m http.server`` lists every directory, so people coming from it see a bare 404
and think the server is broken. The 404 stays (listings are opt-in, as in nginx), but its
page says why and what to do. Only that 404 carries the hint: a missing file, a missing
directory, or an index that exists but cannot be served get the plain page. The handler
without sockets, then over the wire against an in-process server (one mode: the default
readiness loop; the page is the handler's, every mode sends the same bytes).
"""

from __future__ import annotations

import pathlib
import threading
from collections.abc import Iterator

import pytest

from c10k.http.events import Request
from c10k.http.writers import error_response
from c10k.server import Server, ServerConfig
from c10k.static import StaticFiles
from helpers import connect, read_response

HINT = b"start c10k with --autoindex to list it"


def _get(files: StaticFiles, target: bytes, method: bytes = b"GET") -> tuple[int, bytes, bytes]:
    response = files.handle(Request(method, target, 1, {}, True), now=0.0)
    body = response.body
    assert body is None or isinstance(body, bytes)
    return response.status, response.head, body or b""


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    www = tmp_path / "www"
    (www / "empty").mkdir(parents=True)
    (www / "<b>&dir").mkdir()
    (www / "sub").mkdir()
    (www / "sub" / "index.html").write_bytes(b"<h1>sub</h1>\n")
    (www / "hello.txt").write_bytes(b"hello\n")
    return www


@pytest.mark.parametrize("target", [b"/empty/", b"/%3Cb%3E&dir/", b"/empty/?q=<x>", b"/"])
def test_dirhint_directory_without_index_404_says_autoindex(
    root: pathlib.Path, target: bytes
) -> None:
    status, head, body = _get(StaticFiles(root), target)
    assert status == 404
    assert HINT in body
    assert b"This directory has no index.html;" in body
    assert b"Content-Type: text/html; charset=utf-8\r\n" in head
    assert b"Content-Length: %d\r\n" % len(body) in head
    # No path: neither the one on disk nor the request's (which may carry markup).
    assert str(root).encode() not in body
    for fragment in (b"empty", b"<b>", b"&dir", b"<x>", b"%3C"):
        assert fragment not in body


def test_dirhint_names_the_configured_index_escaped(root: pathlib.Path) -> None:
    _, _, body = _get(StaticFiles(root, index="a<&>.htm"), b"/empty/")
    assert b"This directory has no a&lt;&amp;&gt;.htm;" in body
    assert b"a<&>" not in body


def test_dirhint_head_has_the_get_head_and_no_body(root: pathlib.Path) -> None:
    files = StaticFiles(root)
    status, head, body = _get(files, b"/empty/", b"HEAD")
    assert (status, body) == (404, b"")
    assert head == _get(files, b"/empty/")[1]


@pytest.mark.parametrize(
    "target",
    [
        b"/missing.txt",  # no such file
        b"/missing/",  # no such directory
        b"/hello.txt/",  # a file asked for as a directory
        b"/.hidden/",  # a dot-name: refused before the disk is looked at
        b"/empty",  # the directory itself: a redirect, not a 404
    ],
)
def test_dirhint_only_for_an_existing_directory(root: pathlib.Path, target: bytes) -> None:
    (root / ".hidden").mkdir()
    status, _, body = _get(StaticFiles(root), target)
    assert HINT not in body
    if status == 404:
        assert body == error_response(404).body


def test_dirhint_not_when_the_index_exists_but_is_not_a_file(root: pathlib.Path) -> None:
    (root / "empty" / "index.html").mkdir()  # there is an index, it just cannot be served
    status, _, body = _get(StaticFiles(root), b"/empty/")
    assert status == 404
    assert HINT not in body


def test_dirhint_autoindex_lists_instead(root: pathlib.Path) -> None:
    status, _, body = _get(StaticFiles(root, autoindex=True), b"/empty/")
    assert status == 200
    assert b"Index of /empty/" in body
    assert HINT not in body


def test_dirhint_index_still_served(root: pathlib.Path) -> None:
    assert _get(StaticFiles(root), b"/sub/")[::2] == (200, b"<h1>sub</h1>\n")


# -- on the wire ---------------------------------------------------------------------------


@pytest.fixture
def port(root: pathlib.Path) -> Iterator[int]:
    server = Server(
        ServerConfig(root=str(root), host="127.0.0.1", port=0),
        handler=StaticFiles(root).handle,
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    thread.start()
    try:
        yield server.address[1]
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_dirhint_on_the_wire(port: int) -> None:
    with connect(port) as s:
        # One keep-alive connection: the hinted 404 keeps it open like any other 404.
        s.sendall(
            b"GET /empty/ HTTP/1.1\r\nHost: t\r\n\r\n"
            b"HEAD /empty/ HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /missing.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            b"GET /sub/ HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        buf = bytearray()
        status, headers, body = read_response(s, buf)
        assert status == 404
        assert HINT in body
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert "connection" not in headers
        status, head_headers, body = read_response(s, buf, head_only=True)
        assert (status, body) == (404, b"")
        assert head_headers["content-length"] == headers["content-length"]
        status, _, body = read_response(s, buf)
        assert status == 404
        assert HINT not in body
        status, _, body = read_response(s, buf)
        assert (status, body) == (200, b"<h1>sub</h1>\n")
