"""Malformed and hostile heads: RemoteProtocolError with the right status, then PAUSED.

Each case goes through ``error_status`` (tests/http/_http_support.py), which feeds it whole
and byte by byte, asserts both give the same single error, and that the connection
answers PAUSED afterwards (connection.py "Rule 3"). Precedents for the statuses are in the
docstrings of c10k.http.readers and c10k.http.abnf; RFC 9112 sections in the ids' comments.
"""

from __future__ import annotations

import pytest
from _http_support import error_status, get, only_request

from c10k.http import PAUSED, HTTPConnection, Limits, RemoteProtocolError

H = b"GET / HTTP/1.1\r\nHost: x\r\n"  # a valid start; append field lines + b"\r\n"

MALFORMED = [
    # Line endings (RFC 9112 section 2.2: we reject bare LF and bare CR).
    pytest.param(b"GET / HTTP/1.1\nHost: x\n\n", 400, id="bare-lf-everywhere"),
    pytest.param(b"GET / HTTP/1.1\nHost: x\r\n\r\n", 400, id="bare-lf-request-line"),
    pytest.param(H + b"A: b\n\r\n", 400, id="bare-lf-field-line"),
    pytest.param(H + b"A: b\nc\r\n\r\n", 400, id="bare-lf-in-value"),
    pytest.param(H + b"\n", 400, id="bare-lf-final-line"),
    pytest.param(b"\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="bare-lf-empty-line-first"),
    pytest.param(b"GET / HTTP/1.1\rHost: x\r\n\r\n", 400, id="bare-cr-request-line"),
    pytest.param(H + b"A: b\rc\r\n\r\n", 400, id="bare-cr-in-value"),
    pytest.param(H + b"A\r: b\r\n\r\n", 400, id="bare-cr-in-name"),
    pytest.param(b"\rGET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="bare-cr-first"),
    # NUL and other CTLs (RFC 9110 section 5.5).
    pytest.param(H + b"A: b\x00c\r\n\r\n", 400, id="nul-in-value"),
    pytest.param(H + b"A\x00: b\r\n\r\n", 400, id="nul-in-name"),
    pytest.param(H + b"A: b\x01\r\n\r\n", 400, id="soh-in-value"),
    pytest.param(H + b"A: b\x1bc\r\n\r\n", 400, id="esc-in-value"),
    pytest.param(H + b"A: b\x7f\r\n\r\n", 400, id="del-in-value"),
    pytest.param(H + b"A\x7f: b\r\n\r\n", 400, id="del-in-name"),
    pytest.param(H + b"A\x0b: b\r\n\r\n", 400, id="vt-in-name"),
    pytest.param(b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="nul-in-target"),
    pytest.param(b"G\x00T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="nul-in-method"),
    # Field names (RFC 9112 section 5.1: no whitespace before the colon; token names).
    pytest.param(H + b"A : b\r\n\r\n", 400, id="space-before-colon"),
    pytest.param(H + b"A\t: b\r\n\r\n", 400, id="tab-before-colon"),
    pytest.param(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, id="space-before-colon-host"),
    pytest.param(H + b" A: b\r\n\r\n", 400, id="space-before-name"),
    pytest.param(H + b"A: b\r\n c\r\n\r\n", 400, id="obs-fold-space"),
    pytest.param(H + b"A: b\r\n\tc\r\n\r\n", 400, id="obs-fold-tab"),
    pytest.param(b"GET / HTTP/1.1\r\n Host: x\r\n\r\n", 400, id="obs-fold-first-line"),
    pytest.param(H + b": b\r\n\r\n", 400, id="empty-name"),
    pytest.param(H + b"A(b): c\r\n\r\n", 400, id="paren-in-name"),
    pytest.param(H + b"A/b: c\r\n\r\n", 400, id="slash-in-name"),
    pytest.param(H + b"A@b: c\r\n\r\n", 400, id="at-in-name"),
    pytest.param(H + b'A"b: c\r\n\r\n', 400, id="quote-in-name"),
    pytest.param(H + b"caf\xc3\xa9: c\r\n\r\n", 400, id="non-ascii-name"),
    pytest.param(H + b"A b: c\r\n\r\n", 400, id="space-in-name"),
    pytest.param(H + b"NoColon\r\n\r\n", 400, id="missing-colon"),
    pytest.param(H + b"A b c\r\n\r\n", 400, id="missing-colon-spaces"),
    # Request line (RFC 9112 section 3).
    pytest.param(b"GET / http/1.1\r\nHost: x\r\n\r\n", 400, id="lowercase-version"),
    pytest.param(b"GET / Http/1.1\r\nHost: x\r\n\r\n", 400, id="mixed-case-version"),
    pytest.param(b"GET / HTTP/1\r\nHost: x\r\n\r\n", 400, id="version-no-minor"),
    pytest.param(b"GET / HTTP/1.\r\nHost: x\r\n\r\n", 400, id="version-empty-minor"),
    pytest.param(b"GET / HTTP/1.1.1\r\nHost: x\r\n\r\n", 400, id="version-three-parts"),
    pytest.param(b"GET / HTTP/1.10\r\nHost: x\r\n\r\n", 400, id="version-two-digit-minor"),
    pytest.param(b"GET / HTTP/01.1\r\nHost: x\r\n\r\n", 400, id="version-two-digit-major"),
    pytest.param(b"GET / HTTP/1,1\r\nHost: x\r\n\r\n", 400, id="version-comma"),
    pytest.param(b"GET / HTTP /1.1\r\nHost: x\r\n\r\n", 400, id="version-space"),
    pytest.param(b"GET / FTP/1.1\r\nHost: x\r\n\r\n", 400, id="version-not-http"),
    pytest.param(b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505, id="http-2.0"),
    pytest.param(b"GET / HTTP/3.0\r\nHost: x\r\n\r\n", 505, id="http-3.0"),
    pytest.param(b"GET / HTTP/0.9\r\n\r\n", 505, id="http-0.9-versioned"),
    pytest.param(b"GET / HTTP/9.9\r\n\r\n", 505, id="http-9.9"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, id="h2-preface"),
    pytest.param(b"GET /\r\n\r\n", 400, id="http-0.9-simple-request"),
    pytest.param(b"GET\r\n\r\n", 400, id="method-only"),
    pytest.param(b"GET  / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="two-spaces-after-method"),
    pytest.param(b"GET /  HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="two-spaces-after-target"),
    pytest.param(b"GET / HTTP/1.1 \r\nHost: x\r\n\r\n", 400, id="trailing-space"),
    pytest.param(b" GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="leading-space"),
    pytest.param(b"GET\t/\tHTTP/1.1\r\nHost: x\r\n\r\n", 400, id="tabs-as-separators"),
    pytest.param(b" / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="empty-method"),
    pytest.param(b"G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="non-token-method"),
    pytest.param(b"GET /a b HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="space-in-target"),
    pytest.param(b"GET /caf\xc3\xa9 HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="non-ascii-target"),
    pytest.param(b"GET /\x7f HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="del-in-target"),
    pytest.param(b"GET a HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="relative-target"),
    pytest.param(b"GET ?a HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="query-only-target"),
    pytest.param(b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="asterisk-not-options"),
    pytest.param(b"OPTIONS *x HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="asterisk-plus"),
    pytest.param(
        b"GET example.com:443 HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="authority-not-connect"
    ),
    pytest.param(b"GET http:///a HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="absolute-empty-authority"),
    pytest.param(b"GET http://u@h/a HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="absolute-userinfo"),
    pytest.param(b"GET ftp://h/a HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="absolute-not-http"),
    pytest.param(b"GET http:/a HTTP/1.1\r\nHost: x\r\n\r\n", 400, id="absolute-one-slash"),
    # Host (RFC 9112 section 3.2: missing in 1.1 or repeated -> 400).
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="missing-host"),
    pytest.param(b"GET http://x/ HTTP/1.1\r\n\r\n", 400, id="missing-host-absolute-form"),
    pytest.param(H + b"Host: x\r\n\r\n", 400, id="duplicate-host"),
    pytest.param(H + b"host: y\r\n\r\n", 400, id="duplicate-host-other-case"),
    pytest.param(b"GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400, id="duplicate-host-1.0"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400, id="host-space"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, id="host-slash"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, id="host-userinfo"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a?b\r\n\r\n", 400, id="host-query"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a#b\r\n\r\n", 400, id="host-fragment"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a:b\r\n\r\n", 400, id="host-port-not-digits"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: caf\xc3\xa9\r\n\r\n", 400, id="host-non-ascii"),
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\tb\r\n\r\n", 400, id="host-tab"),
    # Framing (RFC 9112 section 6): never guess where a body ends.
    pytest.param(
        H + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400, id="cl-and-te"
    ),
    pytest.param(
        H + b"Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n", 400, id="te-and-cl-0"
    ),
    pytest.param(
        H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\n", 400, id="duplicate-cl-equal"
    ),
    pytest.param(
        H + b"Content-Length: 0\r\nContent-Length: 0\r\n\r\n", 400, id="duplicate-cl-zero"
    ),
    pytest.param(
        H + b"Content-Length: 1\r\nContent-Length: 2\r\n\r\n", 400, id="duplicate-cl-differ"
    ),
    pytest.param(H + b"Content-Length: 1, 1\r\n\r\n", 400, id="cl-list"),
    pytest.param(H + b"Content-Length: +1\r\n\r\n", 400, id="cl-plus"),
    pytest.param(H + b"Content-Length: -1\r\n\r\n", 400, id="cl-minus"),
    pytest.param(H + b"Content-Length: 1_0\r\n\r\n", 400, id="cl-underscore"),
    pytest.param(H + b"Content-Length: +1_0\r\n\r\n", 400, id="cl-plus-underscore"),
    pytest.param(H + b"Content-Length: 0x10\r\n\r\n", 400, id="cl-hex"),
    pytest.param(H + b"Content-Length: 1 0\r\n\r\n", 400, id="cl-inner-space"),
    pytest.param(H + b"Content-Length: 1.0\r\n\r\n", 400, id="cl-decimal"),
    pytest.param(H + b"Content-Length: 1e3\r\n\r\n", 400, id="cl-exponent"),
    pytest.param(H + b"Content-Length: \xd9\xa1\r\n\r\n", 400, id="cl-arabic-indic-digit"),
    pytest.param(H + b"Content-Length:\r\n\r\n", 400, id="cl-empty"),
    pytest.param(H + b"Content-Length: \r\n\r\n", 400, id="cl-blank"),
    pytest.param(H + b"Content-Length: 1234567890123456789\r\n\r\n", 400, id="cl-19-digits"),
    pytest.param(H + b"Content-Length: 0000000000000000000\r\n\r\n", 400, id="cl-19-zeros"),
    pytest.param(H + b"Content-Length: 99999999999999999999999\r\n\r\n", 400, id="cl-huge"),
    pytest.param(b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 400, id="te-in-1.0"),
    pytest.param(H + b"Transfer-Encoding: gzip\r\n\r\n", 400, id="te-not-chunked"),
    pytest.param(H + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400, id="te-chunked-not-last"),
    pytest.param(H + b"Transfer-Encoding: identity\r\n\r\n", 400, id="te-identity"),
    pytest.param(
        H + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        400,
        id="te-repeated-gzip-last",
    ),
    pytest.param(H + b"Transfer-Encoding:\r\n\r\n", 400, id="te-empty"),
    pytest.param(H + b"Transfer-Encoding: xchunked\r\n\r\n", 400, id="te-xchunked"),
    pytest.param(H + b"Transfer-Encoding: chunked;q=1\r\n\r\n", 400, id="te-chunked-params"),
    # Not HTTP at all: rejected on the first bytes, without waiting for CRLFCRLF.
    pytest.param(
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(32)),
        400,
        id="tls-client-hello",
    ),
    pytest.param(b"\x00\x00\x00\x00", 400, id="nul-bytes"),
    pytest.param(b"\xff\xfe\xfd", 400, id="high-bytes"),
    pytest.param(b"SSH-2.0-OpenSSH_9.6\r\n", 400, id="ssh-banner"),
    pytest.param(b"GET/ HTTP/1.1\r\n", 400, id="slash-in-method"),
]


@pytest.mark.parametrize(("data", "status"), MALFORMED)
def test_http_malformed_status(data: bytes, status: int) -> None:
    assert error_status(data) == status


@pytest.mark.parametrize(
    "prefix",
    [
        pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls"),
        pytest.param(b"\x16", id="tls-first-byte"),
        pytest.param(b"\x80", id="high"),
        pytest.param(b"GET\t", id="tab-after-method"),
        pytest.param(b"G\nET", id="bare-lf"),
        pytest.param(b"GET / HTTP/1.1\n", id="bare-lf-after-request-line"),
        pytest.param(b'{"jsonrpc"', id="json"),
    ],
)
def test_http_malformed_rejected_before_crlfcrlf(prefix: bytes) -> None:
    # Junk that can never become a request head is rejected at once, not after the
    # header timeout: no CRLFCRLF has arrived yet.
    conn = HTTPConnection(Limits())
    conn.receive_data(prefix)
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_status_hint == 400
    assert conn.next_event() is PAUSED


# Limits: a small max_header_bytes keeps the inputs short. Total head (with the final
# CRLFCRLF) == limit is accepted; one byte more is not.
LIMIT = 64


def _line_of(length: int) -> bytes:
    """A request line of exactly ``length`` bytes (without its CRLF)."""
    line = b"GET / HTTP/1.0"
    return b"GET /" + b"a" * (length - len(line)) + b" HTTP/1.0"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        pytest.param(_line_of(LIMIT - 4) + b"\r\n\r\n", None, id="head-at-limit"),
        pytest.param(_line_of(LIMIT - 3) + b"\r\n\r\n", 431, id="head-one-over"),
        pytest.param(_line_of(LIMIT - 1) + b"\r\n\r\n", 431, id="line-limit-minus-1"),
        pytest.param(_line_of(LIMIT) + b"\r\n\r\n", 414, id="line-at-limit"),
        pytest.param(_line_of(LIMIT + 1) + b"\r\n\r\n", 414, id="line-over-limit"),
        pytest.param(_line_of(LIMIT * 4) + b"\r\n\r\n", 414, id="line-far-over"),
        pytest.param(_line_of(LIMIT * 4), 414, id="line-far-over-no-crlf"),
        pytest.param(
            b"GET / HTTP/1.0\r\nX: " + b"v" * LIMIT + b"\r\n\r\n", 431, id="field-too-long"
        ),
        pytest.param(b"GET / HTTP/1.0\r\n" + b"X: v\r\n" * 10 + b"\r\n", 431, id="fields-too-long"),
        pytest.param(b"GET / HTTP/1.0\r\nX: " + b"v" * LIMIT * 4, 431, id="field-too-long-no-end"),
        pytest.param(
            b"\r\n" + _line_of(LIMIT - 6) + b"\r\n\r\n", None, id="leading-crlf-not-counted"
        ),
    ],
)
def test_http_malformed_header_bytes_limit(data: bytes, status: int | None) -> None:
    limits = Limits(max_header_bytes=LIMIT)
    if status is None:
        assert only_request(data, limits).minor == 0
    else:
        assert error_status(data, limits=limits) == status


@pytest.mark.parametrize(("n", "ok"), [(4, True), (5, True), (6, False), (50, False)])
def test_http_malformed_max_fields(n: int, ok: bool) -> None:
    limits = Limits(max_fields=5)
    data = get(b"/", *[b"X-%d: v" % i for i in range(n - 1)])  # Host + n-1 others = n
    if ok:
        assert len(only_request(data, limits).headers) == n
    else:
        assert error_status(data, limits=limits) == 431


def test_http_malformed_default_limits() -> None:
    assert error_status(b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n") == 414
    assert error_status(get(b"/", b"X: " + b"b" * 9000)) == 431
    assert error_status(get(b"/", *[b"X: y"] * 150)) == 431


def test_http_malformed_default_max_fields_boundary() -> None:
    only_request(get(b"/", *[b"X%d: y" % i for i in range(99)]))  # 100 fields
    assert error_status(get(b"/", *[b"X%d: y" % i for i in range(100)])) == 431


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\nHost: x\r\nA: b\x00\r\n\r\n", b"\x16\x03"])
def test_http_malformed_error_then_valid_bytes_stay_paused(data: bytes) -> None:
    conn = HTTPConnection(Limits())
    conn.receive_data(data)
    with pytest.raises(RemoteProtocolError):
        conn.next_event()
    conn.receive_data(get())
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED
