"""``--add-header`` and the TOML ``add_header_paths`` table (issue 16, nginx ``add_header``)
over real loopback sockets in every mode: on 200 (memory and sendfile), HEAD, 206, 304 and
301, also on repeated (cached, hot-path) answers; per path prefix; never on errors.
"""

from __future__ import annotations

import http.client
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, big_content, curl_base, make_docroot

CSP = "default-src 'self'"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("headers") / "www")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cfg = tmp_path_factory.mktemp("cfg") / "c.toml"
    cfg.write_text('[add_header_paths]\n"/sub/" = ["Cache-Control: public, immutable"]\n')
    return cfg


@pytest.fixture(params=backend_params())
def server(request: pytest.FixtureRequest, root: Path, config: Path) -> Iterator[ServerProcess]:
    args = ["--add-header", "X-Frame-Options: DENY"]
    args += ["--add-header", f"Content-Security-Policy: {CSP}"]
    srv = ServerProcess(root, request.param, *args, "--config", str(config))
    yield srv
    code, _, err = srv.stop()
    assert code == 0, err[-2000:]


def fetch(
    conn: http.client.HTTPConnection, path: str, method: str = "GET", **headers: str
) -> tuple[int, http.client.HTTPMessage, bytes]:
    conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
    r = conn.getresponse()
    return r.status, r.headers, r.read()


def test_added_headers_in_every_mode(server: ServerProcess) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        etag = None
        for _ in range(3):  # the first from disk, then the pre-rendered cached answer
            status, headers, _ = fetch(conn, "/small.txt")
            assert status == 200
            assert headers.get_all("X-Frame-Options") == ["DENY"]
            assert headers.get_all("Content-Security-Policy") == [CSP]
            assert headers.get("Cache-Control") is None
            etag = headers["ETag"]
        answers = [
            fetch(conn, "/small.txt", "HEAD"),
            fetch(conn, "/small.txt", if_none_match=str(etag)),
            fetch(conn, "/big.bin", range="bytes=10-19"),
            fetch(conn, "/sub"),
        ]
        assert [a[0] for a in answers] == [200, 304, 206, 301]
        assert answers[2][2] == big_content()[10:20]
        for _, headers, _ in answers:
            assert headers.get_all("X-Frame-Options") == ["DENY"]
        status, headers, body = fetch(conn, "/big.bin")  # sendfile
        assert (status, len(body), headers["X-Frame-Options"]) == (200, len(big_content()), "DENY")
        status, headers, _ = fetch(conn, "/sub/page.html")
        assert (status, headers["Cache-Control"], headers["X-Frame-Options"]) == (
            200,
            "public, immutable",
            "DENY",
        )
        for path in ("/missing", "/.secret", "/escape.txt"):
            status, headers, _ = fetch(conn, path)
            assert status in (403, 404)
            assert headers.get("X-Frame-Options") is None, path
    finally:
        conn.close()


NO_CURL = shutil.which("curl") is None


@pytest.mark.skipif(NO_CURL, reason="curl is not installed (apt-get install curl)")
def test_added_headers_with_curl(root: Path) -> None:
    srv = ServerProcess(root, "epoll", "--add-header", "Referrer-Policy: no-referrer")
    try:
        *trust, base = curl_base(srv.port)
        out = subprocess.run(
            ["curl", *trust, "-sS", "-I", f"{base}/small.txt", "-I", f"{base}/small.txt"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        assert out.lower().count("\nreferrer-policy: no-referrer\n") == 2, out
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
