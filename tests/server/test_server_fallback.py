"""``--fallback`` (issue 16, nginx ``try_files $uri $uri/ /index.html``) over real loopback
sockets in every mode: a missing path gets the app shell with 200, what exists wins,
refusals stay refusals, conditionals and ranges work on the fallback file; and curl.
"""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, curl_base, make_docroot

APP = b"<!doctype html><title>app</title><div id=root></div>\n"
SMALL = b"0123456789" * 51 + b"AB"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    www = make_docroot(tmp_path_factory.mktemp("spa") / "www")
    (www / "app.html").write_bytes(APP)
    return www


@pytest.fixture(params=backend_params())
def server(request: pytest.FixtureRequest, root: Path) -> Iterator[ServerProcess]:
    srv = ServerProcess(root, request.param, "--fallback", "/app.html")
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def fetch(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
    r = conn.getresponse()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()


def raw_status(port: int, target: str) -> tuple[int, bytes]:
    # http.client would normalise nothing either, but a raw request shows exactly what
    # went on the wire: the target as written, traversal included.
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


def test_fallback_in_every_mode(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for path in ("/dashboard", "/users/42/edit", "/dashboard"):  # keep-alive, repeated
            status, headers, body = fetch(conn, path)
            assert (status, body) == (200, APP), path
            assert headers["content-type"] == "text/html; charset=utf-8"
        status, headers, body = fetch(conn, "/users/42", "HEAD")
        assert (status, headers["content-length"], body) == (200, str(len(APP)), b"")
        assert fetch(conn, "/small.txt")[::2] == (200, SMALL)
        assert fetch(conn, "/sub/")[::2] == (200, b"<h1>sub</h1>\n")
        assert fetch(conn, "/sub")[0] == 301
        etag = fetch(conn, "/route")[1]["etag"]
        assert fetch(conn, "/elsewhere", if_none_match=etag)[0] == 304
        status, headers, body = fetch(conn, "/route", range="bytes=2-9")
        assert (status, body, headers["content-range"]) == (206, APP[2:10], f"bytes 2-9/{len(APP)}")
    finally:
        conn.close()
    refusals = {"/.secret": 404, "/../outside-secret.txt": 404, "/escape.txt": 403}
    for target, status in refusals.items():
        got, body = raw_status(server.port, target)
        assert got == status, target
        assert body != APP


NO_CURL = shutil.which("curl") is None


@pytest.mark.skipif(NO_CURL, reason="curl is not installed (apt-get install curl)")
def test_fallback_with_curl(root: Path) -> None:
    srv = ServerProcess(root, "epoll", "--fallback", "/app.html")
    try:
        *trust, base = curl_base(srv.port)
        out = subprocess.run(
            ["curl", *trust, "-sS", "-w", "%{http_code}", f"{base}/deep/link?tab=2"],
            capture_output=True,
            timeout=30,
            check=True,
        ).stdout
        assert out == APP + b"200"
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
