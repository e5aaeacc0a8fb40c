"""Response rendering (c10k.http.writers), method_status, and the http modules' doctests."""

from __future__ import annotations

import doctest
import importlib
import re

import pytest

from c10k.http import (
    LocalProtocolError,
    Response,
    build_response,
    error_response,
    http_date,
    method_status,
)
from c10k.http.writers import render_fields, status_line
from c10k.region import FileRegion

HTTP_MODULES = ["abnf", "connection", "errors", "events", "readers", "writers", "__init__"]
WITH_DOCTESTS = {"connection", "readers", "writers"}


@pytest.mark.parametrize("name", HTTP_MODULES)
def test_http_doctests(name: str) -> None:
    module = importlib.import_module("c10k.http" if name == "__init__" else f"c10k.http.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    if name in WITH_DOCTESTS:
        assert result.attempted > 0, f"{name} lost its doctests"


@pytest.mark.parametrize(
    ("method", "status"),
    [
        (b"GET", 200),
        (b"HEAD", 200),
        *[
            (m, 405)
            for m in (b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH")
        ],
        (b"get", 501),  # methods are case-sensitive (RFC 9110 section 9.1)
        (b"Head", 501),
        (b"BREW", 501),
        (b"PROPFIND", 501),
        (b"", 501),
    ],
)
def test_http_method_status(method: bytes, status: int) -> None:
    assert method_status(method) == status


@pytest.mark.parametrize(
    "value",
    [b"a\rb", b"a\nb", b"a\r\nX-Injected: 1", b"\x00", b"ok\x00", b"\r\n", b"end\n"],
)
def test_http_render_fields_rejects_framing_bytes_in_values(value: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        render_fields([(b"X-Ok", b"fine"), (b"X-Bad", value)])


@pytest.mark.parametrize("name", [b"", b"A B", b"A:B", b"A\tB", b"A\r\nB", b"A\nB", b"A\x00", b":"])
def test_http_render_fields_rejects_bad_names(name: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        render_fields([(name, b"v")])


def test_http_render_fields_renders_in_order() -> None:
    fields = [(b"A", b"1"), (b"B", b""), (b"C", b"x y\t\x80")]
    assert render_fields(fields) == b"A: 1\r\nB: \r\nC: x y\t\x80\r\n"
    assert render_fields([]) == b""


def _fields_of(resp: Response) -> tuple[bytes, dict[bytes, bytes]]:
    lines = resp.head.split(b"\r\n")
    assert lines[-1] == b"", "head must end in CRLF"
    assert b"" not in lines[:-1], "head must not contain the final empty line"
    fields = {}
    for line in lines[1:-1]:
        name, _, value = line.partition(b": ")
        assert name not in fields
        fields[name] = value
    return lines[0], fields


@pytest.mark.parametrize(
    ("status", "body", "content_length", "expected_cl"),
    [
        (200, b"hello", None, b"5"),
        (200, b"", None, b"0"),
        (200, None, None, b"0"),
        (200, None, 1234, b"1234"),  # HEAD: no body, the GET's length
        (206, FileRegion(0, 10, 20), None, b"20"),
        (404, b"x" * 7, None, b"7"),
        (301, b"", None, b"0"),
        (204, None, None, None),
        (304, None, 99, None),
        (100, None, None, None),
        (101, None, None, None),
    ],
)
def test_http_build_response_content_length(
    status: int,
    body: bytes | FileRegion | None,
    content_length: int | None,
    expected_cl: bytes | None,
) -> None:
    resp = build_response(status, [(b"Content-Type", b"text/plain")], body, content_length)
    line, fields = _fields_of(resp)
    assert line == status_line(status).rstrip(b"\r\n")
    assert re.fullmatch(rb"HTTP/1\.1 \d{3} [^\r\n]+", line)
    assert resp.status == status
    assert resp.body is body  # a FileRegion passes through untouched
    assert fields.get(b"Content-Length") == expected_cl
    assert fields[b"Server"] == b"c10k"
    assert fields[b"Content-Type"] == b"text/plain"
    assert resp.close is False


def test_http_build_response_close_and_header_injection() -> None:
    assert build_response(200, [], b"", close=True).close is True
    with pytest.raises(LocalProtocolError):
        build_response(200, [(b"Location", b"/a\r\nSet-Cookie: x=1")], b"")


@pytest.mark.parametrize("status", [400, 404, 405, 414, 431, 500, 501, 505, 599])
def test_http_error_response(status: int) -> None:
    resp = error_response(status, [(b"Allow", b"GET, HEAD")], close=True)
    line, fields = _fields_of(resp)
    assert line.startswith(b"HTTP/1.1 %d " % status)
    assert isinstance(resp.body, bytes)
    assert fields[b"Content-Length"] == b"%d" % len(resp.body)
    assert fields[b"Content-Type"] == b"text/html; charset=utf-8"
    assert fields[b"Allow"] == b"GET, HEAD"
    assert b"%d" % status in resp.body
    assert resp.close is True
    assert error_response(status).close is False


def test_http_status_line_reasons() -> None:
    assert status_line(200) == b"HTTP/1.1 200 OK\r\n"
    assert status_line(413) == b"HTTP/1.1 413 Content Too Large\r\n"
    assert status_line(431) == b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
    assert status_line(599) == b"HTTP/1.1 599 Unknown\r\n"


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (0, b"Thu, 01 Jan 1970 00:00:00 GMT"),
        (784111777, b"Sun, 06 Nov 1994 08:49:37 GMT"),  # RFC 9110 section 5.6.7's example
        (1700000000.9, b"Tue, 14 Nov 2023 22:13:20 GMT"),  # fractions are truncated
    ],
)
def test_http_http_date(ts: float, expected: bytes) -> None:
    assert http_date(ts) == expected
