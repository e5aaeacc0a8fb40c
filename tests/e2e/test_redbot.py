"""REDbot (PyPI ``redbot``, Mark Nottingham's HTTP linter) against c10k.

Each case is one URL plus request headers: a small cached file, a large file sent with
sendfile, a 304 (If-None-Match and If-Modified-Since), a byte range, a directory
listing, a unicode file name and a precompressed stylesheet. REDbot adds its own probes
to each (a Range request, ETag and Last-Modified revalidation, gzip negotiation), which
the recording handler confirms reached the server.

The test fails on any note of level "bad", and on any "warning" not listed in
``JUSTIFIED_WARNINGS`` with the reason it is accepted. Skipped only when REDbot is not
installed (``pip install redbot``); ``redbot_run.py`` runs it in a subprocess.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_support import RecordingServer

from helpers import ServerProcess

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("redbot") is None,
    reason="REDbot is not installed: pip install redbot",
)
RUNNER = Path(__file__).with_name("redbot_run.py")

# note id -> why it is accepted rather than fixed
JUSTIFIED_WARNINGS = {
    # No Cache-Control/Expires unless configured (--cache-control; nginx, Apache and
    # http.server send none either): a static server cannot know how long a file stays
    # valid, and Last-Modified lets caches apply the RFC 9111 4.2.2 heuristic. The
    # cache_control case below shows the warning goes away once configured.
    "FRESHNESS_HEURISTIC",
}
# REDbot's range probe asks for bytes=start-(start+min(96, sample)), end inclusive, so for a
# representation of at most 97 bytes it asks for all of it, and our correct 206 (RFC 9110
# 14.2: Content-Range bytes 0-N/N+1) carries the full length. Answering 200 instead would
# tell media players (Chromium sends bytes=0-) that ranges are unsupported.
SMALL_RANGE_WARNING = "RANGE_CL_FULL"
REDBOT_RANGE_WINDOW = 97


@pytest.fixture(scope="module")
def redbot_server(e2e_root: Path) -> Iterator[RecordingServer]:
    with RecordingServer(
        e2e_root, precompressed=True, cache_control={".css": "max-age=3600"}
    ) as srv:
        yield srv


def head(srv: RecordingServer, path: str, headers: list[str] | None = None) -> dict[str, str]:
    host, port = srv.server.address
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("HEAD", path, headers=dict(h.split(": ", 1) for h in headers or []))
        resp = conn.getresponse()
        resp.read()
        return {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()


def run_redbot(url: str, headers: list[str], method: str = "GET") -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--method", method, url, *headers],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")[-3000:]
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


def flatten(notes: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for note in notes:
        yield note
        yield from flatten(note["subnotes"])


FILE_PROBES = {"RANGE_CORRECT", "INM_304", "IMS_304"}
# id, method, path, request headers (a callable of the file's HEAD headers), status, good
# notes that prove REDbot's own probes ran
CASES: list[tuple[str, str, str, Any, int, set[str]]] = [
    ("small_cached", "GET", "/small.txt", lambda h: [], 200, FILE_PROBES),
    ("large_sendfile", "GET", "/big.bin", lambda h: [], 200, FILE_PROBES),
    ("head_small", "HEAD", "/small.txt", lambda h: [], 200, {"INM_304", "IMS_304"}),
    ("head_large", "HEAD", "/big.bin", lambda h: [], 200, {"INM_304", "IMS_304"}),
    (
        "not_modified_etag",
        "GET",
        "/small.txt",
        lambda h: [f"If-None-Match: {h['etag']}"],
        304,
        set(),
    ),
    (
        "not_modified_date",
        "GET",
        "/big.bin",
        lambda h: [f"If-Modified-Since: {h['last-modified']}"],
        304,
        set(),
    ),
    ("range", "GET", "/big.bin", lambda h: ["Range: bytes=100-199"], 206, set()),
    ("range_unsatisfiable", "GET", "/big.bin", lambda h: ["Range: bytes=2000000-"], 416, set()),
    ("listing", "GET", "/listing/", lambda h: [], 200, set()),
    ("listing_redirect", "GET", "/listing", lambda h: [], 301, set()),
    ("not_found", "GET", "/nope.txt", lambda h: [], 404, set()),
    ("unicode_name", "GET", "/listing/na%C3%AFve%20caf%C3%A9.txt", lambda h: [], 200, FILE_PROBES),
    ("hash_name", "GET", "/listing/c%231.txt", lambda h: [], 200, FILE_PROBES),
    ("precompressed_css_conneg", "GET", "/style.css", lambda h: [], 200, {"CONNEG_GZIP_GOOD"}),
    (
        "precompressed_css",
        "GET",
        "/style.css",
        lambda h: ["Accept-Encoding: gzip"],
        200,
        FILE_PROBES,
    ),
]


@pytest.mark.parametrize(
    ("method", "path", "make_headers", "status", "good"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_redbot_no_bad_notes(
    redbot_server: RecordingServer,
    method: str,
    path: str,
    make_headers: Any,
    status: int,
    good: set[str],
) -> None:
    headers = make_headers(head(redbot_server, path))
    allowed = set(JUSTIFIED_WARNINGS)
    length = head(redbot_server, path, headers).get("content-length")
    if length is not None and int(length) <= REDBOT_RANGE_WINDOW:
        allowed.add(SMALL_RANGE_WARNING)
    start = len(redbot_server.log)
    result = run_redbot(redbot_server.url.rstrip("/") + path, headers, method)
    notes = list(flatten(result["notes"]))
    print(f"\nREDbot {method} {path} {headers}: {result['status']}")
    for note in notes:
        print(f"  {note['level']:8} {note['id']}: {note['summary']}")
    assert result["done"], result
    assert result["error"] is None, result
    assert result["status"] == status, result
    bad = [n for n in notes if n["level"] == "bad"]
    assert not bad, bad
    unjustified = [n for n in notes if n["level"] == "warning" and n["id"] not in allowed]
    assert not unjustified, unjustified
    ids = {n["id"] for n in notes if n["level"] == "good"}
    assert good <= ids, (good - ids, notes)
    seen = redbot_server.log[start:]
    assert seen, "REDbot's requests did not reach the server"
    if "RANGE_CORRECT" in good:
        assert any(rng is not None and st == 206 for _, _, rng, st in seen), seen


def test_redbot_configured_cache_control_has_no_freshness_warning(
    redbot_server: RecordingServer,
) -> None:
    # style.css has Cache-Control: max-age=3600 (configured above), so REDbot has
    # nothing to say about freshness.
    result = run_redbot(redbot_server.url + "style.css", [])
    ids = {n["id"] for n in flatten(result["notes"])}
    assert "FRESHNESS_HEURISTIC" not in ids, result
    assert "FRESHNESS_FRESH" in ids, result


@pytest.mark.parametrize(
    ("path", "status", "good"),
    [
        ("/listing/", 200, set()),  # --autoindex reached the handler
        ("/big.bin", 200, FILE_PROBES | {"FRESHNESS_FRESH"}),
        ("/style.css", 200, {"CONNEG_GZIP_GOOD", "FRESHNESS_FRESH"}),
    ],
)
def test_redbot_cli_server_no_bad_notes(
    e2e_root: Path, path: str, status: int, good: set[str]
) -> None:
    # The real `c10k serve` with the flags users type: the options must reach the handler
    # (FRESHNESS_FRESH: --cache-control did; CONNEG_GZIP_GOOD: precompressed is on).
    srv = ServerProcess(e2e_root, "epoll", "--autoindex", "--cache-control", "max-age=60")
    try:
        result = run_redbot(f"http://127.0.0.1:{srv.port}{path}", [])
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    notes = list(flatten(result["notes"]))
    assert result["status"] == status, result
    assert not [n for n in notes if n["level"] == "bad"], notes
    unjustified = [
        n for n in notes if n["level"] == "warning" and n["id"] not in JUSTIFIED_WARNINGS
    ]
    assert not unjustified, unjustified
    ids = {n["id"] for n in notes if n["level"] == "good"}
    assert good <= ids, (good - ids, notes)
