"""Regressions: inputs whose outcome used to depend on how the bytes were split.

Each case is fed whole and byte by byte (and at a few other split points) through
``both``/``error_status``; before the fixes noted on each case the two disagreed.
"""

from __future__ import annotations

import sys
from types import FrameType
from typing import Any

import pytest
from _http_support import both, error_status, get, only_request, outcome

from c10k.http import CONNECTION_CLOSED, NEED_DATA, HTTPConnection, Limits, Request
from c10k.http import connection as connection_module

LIMIT = 64
LIMITS = Limits(max_header_bytes=LIMIT)


def _line_of(length: int) -> bytes:
    return b"GET /" + b"a" * (length - 14) + b" HTTP/1.0"


@pytest.mark.parametrize(
    "data",
    [
        # A CR of an empty line arriving alone was rejected as junk by REQUEST_PREFIX.
        pytest.param(b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", id="one-empty-line"),
        pytest.param(b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", id="three-empty-lines"),
        pytest.param(get(b"/a") + b"\r\n\r\n" + get(b"/b"), id="empty-lines-between"),
    ],
)
def test_http_regression_split_empty_line(data: bytes) -> None:
    result = both(data)
    assert result[-1] is NEED_DATA
    assert all(isinstance(r, tuple) and r[0] == "req" for r in result[:-1])


def test_http_regression_empty_lines_count_against_no_limit() -> None:
    # Whole: the empty line was stripped before the size check; byte by byte it was still
    # in the buffer when the limit tripped (431).
    data = b"\r\n" + _line_of(LIMIT - 4) + b"\r\n\r\n"  # the head alone is exactly LIMIT
    assert only_request(data, LIMITS).target.startswith(b"/a")


def test_http_regression_trailing_empty_line_then_eof_is_clean() -> None:
    # A stray CRLF after the last request, then EOF: ignored like any empty line before a
    # request-line (RFC 9112 section 2.2), not a 400 "closed inside a request head".
    assert both(get() + b"\r\n", eof=True)[-1] is CONNECTION_CLOSED


@pytest.mark.parametrize(
    ("data", "status"),
    [
        # Request line of exactly LIMIT bytes: whole said 431 (its CRLF was within
        # limit + 2 bytes), byte by byte 414 (only its CR had arrived).
        pytest.param(_line_of(LIMIT) + b"\r\n\r\n", 414, id="line-exactly-limit"),
        pytest.param(_line_of(LIMIT - 1) + b"\r\n\r\n", 431, id="line-limit-minus-1"),
        # Junk longer than the limit: whole said 414, byte by byte 400 on the first byte.
        pytest.param(b"\x16\x03\x01" + b"a" * LIMIT * 2, 400, id="tls-longer-than-limit"),
        pytest.param(
            b"\x16\x03\x01" + b"a" * LIMIT * 2 + b"\r\n\r\n", 400, id="junk-head-over-limit"
        ),
        # A bare LF before the limit in an oversized head: whole said 431, bytewise 400.
        pytest.param(
            b"GET / HTTP/1.0\r\nA: b\n" + b"c" * LIMIT + b"\r\n\r\n",
            400,
            id="bare-lf-then-oversized",
        ),
        # A bare LF only after the limit: the limit trips first either way.
        pytest.param(
            b"GET / HTTP/1.0\r\nA: " + b"c" * LIMIT + b"\n\r\n\r\n",
            431,
            id="oversized-then-bare-lf",
        ),
        pytest.param(_line_of(LIMIT * 2) + b"\n", 414, id="long-line-then-bare-lf"),
        # A method longer than the limit with junk after it.
        pytest.param(b"G" * (LIMIT + 3) + b"\x00", 414, id="long-method-then-nul"),
    ],
)
def test_http_regression_limit_status_independent_of_split(data: bytes, status: int) -> None:
    assert error_status(data, limits=LIMITS) == status
    for cut in (1, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2):
        assert outcome([data[:cut], data[cut:]], limits=LIMITS) == [("error", status)], cut


@pytest.mark.parametrize(
    "data",
    [
        # 505 was guessed from the line's last word even when the line was malformed, but
        # HTTPConnection rejects the same bytes with 400 before the line is complete.
        pytest.param(b"GET\t/ HTTP/2.0\r\n\r\n", id="tab-after-method"),
        pytest.param(b"\x16GET / HTTP/2.0\r\n\r\n", id="junk-first"),
        pytest.param(b"GET /a\nb HTTP/2.0\r\n\r\n", id="bare-lf-in-line"),
        # The version was checked before the field block: 505 whole, 400 byte by byte.
        pytest.param(b"GET / HTTP/2.0\r\nA: b\nc\r\n\r\n", id="bare-lf-in-fields"),
        # Not HTTP-version at all (RFC 9112 section 2.3: DIGIT "." DIGIT).
        pytest.param(b"GET / HTTP/2\r\n\r\n", id="no-minor"),
        pytest.param(b"GET / HTTP/02.0\r\n\r\n", id="two-digit-major"),
        pytest.param(b"GET / HTTP/20.0\r\n\r\n", id="major-20"),
    ],
)
def test_http_regression_malformed_line_is_400_not_505(data: bytes) -> None:
    assert error_status(data) == 400


def test_http_regression_empty_line_flood_is_linear() -> None:
    # Leading empty lines were sliced off one at a time: a 64 KiB read of CRLFs cost
    # 32,768 copies of up to 64 KiB (O(n^2)). Count the Python lines executed in
    # connection.py instead of timing it (no wall-clock assertions, STYLE.md section 6).
    lines = 0
    code_file = connection_module.__file__

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal lines
        if frame.f_code.co_filename == code_file:
            if event == "line":
                lines += 1
            return tracer
        return None

    for data in (b"\r\n" * 32768 + get(), b"\r\n" * 32769):
        conn = HTTPConnection(Limits())
        conn.receive_data(data)
        lines = 0
        sys.settrace(tracer)
        try:
            event = conn.next_event()
        finally:
            sys.settrace(None)
        assert isinstance(event, Request) or event is NEED_DATA
        assert lines < 100, lines
    # Split so the flood reaches _incomplete (no CRLFCRLF in the buffer yet).
    conn = HTTPConnection(Limits())
    conn.receive_data(b"\r\n")
    lines = 0
    sys.settrace(tracer)
    try:
        assert conn.next_event() is NEED_DATA
    finally:
        sys.settrace(None)
    assert conn.trailing_data == (b"", False)
