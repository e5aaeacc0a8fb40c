"""Virtual hosts (issue 16: TOML ``[[site]]`` tables) over real loopback sockets in every
mode, with http.client, raw sockets and curl: two sites with different roots answering the
same paths with their own bytes (on one keep-alive connection, alternating, and across
connections: the wire memo must never give one site's bytes to another), wildcards against
exact names, Host in odd case / with a port / with a trailing dot, unknown Hosts (first
site, or 421), missing / repeated / unicode Host (400), absolute-form targets (the
target's authority wins, RFC 9112 section 3.2.2), per-site fallback, error page, added
headers and limit_rate; and ``limit_rate_paths`` pacing a download within 10 %.
"""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect, http_connection, recv_all

LOOP_MODES = [p for p in backend_params() if p != "threads"]
PACED_SIZE = 384 * 1024


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("vhost")
    roots = {}
    for site in ("a", "b", "c"):
        d = base / site
        d.mkdir()
        (d / "same.txt").write_text(f"site {site} same path\n")
        (d / "index.html").write_text(f"<p>index of {site}</p>\n")
        (d / "404.html").write_text(f"<p>{site} has no such page</p>\n")
        (d / "dir").mkdir()
        (d / "paced.bin").write_bytes(os.urandom(PACED_SIZE))
        (d / "page.html").write_text(f"<p>{site} compressible</p>\n" * 200)
        roots[site] = d
    return roots


def site_toml(roots: dict[str, Path], top: str = "") -> str:
    return f"""{top}
[[site]]
names = ["a.example", "*.a.example", "127.0.0.1"]
root = "{roots["a"]}"
error_page = ["404=/404.html"]
add_header = ["X-Site: a"]

[[site]]
names = ["b.example", "*.wild.example"]
root = "{roots["b"]}"
fallback = "/index.html"
add_header = ["X-Site: b"]
autoindex = true

[[site]]
names = ["exact.wild.example", "[::1]"]
root = "{roots["c"]}"
add_header = ["X-Site: c"]
compress = false
"""


def start(roots: dict[str, Path], mode: str, toml: str, *args: str) -> ServerProcess:
    cfg = roots["a"].parent / f"c{abs(hash(toml))}.toml"
    cfg.write_text(toml)
    return ServerProcess(roots["a"].parent, mode, "--config", str(cfg), *args)


@pytest.fixture(scope="module", params=backend_params())
def server(request: pytest.FixtureRequest, roots: dict[str, Path]) -> Iterator[ServerProcess]:
    srv = start(roots, request.param, site_toml(roots), "--status")
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def fetch(
    conn: http.client.HTTPConnection, host: str, path: str = "/same.txt"
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn.request("GET", path, headers={"Host": host})
    r = conn.getresponse()
    return r.status, r.headers, r.read()


def raw(port: int, request: bytes) -> bytes:
    with connect(port) as s:
        s.sendall(request)
        return recv_all(s)


def test_vhost_same_path_alternating_on_one_connection(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(4):  # from disk, then the cache, the hot path and the wire memo
            for site in "abab":
                status, headers, body = fetch(conn, f"{site}.example")
                assert (status, body) == (200, f"site {site} same path\n".encode())
                assert headers["X-Site"] == site
    finally:
        conn.close()


def test_vhost_same_path_across_connections(server: ServerProcess) -> None:
    for _ in range(3):
        for site in "ba":
            request = f"GET /same.txt HTTP/1.1\r\nHost: {site}.example\r\nConnection: close\r\n\r\n"
            reply = raw(server.port, request.encode())
            assert reply.endswith(f"site {site} same path\n".encode()), reply


@pytest.mark.parametrize(
    ("host", "site"),
    [
        ("x.wild.example", "b"),  # wildcard
        ("deep.x.wild.example", "b"),  # any depth
        ("exact.wild.example", "c"),  # exact beats the wildcard
        ("Exact.WILD.example.", "c"),
        ("A.EXAMPLE:8080", "a"),  # case and port
        ("b.example.", "b"),  # trailing dot
        ("B.Example.:1", "b"),
        ("x.y.a.example", "a"),
        ("[::1]:80", "c"),
        ("wild.example", "a"),  # the bare name is not *.wild.example: unknown, first site
        ("nobody.example", "a"),
        ("", "a"),  # an empty Host (RFC 9112 3.2: no authority) is unknown too
    ],
)
def test_vhost_host_matching(server: ServerProcess, host: str, site: str) -> None:
    request = f"GET /same.txt HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    reply = raw(server.port, request.encode())
    assert reply.startswith(b"HTTP/1.1 200 "), reply
    assert reply.endswith(f"site {site} same path\n".encode()), reply


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /same.txt HTTP/1.1\r\n\r\n",  # no Host
        b"GET /same.txt HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        b"GET /same.txt HTTP/1.1\r\nHost: a.example\r\nhost: a.example\r\n\r\n",
        "GET /same.txt HTTP/1.1\r\nHost: bücher.example\r\n\r\n".encode(),
        b"GET /same.txt HTTP/1.1\r\nHost: a.example b\r\n\r\n",
        b"GET /same.txt HTTP/1.1\r\nHost: a.example/x\r\n\r\n",
        b"GET /same.txt HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
        b"GET http://user@b.example/same.txt HTTP/1.1\r\nHost: a.example\r\n\r\n",
    ],
    ids=["none", "two", "two-case", "unicode", "space", "slash", "userinfo", "abs-userinfo"],
)
def test_vhost_bad_host_is_400(server: ServerProcess, request_bytes: bytes) -> None:
    reply = raw(server.port, request_bytes)
    assert reply.startswith(b"HTTP/1.1 400 "), reply


def test_vhost_absolute_form_authority_wins(server: ServerProcess) -> None:
    with connect(server.port) as s:
        s.sendall(
            b"GET http://b.example/same.txt HTTP/1.1\r\nHost: a.example\r\n\r\n"
            b"GET HTTP://Exact.Wild.Example:80/same.txt HTTP/1.1\r\nHost: b.example\r\n\r\n"
            b"GET /same.txt HTTP/1.1\r\nHost: b.example\r\nConnection: close\r\n\r\n"
        )
        reply = recv_all(s)
    assert reply.count(b"HTTP/1.1 200 ") == 3, reply
    bodies = [p.split(b"\r\n\r\n", 1)[1].split(b"\n")[0] for p in reply.split(b"HTTP/1.1 ")[1:]]
    assert bodies == [b"site b same path", b"site c same path", b"site b same path"]


def test_vhost_http10_without_host_gets_the_first_site(server: ServerProcess) -> None:
    reply = raw(server.port, b"GET /same.txt HTTP/1.0\r\n\r\n")
    assert reply.endswith(b"site a same path\n"), reply


def test_vhost_per_site_pages_and_headers(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(2):
            status, headers, body = fetch(conn, "a.example", "/missing")
            assert (status, body) == (404, b"<p>a has no such page</p>\n")  # its error page
            assert headers["X-Site"] is None  # no added headers on errors
            status, headers, body = fetch(conn, "b.example", "/app/route")
            assert (status, body, headers["X-Site"]) == (200, b"<p>index of b</p>\n", "b")
            status, _, body = fetch(conn, "c.example.wild.example", "/missing")  # b: fallback
            assert status == 200
            status, _, body = fetch(conn, "exact.wild.example", "/missing")  # c: built-in 404
            assert status == 404
            assert b"404 Not Found" in body
            status, _, body = fetch(conn, "b.example", "/dir/")  # b lists directories
            assert status == 200
            assert b"paced.bin" not in body
            status, _, _ = fetch(conn, "a.example", "/dir/")  # a does not
            assert status == 404
    finally:
        conn.close()


def test_vhost_compress_per_site(server: ServerProcess) -> None:
    # On-the-fly compression is a static setting, so per site with no code of its own.
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(2):
            for host, coding in (("a.example", "gzip"), ("exact.wild.example", None)):
                conn.request("GET", "/page.html", headers={"Host": host, "Accept-Encoding": "gzip"})
                r = conn.getresponse()
                r.read()
                assert (r.status, r.headers["Content-Encoding"]) == (200, coding), host
    finally:
        conn.close()


def test_vhost_status_page_answers_on_any_host(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for host in ("a.example", "b.example", "unknown.example"):
            status, _, body = fetch(conn, host, "/_c10k/status")
            assert status == 200
            assert b"Active connections" in body
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl (apt-get install curl)")
def test_vhost_with_curl_resolve(server: ServerProcess) -> None:
    for site in ("a", "b", "a"):
        name = f"{site}.example"
        url = f"http://{name}:{server.port}/same.txt"
        out = subprocess.run(
            ["curl", "-sS", "--resolve", f"{name}:{server.port}:127.0.0.1", url, url],
            capture_output=True,
            check=True,
            timeout=10,
        ).stdout
        assert out == f"site {site} same path\n".encode() * 2


@pytest.mark.parametrize("mode", backend_params())
def test_vhost_unknown_host_421(mode: str, roots: dict[str, Path]) -> None:
    srv = start(roots, mode, site_toml(roots, "unknown_host = 421"))
    try:
        with connect(srv.port) as s:
            s.sendall(
                b"GET /same.txt HTTP/1.1\r\nHost: nobody.example\r\n\r\n"
                b"GET /same.txt HTTP/1.1\r\nHost: a.example\r\nConnection: close\r\n\r\n"
            )
            reply = recv_all(s)
        assert reply.startswith(b"HTTP/1.1 421 Misdirected Request\r\n"), reply
        assert reply.endswith(b"site a same path\n"), reply  # the connection stays usable
        assert raw(srv.port, b"GET /same.txt HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.1 421 ")
    finally:
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]


@pytest.mark.parametrize("mode", backend_params())
def test_vhost_engine_errors_get_their_sites_page(mode: str, roots: dict[str, Path]) -> None:
    # The server's own answers (405, a malformed head's 400, unknown_host's 421) with
    # the page of the site the Host names, or of the first site when none can be told.
    toml = f"""unknown_host = 421
[[site]]
names = ["a.example"]
root = "{roots["a"]}"
error_page = ["400,405,421=/404.html"]

[[site]]
names = ["b.example"]
root = "{roots["b"]}"
error_page = ["405=/404.html"]
"""
    srv = start(roots, mode, toml)
    try:
        for host, site in (("a.example", "a"), ("B.example.", "b")):
            head = b"DELETE / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n"
            reply = raw(srv.port, head % host.encode())
            assert reply.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), reply
            assert b"\r\nAllow: GET, HEAD\r\n" in reply, reply
            assert reply.endswith(f"<p>{site} has no such page</p>\n".encode()), reply
        close = b"Connection: close\r\n\r\n"
        reply = raw(srv.port, b"GET / HTTP/1.1\r\nHost: nobody.example\r\n" + close)
        assert reply.startswith(b"HTTP/1.1 421 Misdirected Request\r\n"), reply
        assert reply.endswith(b"<p>a has no such page</p>\n"), reply
        reply = raw(srv.port, b"NONSENSE\r\n\r\n")
        assert reply.startswith(b"HTTP/1.1 400 Bad Request\r\n"), reply
        assert reply.endswith(b"<p>a has no such page</p>\n"), reply
    finally:
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]


# -- pacing per site and per path --------------------------------------------------------------
def timed_body(port: int, host: str, path: str) -> tuple[bytes, float]:
    with connect(port, timeout=15) as s:
        t0 = time.monotonic()
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        data = recv_all(s, timeout=15)
        return data.partition(b"\r\n\r\n")[2], time.monotonic() - t0


RATE = 256 * 1024
AFTER = 128 * 1024
PACED_SECONDS = (PACED_SIZE - AFTER) / RATE  # 1.0


@pytest.mark.timed
@pytest.mark.parametrize("mode", LOOP_MODES)
def test_vhost_limit_rate_per_site_and_per_path(mode: str, roots: dict[str, Path]) -> None:
    # Site a: unthrottled. Site b: 1m (fast: 0.25 s). Its /dir/ prefix: 256k after 128k, 1 s.
    toml = site_toml(roots).replace(
        "autoindex = true\n",
        'autoindex = true\nlimit_rate = "1m"\nlimit_rate_after = "128k"\n'
        '[site.limit_rate_paths]\n"/dir/" = "256k"\n',
    )
    (roots["b"] / "dir" / "paced.bin").write_bytes((roots["b"] / "paced.bin").read_bytes())
    srv = start(roots, mode, toml)
    try:
        body, fast = timed_body(srv.port, "a.example", "/paced.bin")
        assert body == (roots["a"] / "paced.bin").read_bytes()
        assert fast < 0.2 * PACED_SECONDS, f"site a is not throttled: {fast:.2f} s"
        body, site_rate = timed_body(srv.port, "b.example", "/paced.bin")
        assert body == (roots["b"] / "paced.bin").read_bytes()
        assert 0.9 * 0.25 <= site_rate <= 0.25 * 1.1 + 0.3, f"site b at 1m: {site_rate:.2f} s"
        body, paced = timed_body(srv.port, "b.example", "/d%69r/paced.bin")  # decoded: /dir/
        assert body == (roots["b"] / "paced.bin").read_bytes()
        assert paced >= 0.9 * PACED_SECONDS, f"{PACED_SIZE} bytes in {paced:.2f} s: too fast"
        assert paced <= 1.1 * PACED_SECONDS + 0.5, f"{paced:.2f} s: much slower than the rate"
    finally:
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]


def test_vhost_threads_refuses_per_site_pacing(roots: dict[str, Path]) -> None:
    for extra in ('limit_rate = "1m"\n', '[site.limit_rate_paths]\n"/d/" = "1k"\n'):
        toml = site_toml(roots).replace("autoindex = true\n", "autoindex = true\n" + extra)
        with pytest.raises(RuntimeError) as info:
            start(roots, "threads", toml)
        message = str(info.value)
        assert "cannot honour limit_rate" in message, message
        assert "in [[site]] 2: a client thread blocks in sendfile" in message, message


def test_vhost_over_tls(roots: dict[str, Path]) -> None:
    # The site comes from Host, not from the TLS server name (as nginx without
    # ssl_verify_client: one certificate may cover several sites).
    cfg = roots["a"].parent / "tls.toml"
    cfg.write_text(site_toml(roots))
    srv = ServerProcess(roots["a"].parent, "epoll", "--config", str(cfg), tls=True)
    try:
        conn = http_connection(srv.port, timeout=10)
        try:
            for site in "abba":
                status, headers, body = fetch(conn, f"{site}.example")
                assert (status, body, headers["X-Site"]) == (
                    200,
                    f"site {site} same path\n".encode(),
                    site,
                )
        finally:
            conn.close()
    finally:
        code, _, err = srv.stop()
        assert code == 0, err[-2000:]
