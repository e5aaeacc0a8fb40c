"""``--error-page CODE=PATH`` (issue 16, nginx ``error_page``) over real loopback sockets in
every mode: the page's content and type with the original status, for GET and HEAD, from
the cache on later requests; a page deleted while serving gives the built-in page.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, curl_base, make_docroot

PAGE = b"nothing here, try the home page\n"
FORBIDDEN = b"<p>not for you</p>\n"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    www = make_docroot(tmp_path_factory.mktemp("pages") / "www")
    (www / "404.txt").write_bytes(PAGE)
    (www / "403.html").write_bytes(FORBIDDEN)
    return www


@pytest.fixture(params=backend_params())
def server(request: pytest.FixtureRequest, root: Path) -> Iterator[ServerProcess]:
    args = ("--error-page", "404,410=/404.txt", "--error-page", "403=/403.html")
    srv = ServerProcess(root, request.param, *args)
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def fetch(
    conn: http.client.HTTPConnection, path: str, method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path)
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def test_error_pages_in_every_mode(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path in ("/missing", "/.secret", "/missing"):  # the second /missing: cached page
            status, headers, body = fetch(conn, path)
            assert (status, body) == (404, PAGE), path
            assert headers["content-type"] == "text/plain; charset=utf-8"
            assert "etag" not in headers
        status, headers, body = fetch(conn, "/missing", "HEAD")
        assert (status, headers["content-length"], body) == (404, str(len(PAGE)), b"")
        status, headers, body = fetch(conn, "/escape.txt")  # a symlink out of the root
        assert (status, body) == (403, FORBIDDEN)
        assert headers["content-type"] == "text/html; charset=utf-8"
        assert fetch(conn, "/small.txt")[0] == 200
    finally:
        conn.close()


def test_error_page_deleted_while_serving(root: Path, tmp_path: Path) -> None:
    www = make_docroot(tmp_path / "www")
    (www / "404.txt").write_bytes(PAGE)
    cfg = tmp_path / "c.toml"
    cfg.write_text("revalidate_seconds = 0\n")  # every request re-checks: no waiting here
    srv = ServerProcess(www, "epoll", "--error-page", "404=/404.txt", "--config", str(cfg))
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=10)
        assert fetch(conn, "/missing")[::2] == (404, PAGE)
        (www / "404.txt").unlink()
        status, headers, body = fetch(conn, "/missing")
        assert status == 404
        assert b"<h1>404 Not Found</h1>" in body
        assert headers["content-type"] == "text/html; charset=utf-8"
        conn.close()
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err


NO_CURL = shutil.which("curl") is None


@pytest.mark.skipif(NO_CURL, reason="curl is not installed (apt-get install curl)")
def test_error_page_with_curl(root: Path) -> None:
    srv = ServerProcess(root, "epoll", "--error-page", "404=/404.txt")
    try:
        *trust, base = curl_base(srv.port)
        out = subprocess.run(
            ["curl", *trust, "-sS", "-w", "%{http_code} %{content_type}", f"{base}/nope"],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
        assert out == PAGE + b"404 text/plain; charset=utf-8"
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
