"""Issue 6's static features on the wire: an in-process Server with a StaticFiles handler,
driven by clients no one here wrote (curl, http.client) and by raw sockets.

The big file is ``helpers.big_content()``: 10-byte records ``X%06dXX\\n``, so every byte
range names its own offset; multipart bodies are parsed and each part's Content-Range
checked against its bytes.
"""

from __future__ import annotations

import gzip
import html
import http.client
import pathlib
import re
import shutil
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
from static_helpers import check_part, parse_multipart

from c10k.server import Server, ServerConfig
from c10k.static import StaticFiles
from helpers import big_content, read_response

BIG = big_content()
SMALL = b"0123456789" * 51 + b"AB"
JS = b"export const greeting = 'hello';\n" * 40
LISTED = ["a b.txt", "100%.txt", "q?.txt", "h#.txt", "café.txt", "<i>.txt"]

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="curl is not installed")


@pytest.fixture(scope="module")
def wire_root(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("wire") / "www"
    root.mkdir()
    (root / "big.bin").write_bytes(BIG)
    (root / "small.txt").write_bytes(SMALL)
    (root / "app.js").write_bytes(JS)
    (root / "app.js.gz").write_bytes(gzip.compress(JS, mtime=0))
    files = root / "files"
    files.mkdir()
    for name in LISTED:
        (files / name).write_bytes(name.encode() + b"\n")
    (files / "sub dir").mkdir()
    return root


@pytest.fixture(scope="module")
def port(wire_root: pathlib.Path) -> Iterator[int]:
    handler = StaticFiles(
        wire_root, autoindex=True, precompressed=True, cache_control={".js": "max-age=600"}
    )
    server = Server(
        ServerConfig(root=str(wire_root), host="127.0.0.1", port=0), handler=handler.handle
    )
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    thread.start()
    try:
        yield server.address[1]
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def curl(port: int, path: str, *args: str, tmp: pathlib.Path) -> tuple[int, dict[str, str], bytes]:
    """Run curl; return status, headers (last response, lower-cased names) and body."""
    assert CURL is not None
    head_file, body_file = tmp / "curl-head", tmp / "curl-body"
    subprocess.run(
        [
            CURL,
            "-sS",
            "--max-time",
            "10",
            "-D",
            str(head_file),
            "-o",
            str(body_file),
            *args,
            f"http://127.0.0.1:{port}{path}",
        ],
        check=True,
        timeout=30,
    )
    raw = head_file.read_bytes().decode("latin-1")
    head = raw.rstrip("\r\n").split("\r\n\r\n")[-1]  # after any 1xx
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = body_file.read_bytes() if body_file.exists() else b""
    body_file.unlink(missing_ok=True)
    return status, headers, body


def fetch(
    port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.headers, response.read()
    finally:
        conn.close()


# -- curl -------------------------------------------------------------------------------------


@needs_curl
@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        ("100-199", 100, 199),
        ("-500", len(BIG) - 500, len(BIG) - 1),
        ("999990-", 999990, len(BIG) - 1),
        ("0-0", 0, 0),
    ],
)
def test_wire_curl_single_range(
    port: int, tmp_path: pathlib.Path, spec: str, first: int, last: int
) -> None:
    status, headers, body = curl(port, "/big.bin", "-r", spec, tmp=tmp_path)
    assert status == 206
    assert headers["content-range"] == f"bytes {first}-{last}/{len(BIG)}"
    assert body == BIG[first : last + 1]


@needs_curl
def test_wire_curl_multiple_ranges(port: int, tmp_path: pathlib.Path) -> None:
    status, headers, body = curl(port, "/big.bin", "-r", "0-9,20-29,500000-500099", tmp=tmp_path)
    assert status == 206
    parts = parse_multipart(headers["content-type"].encode(), body)
    assert [check_part(h, d, BIG) for h, d in parts] == [(0, 9), (20, 29), (500000, 500099)]
    assert BIG[500000:500010] == b"X050000XX\n"  # the fixture really is self-describing


@needs_curl
def test_wire_curl_multiple_ranges_small_file(port: int, tmp_path: pathlib.Path) -> None:
    status, headers, body = curl(port, "/small.txt", "-r", "0-9,20-29", tmp=tmp_path)
    assert status == 206
    parts = parse_multipart(headers["content-type"].encode(), body)
    assert [check_part(h, d, SMALL) for h, d in parts] == [(0, 9), (20, 29)]


@needs_curl
def test_wire_curl_unsatisfiable(port: int, tmp_path: pathlib.Path) -> None:
    status, headers, _ = curl(port, "/big.bin", "-r", "2000000-", tmp=tmp_path)
    assert status == 416
    assert headers["content-range"] == f"bytes */{len(BIG)}"


@needs_curl
def test_wire_curl_conditional(port: int, tmp_path: pathlib.Path) -> None:
    status, headers, body = curl(port, "/small.txt", tmp=tmp_path)
    assert status == 200
    assert body == SMALL
    etag, last_modified = headers["etag"], headers["last-modified"]
    # -z DATE sends If-Modified-Since.
    status, _, body = curl(port, "/small.txt", "-z", last_modified, tmp=tmp_path)
    assert (status, body) == (304, b"")
    status, _, body = curl(port, "/small.txt", "-z", "Sun, 06 Nov 1994 08:49:37 GMT", tmp=tmp_path)
    assert (status, body) == (200, SMALL)
    status, headers304, body = curl(
        port, "/small.txt", "-H", f"If-None-Match: {etag}", tmp=tmp_path
    )
    assert (status, body) == (304, b"")
    assert headers304["etag"] == etag
    status, _, _ = curl(port, "/small.txt", "-H", 'If-Match: "other"', tmp=tmp_path)
    assert status == 412


@needs_curl
def test_wire_curl_compressed(port: int, tmp_path: pathlib.Path) -> None:
    status, headers, body = curl(port, "/app.js", "--compressed", tmp=tmp_path)
    assert status == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept-Encoding"
    assert headers["content-type"] == "text/javascript; charset=utf-8"
    assert headers["cache-control"] == "max-age=600"
    assert "expires" in headers
    assert body == JS  # curl decoded the gzip sibling
    status, headers, body = curl(port, "/app.js", tmp=tmp_path)
    assert "content-encoding" not in headers
    assert headers["vary"] == "Accept-Encoding"
    assert body == JS


@needs_curl
def test_wire_curl_listing_link_round_trip(port: int, tmp_path: pathlib.Path) -> None:
    status, _headers, body = curl(port, "/files/", tmp=tmp_path)
    assert status == 200
    hrefs = [html.unescape(h) for h in re.findall(r'<a href="([^"]*)">', body.decode())]
    for name in LISTED:
        href = next(h for h in hrefs if urllib.parse.unquote(h[2:]) == name)
        status, _, content = curl(port, "/files/" + href[2:], tmp=tmp_path)
        assert (status, content) == (200, name.encode() + b"\n")


# -- http.client --------------------------------------------------------------------------------


def test_wire_http_client_ranges_keep_alive(port: int) -> None:
    # Several range answers on one keep-alive connection: each framed by its
    # Content-Length, sendfile'd from the right offsets.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for first in (0, 123_450, 999_000):
            conn.request("GET", "/big.bin", headers={"Range": f"bytes={first}-{first + 99}"})
            response = conn.getresponse()
            assert response.status == 206
            assert response.read() == BIG[first : first + 100]
        conn.request("GET", "/big.bin", headers={"Range": "bytes=10-19,1000-1009,-10"})
        response = conn.getresponse()
        assert response.status == 206
        body = response.read()
        parts = parse_multipart(response.headers["content-type"].encode(), body)
        assert [check_part(h, d, BIG) for h, d in parts] == [
            (10, 19),
            (1000, 1009),
            (len(BIG) - 10, len(BIG) - 1),
        ]
        conn.request("GET", "/big.bin")
        response = conn.getresponse()
        assert response.headers["accept-ranges"] == "bytes"
        assert response.read() == BIG
    finally:
        conn.close()


def test_wire_http_client_if_range(port: int) -> None:
    status, headers, _ = fetch(port, "/big.bin", method="HEAD")
    etag = headers["etag"]
    status, _, body = fetch(port, "/big.bin", {"Range": "bytes=0-9", "If-Range": etag})
    assert (status, body) == (206, BIG[:10])
    status, _, body = fetch(port, "/big.bin", {"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert status == 200
    assert body == BIG


def test_wire_http_client_listing(port: int) -> None:
    status, headers, body = fetch(port, "/files/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b"&lt;i&gt;.txt" in body
    assert b'href="./sub%20dir/"' in body
    status, head_headers, head_body = fetch(port, "/files/", method="HEAD")
    assert (status, head_body) == (200, b"")
    assert head_headers["content-length"] == str(len(body))
    status, headers, _ = fetch(port, "/files?x=1")
    assert status == 301
    assert headers["location"] == "/files/?x=1"


def test_wire_http_client_precompressed_304(port: int) -> None:
    _, headers, body = fetch(port, "/app.js", {"Accept-Encoding": "gzip"})
    assert gzip.decompress(body) == JS
    status, headers304, body = fetch(
        port, "/app.js", {"Accept-Encoding": "gzip", "If-None-Match": headers["etag"]}
    )
    assert (status, body) == (304, b"")
    assert headers304["vary"] == "Accept-Encoding"
    assert headers304["cache-control"] == "max-age=600"


# -- raw sockets -------------------------------------------------------------------------------


def test_wire_raw_pipelined_range_requests(port: int) -> None:
    requests = (
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=40-49\r\n\r\n"
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1,-2\r\n\r\n"
        b"HEAD /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\n\r\n"
        b"GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=5-1\r\n\r\n"
        b"GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=9999-\r\nConnection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(requests)
        buf = bytearray()
        status, headers, body = read_response(s, buf)
        assert (status, body) == (206, b"X000004XX\n")
        status, headers, body = read_response(s, buf)
        assert status == 206
        parts = parse_multipart(headers["content-type"].encode(), body)
        assert [check_part(h, d, SMALL) for h, d in parts] == [(0, 1), (510, 511)]
        status, headers, body = read_response(s, buf, head_only=True)
        assert status == 200
        assert headers["content-length"] == str(len(BIG))
        status, headers, body = read_response(s, buf)  # invalid range: ignored
        assert status == 200
        assert body == BIG
        status, headers, body = read_response(s, buf)
        assert status == 416
        assert headers["content-range"] == f"bytes */{len(SMALL)}"
        s.settimeout(5)
        assert s.recv(1) == b""  # closed as asked, nothing extra on the wire
        assert buf == b""


def test_wire_raw_range_attack_gets_full_200(port: int) -> None:
    # Apache killer (CVE-2011-3192): many overlapping ranges. One 200, not 1300 parts.
    spec = b"bytes=0-," + b",".join(b"5-%d" % i for i in range(1300))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"GET /small.txt HTTP/1.1\r\nHost: t\r\nRange: " + spec[:7000] + b"\r\n\r\n")
        status, _headers, body = read_response(s, bytearray())
    assert status == 200
    assert body == SMALL
