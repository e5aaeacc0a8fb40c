"""Rendering response heads: pre-rendered once, reused for every request.

The static handler pre-renders everything that does not change per request (status line,
Content-Type, Content-Length, Last-Modified, ETag) into ``Response.head``. The server adds
only what does: the ``Date`` line (re-rendered at most once per second) and the
``Connection`` line, then the empty line. Values are checked for CR, LF and NUL here, once,
so no response can carry a header injection.
"""

from __future__ import annotations

import email.utils
from http import HTTPStatus

from c10k.http.errors import LocalProtocolError
from c10k.region import FileRegion

REASONS: dict[int, bytes] = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}
REASONS[413] = (
    b"Content Too Large"  # RFC 9110 name (HTTPStatus still says "Request Entity Too Large")
)
REASONS[422] = b"Unprocessable Content"

SERVER_NAME = b"c10k"


def status_line(status: int) -> bytes:
    """The HTTP/1.1 status line, CRLF included.

    >>> status_line(404)
    b'HTTP/1.1 404 Not Found\\r\\n'
    """
    return b"HTTP/1.1 %d %s\r\n" % (status, REASONS.get(status, b"Unknown"))


def render_fields(fields: list[tuple[bytes, bytes]]) -> bytes:
    """Render header fields, each ending in CRLF.

    >>> render_fields([(b"Content-Length", b"5")])
    b'Content-Length: 5\\r\\n'

    Raises:
        LocalProtocolError: a name or value would break the message framing.
    """
    out = []
    for name, value in fields:
        if not name or any(c in name for c in b" \t\r\n:\x00"):
            raise LocalProtocolError(f"bad header name {name!r}")
        if any(c in value for c in b"\r\n\x00"):
            raise LocalProtocolError(f"bad header value {value!r}")
        out.append(b"%s: %s\r\n" % (name, value))
    return b"".join(out)


def http_date(timestamp: float) -> bytes:
    """IMF-fixdate (RFC 9110 section 5.6.7).

    >>> http_date(0)
    b'Thu, 01 Jan 1970 00:00:00 GMT'
    """
    return email.utils.formatdate(timestamp, usegmt=True).encode("ascii")


# A response body: bytes held in memory, a FileRegion for sendfile, a tuple of both (a
# multipart/byteranges body: boundaries as bytes, parts as FileRegion slices), or None
# when the response has no body at all.
Body = bytes | FileRegion | tuple[bytes | FileRegion, ...] | None


def body_length(body: Body) -> int:
    """Bytes the body puts on the wire.

    >>> body_length((b"--b\\r\\n", b"xy"))
    7
    """
    if body is None:
        return 0
    if isinstance(body, tuple):
        return sum(len(part) for part in body)
    return len(body)


class Pace:
    """How fast a response should go (nginx ``limit_rate``, ``limit_rate_after``): the first
    ``after`` bytes at once, the rest at ``rate`` bytes a second; ``rate`` 0: as fast as
    the client reads. A hint to the server, which paces (c10k.server.pacing); per site
    and per path prefix, so the handler that knows the path says it on the response."""

    __slots__ = ("after", "rate")

    def __init__(self, rate: int, after: int = 0) -> None:
        self.rate = rate
        self.after = after

    def __repr__(self) -> str:
        return f"Pace({self.rate}, {self.after})"


class Response:
    """A response the server can put on the wire.

    Attributes:
        status: the status code.
        head: status line plus header fields, each ending in CRLF, *without* Date,
            Connection and the final empty line (the server adds those).
        body: ``bytes`` (may be empty), a ``FileRegion`` for sendfile, a tuple of those
            (multipart/byteranges), or ``None`` when the response has no body at all
            (HEAD, 304).
        close: the connection must close after this response (e.g. an unread request
            body is still on the wire).
        pace: its sending rate (``Pace``), or None for the server's own (--limit-rate).
    """

    __slots__ = ("body", "close", "head", "pace", "status")

    def __init__(
        self, status: int, head: bytes, body: Body, close: bool = False, pace: Pace | None = None
    ) -> None:
        self.status = status
        self.head = head
        self.body = body
        self.close = close
        self.pace = pace

    def __repr__(self) -> str:
        return (
            f"Response({self.status}, head={self.head!r}, body={self.body!r}, close={self.close})"
        )


def build_response(
    status: int,
    fields: list[tuple[bytes, bytes]],
    body: Body,
    content_length: int | None = None,
    close: bool = False,
) -> Response:
    """Build a Response, adding ``Server`` and ``Content-Length``.

    ``content_length`` defaults to ``len(body)``; give it explicitly for a HEAD response,
    whose body is ``None`` but whose Content-Length is that of the GET. 1xx, 204 and 304
    responses get no Content-Length (RFC 9110 section 8.6).
    """
    if content_length is None:
        content_length = body_length(body)
    all_fields = [(b"Server", SERVER_NAME), *fields]
    if status >= 200 and status not in (204, 304):
        all_fields.append((b"Content-Length", b"%d" % content_length))
    return Response(status, status_line(status) + render_fields(all_fields), body, close)


def error_response(
    status: int, extra_fields: list[tuple[bytes, bytes]] | None = None, close: bool = False
) -> Response:
    """A small HTML error page for ``status``.

    >>> error_response(404).body
    b'<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1></body></html>\\n'
    """
    title = b"%d %s" % (status, REASONS.get(status, b"Error"))
    body = b"<html><head><title>%s</title></head><body><h1>%s</h1></body></html>\n" % (title, title)
    fields = [(b"Content-Type", b"text/html; charset=utf-8"), *(extra_fields or [])]
    return build_response(status, fields, body, close=close)
