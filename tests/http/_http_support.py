"""Shared helpers for tests/http/test_http_*.py (imported, not a conftest).

The sans-I/O rule (STYLE.md section 6): every input is fed whole, then one byte at a time,
and both must give the same outcome. ``outcome()`` drives an ``HTTPConnection`` over any
chunking and returns a comparable summary:

    [("req", method, target, minor, headers, keep_alive, has_body), ..., terminal]

where ``terminal`` is ``NEED_DATA``, ``PAUSED``, ``CONNECTION_CLOSED`` or
``("error", status)``. NEED_DATA returned *between* chunks is not recorded (its timing
depends on the chunking by design); only what is left once all input is in.

After an error or PAUSED the driver keeps feeding the remaining bytes and asserts that the
connection stays PAUSED: no byte after that point may ever come out as a request.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from hypothesis import strategies as st

from c10k.http import (
    CONNECTION_CLOSED,
    NEED_DATA,
    PAUSED,
    HTTPConnection,
    Limits,
    RemoteProtocolError,
    Request,
)

Summary = tuple[object, ...]


def summarize(req: Request) -> Summary:
    return (
        "req",
        req.method,
        req.target,
        req.minor,
        dict(req.headers),
        req.keep_alive,
        req.has_body,
    )


def bytewise(data: bytes) -> Iterator[bytes]:
    return (data[i : i + 1] for i in range(len(data)))


def outcome(
    chunks: Iterable[bytes], eof: bool = False, limits: Limits | None = None
) -> list[object]:
    """Feed ``chunks`` (then EOF if asked) and summarize what came out; see module doc."""
    conn = HTTPConnection(limits) if limits is not None else HTTPConnection(Limits())
    out: list[object] = []
    stopped = False  # an error or PAUSED was seen: from now on only PAUSED is allowed

    def drain() -> object:
        nonlocal stopped
        while True:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                assert not stopped, "an error after the connection stopped"
                stopped = True
                out.append(("error", exc.error_status_hint))
                # Rule 3: an error pauses the connection for good.
                assert conn.next_event() is PAUSED
                return PAUSED
            if isinstance(event, Request):
                assert not stopped, f"a request after the connection stopped: {event!r}"
                out.append(summarize(event))
                continue
            if event is PAUSED:
                if not stopped:
                    out.append(PAUSED)
                stopped = True
            else:
                assert event in (NEED_DATA, CONNECTION_CLOSED), event
                assert not stopped
            return event

    last: object = NEED_DATA
    for chunk in chunks:
        if not chunk:
            continue
        conn.receive_data(chunk)
        last = drain()
    if eof:
        conn.receive_data(b"")
        last = drain()
    if last in (NEED_DATA, CONNECTION_CLOSED):
        out.append(last)
    return out


def both(data: bytes, eof: bool = False, limits: Limits | None = None) -> list[object]:
    """Outcome of ``data`` fed whole; asserts byte-by-byte feeding gives the same."""
    whole = outcome([data], eof, limits)
    one_by_one = outcome(bytewise(data), eof, limits)
    assert one_by_one == whole, f"whole={whole!r}\nbytewise={one_by_one!r}"
    return whole


def only_request(data: bytes, limits: Limits | None = None) -> Request:
    """Parse exactly one complete request; asserts byte-by-byte agrees."""
    result = both(data, limits=limits)
    assert len(result) == 2, result
    assert result[1] in (NEED_DATA, PAUSED), result
    conn = HTTPConnection(limits if limits is not None else Limits())
    conn.receive_data(data)
    req = conn.next_event()
    assert isinstance(req, Request)
    return req


def error_status(data: bytes, eof: bool = False, limits: Limits | None = None) -> int:
    """The status hint of the error ``data`` must raise, whole and byte by byte alike."""
    result = both(data, eof, limits)
    errors = [e for e in result if isinstance(e, tuple) and e[0] == "error"]
    assert errors, f"no error for {data!r}: {result!r}"
    assert result[-1] == errors[0], result
    status = errors[0][1]
    assert isinstance(status, int)
    return status


def get(target: bytes = b"/", *fields: bytes, version: bytes = b"HTTP/1.1") -> bytes:
    """A request head with ``Host: x`` first, then ``fields`` (each a full line)."""
    lines = [b"GET " + target + b" " + version, b"Host: x", *fields]
    return b"\r\n".join(lines) + b"\r\n\r\n"


# -- a hypothesis strategy for valid requests (test_http_properties, test_http_stdlib) --

TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@"
token = st.text(alphabet=TCHAR, min_size=1, max_size=12).map(str.encode)
# pct-encoded = "%" HEXDIG HEXDIG (RFC 3986 section 2.1); a lone "%" is a 400.
pct = st.integers(min_value=0, max_value=255).map(lambda b: b"%%%02X" % b)
segment = st.lists(
    st.one_of(st.text(alphabet=PCHAR, min_size=1, max_size=3).map(str.encode), pct), max_size=4
).map(b"".join)
path = st.lists(segment, min_size=1, max_size=5).map(lambda s: b"/" + b"/".join(s))
query = st.one_of(
    st.just(b""), st.text(alphabet=PCHAR + "/?", max_size=12).map(lambda q: b"?" + q.encode())
)
field_vchar = st.one_of(
    st.integers(min_value=0x21, max_value=0x7E), st.integers(min_value=0x80, max_value=0xFF)
).map(lambda c: bytes([c]))
inner = st.one_of(field_vchar, st.sampled_from([b" ", b"\t"]))
value = st.one_of(
    st.just(b""),
    st.tuples(field_vchar, st.lists(inner, max_size=10), field_vchar).map(
        lambda t: t[0] + b"".join(t[1]) + t[2]
    ),
    field_vchar,
)
ows = st.sampled_from([b"", b" ", b"\t", b"  \t "])
# Names that change framing or connection semantics are tested by the tables instead.
SPECIAL = {b"host", b"content-length", b"transfer-encoding", b"connection"}
field_name = token.filter(lambda n: n.lower() not in SPECIAL)


@st.composite
def valid_requests(draw: st.DrawFn) -> tuple[bytes, bytes, bytes, int, dict[bytes, bytes]]:
    method = draw(st.one_of(st.sampled_from([b"GET", b"HEAD"]), token))
    target = draw(path) + draw(query)
    minor = draw(st.sampled_from([0, 1]))
    fields = draw(st.lists(st.tuples(field_name, ows, value, ows), max_size=8))
    host = draw(st.one_of(st.just(b"example.com"), st.just(b"[::1]:8080"), st.just(b"h:80")))
    lines = [b"%s %s HTTP/1.%d" % (method, target, minor), b"Host: " + host]
    expected: dict[bytes, bytes] = {b"host": host}
    for name, lead, val, trail in fields:
        lines.append(name + b":" + lead + val + trail)
        key = name.lower()
        expected[key] = expected[key] + b", " + val if key in expected else val
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    return head, method, target, minor, expected
