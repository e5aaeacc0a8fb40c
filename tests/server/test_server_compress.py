"""On-the-fly compression (issue 16) over real loopback sockets in every mode.

http.client (decompressed here and compared with the file), raw keep-alive and pipelined
requests alternating Accept-Encoding (so a memoized wire for one encoding can never reach a
client that asked for another: the per-object wire memo and the head memo are where that
would go wrong), ETag/Vary/304, HEAD, Range getting identity, the size bound,
``--no-compress``, a file changed on disk recompressed, a precompressed sibling winning;
and curl ``--compressed``.
"""

from __future__ import annotations

import gzip
import http.client
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect, curl_base, make_docroot, read_response

brotli = pytest.importorskip("brotli", reason="br needs the brotli package (c10k[brotli])")

PAGE = b"".join(b"<li>item %05d of a long list of things</li>\n" % i for i in range(1000))
STYLE = b"".join(
    b".c%04d { color: #%06x; margin: 0 }\n" % (i, i * 997 % 0xFFFFFF) for i in range(200)
)
ICON = os.urandom(3000)  # image/png: never compressed
ENCODINGS = ["gzip", "br", None]


def decode(coding: str | None, data: bytes) -> bytes:
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "br":
        return bytes(brotli.decompress(data))
    assert coding is None, coding
    return data


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    www = make_docroot(tmp_path_factory.mktemp("compress") / "www")
    (www / "page.html").write_bytes(PAGE)  # 45 KB: identity goes out with sendfile
    (www / "style.css").write_bytes(STYLE)  # 7 KB: identity from memory
    (www / "icon.png").write_bytes(ICON)
    (www / "pre.js").write_bytes(PAGE)
    (www / "pre.js.gz").write_bytes(gzip.compress(PAGE, 9, mtime=1))
    return www


@pytest.fixture(params=backend_params())
def server(request: pytest.FixtureRequest, root: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(root, request.param)
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def fetch(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def test_compress_http_client_in_every_mode(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        etags: dict[tuple[str, str | None], str] = {}
        for _ in range(3):  # keep-alive, repeated: the load, then cached hits
            for path, content in (("/page.html", PAGE), ("/style.css", STYLE)):
                for coding in ENCODINGS:
                    status, headers, body = fetch(conn, path, accept_encoding=coding or "identity")
                    assert status == 200
                    assert headers.get("content-encoding") == coding, (path, coding)
                    assert headers["vary"] == "Accept-Encoding"
                    assert decode(coding, body) == content
                    if coding:
                        assert len(body) < len(content) // 2
                    etags.setdefault((path, coding), headers["etag"])
                    assert etags[path, coding] == headers["etag"]
        assert len(set(etags.values())) == len(etags)  # one tag per representation
        # 304 for the tag of the representation the request negotiates.
        for (path, coding), etag in etags.items():
            ae = coding or "identity"
            status, headers, body = fetch(conn, path, accept_encoding=ae, if_none_match=etag)
            assert (status, body, headers["etag"]) == (304, b"", etag)
            assert headers["vary"] == "Accept-Encoding"
        # HEAD: the GET's fields, no body.
        status, headers, body = fetch(conn, "/page.html", "HEAD", accept_encoding="gzip")
        assert (status, headers["content-encoding"], body) == (200, "gzip", b"")
        assert headers["etag"] == etags["/page.html", "gzip"]
        # Range: the file's bytes, not a range of ours.
        for path, content in (("/page.html", PAGE), ("/style.css", STYLE)):
            status, headers, body = fetch(
                conn, path, accept_encoding="gzip, br", range="bytes=100-199"
            )
            assert (status, body) == (206, content[100:200])
            assert "content-encoding" not in headers
            assert headers["vary"] == "Accept-Encoding"
        # A binary type is never compressed.
        status, headers, body = fetch(conn, "/icon.png", accept_encoding="gzip, br")
        assert (status, body) == (200, ICON)
        assert "content-encoding" not in headers
        # A precompressed sibling wins.
        status, headers, body = fetch(conn, "/pre.js", accept_encoding="gzip, br")
        assert headers["content-encoding"] == "gzip"
        assert body == (server_root(server) / "pre.js.gz").read_bytes()
    finally:
        conn.close()


def server_root(server: ServerProcess) -> Path:
    return Path(server.argv[server.argv.index("serve") + 1])


def raw(path: str, ae: str | None, method: str = "GET") -> bytes:
    line = f"Accept-Encoding: {ae}\r\n" if ae is not None else ""
    return f"{method} {path} HTTP/1.1\r\nHost: x\r\n{line}\r\n".encode()


def test_compress_raw_alternating_and_pipelined_in_every_mode(server: ServerProcess) -> None:
    # One keep-alive connection, the same URL with every Accept-Encoding in turn, first
    # one request per write (the session's one-write fast path and its wire memo), then
    # all pipelined in one write.
    cases = [("gzip", "gzip"), (None, None), ("br", "br"), ("identity", None)]
    cases += [("gzip;q=0", None), ("*", "br"), ("deflate, gzip", "gzip"), ("", None)]
    with connect(server.port) as s:
        buf = bytearray()
        for _ in range(3):
            for ae, coding in cases:
                for path, content in (("/style.css", STYLE), ("/page.html", PAGE)):
                    s.sendall(raw(path, ae))
                    status, headers, body = read_response(s, buf)
                    assert status == 200
                    assert headers.get("content-encoding") == coding, (path, ae)
                    assert decode(coding, body) == content
        batch = b"".join(raw("/style.css", ae) for ae, _ in cases * 2)
        batch += raw("/style.css", "gzip", "HEAD") + raw("/style.css", None, "HEAD")
        s.sendall(batch)
        for ae, coding in cases * 2:
            status, headers, body = read_response(s, buf)
            assert headers.get("content-encoding") == coding, ae
            assert decode(coding, body) == STYLE
        status, headers, body = read_response(s, buf, head_only=True)
        assert (headers["content-encoding"], body) == ("gzip", b"")
        status, headers, body = read_response(s, buf, head_only=True)
        assert ("content-encoding" not in headers, headers["content-length"]) == (
            True,
            str(len(STYLE)),
        )


@pytest.fixture
def own_root(tmp_path: Path) -> Path:
    www = tmp_path / "www"
    www.mkdir()
    (www / "page.html").write_bytes(PAGE)
    (www / "style.css").write_bytes(STYLE)
    return www


def test_compress_off_and_bound(own_root: Path) -> None:
    off = ServerProcess(own_root, "epoll", "--no-compress")
    bound = ServerProcess(own_root, "epoll", "--compress-max-bytes", str(len(PAGE) - 1))
    try:
        for srv, compressed in ((off, set()), (bound, {"/style.css"})):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            try:
                for path, content in (("/page.html", PAGE), ("/style.css", STYLE)):
                    status, headers, body = fetch(conn, path, accept_encoding="gzip")
                    if path in compressed:
                        assert headers["content-encoding"] == "gzip"
                        assert gzip.decompress(body) == content
                    else:
                        assert (status, body) == (200, content)
                        assert "content-encoding" not in headers
                        assert "vary" not in headers
            finally:
                conn.close()
    finally:
        for srv in (off, bound):
            code, _, err = srv.stop()
            assert code == 0, err[-2000:]


def test_compress_changed_file_recompressed(own_root: Path) -> None:
    srv = ServerProcess(own_root, "epoll")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        try:
            _, first, body = fetch(conn, "/style.css", accept_encoding="gzip")
            assert gzip.decompress(body) == STYLE
            new = STYLE.replace(b"margin", b"MARGIN") + b"/* edited */\n"
            (own_root / "style.css").write_bytes(new)
            time.sleep(1.2)  # past the 1 s trust period (revalidate_seconds)
            status, second, body = fetch(
                conn, "/style.css", accept_encoding="gzip", if_none_match=first["etag"]
            )
            assert status == 200  # the old tag no longer matches
            assert second["etag"] != first["etag"]
            assert second["etag"].endswith('-gzip6"')
            assert gzip.decompress(body) == new
        finally:
            conn.close()
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
@pytest.mark.parametrize("mode", ["epoll", "threads"])
def test_compress_with_curl(root: Path, mode: str, tmp_path: Path) -> None:
    srv = ServerProcess(root, mode, "--compress-level", "9")
    try:
        *trust, base = curl_base(srv.port)
        for extra, coding in (([], "br"), (["-H", "Accept-Encoding: gzip"], "gzip")):
            heads = tmp_path / "heads"
            out = subprocess.run(
                [
                    "curl",
                    *trust,
                    "-sS",
                    "--compressed",
                    *extra,
                    "-D",
                    str(heads),
                    f"{base}/page.html",
                    f"{base}/style.css",
                ],
                capture_output=True,
                timeout=30,
                check=True,
            ).stdout
            assert out == PAGE + STYLE  # curl decoded both
            text = heads.read_bytes().decode("latin-1").lower()
            assert text.count(f"content-encoding: {coding}\r\n") == 2
            assert text.count("vary: accept-encoding\r\n") == 2
            assert text.count(f'-{coding}9"\r\n') == 2  # the level is in the tags
        plain = subprocess.run(
            ["curl", *trust, "-sS", f"{base}/page.html"], capture_output=True, timeout=30
        ).stdout
        assert plain == PAGE  # no Accept-Encoding: identity
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def test_compress_without_brotli_gzip_only_and_says_so(own_root: Path, tmp_path: Path) -> None:
    # A brotli module that fails to import, first on the path: as if not installed.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "brotli.py").write_text("raise ImportError('not installed (test)')\n")
    src = Path(__file__).resolve().parents[2] / "src"
    with_br = ServerProcess(own_root, "epoll")
    without = ServerProcess(own_root, "epoll", wrap=["env", f"PYTHONPATH={fake}:{src}"])
    try:
        for srv, coding in ((with_br, "br"), (without, "gzip")):
            conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
            try:
                _, headers, body = fetch(conn, "/style.css", accept_encoding="br, gzip")
            finally:
                conn.close()
            assert headers["content-encoding"] == coding
            assert decode(coding, body) == STYLE
    finally:
        errs = []
        for srv in (with_br, without):
            code, _, err = srv.stop()
            assert code == 0, err[-2000:]
            errs.append(err)
    assert "gzip only" not in errs[0]
    assert "compressing with gzip only; `pip install 'c10k[brotli]'` adds br" in errs[1]


def test_compress_no_accept_encoding_is_identity(server: ServerProcess) -> None:
    # No Accept-Encoding at all on a fresh connection: identity, Vary still there.
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
        s.sendall(b"GET /page.html HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        buf = bytearray()
        status, headers, body = read_response(s, buf)
    assert (status, body) == (200, PAGE)
    assert headers["vary"] == "Accept-Encoding"
    assert "content-encoding" not in headers


@pytest.mark.alone  # a strace count (test_server_modes.test_server_mode_keepalive_syscall_budget)
@pytest.mark.skipif(shutil.which("strace") is None, reason="strace not installed")
def test_compress_hit_is_one_read_one_write(own_root: Path, tmp_path: Path) -> None:
    # A compressed hit costs what an identity hit of a cached file costs: one read and one
    # write, no open (page.html's identity is above --cache-max-file-bytes: sendfile; its
    # gzip comes from memory). Counted with strace between two marker requests.
    n = 200
    trace = tmp_path / "trace"
    srv = ServerProcess(
        own_root, "epoll", wrap=["strace", "-qq", "-f", "-s", "48", "-o", str(trace)]
    )
    server_pid = int(Path(f"/proc/{srv.pid}/task/{srv.pid}/children").read_text().split()[0])
    try:
        with connect(srv.port) as s:
            buf = bytearray()
            s.sendall(raw("/page.html", "gzip, deflate, br"))
            assert read_response(s, buf)[1]["content-encoding"] == "br"  # loaded: compressed
            s.sendall(raw("/c10k-begin-marker", None))
            assert read_response(s, buf)[0] == 404
            for _ in range(n):
                s.sendall(raw("/page.html", "gzip, deflate, br"))
                status, headers, _body = read_response(s, buf)
                assert (status, headers["content-encoding"]) == (200, "br")
            s.sendall(raw("/c10k-end-marker", None))
            assert read_response(s, buf)[0] == 404
    finally:
        os.kill(server_pid, signal.SIGTERM)
        srv.proc.communicate(timeout=30)
    lines = trace.read_text().splitlines()
    begin = next(i for i, line in enumerate(lines) if "c10k-begin-marker" in line)
    end = next(i for i, line in enumerate(lines) if "c10k-end-marker" in line)
    first = next(i for i in range(begin, end) if lines[i].split("(")[0].split()[-1] == "write")
    calls = Counter(
        line.split("(")[0].split()[-1] for line in lines[first + 1 : end] if "(" in line
    )
    assert calls["write"] == n, calls
    assert n <= calls["read"] <= n + 2, calls
    assert calls["openat"] == calls["sendfile"] == 0, calls
