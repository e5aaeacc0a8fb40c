"""The pure parts of c10k.static: resolve, conditional, mime, cache bookkeeping."""

from __future__ import annotations

import doctest
import os
import pathlib
import types

import pytest

from c10k.static import autoindex, cache, conditional, encoding, handler, mime, ranges, resolve
from c10k.static.cache import CacheEntry, FileCache
from c10k.static.conditional import is_not_modified, modified_since, none_match, parse_http_date
from c10k.static.resolve import ResolveError, decode_path, encode_path, split_target


@pytest.mark.parametrize(
    "module",
    [resolve, conditional, mime, cache, handler, ranges, encoding, autoindex],
    ids=lambda m: m.__name__,
)
def test_static_doctests(module: types.ModuleType) -> None:
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0


# -- resolve ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (b"/", (b"/", None)),
        (b"/a?b", (b"/a", b"b")),
        (b"/a?b?c", (b"/a", b"b?c")),
        (b"/a?", (b"/a", b"")),
        (b"/a#x?y", (b"/a", None)),
        (b"/a?q#frag", (b"/a", b"q")),
    ],
)
def test_split_target(target: bytes, expected: tuple[bytes, bytes | None]) -> None:
    assert split_target(target) == expected


@pytest.mark.parametrize(
    ("raw", "segments"),
    [
        (b"/", []),
        (b"//", []),
        (b"/a/b/c", ["a", "b", "c"]),
        (b"/a//b///c/", ["a", "b", "c"]),
        (b"/./a/./b/.", ["a", "b"]),
        (b"/a/b/../c", ["a", "c"]),
        (b"/a/..", []),
        (b"/a%2Fb", None),  # 404: encoded slash is data, and not a legal file name
        (b"/%41%42", ["AB"]),
        (b"/%e2%82%ac", ["€"]),
        (b"/%2e", []),
        (b"/a/%2e%2e", []),
        (b"/%252e%252e", ["%2e%2e"]),
        (b"/a+b", ["a+b"]),  # "+" is not a space in paths
        (b"/..foo", None),  # a dot-name, not a parent reference
        (b"/foo..", ["foo.."]),
    ],
)
def test_decode_path(raw: bytes, segments: list[str] | None) -> None:
    if segments is None:
        with pytest.raises(ResolveError) as info:
            decode_path(raw)
        assert info.value.status == 404
    else:
        assert decode_path(raw) == segments


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"/..", 404),
        (b"/a/../..", 404),
        (b"/%2e%2e", 404),
        (b"/%2E%2e/x", 404),
        (b"/..%2f", 404),
        (b"/x%2f..%2f..", 404),
        (b"/%5c", 404),
        (b"/\\", 404),
        (b"/a%00b", 404),
        (b"/.env", 404),
        (b"/%2eenv", 404),  # decoding comes before the dot-name check
        (b"/%", 400),
        (b"/%a", 400),
        (b"/%ag", 400),
        (b"/%%30%30", 400),
        (b"/%c0%ae", 400),
        (b"/%ed%a0%80", 400),  # a UTF-16 surrogate in UTF-8
        (b"/\xff", 400),  # raw non-UTF-8 byte
        (b"", 400),
        (b"*", 400),
    ],
)
def test_decode_path_errors(raw: bytes, status: int) -> None:
    with pytest.raises(ResolveError) as info:
        decode_path(raw)
    assert info.value.status == status


def test_decode_path_dotfiles_opt_in() -> None:
    assert decode_path(b"/.well-known/acme", serve_dotfiles=True) == [".well-known", "acme"]
    with pytest.raises(ResolveError):
        decode_path(b"/..", serve_dotfiles=True)  # still no escape


def test_decode_path_byte_by_byte_never_escapes() -> None:
    # Every prefix of a hostile path either decodes to in-root segments or is refused.
    raw = b"/a/%2e%2e/%2e%2e/%2E%2E%2fetc/..%5c../passwd%00"
    statuses = []
    for end in range(1, len(raw) + 1):
        try:
            segments = decode_path(raw[:end])
        except ResolveError as exc:
            statuses.append(exc.status)
            continue
        for s in segments:
            assert s not in ("", ".", "..")
            assert not any(c in s for c in "/\\\x00")
    assert set(statuses) == {400, 404}


@pytest.mark.parametrize(
    ("segments", "slash", "expected"),
    [
        ([], True, b"/"),
        (["a"], False, b"/a"),
        (["a", "b"], True, b"/a/b/"),
        (["a b", "100%"], True, b"/a%20b/100%25/"),
        (["q?x", "h#y"], True, b"/q%3Fx/h%23y/"),
        (["a:b@c"], False, b"/a:b@c"),
    ],
)
def test_encode_path(segments: list[str], slash: bool, expected: bytes) -> None:
    assert encode_path(segments, trailing_slash=slash) == expected
    # Round trip: what we put in a Location decodes back to the same segments.
    assert decode_path(expected) == segments


# -- conditional --------------------------------------------------------------------------

ETAG = b'"18a-14"'


@pytest.mark.parametrize(
    ("value", "matches"),
    [
        (ETAG, True),
        (b"W/" + ETAG, True),
        (b" " + ETAG + b" ", True),
        (b'"a", "b", ' + ETAG, True),
        (b'"a",W/' + ETAG, True),
        (b"*", True),
        (b" * ", True),
        (b'"18a-15"', False),
        (b'"18a-14', False),
        (b"18a-14", False),
        (b"", False),
        (b'"a", "b"', False),
        (b'W/"18a"', False),
    ],
)
def test_none_match(value: bytes, matches: bool) -> None:
    assert none_match(value, ETAG) is matches


def test_none_match_weak_server_tag() -> None:
    assert none_match(ETAG, b"W/" + ETAG)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"Thu, 01 Jan 1970 00:00:00 GMT", 0),
        (b"Sun, 06 Nov 1994 08:49:37 GMT", 784111777),
        (b"Sunday, 06-Nov-94 08:49:37 GMT", 784111777),
        (b"Sun Nov  6 08:49:37 1994", 784111777),
        (b"Sun, 06 Nov 1994 09:49:37 +0100", 784111777),
        (b"", None),
        (b"garbage", None),
        (b"Sun, 06 Nov 1994 25:61:99 GMT", None),
        (b"\xff\xfe", None),
    ],
)
def test_parse_http_date(value: bytes, expected: int | None) -> None:
    assert parse_http_date(value) == expected


def test_modified_since_boundaries() -> None:
    date = b"Sun, 06 Nov 1994 08:49:37 GMT"
    assert modified_since(date, 784111776) is False
    assert modified_since(date, 784111777) is False
    assert modified_since(date, 784111778) is True
    assert modified_since(b"junk", 0) is True


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, False),
        ({b"if-none-match": ETAG}, True),
        ({b"if-none-match": b'"x"'}, False),
        ({b"if-modified-since": b"Sun, 06 Nov 1994 08:49:37 GMT"}, True),
        ({b"if-modified-since": b"Sun, 06 Nov 1994 08:49:36 GMT"}, False),
        ({b"if-modified-since": b"nonsense"}, False),
        # RFC 9110 13.2.2: If-None-Match present -> If-Modified-Since is not evaluated.
        ({b"if-none-match": b'"x"', b"if-modified-since": b"Sun, 06 Nov 1994 08:49:37 GMT"}, False),
        ({b"if-none-match": ETAG, b"if-modified-since": b"Thu, 01 Jan 1970 00:00:00 GMT"}, True),
    ],
)
def test_is_not_modified(headers: dict[bytes, bytes], expected: bool) -> None:
    assert is_not_modified(headers, ETAG, 784111777) is expected


# -- mime ---------------------------------------------------------------------------------


def test_mime_table_ignores_system_files() -> None:
    # Even if the global mimetypes db is told otherwise, our table does not move.
    import mimetypes

    mimetypes.add_type("application/x-weird", ".css")
    try:
        assert mime.content_type("a.css") == b"text/css; charset=utf-8"
        assert mime._base_table()[".css"] == "text/css"
        assert mime.build_types()[".css"] == b"text/css; charset=utf-8"
    finally:
        mimetypes.add_type("text/css", ".css")


def test_mime_only_textual_types_get_charset() -> None:
    for ext, value in mime.TYPES.items():
        textual = value.startswith(b"text/") or value.split(b";")[0].decode() in (
            mime.CHARSET_TYPES
        )
        assert textual == value.endswith(b"; charset=utf-8"), ext
    assert mime.TYPES[".json"] == b"application/json; charset=utf-8"
    assert mime.TYPES[".svg"] == b"image/svg+xml; charset=utf-8"
    assert mime.TYPES[".png"] == b"image/png"


@pytest.mark.parametrize("charset", ["", "iso-8859-1"])
def test_mime_charset_configurable(charset: str) -> None:
    types = mime.build_types(charset)
    expected = b"text/css" + (b"; charset=" + charset.encode() if charset else b"")
    assert mime.content_type("a.css", types) == expected


@pytest.mark.parametrize("charset", ["utf 8", "a;b", "é"])
def test_mime_charset_must_be_token(charset: str) -> None:
    with pytest.raises(ValueError, match="token"):
        mime.build_types(charset)


# -- cache bookkeeping --------------------------------------------------------------------


def _entry(tmp_path: pathlib.Path, name: str, content: bytes | None) -> CacheEntry:
    path = tmp_path / name
    path.write_bytes(content or b"x" * 10)
    return CacheEntry(str(path), str(path), os.stat(path), content, b"text/plain", 0.0)


def test_file_cache_accounting(tmp_path: pathlib.Path) -> None:
    a = _entry(tmp_path, "a", b"a" * 100)
    b = _entry(tmp_path, "b", None)
    fc = FileCache(a.cost + b.cost)
    assert fc.put(b"/a", a)
    assert fc.put(b"/b", b)
    assert fc.total_bytes == a.cost + b.cost
    assert fc.put(b"/a", a)  # replacing does not double-count
    assert fc.total_bytes == a.cost + b.cost
    assert list(fc.entries) == [b"/b", b"/a"]
    fc.drop(b"/b")
    fc.drop(b"/missing")
    assert fc.total_bytes == a.cost
    assert len(fc) == 1


def test_file_cache_entry_costs_at_least_overhead(tmp_path: pathlib.Path) -> None:
    large = _entry(tmp_path, "l", None)
    small = _entry(tmp_path, "s", b"s" * 1000)
    assert large.cost >= cache.ENTRY_OVERHEAD_BYTES
    assert small.cost >= cache.ENTRY_OVERHEAD_BYTES + 1000


def test_file_cache_refuses_entry_larger_than_bound(tmp_path: pathlib.Path) -> None:
    a = _entry(tmp_path, "a", b"a" * 100)
    fc = FileCache(a.cost - 1)
    assert not fc.put(b"/a", a)
    assert len(fc) == 0
    assert fc.total_bytes == 0


def test_file_cache_revalidate(tmp_path: pathlib.Path) -> None:
    a = _entry(tmp_path, "a", b"a" * 100)
    fc = FileCache(10**6)
    fc.put(b"/a", a)
    assert fc.revalidate(b"/a", a, 7.0)
    assert a.checked == 7.0
    st = os.stat(a.path)
    os.utime(a.path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert not fc.revalidate(b"/a", a, 8.0)
    assert b"/a" not in fc.entries
    assert fc.total_bytes == 0


def test_cache_entry_responses(tmp_path: pathlib.Path) -> None:
    small = _entry(tmp_path, "s", b"hello")
    assert small.get_response is not None
    assert small.get_response.body == b"hello"
    assert small.head_response.body is None
    assert small.head_response.head == small.get_response.head
    assert small.not_modified.status == 304
    assert small.not_modified.body is None
    assert b"Content-Length" not in small.not_modified.head
    large = _entry(tmp_path, "l", None)
    assert large.get_response is None
    assert b"Content-Length: 10\r\n" in large.head_response.head


# -- ranges and Accept-Encoding -------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"bytes=0-0", [(0, 1)]),
        (b"bytes= 0-1 , 4-5 ", [(0, 2), (4, 6)]),
        (b"bytes=0-1,,4-5,", [(0, 2), (4, 6)]),  # empty list elements are skipped
        (b"bytes=20-29,0-9", [(0, 10), (20, 30)]),  # sorted
        (b"bytes=0-9,5-14", [(0, 15)]),  # overlapping: merged
        (b"bytes=98-", [(98, 100)]),
        (b"bytes=-1", [(99, 100)]),
        (b"bytes=-100", [(0, 100)]),
        (b"bytes=0-99999999999999999999999999", [(0, 100)]),  # huge last: clamped
        (b"bytes=99999999999999999999999999-", []),  # huge first: unsatisfiable
        (b"bytes=" + b"9" * 5000 + b"-", []),  # no int() of 5000 digits
        (b"bytes=100-100, 200-", []),
        (b"bytes=100-100, 0-0", [(0, 1)]),  # the satisfiable ones are served
        (b"bytes=", None),
        (b"bytes=,", None),
        (b"bytes=1", None),
        (b"bytes=-", None),
        (b"bytes=--1", None),
        (b"bytes=+1-2", None),
        (b"bytes=0x1-2", None),
        (b"bytes=1-2-3", None),
        (b"bytes=3-2", None),
        (b"bytes=0-1, 3-2", None),  # one invalid spec invalidates the field
        (b"=0-1", None),
        (b"bytes", None),
    ],
)
def test_parse_range(value: bytes, expected: list[tuple[int, int]] | None) -> None:
    assert ranges.parse_range(value, 100) == expected


def test_parse_range_count_cap_counts_specs_before_coalescing() -> None:
    at_cap = b"bytes=" + b",".join([b"0-0"] * ranges.MAX_RANGES)
    assert ranges.parse_range(at_cap, 100) == [(0, 1)]  # 16 bytes asked of 100: coalesced
    spread = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(ranges.MAX_RANGES))
    assert ranges.parse_range(spread, 100) == [(0, ranges.MAX_RANGES)]
    over = b"bytes=" + b",".join(b"%d-%d" % (i, i) for i in range(ranges.MAX_RANGES + 1))
    assert ranges.parse_range(over, 100) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (b"gzip, deflate, br, zstd", b"br"),
        (b"gzip;q=0.9, br;q=0.8", b"gzip"),
        (b"gzip; q=0.5 , br ; q=0.4", b"gzip"),
        (b"br;q=0.000", None),
        (b"gzip;q=1.5", None),  # out of range: not acceptable
        (b"gzip;q=nan", None),
        (b"*;q=0.1", b"br"),
        (b"*, br;q=0", b"gzip"),
        (b"identity;q=1, gzip;q=1", b"gzip"),  # identity wins only when strictly better
        (b"compress", None),
    ],
)
def test_choose_encoding(value: bytes, expected: bytes | None) -> None:
    assert encoding.choose_encoding(value, (b"br", b"gzip")) == expected


def test_cache_entry_same_file_is_file_ident(tmp_path: pathlib.Path) -> None:
    """same_file compares an fstat as file_ident does (inlined there): equal for the file
    it describes, not once the file is rewritten in place."""
    entry = _entry(tmp_path, "f.txt", None)
    fd = os.open(tmp_path / "f.txt", os.O_RDONLY)
    try:
        assert entry.ident == cache.file_ident(os.fstat(fd))
        assert entry.same_file(fd)
        with open(tmp_path / "f.txt", "ab") as f:  # same inode, new size
            f.write(b"more")
        assert not entry.same_file(fd)
    finally:
        os.close(fd)
    assert not entry.same_file(fd)  # closed: EBADF says no
