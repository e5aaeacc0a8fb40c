"""StaticFiles ``add_headers`` / ``add_header_paths`` (issue 16, nginx ``add_header``), no
sockets: which lines are refused, which responses carry the fields (200, 206, 304, 301,
listings: not errors), which paths match, and that cached responses carry them
pre-rendered (the hot path returns the very same object, fields included).
"""

from __future__ import annotations

import gzip
import pathlib
from collections.abc import Callable

import pytest
from static_helpers import fields_of

from c10k.http.events import Request
from c10k.static import StaticFiles
from c10k.static.headers import HeaderRules, check_prefix, parse_header

MakeRequest = Callable[..., Request]


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("X-Frame-Options DENY", "must be 'Name: value'"),
        (": value", "is not a header name"),
        ("X Frame: DENY", "is not a header name"),
        ("X-Ü: 1", "is not a header name"),
        ("X-A: one\r\nX-B: two", "printable ASCII"),
        ("X-A: one\ntwo", "printable ASCII"),
        ("X-A: \x00", "printable ASCII"),
        ("X-A: é", "printable ASCII"),
        ("X-A:   ", "the value is empty"),
        ("Content-Length: 5", "Content-Length cannot be added: c10k frames every message"),
        ("transfer-encoding: chunked", "cannot be added: c10k frames every message"),
        ("Connection: close", "hop-by-hop"),
        ("Keep-Alive: timeout=5", "hop-by-hop"),
        ("Upgrade: h2c", "hop-by-hop"),
        ("Date: today", "c10k sends it on every response"),
        ("Server: nginx", "c10k sends it on every response"),
        ("Content-Type: text/plain", "from the file name"),
        ('ETag: "x"', "computes it for each file"),
        ("Strict-Transport-Security: max-age=1", "use --hsts"),
    ],
)
def test_parse_header_refusals(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        parse_header(line)
    assert "\n" not in str(info.value).replace("\\n", "")  # one line, control chars escaped


@pytest.mark.parametrize(
    ("line", "parsed"),
    [
        ("X-Frame-Options: DENY", (b"X-Frame-Options", b"DENY")),
        ("Cache-Control:public, max-age=60 ", (b"Cache-Control", b"public, max-age=60")),
        ("Link: </a.css>; rel=preload", (b"Link", b"</a.css>; rel=preload")),
        ("x-custom: a: b", (b"x-custom", b"a: b")),
    ],
)
def test_parse_header_accepts(line: str, parsed: tuple[bytes, bytes]) -> None:
    assert parse_header(line) == parsed


@pytest.mark.parametrize("prefix", ["assets/", "/a?b", "/a#b", "/a\nb"])
def test_check_prefix_refusals(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        check_prefix(prefix)


def test_header_rules_order_and_matching() -> None:
    rules = HeaderRules(["G: 1"], {"/a/b/": ["Deep: 3"], "/a/": ["Mid: 2"]})
    assert rules.fields_for("/a/b/c") == ((b"G", b"1"), (b"Mid", b"2"), (b"Deep", b"3"))
    assert rules.fields_for("/a/x") == ((b"G", b"1"), (b"Mid", b"2"))
    assert rules.fields_for("/ab") == ((b"G", b"1"),)
    assert not HeaderRules()


@pytest.fixture
def files(docroot: pathlib.Path) -> StaticFiles:
    (docroot / "assets").mkdir()
    (docroot / "assets" / "app.js").write_bytes(b"js\n")
    return StaticFiles(
        docroot,
        autoindex=True,
        add_headers=["X-Frame-Options: DENY"],
        add_header_paths={"/assets/": ["Cache-Control: public, immutable"]},
    )


ADDED = (b"x-frame-options", b"DENY")


@pytest.mark.parametrize(
    ("target", "method", "headers", "status"),
    [
        (b"/hello.txt", b"GET", {}, 200),
        (b"/hello.txt", b"HEAD", {}, 200),
        (b"/big.bin", b"GET", {}, 200),  # a FileRegion 200
        (b"/big.bin", b"GET", {b"range": b"bytes=0-9"}, 206),
        (b"/hello.txt", b"GET", {b"range": b"bytes=0-1,4-5"}, 206),  # multipart
        (b"/sub", b"GET", {}, 301),
        (b"/sub/", b"GET", {}, 200),  # its index
        (b"/emptydir/", b"GET", {}, 200),  # a listing
    ],
)
def test_added_header_on_successes(
    files: StaticFiles,
    make_request: MakeRequest,
    target: bytes,
    method: bytes,
    headers: dict[bytes, bytes],
    status: int,
) -> None:
    response = files.handle(make_request(target, method, headers), 0.0)
    assert response.status == status
    assert fields_of(response.head)[ADDED[0]] == ADDED[1]
    if hasattr(response.body, "release"):
        response.body.release()  # type: ignore[union-attr]
    elif isinstance(response.body, tuple):
        for part in response.body:
            if hasattr(part, "release"):
                part.release()  # type: ignore[union-attr]


def test_added_header_on_304(files: StaticFiles, make_request: MakeRequest) -> None:
    etag = fields_of(files.handle(make_request(b"/hello.txt"), 0.0).head)[b"etag"]
    response = files.handle(make_request(b"/hello.txt", headers={b"if-none-match": etag}), 0.0)
    assert response.status == 304
    assert fields_of(response.head)[ADDED[0]] == ADDED[1]


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [
        (b"/nothing", {}, 404),
        (b"/.secret", {}, 404),
        (b"/%zz", {}, 400),
        (b"/hello.txt", {b"if-match": b'"other"'}, 412),
        (b"/hello.txt", {b"range": b"bytes=999-"}, 416),
    ],
)
def test_added_header_not_on_errors(
    files: StaticFiles,
    make_request: MakeRequest,
    target: bytes,
    headers: dict[bytes, bytes],
    status: int,
) -> None:
    response = files.handle(make_request(target, headers=headers), 0.0)
    assert response.status == status
    assert ADDED[0] not in fields_of(response.head)


def test_added_header_per_prefix(files: StaticFiles, make_request: MakeRequest) -> None:
    app = fields_of(files.handle(make_request(b"/assets/app.js"), 0.0).head)
    assert app[b"cache-control"] == b"public, immutable"
    assert app[ADDED[0]] == ADDED[1]
    other = fields_of(files.handle(make_request(b"/hello.txt"), 0.0).head)
    assert b"cache-control" not in other
    # the decoded path is matched: %61ssets is /assets
    encoded = fields_of(files.handle(make_request(b"/%61ssets/app.js"), 0.0).head)
    assert encoded[b"cache-control"] == b"public, immutable"


def test_added_header_is_pre_rendered_on_the_hot_path(
    files: StaticFiles, make_request: MakeRequest
) -> None:
    first = files.handle(make_request(b"/hello.txt"), 0.0)
    again = files.handle(make_request(b"/hello.txt"), 0.5)
    fast = files.handle_fast(make_request(b"/hello.txt"), 0.5)
    assert again is first  # the cached object, fields already in it
    assert fast is first
    assert b"\r\nX-Frame-Options: DENY\r\n" in first.head


def test_added_header_on_precompressed_and_fallback(
    docroot: pathlib.Path, make_request: MakeRequest
) -> None:
    (docroot / "hello.txt.gz").write_bytes(gzip.compress(b"hello, static world\n"))
    files = StaticFiles(
        docroot,
        fallback="/index.html",
        precompressed=True,
        add_header_paths={"/index.html": ["X-App: shell"], "/hello": ["X-Hello: 1"]},
    )
    gz = files.handle(make_request(b"/hello.txt", headers={b"accept-encoding": b"gzip"}), 0.0)
    assert fields_of(gz.head)[b"content-encoding"] == b"gzip"
    assert fields_of(gz.head)[b"x-hello"] == b"1"
    # the fallback's own path is matched (nginx: try_files' internal redirect)
    spa = files.handle(make_request(b"/deep/route"), 0.0)
    assert (spa.status, fields_of(spa.head)[b"x-app"]) == (200, b"shell")


def test_added_header_refused_by_the_handler(docroot: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="Content-Length cannot be added"):
        StaticFiles(docroot, add_headers=["Content-Length: 1"])
    with pytest.raises(ValueError, match="must start with '/'"):
        StaticFiles(docroot, add_header_paths={"assets/": ["X-A: 1"]})
