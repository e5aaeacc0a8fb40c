"""Bodies are never parsed as requests (RFC 9112 section 11.2), and the head memo.

connection.py "Rule 3": after a head that announces a body the connection is PAUSED for
good, so whatever follows (even bytes that look like a request: the smuggling payload) is
never returned. "Rule 4": parsed heads are memoized per ``Limits``, bounded, and only
valid heads are stored.
"""

from __future__ import annotations

import pytest
from _http_support import both, error_status, get

from c10k.http import NEED_DATA, PAUSED, HTTPConnection, Limits, RemoteProtocolError, Request
from c10k.http.connection import MEMO_MAX_ENTRIES, MEMO_MAX_HEAD_BYTES

SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("head", "body"),
    [
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(SMUGGLED),
            SMUGGLED,
            id="cl-body-is-a-request",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n",
            b"x" + SMUGGLED,
            id="cl-1-then-request",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0001\r\n\r\n",
            b"x" + SMUGGLED,
            id="cl-leading-zeros",
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999999999\r\n\r\n",
            SMUGGLED,
            id="cl-18-digits",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"0\r\n\r\n" + SMUGGLED,
            id="chunked-then-request",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: , Chunked\r\n\r\n",
            b"5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
            id="empty-element-then-chunked",
        ),
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: CHUNKED\r\n\r\n",
            b"0x5\r\nhello\r\n0\r\n\r\n" + SMUGGLED,
            id="chunked-upper-case-bad-chunk-size",
        ),
        pytest.param(
            b"HEAD / HTTP/1.0\r\nContent-Length: 5\r\n\r\n", b"12345" + SMUGGLED, id="head-1.0-cl"
        ),
        pytest.param(
            b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\n",
            b"\r\n\r\n" + SMUGGLED,
            id="body-of-empty-lines",
        ),
    ],
)
def test_http_body_never_parsed_as_request(head: bytes, body: bytes) -> None:
    result = both(head + body, eof=True)
    assert len(result) == 2, result
    req, terminal = result
    assert isinstance(req, tuple)
    assert req[0] == "req"
    assert req[-1] is True  # has_body
    assert terminal is PAUSED
    # And on a connection that keeps receiving: PAUSED forever.
    conn = HTTPConnection(Limits())
    conn.receive_data(head)
    event = conn.next_event()
    assert isinstance(event, Request)
    assert event.has_body
    for _ in range(5):
        conn.receive_data(body)
        assert conn.next_event() is PAUSED


def test_http_body_pipelined_requests_before_the_body_still_come_out() -> None:
    data = get(b"/a") + b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" + get(b"/c")
    result = both(data)
    assert [r[2] for r in result[:-1]] == [b"/a", b"/b"]  # type: ignore[index]
    assert result[-1] is PAUSED


@pytest.mark.parametrize(
    "field", [b"Content-Length: 0", b"Content-Length: 00", b"content-length:0"]
)
def test_http_body_content_length_zero_keeps_parsing(field: bytes) -> None:
    data = get(b"/first", field) + get(b"/second")
    result = both(data)
    assert [r[2] for r in result[:-1]] == [b"/first", b"/second"]  # type: ignore[index]
    assert [r[-1] for r in result[:-1]] == [False, False]  # type: ignore[index]
    assert result[-1] is NEED_DATA


# -- the head memo (connection.py "Rule 4") ------------------------------------------------


def _parse(limits: Limits, data: bytes) -> Request:
    conn = HTTPConnection(limits)
    conn.receive_data(data)
    req = conn.next_event()
    assert isinstance(req, Request)
    return req


def _fields(req: Request) -> tuple[object, ...]:
    return (req.method, req.target, req.minor, req.headers, req.keep_alive, req.has_body)


@pytest.mark.parametrize(
    "data",
    [
        get(b"/memo", b"Accept: */*", b"Connection: close"),
        b"GET / HTTP/1.0\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n",
    ],
)
def test_http_memo_repeated_head_gives_equal_request(data: bytes) -> None:
    limits = Limits()
    first = _parse(limits, data)
    assert len(limits.head_memo) == 1
    second = _parse(limits, data)
    assert _fields(second) == _fields(first)
    assert len(limits.head_memo) == 1
    # A fresh Limits (empty memo) parses it to the same result as the memo returns.
    assert _fields(_parse(Limits(), data)) == _fields(first)


def test_http_memo_hit_still_pauses_after_a_body() -> None:
    limits = Limits()
    data = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nab" + SMUGGLED
    for _ in range(3):  # the second and third are memo hits
        conn = HTTPConnection(limits)
        conn.receive_data(data)
        req = conn.next_event()
        assert isinstance(req, Request)
        assert req.has_body
        assert conn.next_event() is PAUSED


def test_http_memo_is_per_limits() -> None:
    a, b = Limits(), Limits(max_fields=1)
    data = get(b"/", b"X: y")
    assert _parse(a, data).headers == {b"host": b"x", b"x": b"y"}
    conn = HTTPConnection(b)  # a memo shared across Limits would return a's Request here
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_status_hint == 431


def test_http_memo_bounded_under_a_flood_of_unique_heads() -> None:
    limits = Limits()
    peak = 0
    for i in range(MEMO_MAX_ENTRIES * 3 + 7):
        req = _parse(limits, get(b"/%d" % i))
        assert req.target == b"/%d" % i
        peak = max(peak, len(limits.head_memo))
    assert 0 < peak <= MEMO_MAX_ENTRIES
    assert all(len(k) <= MEMO_MAX_HEAD_BYTES for k in limits.head_memo)


def test_http_memo_skips_large_heads() -> None:
    limits = Limits()
    big = get(b"/", b"X: " + b"v" * MEMO_MAX_HEAD_BYTES)
    assert _parse(limits, big).headers[b"x"] == b"v" * MEMO_MAX_HEAD_BYTES
    assert limits.head_memo == {}


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", 400),  # no Host
        (get(b"/", b"A: b\x00"), 400),
        (get(b"/", b"Host: y"), 400),
        (get(b"/", b"Content-Length: 1", b"Transfer-Encoding: chunked"), 400),
        (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
        (get(b"/", *[b"X: y"] * 200), 431),
    ],
)
def test_http_memo_never_stores_an_invalid_head(data: bytes, status: int) -> None:
    limits = Limits()
    for _ in range(3):  # raises every time: the first failure was not memoized
        assert error_status(data, limits=limits) == status
    assert limits.head_memo == {}
    # A valid head afterwards is unaffected.
    assert _parse(limits, get()).target == b"/"
    assert len(limits.head_memo) == 1
