"""StaticFiles features of issue 6, called directly (no sockets): ranges, preconditions,
If-Range, precompressed siblings, directory listings, Cache-Control/Expires, charset,
handle_fast and thread safety.

Range tests read self-checking files (``X%08d\\n`` records: record n at offset 10n), so
every slice checks itself; multipart bodies are parsed and each part's Content-Range is
checked against its bytes.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import re
import threading
from collections.abc import Callable

import pytest
from static_helpers import check_part, parse_multipart, self_checking

from c10k.http.events import Request
from c10k.http.writers import Response, body_length
from c10k.region import FileRegion
from c10k.static import StaticFiles, fsio, sharedfd
from c10k.static.resolve import decode_path

MakeRequest = Callable[..., Request]

BIG = self_checking(100_000)  # docroot/big.bin (a FileRegion file)
SMALL = self_checking(1_000)  # docroot/small.bin (an in-memory file)


def fields(response: Response) -> dict[bytes, bytes]:
    lines = response.head.split(b"\r\n")
    out: dict[bytes, bytes] = {}
    for line in lines[1:-1]:
        name, _, value = line.partition(b": ")
        assert name.lower() not in out, f"duplicate field {name!r}"
        out[name.lower()] = value
    return out


def body_of(response: Response) -> bytes:
    """The body bytes; releases any FileRegion (as the server would after sending)."""
    body = response.body
    parts = body if isinstance(body, tuple) else (body,)
    out = []
    for part in parts:
        if isinstance(part, FileRegion):
            out.append(os.pread(part.fd, part.count, part.offset))
        elif part is not None:
            out.append(part)
    for part in parts:
        if isinstance(part, FileRegion):
            part.release()
    data = b"".join(out)
    assert len(data) == body_length(body)
    return data


@pytest.fixture
def root(docroot: pathlib.Path) -> pathlib.Path:
    (docroot / "small.bin").write_bytes(SMALL)
    return docroot


def get(
    files: StaticFiles,
    make_request: MakeRequest,
    target: bytes,
    headers: dict[bytes, bytes] | None = None,
    method: bytes = b"GET",
    now: float = 0.0,
) -> Response:
    return files.handle(make_request(target, method, headers), now=now)


# -- ranges ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("target", "content"), [(b"/small.bin", SMALL), (b"/big.bin", BIG)])
@pytest.mark.parametrize(
    ("spec", "first", "last"),
    [
        (b"bytes=0-9", 0, 9),
        (b"bytes=100-199", 100, 199),
        (b"bytes=-500", -500, -1),
        (b"bytes=500-", 500, -1),
        (b"bytes=990-5000000", 990, -1),
    ],
)
def test_range_single_part(
    root: pathlib.Path,
    make_request: MakeRequest,
    fd_count: Callable[[], int],
    target: bytes,
    content: bytes,
    spec: bytes,
    first: int,
    last: int,
) -> None:
    files = StaticFiles(root)
    files.handle(make_request(target, b"HEAD"), now=0.0)  # prime the cache
    before = fd_count()
    response = get(files, make_request, target, {b"range": spec})
    size = len(content)
    first, last = first % size, last % size
    assert response.status == 206
    f = fields(response)
    assert f[b"content-range"] == b"bytes %d-%d/%d" % (first, last, size)
    assert f[b"content-length"] == b"%d" % (last - first + 1)
    assert f[b"content-type"] == b"application/octet-stream"
    assert b"etag" in f
    assert b"last-modified" in f
    data = body_of(response)
    assert data == content[first : last + 1]
    assert fd_count() == before  # the region's fd was closed by release()


@pytest.mark.parametrize(("target", "content"), [(b"/small.bin", SMALL), (b"/big.bin", BIG)])
def test_range_multipart(
    root: pathlib.Path,
    make_request: MakeRequest,
    fd_count: Callable[[], int],
    target: bytes,
    content: bytes,
) -> None:
    files = StaticFiles(root)
    before = fd_count()
    response = get(files, make_request, target, {b"range": b"bytes=0-9,20-29,-10"})
    assert response.status == 206
    f = fields(response)
    assert b"content-range" not in f
    body = body_of(response)
    assert f[b"content-length"] == b"%d" % len(body)
    parts = parse_multipart(f[b"content-type"], body)
    assert [check_part(h, d, content) for h, d in parts] == [
        (0, 9),
        (20, 29),
        (len(content) - 10, len(content) - 1),
    ]
    for headers, _ in parts:
        assert headers[b"content-type"] == b"application/octet-stream"
    assert fd_count() == before


def test_range_multipart_large_file_is_regions_sharing_one_fd(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    response = get(StaticFiles(root), make_request, b"/big.bin", {b"range": b"bytes=0-9,50-59"})
    assert isinstance(response.body, tuple)
    regions = [p for p in response.body if isinstance(p, FileRegion)]
    assert [(r.offset, r.count) for r in regions] == [(0, 10), (50, 10)]
    assert regions[0].fd == regions[1].fd
    # Only the last region closes the shared fd: the server releases them in order.
    assert regions[0].closer is None
    assert regions[1].closer is not None
    body_of(response)


def test_range_boundary_is_random_per_response(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(root)
    types = set()
    for _ in range(3):
        response = get(files, make_request, b"/small.bin", {b"range": b"bytes=0-1,5-6"})
        types.add(fields(response)[b"content-type"])
    assert len(types) == 3


@pytest.mark.parametrize("target", [b"/small.bin", b"/big.bin"])
@pytest.mark.parametrize("spec", [b"bytes=100000-", b"bytes=5000000-5000001", b"bytes=-0"])
def test_range_unsatisfiable_416(
    root: pathlib.Path, make_request: MakeRequest, target: bytes, spec: bytes
) -> None:
    size = len(SMALL) if target == b"/small.bin" else len(BIG)
    if spec == b"bytes=100000-" and size == len(BIG):
        spec = b"bytes=%d-" % size
    response = get(StaticFiles(root), make_request, target, {b"range": spec})
    assert response.status == 416
    assert fields(response)[b"content-range"] == b"bytes */%d" % size


@pytest.mark.parametrize(
    "spec",
    [
        b"bytes=5-1",  # last < first: invalid
        b"bytes=abc",
        b"lines=0-1",
        b"bytes 0-1",
        b"bytes=0-1;x",
        b"bytes=" + b",".join(b"%d-%d" % (i * 10, i * 10) for i in range(17)),  # > 16
        b"bytes=0-,0-",  # asks for more than the file: Apache killer style
        b"bytes=" + b",".join([b"0-499"] * 3),
    ],
)
def test_range_ignored_gives_full_200(
    root: pathlib.Path, make_request: MakeRequest, spec: bytes
) -> None:
    response = get(StaticFiles(root), make_request, b"/small.bin", {b"range": spec})
    assert response.status == 200
    assert body_of(response) == SMALL


def test_range_max_ranges_configurable(root: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(root, max_ranges=1)
    assert get(files, make_request, b"/small.bin", {b"range": b"bytes=0-1,5-6"}).status == 200
    assert get(files, make_request, b"/small.bin", {b"range": b"bytes=0-1"}).status == 206
    off = StaticFiles(root, max_ranges=0)  # nginx max_ranges 0: ranges disabled
    assert get(off, make_request, b"/small.bin", {b"range": b"bytes=0-1"}).status == 200


def test_range_overlapping_coalesced(root: pathlib.Path, make_request: MakeRequest) -> None:
    response = get(
        StaticFiles(root), make_request, b"/big.bin", {b"range": b"bytes=0-9,5-19,20-29"}
    )
    assert response.status == 206
    assert fields(response)[b"content-range"] == b"bytes 0-29/%d" % len(BIG)
    assert body_of(response) == BIG[:30]


def test_range_sixteen_ranges_still_served(root: pathlib.Path, make_request: MakeRequest) -> None:
    spec = b"bytes=" + b",".join(b"%d-%d" % (i * 100, i * 100 + 9) for i in range(16))
    response = get(StaticFiles(root), make_request, b"/big.bin", {b"range": spec})
    assert response.status == 206
    f = fields(response)
    parts = parse_multipart(f[b"content-type"], body_of(response))
    assert len(parts) == 16
    for headers, data in parts:
        check_part(headers, data, BIG)


def test_range_head_ignored(root: pathlib.Path, make_request: MakeRequest) -> None:
    response = get(StaticFiles(root), make_request, b"/big.bin", {b"range": b"bytes=0-9"}, b"HEAD")
    assert response.status == 200
    assert response.body is None
    assert fields(response)[b"content-length"] == b"%d" % len(BIG)


def test_range_responses_are_fresh_and_cache_untouched(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(root)
    full = get(files, make_request, b"/small.bin")
    head_before, body_before = full.head, full.body
    a = get(files, make_request, b"/small.bin", {b"range": b"bytes=0-9"})
    b = get(files, make_request, b"/small.bin", {b"range": b"bytes=0-9"})
    assert a is not b
    assert get(files, make_request, b"/small.bin") is full
    assert (full.head, full.body) == (head_before, body_before)


def test_accept_ranges_on_200s(root: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(root)
    for target in (b"/small.bin", b"/big.bin"):
        for method in (b"GET", b"HEAD"):
            response = get(files, make_request, target, method=method)
            assert fields(response)[b"accept-ranges"] == b"bytes"
            if method == b"GET":
                body_of(response)


# -- If-Range -------------------------------------------------------------------------------


def _etag_and_date(
    files: StaticFiles, make_request: MakeRequest, target: bytes
) -> tuple[bytes, bytes]:
    response = get(files, make_request, target, method=b"HEAD")
    f = fields(response)
    return f[b"etag"], f[b"last-modified"]


@pytest.mark.parametrize("target", [b"/small.bin", b"/big.bin"])
def test_if_range(root: pathlib.Path, make_request: MakeRequest, target: bytes) -> None:
    # Back-date the file so its Last-Modified is a strong validator.
    os.utime(root / target.decode()[1:], (1_600_000_000, 1_600_000_000))
    files = StaticFiles(root)
    etag, date = _etag_and_date(files, make_request, target)

    def status(if_range: bytes) -> int:
        response = get(files, make_request, target, {b"range": b"bytes=0-9", b"if-range": if_range})
        body_of(response)
        return response.status

    assert status(etag) == 206
    assert status(date) == 206
    assert status(b'"other"') == 200
    assert status(b"W/" + etag) == 200  # If-Range needs a strong match
    assert status(b"Sun, 06 Nov 1994 08:49:37 GMT") == 200
    assert status(b"not a date") == 200


# -- preconditions ----------------------------------------------------------------------------


@pytest.mark.parametrize("target", [b"/small.bin", b"/big.bin"])
@pytest.mark.parametrize("method", [b"GET", b"HEAD"])
def test_preconditions_precedence(
    root: pathlib.Path,
    make_request: MakeRequest,
    fd_count: Callable[[], int],
    target: bytes,
    method: bytes,
) -> None:
    os.utime(root / target.decode()[1:], (1_600_000_000, 1_600_000_000))
    files = StaticFiles(root)
    etag, date = _etag_and_date(files, make_request, target)
    earlier = b"Sun, 06 Nov 1994 08:49:37 GMT"
    later = b"Sun, 06 Nov 2050 08:49:37 GMT"
    cases: list[tuple[dict[bytes, bytes], int]] = [
        ({b"if-match": b'"nope"'}, 412),
        ({b"if-match": b"W/" + etag}, 412),  # strong comparison
        ({b"if-match": b'"nope", ' + etag}, 200),
        ({b"if-match": b"*"}, 200),
        ({b"if-match": b'"nope"', b"if-none-match": etag}, 412),  # If-Match first
        ({b"if-match": etag, b"if-none-match": etag}, 304),
        ({b"if-unmodified-since": earlier}, 412),
        ({b"if-unmodified-since": date}, 200),
        ({b"if-unmodified-since": b"garbage"}, 200),
        ({b"if-match": etag, b"if-unmodified-since": earlier}, 200),  # IUS ignored
        ({b"if-none-match": b"W/" + etag}, 304),  # weak comparison
        ({b"if-none-match": b"*"}, 304),
        ({b"if-none-match": b'"a", "b"'}, 200),
        ({b"if-none-match": b'"a"', b"if-modified-since": later}, 200),  # INM decides
        ({b"if-modified-since": date}, 304),
        ({b"if-modified-since": earlier}, 200),
        ({b"if-none-match": etag, b"range": b"bytes=0-1"}, 304),  # before Range
        ({b"if-match": b'"x"', b"range": b"bytes=0-1"}, 412),
    ]
    before = fd_count()
    for headers, expected in cases:
        response = get(files, make_request, target, headers, method)
        body = body_of(response)
        assert response.status == expected, headers
        if expected == 304:
            assert response.body is None
        if method == b"HEAD":
            assert body == b""
    assert fd_count() == before


def test_304_carries_cache_fields(root: pathlib.Path, make_request: MakeRequest) -> None:
    (root / "style.css").write_bytes(b"body{}")
    (root / "style.css.gz").write_bytes(gzip.compress(b"body{}"))
    files = StaticFiles(root, precompressed=True, cache_control={".css": "max-age=60"})
    full = get(files, make_request, b"/style.css")
    f200 = fields(full)
    response = get(files, make_request, b"/style.css", {b"if-none-match": f200[b"etag"]})
    assert response.status == 304
    f = fields(response)
    for name in (b"etag", b"cache-control", b"expires", b"vary"):
        assert f[name] == f200[name], name
    for name in (b"content-length", b"content-type", b"last-modified", b"content-encoding"):
        assert name not in f


# -- precompressed siblings ---------------------------------------------------------------


@pytest.fixture
def compressed_root(root: pathlib.Path) -> pathlib.Path:
    text = b"console.log('hello');\n" * 10
    (root / "app.js").write_bytes(text)
    (root / "app.js.gz").write_bytes(gzip.compress(text))
    (root / "app.js.br").write_bytes(b"BROTLI-BYTES")  # never decoded here
    (root / "only-gz.txt").write_bytes(b"plain\n")
    (root / "only-gz.txt.gz").write_bytes(gzip.compress(b"plain\n"))
    return root


@pytest.mark.parametrize(
    ("accept", "encoding"),
    [
        (None, None),
        (b"", None),
        (b"gzip, deflate, br", b"br"),
        (b"gzip", b"gzip"),
        (b"x-gzip", b"gzip"),
        (b"GZIP;q=1, br;q=0.5", b"gzip"),
        (b"br;q=0, gzip", b"gzip"),
        (b"br;q=0, gzip;q=0", None),
        (b"*", b"br"),
        (b"*;q=0.5, br;q=0", b"gzip"),
        (b"identity, gzip;q=0.5", None),
        (b"deflate", None),
        (b"br;q=0.8, gzip;q=0.8", b"br"),  # tie: br
    ],
)
def test_precompressed_negotiation(
    compressed_root: pathlib.Path,
    make_request: MakeRequest,
    accept: bytes | None,
    encoding: bytes | None,
) -> None:
    files = StaticFiles(compressed_root, precompressed=True)
    headers = {b"accept-encoding": accept} if accept is not None else {}
    for method in (b"GET", b"HEAD"):
        response = get(files, make_request, b"/app.js", headers, method)
        assert response.status == 200
        f = fields(response)
        assert f[b"vary"] == b"Accept-Encoding"
        assert f[b"content-type"] == b"text/javascript; charset=utf-8"
        assert f.get(b"content-encoding") == encoding
        suffix = {None: "", b"gzip": ".gz", b"br": ".br"}[encoding]
        expected = (compressed_root / ("app.js" + suffix)).read_bytes()
        assert f[b"content-length"] == b"%d" % len(expected)
        if method == b"GET":
            assert body_of(response) == expected


def test_precompressed_distinct_etags_and_304_per_encoding(
    compressed_root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(compressed_root, precompressed=True)
    tags = {}
    for accept in (b"identity", b"gzip", b"br"):
        f = fields(get(files, make_request, b"/app.js", {b"accept-encoding": accept}))
        tags[accept] = f[b"etag"]
    assert len(set(tags.values())) == 3
    # The gzip tag revalidates the gzip representation only.
    hit = get(
        files,
        make_request,
        b"/app.js",
        {b"accept-encoding": b"gzip", b"if-none-match": tags[b"gzip"]},
    )
    assert hit.status == 304
    assert fields(hit)[b"vary"] == b"Accept-Encoding"
    miss = get(
        files,
        make_request,
        b"/app.js",
        {b"accept-encoding": b"br", b"if-none-match": tags[b"gzip"]},
    )
    assert miss.status == 200


def test_precompressed_range_applies_to_encoded(
    compressed_root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(compressed_root, precompressed=True)
    gz = (compressed_root / "app.js.gz").read_bytes()
    response = get(
        files, make_request, b"/app.js", {b"accept-encoding": b"gzip", b"range": b"bytes=0-3"}
    )
    assert response.status == 206
    f = fields(response)
    assert f[b"content-encoding"] == b"gzip"
    assert f[b"content-range"] == b"bytes 0-3/%d" % len(gz)
    assert body_of(response) == gz[:4]
    # Several ranges of an encoded representation: the whole representation instead.
    response = get(
        files, make_request, b"/app.js", {b"accept-encoding": b"gzip", b"range": b"bytes=0-1,5-6"}
    )
    assert response.status == 200
    assert body_of(response) == gz


def test_precompressed_off_serves_identity_without_vary(
    compressed_root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(compressed_root)
    response = get(files, make_request, b"/app.js", {b"accept-encoding": b"gzip, br"})
    f = fields(response)
    assert b"content-encoding" not in f
    assert b"vary" not in f


def test_precompressed_no_sibling_no_vary(root: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(root, precompressed=True)
    first = get(files, make_request, b"/hello.txt", {b"accept-encoding": b"gzip"})
    f = fields(first)
    assert b"vary" not in f
    assert b"content-encoding" not in f
    # Without siblings the hot path still returns the one cached object.
    assert get(files, make_request, b"/hello.txt", {b"accept-encoding": b"gzip"}) is first


def test_precompressed_file_requested_directly(
    compressed_root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(compressed_root, precompressed=True)
    f = fields(get(files, make_request, b"/app.js.gz", {b"accept-encoding": b"gzip"}))
    assert f[b"content-type"] == b"application/gzip"
    assert b"content-encoding" not in f


def test_precompressed_sibling_outside_root_ignored(
    root: pathlib.Path, make_request: MakeRequest, secret: bytes
) -> None:
    (root / "page.html").write_bytes(b"<p>page</p>")
    (root / "page.html.gz").symlink_to(root.parent / "outside" / "passwd")
    files = StaticFiles(root, precompressed=True)
    response = get(files, make_request, b"/page.html", {b"accept-encoding": b"gzip"})
    assert response.body == b"<p>page</p>"
    assert b"content-encoding" not in fields(response)


def test_precompressed_sibling_inside_root_symlink_served(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    (root / "page.html").write_bytes(b"<p>page</p>")
    (root / "real.gz").write_bytes(gzip.compress(b"<p>page</p>"))
    (root / "page.html.gz").symlink_to(root / "real.gz")
    files = StaticFiles(root, precompressed=True)
    response = get(files, make_request, b"/page.html", {b"accept-encoding": b"gzip"})
    assert fields(response)[b"content-encoding"] == b"gzip"


def test_precompressed_sibling_directory_or_stale_ignored(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    (root / "d.txt").write_bytes(b"dir sibling\n")
    (root / "d.txt.gz").mkdir()
    (root / "old.txt").write_bytes(b"new content\n")
    (root / "old.txt.gz").write_bytes(gzip.compress(b"old content\n"))
    os.utime(root / "old.txt.gz", (1_500_000_000, 1_500_000_000))
    files = StaticFiles(root, precompressed=True)
    for target, content in ((b"/d.txt", b"dir sibling\n"), (b"/old.txt", b"new content\n")):
        response = get(files, make_request, target, {b"accept-encoding": b"gzip"})
        assert response.body == content
        assert b"content-encoding" not in fields(response)


def test_precompressed_sibling_created_later_noticed_on_revalidation(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    (root / "late.txt").write_bytes(b"late\n")
    files = StaticFiles(root, precompressed=True)
    ae = {b"accept-encoding": b"gzip"}
    assert b"content-encoding" not in fields(get(files, make_request, b"/late.txt", ae, now=0.0))
    (root / "late.txt.gz").write_bytes(gzip.compress(b"late\n"))
    # Within the trust period the cached answer stands; after it, the sibling is seen.
    assert b"content-encoding" not in fields(get(files, make_request, b"/late.txt", ae, now=0.5))
    assert (
        fields(get(files, make_request, b"/late.txt", ae, now=2.0))[b"content-encoding"] == b"gzip"
    )


def test_precompressed_large_sibling_is_region(
    root: pathlib.Path, make_request: MakeRequest, fd_count: Callable[[], int]
) -> None:
    (root / "big.bin.gz").write_bytes(os.urandom(40_000))  # incompressible: stays large
    files = StaticFiles(root, precompressed=True)
    before = fd_count()
    response = get(files, make_request, b"/big.bin", {b"accept-encoding": b"gzip"})
    assert isinstance(response.body, FileRegion)
    assert body_of(response) == (root / "big.bin.gz").read_bytes()
    assert fd_count() == before


# -- directory listings -----------------------------------------------------------------------

WEIRD_NAMES = [
    "a b.txt",
    "100%.txt",
    "q?x.txt",
    "h#sh.txt",
    "café.txt",
    "<b>&amp;.txt",
    'q"uote',
    "javascript:x",
]


@pytest.fixture
def listing_root(root: pathlib.Path) -> pathlib.Path:
    listing = root / "files"
    listing.mkdir()
    for name in WEIRD_NAMES:
        (listing / name).write_bytes(name.encode() + b"\n")
    (listing / "Zdir").mkdir()
    (listing / "adir").mkdir()
    (listing / ".hidden.txt").write_bytes(b"hidden\n")
    (listing / "out").symlink_to(root.parent / "outside" / "passwd")
    (listing / "dangling").symlink_to(root / "nowhere")
    os.mkfifo(listing / "fifo")
    return root


_HREF = re.compile(rb'<a href="([^"]*)">([^<]*)</a>')


def _links(body: bytes) -> list[tuple[str, str]]:
    import html

    return [(html.unescape(h.decode()), html.unescape(t.decode())) for h, t in _HREF.findall(body)]


def test_autoindex_lists_names_that_round_trip(
    listing_root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(listing_root, autoindex=True)
    response = get(files, make_request, b"/files/")
    assert response.status == 200
    f = fields(response)
    assert f[b"content-type"] == b"text/html; charset=utf-8"
    body = body_of(response)
    links = _links(body)
    assert links[0] == ("../", "../")
    shown = [text for _, text in links[1:]]
    # Directories first, then files by name (case-insensitive).
    assert shown == ["adir/", "Zdir/", *sorted(WEIRD_NAMES, key=lambda n: (n.casefold(), n))]
    for href, text in links[1:]:
        assert href.startswith("./")
        # The href resolves (percent-decoding once) to exactly the name on disk, and the
        # file behind it is served.
        segments = decode_path(b"/files/" + href[2:].encode("ascii"))
        assert segments[-1] == text.rstrip("/")
        if not text.endswith("/"):
            served = get(files, make_request, b"/files/" + href[2:].encode("ascii"))
            assert served.status == 200
            assert served.body == text.encode() + b"\n"
    # Raw markup from names never reaches the page.
    assert b"<b>" not in body
    assert b'q"uote' not in body
    assert b"javascript:" not in body.replace(b">javascript:x<", b"")
    for hidden in (b"hidden", b"out", b"dangling", b"fifo"):
        assert b">" + hidden not in body


def test_autoindex_sizes_and_dates(listing_root: pathlib.Path, make_request: MakeRequest) -> None:
    os.utime(listing_root / "files" / "a b.txt", (1_600_000_000, 1_600_000_000))
    body = body_of(get(StaticFiles(listing_root, autoindex=True), make_request, b"/files/"))
    row = re.search(rb">a b\.txt</a></td><td>([^<]*)</td><td[^>]*>(\d+)</td>", body)
    assert row is not None
    assert row.group(1) == b"2020-09-13 12:26"
    assert int(row.group(2)) == len(b"a b.txt\n")


def test_autoindex_dotfiles_when_served(
    listing_root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(listing_root, autoindex=True, serve_dotfiles=True)
    assert b">.hidden.txt<" in body_of(get(files, make_request, b"/files/"))


def test_autoindex_root_has_no_parent_link(root: pathlib.Path, make_request: MakeRequest) -> None:
    (root / "index.html").unlink()
    body = body_of(get(StaticFiles(root, autoindex=True), make_request, b"/"))
    assert b'href="../"' not in body
    assert b"Index of /" in body


def test_autoindex_head(listing_root: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(listing_root, autoindex=True)
    full = get(files, make_request, b"/files/")
    head = get(files, make_request, b"/files/", method=b"HEAD")
    assert head.status == 200
    assert head.body is None
    assert fields(head)[b"content-length"] == fields(full)[b"content-length"]


def test_autoindex_redirect_keeps_query(
    listing_root: pathlib.Path, make_request: MakeRequest
) -> None:
    response = get(StaticFiles(listing_root, autoindex=True), make_request, b"/files?sort=name")
    assert response.status == 301
    assert fields(response)[b"location"] == b"/files/?sort=name"


def test_autoindex_index_file_wins(root: pathlib.Path, make_request: MakeRequest) -> None:
    response = get(StaticFiles(root, autoindex=True), make_request, b"/sub/")
    assert response.body == b"<h1>sub index</h1>\n"


def test_autoindex_off_is_404(listing_root: pathlib.Path, make_request: MakeRequest) -> None:
    assert get(StaticFiles(listing_root), make_request, b"/files/").status == 404


def test_autoindex_listing_sees_new_files(
    listing_root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(listing_root, autoindex=True)
    get(files, make_request, b"/files/")
    (listing_root / "files" / "new.txt").write_bytes(b"n")
    assert b">new.txt<" in body_of(get(files, make_request, b"/files/"))


# -- Cache-Control / Expires / charset ------------------------------------------------------


def test_cache_control_per_extension_and_default(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    (root / "s.CSS").write_bytes(b"x")
    files = StaticFiles(
        root,
        cache_control={".css": "public, max-age=3600", "txt": "no-cache"},
        cache_control_default="max-age=60",
    )
    files.wall_clock = lambda: 1_700_000_000.0
    css = fields(get(files, make_request, b"/s.CSS"))
    assert css[b"cache-control"] == b"public, max-age=3600"
    assert css[b"expires"] == b"Tue, 14 Nov 2023 23:13:20 GMT"  # 1_700_003_600
    txt = fields(get(files, make_request, b"/hello.txt"))
    assert txt[b"cache-control"] == b"no-cache"
    assert b"expires" not in txt
    html = fields(get(files, make_request, b"/index.html"))
    assert html[b"cache-control"] == b"max-age=60"
    assert html[b"expires"] == b"Tue, 14 Nov 2023 22:14:20 GMT"
    big = get(files, make_request, b"/big.bin", {b"range": b"bytes=0-1"})
    assert fields(big)[b"cache-control"] == b"max-age=60"
    body_of(big)


def test_cache_control_none_by_default(root: pathlib.Path, make_request: MakeRequest) -> None:
    f = fields(get(StaticFiles(root), make_request, b"/hello.txt"))
    assert b"cache-control" not in f
    assert b"expires" not in f


def test_expires_refreshed_on_revalidation(root: pathlib.Path, make_request: MakeRequest) -> None:
    files = StaticFiles(root, cache_control_default="max-age=10")
    clock = [1_700_000_000.0]
    files.wall_clock = lambda: clock[0]
    first = get(files, make_request, b"/hello.txt", now=0.0)
    clock[0] += 5
    assert get(files, make_request, b"/hello.txt", now=0.5) is first  # trusted: same object
    second = get(files, make_request, b"/hello.txt", now=1.5)  # revalidated: re-rendered
    assert fields(first)[b"expires"] == b"Tue, 14 Nov 2023 22:13:30 GMT"
    assert fields(second)[b"expires"] == b"Tue, 14 Nov 2023 22:13:35 GMT"
    assert get(files, make_request, b"/hello.txt", now=1.6) is second


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "", "caf\u00e9"])
def test_cache_control_bad_value_refused(root: pathlib.Path, value: str) -> None:
    with pytest.raises(ValueError, match="Cache-Control"):
        StaticFiles(root, cache_control={".css": value})


def test_charset_configurable(root: pathlib.Path, make_request: MakeRequest) -> None:
    (root / "d.json").write_bytes(b"{}")
    plain = StaticFiles(root, charset="")
    assert fields(get(plain, make_request, b"/hello.txt"))[b"content-type"] == b"text/plain"
    latin = StaticFiles(root, charset="iso-8859-1")
    f = fields(get(latin, make_request, b"/d.json"))
    assert f[b"content-type"] == b"application/json; charset=iso-8859-1"
    with pytest.raises(ValueError, match="token"):
        StaticFiles(root, charset="utf-8\r\nX: y")


# -- handle_fast and the filesystem hook ------------------------------------------------------


def test_handle_fast_answers_from_memory_only(
    compressed_root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(compressed_root, precompressed=True)
    for target in (b"/small.bin", b"/app.js", b"/big.bin"):
        get(files, make_request, target, method=b"HEAD")  # load into the cache
    etag = fields(get(files, make_request, b"/small.bin", method=b"HEAD"))[b"etag"]
    big_etag = fields(get(files, make_request, b"/big.bin", method=b"HEAD"))[b"etag"]

    fsio.delay_hook = lambda path: pytest.fail(f"handle_fast touched the filesystem: {path}")
    try:

        def fast(
            target: bytes,
            headers: dict[bytes, bytes] | None = None,
            method: bytes = b"GET",
            now: float = 0.5,
        ) -> Response:
            response = files.handle_fast(make_request(target, method, headers), now)
            assert response is not None, target
            return response

        def slow(
            target: bytes, headers: dict[bytes, bytes] | None = None, now: float = 0.5
        ) -> bool:
            return files.handle_fast(make_request(target, b"GET", headers), now) is None

        # Answered from memory.
        assert fast(b"/small.bin").body == SMALL
        assert fast(b"/small.bin?x=1").body == SMALL
        assert fast(b"/small.bin", {b"if-none-match": etag}).status == 304
        assert fast(b"/small.bin", {b"if-match": b'"x"'}).status == 412
        assert fast(b"/small.bin", {b"range": b"bytes=0-9"}).status == 206
        assert fast(b"/small.bin", {b"range": b"bytes=9999-"}).status == 416
        assert fast(b"/big.bin", method=b"HEAD").status == 200
        assert fast(b"/big.bin", {b"if-none-match": big_etag}).status == 304
        assert fast(b"/big.bin", {b"range": b"bytes=999999999-"}).status == 416
        gz = fast(b"/app.js", {b"accept-encoding": b"gzip"})
        assert fields(gz)[b"content-encoding"] == b"gzip"
        assert fast(b"/%zz").status == 400
        assert fast(b"/../etc/passwd").status == 404
        assert fast(b"/.env").status == 404
        assert fast(b"/x", method=b"POST").status == 405
        # Needs the filesystem: None, without touching it.
        assert slow(b"/big.bin")  # must be opened
        assert slow(b"/big.bin", {b"range": b"bytes=0-9"})
        assert slow(b"/hello.txt")  # not cached
        assert slow(b"/small.bin", now=5.0)  # revalidation due
        assert slow(b"/sub/")
    finally:
        fsio.delay_hook = None


def test_handle_fast_sends_a_big_file_from_the_shared_fd(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    """While a response holds the big file's fd open (or it is idle after one), the next
    whole GET is answered on the loop with its own region over that fd, the same head as
    the pool's answer and no filesystem call; with no fd open it goes to the pool."""
    files = StaticFiles(root)
    first = files.handle(make_request(b"/big.bin"), 0.0)  # the pool opens the fd
    assert isinstance(first.body, FileRegion)
    fsio.delay_hook = lambda path: pytest.fail(f"handle_fast touched the filesystem: {path}")
    try:
        fast = files.handle_fast(make_request(b"/big.bin"), 0.1)
        assert fast is not None
        assert isinstance(fast.body, FileRegion)
        assert fast.body is not first.body
        assert (fast.body.fd, fast.body.offset, fast.body.count) == (
            first.body.fd,
            0,
            first.body.count,
        )
        assert fast.head == first.head
        assert fast.status == 200
        fast.body.release()
        first.body.release()  # the last user: the fd stays open, idle
        again = files.handle_fast(make_request(b"/big.bin"), 0.2)
        assert again is not None
        assert isinstance(again.body, FileRegion)
        assert again.body.fd == first.body.fd
        again.body.release()
        sharedfd.close_idle()
        assert files.handle_fast(make_request(b"/big.bin"), 0.3) is None
    finally:
        fsio.delay_hook = None


def test_handle_fast_hit_is_the_cached_object(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    files = StaticFiles(root)
    response = get(files, make_request, b"/small.bin")
    assert files.handle_fast(make_request(b"/small.bin"), 0.1) is response


def test_fsio_hook_sees_every_slow_path(
    listing_root: pathlib.Path, make_request: MakeRequest, compressed_root: pathlib.Path
) -> None:
    seen: list[str] = []
    fsio.delay_hook = seen.append
    try:
        files = StaticFiles(listing_root, autoindex=True, precompressed=True)
        for target in (b"/small.bin", b"/big.bin", b"/files/", b"/app.js", b"/missing"):
            seen.clear()
            body_of(get(files, make_request, target))
            assert seen, target
        seen.clear()
        get(files, make_request, b"/small.bin", now=0.5)  # a hit: no filesystem call
        assert seen == []
        get(files, make_request, b"/small.bin", now=5.0)  # revalidation: stat
        assert seen
    finally:
        fsio.delay_hook = None


def test_handler_thread_safe_under_concurrency(
    compressed_root: pathlib.Path, make_request: MakeRequest, fd_count: Callable[[], int]
) -> None:
    # Several threads hammer a small cache (forcing evictions) with every kind of request;
    # every answer must be right and the cache's bookkeeping must add up afterwards.
    files = StaticFiles(
        compressed_root, precompressed=True, cache_max_total_bytes=6_000, revalidate_seconds=0.0
    )
    gz = (compressed_root / "app.js.gz").read_bytes()
    before = fd_count()
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for i in range(60):
                now = float(i)
                r = get(files, make_request, b"/small.bin", {b"range": b"bytes=10-19"}, now=now)
                assert body_of(r) == SMALL[10:20]
                r = get(
                    files,
                    make_request,
                    b"/big.bin",
                    {b"range": b"bytes=%d-%d" % (seed, seed + 9)},
                    now=now,
                )
                assert body_of(r) == BIG[seed : seed + 10]
                r = get(files, make_request, b"/app.js", {b"accept-encoding": b"gzip"}, now=now)
                assert body_of(r) == gz
                r = get(files, make_request, b"/hello.txt?%d" % i, now=now)
                assert r.status == 200
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n * 10,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    cache = files.cache
    assert cache.total_bytes == sum(e.cost for e in cache.entries.values())
    assert cache.total_bytes <= 6_000
    assert fd_count() == before


def test_slow_file_does_not_block_other_threads(
    root: pathlib.Path, make_request: MakeRequest
) -> None:
    # One thread stuck in the filesystem (the hook blocks on slow.bin) holds no lock that
    # another thread's miss, hit or revalidation needs.
    (root / "slow.bin").write_bytes(b"slow\n")
    files = StaticFiles(root)
    get(files, make_request, b"/small.bin")  # cached, to be revalidated below
    entered, release = threading.Event(), threading.Event()

    def hook(path: str) -> None:
        if path.endswith("slow.bin"):
            entered.set()
            assert release.wait(10)

    fsio.delay_hook = hook
    result: list[Response] = []
    slow = threading.Thread(target=lambda: result.append(get(files, make_request, b"/slow.bin")))
    try:
        slow.start()
        assert entered.wait(10)
        assert get(files, make_request, b"/hello.txt").status == 200  # miss
        assert get(files, make_request, b"/small.bin", now=0.5).body == SMALL  # hit
        assert get(files, make_request, b"/small.bin", now=5.0).body == SMALL  # revalidation
        assert slow.is_alive()
    finally:
        release.set()
        slow.join(10)
        fsio.delay_hook = None
    assert result[0].body == b"slow\n"
