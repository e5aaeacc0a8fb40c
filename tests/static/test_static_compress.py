"""On-the-fly compression (issue 16), sans-I/O: ``StaticFiles`` called directly.

Negotiation by Accept-Encoding q-values, one ETag per encoding, Vary, 304 and HEAD per
encoding, the hot path never answering one client with another's encoding, Range getting
identity, the size bounds and types, a changed file recompressed, a precompressed sibling
winning, compression done once per file version (threads included), ``compress=False``.
"""

from __future__ import annotations

import gzip
import os
import pathlib
import threading
import zlib
from collections.abc import Callable

import pytest

from c10k.http.events import Request
from c10k.http.writers import Response
from c10k.region import FileRegion
from c10k.static import StaticFiles, compress
from c10k.static.compress import Compressor
from c10k.static.mime import compressible

brotli = pytest.importorskip("brotli", reason="br needs the brotli package (c10k[brotli])")

HTML = b"".join(b"<p>paragraph %05d: the quick brown fox</p>\n" % i for i in range(1000))
SMALL_CSS = b"body { color: red }\n" * 20  # 400 bytes: below the 1 KiB floor
JS = b"export const greeting = 'hello, world';\n" * 100
PNG = b"\x89PNG\r\n\x1a\n" + os.urandom(4000)

Make = Callable[..., Request]


@pytest.fixture
def root(tmp_path: pathlib.Path) -> pathlib.Path:
    www = tmp_path / "www"
    www.mkdir()
    (www / "page.html").write_bytes(HTML)  # 45 KB: above cache_max_file_bytes
    (www / "app.js").write_bytes(JS)  # 4 KB: a memory file
    (www / "small.css").write_bytes(SMALL_CSS)
    (www / "image.png").write_bytes(PNG)
    return www


@pytest.fixture
def gzip_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if the brotli package were not installed."""
    monkeypatch.setattr(compress, "brotli", None)


def get(
    files: StaticFiles,
    target: bytes,
    ae: bytes | None = None,
    method: bytes = b"GET",
    fast: bool = False,
    **more: bytes,
) -> Response:
    headers = {k.replace("_", "-").encode(): v for k, v in more.items()}
    if ae is not None:
        headers[b"accept-encoding"] = ae
    request = Request(method, target, 1, headers, True)
    response = files.handle_fast(request, 0.5) if fast else files.handle(request, 0.5)
    assert response is not None
    return response


def fields(response: Response) -> dict[str, str]:
    lines = response.head.decode("latin-1").split("\r\n")[1:]
    out = {}
    for line in lines:
        if line:
            name, _, value = line.partition(":")
            out[name.strip().lower()] = value.strip()
    return out


def body_of(response: Response) -> bytes:
    body = response.body
    if isinstance(body, FileRegion):
        try:
            return os.pread(body.fd, body.count, body.offset)
        finally:
            body.release()
    assert isinstance(body, bytes), body
    return body


def decoded(response: Response) -> bytes:
    data = body_of(response)
    coding = fields(response).get("content-encoding")
    if coding == "gzip":
        return gzip.decompress(data)
    if coding == "br":
        return bytes(brotli.decompress(data))
    assert coding is None, coding
    return data


# -- negotiation --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ae", "coding"),
    [
        (None, None),
        (b"", None),
        (b"gzip", "gzip"),
        (b"x-gzip", "gzip"),
        (b"GZIP", "gzip"),
        (b"br", "br"),
        (b"gzip, deflate, br", "br"),  # equal q: br first
        (b"gzip, deflate, br, zstd", "br"),
        (b"gzip;q=1, br;q=0.5", "gzip"),
        (b"br;q=0, gzip", "gzip"),
        (b"gzip;q=0", None),  # gzip refused: identity
        (b"gzip;q=0, br;q=0", None),
        (b"*", "br"),
        (b"*;q=0.5, gzip", "gzip"),
        (b"*;q=0", None),  # nothing acceptable: identity anyway (RFC 9110 12.5.3)
        (b"identity;q=0", None),  # identity refused, nothing else offered: identity
        (b"identity;q=0, gzip", "gzip"),
        (b"identity, gzip;q=0.5", None),  # identity preferred
        (b"deflate", None),  # a coding we do not make
        (b"gzip;q=nan, br;q=2", None),  # bad q counts as 0
    ],
)
def test_compress_negotiation(root: pathlib.Path, ae: bytes | None, coding: str | None) -> None:
    files = StaticFiles(root)
    for fast in (False, True, True):  # the load, then the memory and hot paths
        response = get(files, b"/app.js", ae, fast=fast)
        assert response.status == 200
        assert fields(response).get("content-encoding") == coding
        assert fields(response)["vary"] == "Accept-Encoding"
        assert decoded(response) == JS


@pytest.mark.parametrize(("ae", "coding"), [(b"gzip, br", "gzip"), (b"br", None)])
def test_compress_without_brotli_is_gzip_only(
    root: pathlib.Path, gzip_only: None, ae: bytes, coding: str | None
) -> None:
    files = StaticFiles(root)
    response = get(files, b"/app.js", ae)
    assert fields(response).get("content-encoding") == coding
    assert decoded(response) == JS


def test_compress_gzip_is_deterministic_level_6() -> None:
    # mtime 0 in the gzip header: every worker and restart makes the same bytes.
    ((_, a),) = Compressor(use_brotli=False).compress("k1", JS)
    ((_, b),) = Compressor(use_brotli=False).compress("k2", JS)
    assert a == b
    assert a[4:8] == b"\0\0\0\0"
    assert a == zlib.compress(JS, 6, wbits=31)


def test_compress_refuses_bad_level() -> None:
    with pytest.raises(ValueError, match="1 to 9"):
        Compressor(level=0)
    with pytest.raises(ValueError, match="1 to 9"):
        Compressor(level=10)


@pytest.mark.parametrize(
    ("ctype", "yes"),
    [
        (b"text/html; charset=utf-8", True),
        (b"text/css", True),
        (b"text/javascript; charset=utf-8", True),
        (b"application/json", True),
        (b"application/manifest+json; charset=utf-8", True),
        (b"application/ld+json", True),
        (b"image/svg+xml", True),
        (b"application/rss+xml", True),
        (b"application/xml", True),
        (b"application/wasm", True),
        (b"font/ttf", True),
        (b"image/png", False),
        (b"image/jpeg", False),
        (b"font/woff2", False),
        (b"application/gzip", False),
        (b"application/zip", False),
        (b"video/mp4", False),
        (b"application/octet-stream", False),
    ],
)
def test_compressible(ctype: bytes, yes: bool) -> None:
    assert compressible(ctype) is yes


# -- representations: ETag, Vary, 304, HEAD --------------------------------------------------


def test_compress_distinct_etags_vary_and_lengths(root: pathlib.Path) -> None:
    files = StaticFiles(root)
    reps = {ae: get(files, b"/page.html", ae) for ae in (b"identity", b"gzip", b"br")}
    etags = {ae: fields(r)["etag"] for ae, r in reps.items()}
    assert len(set(etags.values())) == 3
    assert etags[b"gzip"] == etags[b"identity"][:-1] + '-gzip6"'
    assert etags[b"br"] == etags[b"identity"][:-1] + '-br6"'
    for ae, response in reps.items():
        f = fields(response)
        assert f["vary"] == "Accept-Encoding"
        assert f["content-type"] == "text/html; charset=utf-8"
        assert decoded(response) == HTML
        if ae != b"identity":
            assert int(f["content-length"]) < len(HTML) // 3


def test_compress_large_identity_is_sent_from_the_file(root: pathlib.Path) -> None:
    files = StaticFiles(root)
    gz = get(files, b"/page.html", b"gzip")
    identity = get(files, b"/page.html", b"identity")
    assert isinstance(gz.body, bytes)
    assert isinstance(identity.body, FileRegion)  # > cache_max_file_bytes: sendfile
    assert body_of(identity) == HTML
    # The encoded bytes are in the cache entry and counted against its bound.
    entry = files.cache.entries[b"/page.html"]
    assert entry.content is None
    assert entry.cost > len(gz.body)
    assert files.cache.total_bytes >= entry.cost


@pytest.mark.parametrize("ae", [b"gzip", b"br", b"identity"])
def test_compress_304_per_encoding(root: pathlib.Path, ae: bytes) -> None:
    files = StaticFiles(root)
    etag = fields(get(files, b"/app.js", ae))["etag"].encode()
    for fast in (False, True):
        response = get(files, b"/app.js", ae, fast=fast, if_none_match=etag)
        assert response.status == 304
        assert fields(response)["etag"] == etag.decode()
        assert fields(response)["vary"] == "Accept-Encoding"
    # Another encoding's tag does not validate this one.
    other = b"br" if ae != b"br" else b"gzip"
    assert get(files, b"/app.js", other, if_none_match=etag).status == 200


@pytest.mark.parametrize("ae", [b"gzip", b"br", None])
def test_compress_head_matches_get(root: pathlib.Path, ae: bytes | None) -> None:
    files = StaticFiles(root)
    for target in (b"/app.js", b"/page.html"):
        got = get(files, target, ae)
        for fast in (False, True):
            head = get(files, target, ae, method=b"HEAD", fast=fast)
            assert head.body is None
            assert fields(head) == fields(got)
        body_of(got)


def test_compress_hot_path_never_mixes_encodings(root: pathlib.Path) -> None:
    # The likeliest bug: a response remembered for one Accept-Encoding handed to a client
    # that sent another (or none). Alternate, on the hot path, many times.
    files = StaticFiles(root)
    values = [b"gzip", None, b"br", b"identity", b"gzip, br", b"gzip;q=0", b"*"]
    expect = ["gzip", None, "br", None, "br", None, "br"]
    first = {v: get(files, b"/app.js", v) for v in values}
    for _ in range(3):
        for value, coding in zip(values, expect, strict=True):
            response = get(files, b"/app.js", value, fast=True)
            assert response is first[value]  # the same object: the wire memo hits too
            assert fields(response).get("content-encoding") == coding
    entry = files.cache.entries[b"/app.js"]
    assert entry.hot_ae is not None
    assert set(entry.hot_ae) == set(values)


def test_compress_hot_memo_is_bounded(root: pathlib.Path) -> None:
    files = StaticFiles(root)
    for i in range(50):
        assert decoded(get(files, b"/app.js", b"gzip;q=0.%d" % (i % 10) + b" " * i)) == JS
    entry = files.cache.entries[b"/app.js"]
    assert entry.hot_ae is not None
    assert len(entry.hot_ae) <= 8


# -- Range gets identity -------------------------------------------------------------------


@pytest.mark.parametrize("target", [b"/app.js", b"/page.html"])
def test_compress_range_gets_identity(root: pathlib.Path, target: bytes) -> None:
    files = StaticFiles(root)
    content = (root / target.decode()[1:]).read_bytes()
    for fast in (False, True):
        handle = files.handle_fast if fast else files.handle
        headers = {b"accept-encoding": b"gzip, br", b"range": b"bytes=10-29"}
        r = handle(Request(b"GET", target, 1, headers, True), 0.5)
        if r is None:  # a large file's range needs the file: the pool's job
            continue
        f = fields(r)
        assert r.status == 206
        assert "content-encoding" not in f
        assert f["vary"] == "Accept-Encoding"
        assert f["content-range"] == f"bytes 10-29/{len(content)}"
        assert body_of(r) == content[10:30]


# -- what is not compressed ----------------------------------------------------------------


@pytest.mark.parametrize("target", [b"/small.css", b"/image.png"])
def test_compress_skips_small_and_binary(root: pathlib.Path, target: bytes) -> None:
    files = StaticFiles(root)
    response = get(files, target, b"gzip, br")
    assert "content-encoding" not in fields(response)
    assert "vary" not in fields(response)


def test_compress_above_the_bound_is_identity(root: pathlib.Path) -> None:
    files = StaticFiles(root, compress_max_bytes=len(HTML) - 1)
    response = get(files, b"/page.html", b"gzip")
    assert "content-encoding" not in fields(response)
    assert "vary" not in fields(response)
    assert isinstance(response.body, FileRegion)
    assert body_of(response) == HTML
    assert files.cache.entries[b"/page.html"].cost < len(HTML)  # nothing held in memory
    # ... and one byte more allows it.
    files = StaticFiles(root, compress_max_bytes=len(HTML))
    assert fields(get(files, b"/page.html", b"gzip"))["content-encoding"] == "gzip"


def test_compress_not_when_the_cache_could_not_keep_it(root: pathlib.Path) -> None:
    # Else a file too big for the cache would be compressed again on every request.
    files = StaticFiles(root, cache_max_total_bytes=len(HTML) * 3)
    assert "content-encoding" not in fields(get(files, b"/page.html", b"gzip"))


def test_compress_off(root: pathlib.Path) -> None:
    files = StaticFiles(root, compress=False)
    for ae in (b"gzip", b"br", b"gzip, deflate, br"):
        response = get(files, b"/app.js", ae)
        assert "content-encoding" not in fields(response)
        assert "vary" not in fields(response)
        assert body_of(response) == JS


def test_compress_level_is_in_the_etag(root: pathlib.Path) -> None:
    one = fields(get(StaticFiles(root, compress_level=1), b"/app.js", b"gzip"))
    nine = fields(get(StaticFiles(root, compress_level=9), b"/app.js", b"gzip"))
    assert one["etag"].endswith('-gzip1"')
    assert nine["etag"].endswith('-gzip9"')


# -- once per file version -----------------------------------------------------------------


def test_compress_changed_file_is_recompressed(root: pathlib.Path) -> None:
    files = StaticFiles(root, revalidate_seconds=0.0)
    first = get(files, b"/app.js", b"gzip")
    new = JS.replace(b"hello", b"HOWDY")
    (root / "app.js").write_bytes(new)
    st = os.stat(root / "app.js")
    os.utime(root / "app.js", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = get(files, b"/app.js", b"gzip")
    assert fields(second)["etag"] != fields(first)["etag"]
    assert decoded(second) == new
    # The old tag no longer validates.
    etag = fields(first)["etag"].encode()
    assert get(files, b"/app.js", b"gzip", if_none_match=etag).status == 200


def test_compress_survives_revalidation_with_expires(root: pathlib.Path) -> None:
    # An entry with max-age is rebuilt (fresh Expires) on revalidation, from memory:
    # its encodings come along, same bytes, same tags, no second compression.
    calls: list[int] = []
    files = StaticFiles(root, revalidate_seconds=0.0, cache_control={".js": "max-age=60"})
    original = Compressor._encode

    def counting(self: Compressor, data: bytes) -> compress.Encoded:
        calls.append(len(data))
        return original(self, data)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Compressor, "_encode", counting)
        first = get(files, b"/app.js", b"br")
        second = get(files, b"/app.js", b"br")
    assert calls == [len(JS)]
    assert fields(first)["etag"] == fields(second)["etag"]
    assert decoded(second) == JS
    assert "expires" in fields(second)


def test_compress_once_when_threads_miss_together(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = Compressor._encode
    gate = threading.Barrier(2, timeout=5)
    entered = threading.Event()

    def slow(self: Compressor, data: bytes) -> compress.Encoded:
        calls.append(len(data))
        entered.set()
        gate.wait()  # the test lets it finish once the other threads are waiting
        return original(self, data)

    monkeypatch.setattr(Compressor, "_encode", slow)
    files = StaticFiles(root)
    results: list[bytes] = []

    def worker(target: bytes) -> None:
        results.append(decoded(get(files, target, b"gzip")))

    threads = [threading.Thread(target=worker, args=(b"/app.js",)) for _ in range(4)]
    # Another URL for the same file (an alias) misses too and shares the work.
    threads.append(threading.Thread(target=worker, args=(b"//app.js",)))
    threads[0].start()
    assert entered.wait(5)
    for t in threads[1:]:
        t.start()
    # Give the others time to reach the single flight (they block on it, not on disk).
    deadline = threading.Event()
    deadline.wait(0.2)
    gate.wait()
    for t in threads:
        t.join(10)
    assert results == [JS] * 5
    assert calls == [len(JS)]


def test_compress_once_for_repeated_requests(
    root: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    original = Compressor._encode

    def counting(self: Compressor, data: bytes) -> compress.Encoded:
        calls.append(len(data))
        return original(self, data)

    monkeypatch.setattr(Compressor, "_encode", counting)
    files = StaticFiles(root)
    for ae in (b"gzip", b"br", None, b"gzip", b"identity") * 5:
        get(files, b"/page.html", ae, method=b"HEAD")
    assert calls == [len(HTML)]


# -- precompressed siblings win ---------------------------------------------------------------


def test_compress_precompressed_sibling_wins(root: pathlib.Path) -> None:
    sibling = gzip.compress(JS, compresslevel=9, mtime=12345)  # not what we would make
    (root / "app.js.gz").write_bytes(sibling)
    files = StaticFiles(root, precompressed=True)
    response = get(files, b"/app.js", b"gzip, br")
    f = fields(response)
    assert f["content-encoding"] == "gzip"  # the sibling; no br made for this file
    assert body_of(response) == sibling
    assert f["etag"].endswith('-gzip"')
    # Without precompressed, the file is compressed here instead.
    files = StaticFiles(root, precompressed=False)
    assert fields(get(files, b"/app.js", b"gzip, br"))["content-encoding"] == "br"
