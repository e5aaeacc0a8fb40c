"""Differential tests against h11 (``h11.Connection(h11.SERVER)``), issue 7.

hypothesis generates request heads, valid ones (``valid_requests``) and mutated ones
(framing and Host fields added, bytes inserted, deleted or replaced), and feeds each to
both parsers, followed by EOF so that both reach a verdict: reject, or accept with method,
target, version, headers, keep-alive and whether a body follows.

Where we differ on purpose, ``DIFFERENCES`` names the input feature, what each side does,
and the RFC reason. An input showing a listed feature is not compared (hypothesis
``event`` counts them), except that a difference confined to one field (the version
reported for HTTP/1.2, keep-alive for HTTP/1.0) only blanks that field; every other input
must get the same verdict and, if accepted, the same fields. Each row also carries an
exemplar that pins both sides' behaviour, so the table cannot drift from what the two
parsers actually do.

Normalisations (not differences): h11 returns a header list, we combine repeats with
", " (RFC 9110 section 5.3), so h11's list is combined the same way; h11 lower-cases the
Transfer-Encoding value, so both are compared lower-cased; h11's version is ``b"1.1"``,
ours the minor digit; h11's keep-alive is its own ``_keep_alive`` rule.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

import h11
import pytest
from _http_support import valid_requests
from h11._connection import _keep_alive
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from c10k.http import HTTPConnection, Limits, RemoteProtocolError, Request
from c10k.http.abnf import BAD_PCT, HOST

Verdict = tuple[object, ...]
REJECT: Verdict = ("reject",)


def ours(data: bytes) -> Verdict:
    conn = HTTPConnection(Limits())
    conn.receive_data(data)
    conn.receive_data(b"")
    try:
        ev = conn.next_event()
    except RemoteProtocolError:
        return REJECT
    if not isinstance(ev, Request):
        return ("no-request", repr(ev))
    headers = dict(ev.headers)
    if b"transfer-encoding" in headers:
        headers[b"transfer-encoding"] = headers[b"transfer-encoding"].lower()
    version = b"1.%d" % ev.minor
    return ("accept", ev.method, ev.target, version, headers, ev.keep_alive, ev.has_body)


def theirs(data: bytes) -> Verdict:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    conn.receive_data(b"")
    try:
        ev = conn.next_event()
    except h11.RemoteProtocolError:
        return REJECT
    if not isinstance(ev, h11.Request):
        return ("no-request", type(ev).__name__)
    try:
        has_body = not isinstance(conn.next_event(), h11.EndOfMessage)
    except h11.RemoteProtocolError:
        has_body = True  # a body was announced and EOF came instead
    headers: dict[bytes, bytes] = {}
    for name, value in ev.headers:
        headers[name] = headers[name] + b", " + value if name in headers else value
    return ("accept", ev.method, ev.target, ev.http_version, headers, _keep_alive(ev), has_body)


# -- the deliberate differences --------------------------------------------------------------


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


def _request_line(data: bytes) -> bytes:
    return data.split(b"\n", 1)[0].rstrip(b"\r")


def _fields(data: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for line in _lines(data)[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            out.append((name.lower(), value.strip(b" \t")))
    return out


def _values(data: bytes, name: bytes) -> list[bytes]:
    return [v for n, v in _fields(data) if n == name]


def _target(data: bytes) -> bytes:
    parts = _request_line(data).split(b" ")
    return parts[1] if len(parts) == 3 else b""


def _version(data: bytes) -> bytes:
    return _request_line(data).rpartition(b" ")[2]


CTL_IN_FIELDS = re.compile(rb"[\x01-\x08\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class Difference:
    name: str
    applies: Callable[[bytes], bool]
    rfc: str
    exemplar: bytes
    ours: str  # "reject" or "accept"
    theirs: str
    # For differences in one field only: blank that field (index into the verdict) on
    # both sides and compare the rest, instead of skipping the input.
    mask: int | None = None


H = b"GET / HTTP/1.1\r\nHost: x\r\n"

DIFFERENCES = [
    Difference(
        "bare-lf",
        lambda d: re.search(rb"(?<!\r)\n", d) is not None,
        "RFC 9112 2.2: a recipient MAY accept bare LF; we reject it (nginx/h11 accept): "
        "a line-end two parsers read differently is a desync",
        b"GET / HTTP/1.1\nHost: x\n\n", "reject", "accept",
    ),
    Difference(
        "obs-fold",
        lambda d: re.search(rb"\r\n[ \t]", d.split(b"\r\n\r\n")[0]) is not None,
        "RFC 9112 5.2: a server MUST reject obs-fold or unfold it; h11 unfolds, we reject",
        H + b"A: b\r\n c\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "leading-empty-line",
        lambda d: d.startswith((b"\r", b"\n")),
        "RFC 9112 2.2: a server SHOULD ignore at least one empty line before the "
        "request-line; we do, h11 rejects",
        b"\r\n" + H + b"\r\n", "accept", "reject",
    ),
    Difference(
        "repeated-content-length",
        lambda d: len(_values(d, b"content-length")) > 1
        or any(b"," in v for v in _values(d, b"content-length")),
        "RFC 9112 6.3 rule 5 allows the strict reading: any repeat or list is a 400 for us; "
        "h11 accepts equal values",
        H + b"Content-Length: 1\r\nContent-Length: 1\r\n\r\nx", "reject", "accept",
    ),
    Difference(
        "long-content-length",
        lambda d: any(len(v) > 18 for v in _values(d, b"content-length")),
        "we refuse lengths past 18 digits (no 64-bit overflow; nginx 400s); h11 takes any",
        H + b"Content-Length: 0000000000000000000\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "content-length-and-transfer-encoding",
        lambda d: bool(_values(d, b"content-length")) and bool(_values(d, b"transfer-encoding")),
        "RFC 9112 6.1: 'ought to be handled as an error' (the CL.TE desync); we 400, h11 "
        "lets chunked win",
        H + b"Content-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "transfer-encoding-in-http-1.0",
        lambda d: bool(_values(d, b"transfer-encoding")) and _version(d) == b"HTTP/1.0",
        "RFC 9112 6.1: a server MUST treat TE in an HTTP/1.0 request as faulty; h11 "
        "accepts it",
        b"GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "transfer-encoding-list",
        lambda d: any(v.lower() != b"chunked" for v in _values(d, b"transfer-encoding")),
        "RFC 9110 5.6.1.2: empty list elements MUST be ignored, so ', chunked' is chunked "
        "for us; h11 only takes the exact value 'chunked' (both reject other lists)",
        H + b"Transfer-Encoding: , chunked\r\n\r\n", "accept", "reject",
    ),
    Difference(
        "http-version-not-1.x",
        lambda d: not _version(d).startswith(b"HTTP/1."),
        "RFC 9110 15.6.6: we answer 505 to another major version; h11 parses any and leaves "
        "it to the application",
        b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "http-1.2-and-up",
        lambda d: re.fullmatch(rb"HTTP/1\.[2-9]", _version(d)) is not None,
        "RFC 9110 2.5: a higher minor version is processed as the highest we implement, "
        "so we report 1.1; h11 reports the digits as sent",
        b"GET / HTTP/1.2\r\nHost: x\r\n\r\n", "accept", "accept", mask=3,
    ),
    Difference(
        "http-1.2-and-up-without-host",
        lambda d: re.fullmatch(rb"HTTP/1\.[2-9]", _version(d)) is not None
        and not _values(d.split(b"\r\n\r\n", 1)[0], b"host"),
        "RFC 9110 2.5 + RFC 9112 3.2: processed as HTTP/1.1, which MUST carry Host (400); "
        "h11 requires Host only of a request that says 1.1 (found by hypothesis)",
        b"GET / HTTP/1.2\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "http-1.0-keep-alive",
        lambda d: _version(d) == b"HTTP/1.0",
        "RFC 9112 9.3 (and 7230 A.1.2): 'Connection: keep-alive' keeps a 1.0 connection "
        "for us; h11 never keeps 1.0 connections alive",
        b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", "accept", "accept", mask=5,
    ),
    Difference(
        "target-not-origin-form",
        lambda d: not _target(d).startswith(b"/"),
        "RFC 9112 3.2: origin-form, absolute-form (reduced to its path), asterisk-form for "
        "OPTIONS, authority-form for CONNECT; h11 takes any visible ASCII",
        b"GET a HTTP/1.1\r\nHost: x\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "invalid-percent-encoding",
        lambda d: BAD_PCT.search(_target(d)) is not None,
        "RFC 3986 2.1: '%' must start '%' HEXDIG HEXDIG; we 400 (nginx too), h11 accepts",
        b"GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "invalid-host",
        lambda d: any(HOST.fullmatch(v) is None for v in _values(d, b"host")),
        "RFC 9112 3.2: a server MUST 400 a request whose Host is invalid; h11 does not "
        "check the value",
        b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "control-characters",
        lambda d: CTL_IN_FIELDS.search(d) is not None,
        "RFC 9110 5.5: field values are VCHAR / obs-text / SP / HTAB; h11's value class "
        "[^\\x00\\s] lets other CTLs through, we reject them",
        H + b"A: b\x01c\r\n\r\n", "reject", "accept",
    ),
    Difference(
        "size-limits",
        lambda d: len(d) > 8000 or d.count(b"\r\n") > 100,
        "our limits (8 KiB head, 100 fields: nginx, Apache) are smaller than h11's 16 KiB",
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X: y\r\n" * 120 + b"\r\n", "reject", "accept",
    ),
]  # fmt: skip


def _kind(v: Verdict) -> str:
    return str(v[0])


@pytest.mark.parametrize("diff", DIFFERENCES, ids=[d.name for d in DIFFERENCES])
def test_http_h11_known_difference(diff: Difference) -> None:
    assert diff.applies(diff.exemplar)
    a, b = ours(diff.exemplar), theirs(diff.exemplar)
    assert (_kind(a), _kind(b)) == (diff.ours, diff.theirs), (a, b)
    if diff.ours == diff.theirs == "accept":
        assert a != b  # the difference is in the fields


# -- generated inputs --------------------------------------------------------------------

SPECIAL_LINES = [
    b"Content-Length: 0", b"Content-Length: 5", b"Content-Length: 007", b"Content-Length: +5",
    b"Content-Length: 5, 5", b"Content-Length: 0x5", b"Content-Length:", b"content-length: 1",
    b"Transfer-Encoding: chunked", b"Transfer-Encoding: Chunked", b"Transfer-Encoding: gzip",
    b"Transfer-Encoding: gzip, chunked", b"Transfer-Encoding: chunked, chunked",
    b"Transfer-Encoding: identity", b"Connection: close", b"Connection: keep-alive",
    b"Connection: Keep-Alive, Upgrade", b"connection: CLOSE", b"Host: x", b"Host: y:80",
    b"Host:", b"Host: a b", b"Host: [::1]", b"X: \x80\xff", b"X:", b"X :y", b"X: a\tb",
]  # fmt: skip
INTERESTING = [
    b"\r", b"\n", b"\r\n", b" ", b"\t", b"\x00", b"\x01", b"\x7f", b"\x80", b":", b"%", b"%zz",
    b"/", b"?", b"#", b"*", b"@", b",", b"0", b"9", b"H", b"\xc3\xa9",
]  # fmt: skip


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    head = draw(valid_requests())[0]
    lines = head[:-4].split(b"\r\n")
    if draw(st.booleans()):
        for line in draw(st.lists(st.sampled_from(SPECIAL_LINES), min_size=1, max_size=3)):
            lines.insert(draw(st.integers(1, len(lines))), line)
    if draw(st.booleans()):
        version = draw(st.sampled_from([b"HTTP/1.0", b"HTTP/1.1", b"HTTP/1.2", b"HTTP/2.0"]))
        lines[0] = lines[0].rpartition(b" ")[0] + b" " + version
    data = b"\r\n".join(lines) + b"\r\n\r\n"
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        piece = draw(st.sampled_from(INTERESTING))
        if op == "insert":
            data = data[:at] + piece + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + 1 :]
        else:
            data = data[:at] + piece + data[at + 1 :]
    return data


SETTINGS = settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _masked(v: Verdict, index: int) -> Verdict:
    return (*v[:index], None, *v[index + 1 :]) if len(v) > index else v


def _compare(data: bytes) -> None:
    found = [d for d in DIFFERENCES if d.applies(data)]
    a, b = ours(data), theirs(data)
    for d in found:
        event(f"known difference: {d.name}")
        if d.mask is None:
            return
        a, b = _masked(a, d.mask), _masked(b, d.mask)
    event(f"compared: {_kind(a)}")
    assert a == b, f"ours={a!r}\nh11 ={b!r}"


@SETTINGS
@given(data=valid_requests().map(lambda r: r[0]))
def test_http_h11_agrees_on_valid_requests(data: bytes) -> None:
    _compare(data)


@SETTINGS
@given(data=mutated_requests())
@example(data=b"ET // HTTP/1.2\r\n\r\nHost: example.com\r\n\r\n")
@example(data=b"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
@example(data=b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\n")
@example(data=b"GET /a#b HTTP/1.1\r\nHost: x\r\n\r\n")
@example(data=b"GET / HTTP/1.1\r\nHost: x\r\nHost: x\r\n\r\n")
def test_http_h11_agrees_on_mutated_requests(data: bytes) -> None:
    _compare(data)
