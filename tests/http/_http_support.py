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
