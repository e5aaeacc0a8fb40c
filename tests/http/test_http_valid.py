"""Valid requests: each fed whole and byte by byte (STYLE.md section 6) must agree."""

from __future__ import annotations

import pytest
from _http_support import both, error_status, get, only_request

from c10k.http import CONNECTION_CLOSED, NEED_DATA, PAUSED, HTTPConnection, Limits, Request

# (request bytes, method, target, minor, headers, keep_alive)
VALID = [
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"GET", b"/", 1, {b"host": b"x"}, True, id="get"
    ),
    pytest.param(
        b"HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n", b"HEAD", b"/a", 1, {b"host": b"x"}, True, id="head"
    ),
    pytest.param(
        b"GET /p?q=1&r HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET",
        b"/p?q=1&r",
        1,
        {b"host": b"x"},
        True,
        id="query",
    ),
    pytest.param(b"GET / HTTP/1.0\r\n\r\n", b"GET", b"/", 0, {}, False, id="1.0-no-host"),
    pytest.param(
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"GET",
        b"/",
        0,
        {b"connection": b"keep-alive"},
        True,
        id="1.0-keep-alive",
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n",
        b"GET",
        b"/",
        0,
        {b"connection": b"Keep-Alive"},
        True,
        id="1.0-keep-alive-mixed-case",
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\nConnection: close\r\n\r\n",
        b"GET",
        b"/",
        0,
        {b"connection": b"close"},
        False,
        id="1.0-close",
    ),
    pytest.param(
        b"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
        b"GET",
        b"/",
        0,
        {b"connection": b"keep-alive, close"},
        False,
        id="1.0-keep-alive-and-close",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"connection": b"close"},
        False,
        id="1.1-close",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: CLOSE\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"connection": b"CLOSE"},
        False,
        id="1.1-close-upper",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive, Upgrade\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"connection": b"keep-alive, Upgrade"},
        True,
        id="1.1-token-list",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade ,\tClose\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"connection": b"Upgrade ,\tClose"},
        False,
        id="1.1-close-in-list",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"connection": b"closed"},
        True,
        id="1.1-closed-is-not-close",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"connection": b"keep-alive, close"},
        False,
        id="1.1-close-in-second-line",
    ),
    pytest.param(
        b"GET http://example.com/a/b?c HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"GET",
        b"/a/b?c",
        1,
        {b"host": b"example.com"},
        True,
        id="absolute-form",
    ),
    pytest.param(
        b"GET HTTPS://Example.com:8443 HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"Example.com:8443"},  # RFC 9112 3.2.2: the target's authority wins
        True,
        id="absolute-form-no-path",
    ),
    pytest.param(
        b"GET http://[::1]:80?x HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET",
        b"/?x",
        1,
        {b"host": b"[::1]:80"},
        True,
        id="absolute-form-ipv6-query",
    ),
    pytest.param(
        b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
        b"OPTIONS",
        b"*",
        1,
        {b"host": b"x"},
        True,
        id="asterisk-form",
    ),
    pytest.param(
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
        b"CONNECT",
        b"example.com:443",
        1,
        {b"host": b"example.com:443"},
        True,
        id="authority-form",
    ),
    pytest.param(
        b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x"},
        True,
        id="leading-empty-line",
    ),
    pytest.param(
        b"\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x"},
        True,
        id="leading-empty-lines",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nAccept: a\r\naccept: b\r\nACCEPT: c\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"accept": b"a, b, c"},
        True,
        id="combined",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost:x\r\nA:  \t v w \t \r\nB:\r\nC: \r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"a": b"v w", b"b": b"", b"c": b""},
        True,
        id="ows-trimmed",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Name: caf\xc3\xa9 \x80\xff\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"x-name": b"caf\xc3\xa9 \x80\xff"},
        True,
        id="obs-text",
    ),
    pytest.param(
        b'GET / HTTP/1.1\r\nHost: x\r\nX: "q" (c) <a> {b} \\ ~\r\n\r\n',
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"x": b'"q" (c) <a> {b} \\ ~'},
        True,
        id="vchar-punctuation",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: \r\n\r\n", b"GET", b"/", 1, {b"host": b""}, True, id="empty-host"
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"[::1]:8080"},
        True,
        id="ipv6-host",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nhOsT: a.b-c_d~e%41:1\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"a.b-c_d~e%41:1"},
        True,
        id="host-mixed-case-name",
    ),
    pytest.param(
        b"GET / HTTP/1.9\r\nHost: x\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x"},
        True,
        id="1.9-as-1.1",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"content-length": b"0"},
        True,
        id="cl-0",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 000\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"content-length": b"000"},
        True,
        id="cl-000",
    ),
    pytest.param(
        b"BREW /pot HTTP/1.1\r\nHost: x\r\n\r\n",
        b"BREW",
        b"/pot",
        1,
        {b"host": b"x"},
        True,
        id="unknown-method-token",
    ),
    pytest.param(
        b"M-!#$%&'*+.^_`|~9 / HTTP/1.1\r\nHost: x\r\n\r\n",
        b"M-!#$%&'*+.^_`|~9",
        b"/",
        1,
        {b"host": b"x"},
        True,
        id="method-all-tchars",
    ),
    pytest.param(
        b"GET / HTTP/1.1\r\nHost: x\r\n!#$%&'*+-.^_`|~09azAZ: v\r\n\r\n",
        b"GET",
        b"/",
        1,
        {b"host": b"x", b"!#$%&'*+-.^_`|~09azaz": b"v"},
        True,
        id="name-all-tchars",
    ),
]


@pytest.mark.parametrize(("data", "method", "target", "minor", "headers", "keep_alive"), VALID)
def test_http_valid_request(
    data: bytes,
    method: bytes,
    target: bytes,
    minor: int,
    headers: dict[bytes, bytes],
    keep_alive: bool,
) -> None:
    req = only_request(data)
    assert (req.method, req.target, req.minor, req.headers, req.keep_alive, req.has_body) == (
        method,
        target,
        minor,
        headers,
        keep_alive,
        False,
    )


def test_http_valid_pipelined_in_order() -> None:
    reqs = [get(b"/%d" % i) for i in range(5)] + [b"HEAD /h HTTP/1.0\r\n\r\n"]
    result = both(b"".join(reqs))
    targets = [r[2] for r in result[:-1]]  # type: ignore[index]
    assert targets == [b"/0", b"/1", b"/2", b"/3", b"/4", b"/h"]
    assert [r[1] for r in result[:-1]] == [b"GET"] * 5 + [b"HEAD"]  # type: ignore[index]
    assert result[-1] is NEED_DATA


def test_http_valid_pipelined_with_empty_lines_between() -> None:
    result = both(get(b"/a") + b"\r\n" + get(b"/b") + b"\r\n\r\n" + get(b"/c"))
    assert [r[2] for r in result[:-1]] == [b"/a", b"/b", b"/c"]  # type: ignore[index]


def test_http_valid_partial_trailing_request_stays_buffered() -> None:
    partial = b"GET /second HTTP/1.1\r\nHost: x\r\n"
    result = both(get(b"/first") + partial)
    assert [r[2] for r in result[:-1]] == [b"/first"]  # type: ignore[index]
    assert result[-1] is NEED_DATA
    conn = HTTPConnection(Limits())
    conn.receive_data(get(b"/first") + partial)
    assert isinstance(conn.next_event(), Request)
    assert conn.next_event() is NEED_DATA
    assert conn.next_event() is NEED_DATA  # idempotent
    assert conn.trailing_data == (partial, False)
    conn.receive_data(b"\r\n")
    req = conn.next_event()
    assert isinstance(req, Request)
    assert req.target == b"/second"
    assert conn.trailing_data == (b"", False)


def test_http_valid_eof_with_empty_buffer_is_connection_closed() -> None:
    assert both(b"", eof=True) == [CONNECTION_CLOSED]
    assert both(get(), eof=True)[-1] is CONNECTION_CLOSED
    conn = HTTPConnection(Limits())
    conn.receive_data(b"")
    assert conn.next_event() is CONNECTION_CLOSED
    assert conn.next_event() is CONNECTION_CLOSED


@pytest.mark.parametrize(
    "partial",
    [b"G", b"GET", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r"],
)
def test_http_valid_eof_mid_head_is_400(partial: bytes) -> None:
    assert error_status(partial, eof=True) == 400


def test_http_valid_data_after_eof_is_an_error() -> None:
    conn = HTTPConnection(Limits())
    conn.receive_data(b"")
    with pytest.raises(Exception, match="after EOF"):
        conn.receive_data(b"GET")


def test_http_valid_request_then_eof() -> None:
    result = both(get(b"/a") + get(b"/b"), eof=True)
    assert [r[2] for r in result[:-1]] == [b"/a", b"/b"]  # type: ignore[index]
    assert result[-1] is CONNECTION_CLOSED


def test_http_valid_paused_is_sticky() -> None:
    conn = HTTPConnection(Limits())
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx")
    req = conn.next_event()
    assert isinstance(req, Request)
    assert req.has_body
    for _ in range(3):
        assert conn.next_event() is PAUSED
    conn.receive_data(b"")
    assert conn.next_event() is PAUSED
