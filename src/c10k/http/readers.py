"""Parse one complete request head: bytes in, a Request (or RemoteProtocolError) out.

``parse_head`` takes the request line and field lines, each ending in CRLF, *without* the
final empty line; ``HTTPConnection`` finds that boundary. It is one flat pass: a regex for
the request line, one ``fullmatch`` of the whole field block, then a split. No clock, no I/O.

Framing rules (RFC 9112 section 6), chosen so a body can never be read as a request:
- ``Transfer-Encoding`` together with ``Content-Length`` -> 400 (section 6.1: "ought to be
  handled as an error"; it is the classic smuggling vector).
- ``Transfer-Encoding`` in an HTTP/1.0 request -> 400 (section 6.1: "MUST treat ... as
  faulty"), and one whose final coding is not ``chunked`` -> 400 (section 6.3 rule 4:
  "MUST respond with the 400"). ``chunked`` more than once (two fields or a list) -> 400
  (section 7: a sender "MUST NOT apply the chunked transfer coding more than once", so
  the framing is ambiguous). Any other coding before the final ``chunked`` (``gzip``,
  the retired ``identity``) -> 501 (section 6.1: a coding the server does not understand
  "SHOULD" get 501; nginx and h11 answer 501 too). Empty list elements are skipped (RFC
  9110 section 5.6.1.2: a recipient "MUST ... ignore a reasonable number" of them).
- ``Content-Length`` must be 1*DIGIT; a repeated Content-Length is a 400, even with equal
  values (section 6.3 rule 5 allows the strict reading; h11 and nginx reject).
- A ``%`` in the request-target not followed by two hex digits -> 400 (RFC 3986 section
  2.1; nginx answers 400 as well): one decoder must never see ``%zz`` that another
  decoder downstream reads differently.
- Any body at all sets ``has_body``; this static server answers such a request and closes
  the connection instead of reading the body (the caller's policy, see server/protocol.py).
"""

from __future__ import annotations

from c10k.http.abnf import (
    BAD_PCT,
    CONTENT_LENGTH,
    FIELD_BLOCK,
    FIELD_LINE,
    HOST,
    REQUEST_LINE,
    TOKEN,
)
from c10k.http.errors import RemoteProtocolError
from c10k.http.events import Request

# Fields that must appear at most once; a repeat is a 400 (RFC 9112 section 3.2 for Host,
# section 6.3 for Content-Length).
SINGLETON_FIELDS = frozenset((b"host", b"content-length"))

_CLOSE = b"close"
_KEEP_ALIVE = b"keep-alive"


def parse_head(head: bytes, max_fields: int = 100) -> Request:
    """Parse a request head.

    Args:
        head: request line and field lines, each ending in CRLF, without the empty line.
        max_fields: more field lines than this is a 431.

    Returns:
        The parsed Request.

    Raises:
        RemoteProtocolError: malformed input; ``error_status_hint`` is the status to send.

    >>> r = parse_head(b"GET /a?b HTTP/1.1\\r\\nHost: x\\r\\n")
    >>> r.method, r.target, r.minor, r.headers, r.keep_alive
    (b'GET', b'/a?b', 1, {b'host': b'x'}, True)
    >>> parse_head(b"GET / HTTP/1.0\\r\\n").keep_alive
    False
    """
    eol = head.find(b"\r\n")
    m = REQUEST_LINE.fullmatch(head, 0, eol)
    if m is None:
        raise _bad_request_line(head[:eol])
    method, target, major, minor_b = m.groups()

    headers: dict[bytes, bytes] = {}
    start = eol + 2
    if start < len(head):
        if FIELD_BLOCK.fullmatch(head, start) is None:
            raise _bad_field_block(head, start)
        lines = head[start:-2].split(b"\r\n")
        if len(lines) > max_fields:
            raise RemoteProtocolError("too many header fields", 431)
        for line in lines:
            name, _, value = line.partition(b":")
            name = name.lower()
            value = value.strip(b" \t")
            old = headers.get(name)
            if old is None:
                headers[name] = value
            elif name in SINGLETON_FIELDS:
                raise RemoteProtocolError(f"repeated {name.decode()} field", 400)
            else:
                headers[name] = old + b", " + value  # RFC 9110 section 5.3

    # The version is checked only once the field block is known to be well-formed, so a
    # bare LF there is a 400 whether or not HTTPConnection saw it before the CRLFCRLF.
    if major != b"1":
        raise RemoteProtocolError("unsupported HTTP version", 505)  # RFC 9110 15.6.6
    minor = 1 if minor_b != b"0" else 0  # HTTP/1.2+ is handled as 1.1 (RFC 9110 section 2.5)

    if 37 in target and BAD_PCT.search(target) is not None:  # 37 is "%"
        raise RemoteProtocolError("invalid percent-encoding in request-target", 400)
    authority = None
    if target[0] != 47:  # not origin-form "/..."
        target, authority = _reduce_target(method, target)

    host = headers.get(b"host")
    if host is None:
        if minor:
            raise RemoteProtocolError("HTTP/1.1 request without Host", 400)
    elif HOST.fullmatch(host) is None:
        raise RemoteProtocolError("invalid Host", 400)
    if authority is not None:
        # RFC 9112 section 3.2.2: with an absolute-form target the server "MUST ignore
        # the received Host header field (if any) and instead use the host information
        # of the request-target" (Host is still required and checked above, section 3.2).
        # Put there, every reader of Host (virtual hosts, the https redirect) sees it.
        headers[b"host"] = authority

    conn = headers.get(b"connection")
    if conn is None:
        keep_alive = minor == 1
    else:
        tokens = [t.strip(b" \t") for t in conn.lower().split(b",")]
        keep_alive = _CLOSE not in tokens and (minor == 1 or _KEEP_ALIVE in tokens)

    has_body = False
    if b"transfer-encoding" in headers or b"content-length" in headers:
        has_body = _has_body(headers, minor)
    return Request(method, target, minor, headers, keep_alive, has_body)


def _has_body(headers: dict[bytes, bytes], minor: int) -> bool:
    te = headers.get(b"transfer-encoding")
    cl = headers.get(b"content-length")
    if te is not None:
        if cl is not None:
            raise RemoteProtocolError("both Transfer-Encoding and Content-Length", 400)
        if minor == 0:
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request", 400)
        _check_codings(te)
        return True
    assert cl is not None
    if CONTENT_LENGTH.fullmatch(cl) is None:
        raise RemoteProtocolError("invalid Content-Length", 400)
    return int(cl) > 0


def _check_codings(te: bytes) -> None:
    """Raise unless ``te`` is exactly one ``chunked``, last, after codings we know.

    >>> _check_codings(b"Chunked")
    >>> _check_codings(b", chunked")
    >>> def status(te):
    ...     try:
    ...         _check_codings(te)
    ...     except RemoteProtocolError as e:
    ...         return e.error_status_hint
    >>> status(b"gzip"), status(b"chunked, identity"), status(b"chunked, chunked")
    (400, 400, 400)
    >>> status(b"gzip, chunked"), status(b"chunked;x=1"), status(b"")
    (501, 400, 400)
    """
    codings = [c.strip(b" \t").lower() for c in te.split(b",")]
    codings = [c for c in codings if c]
    # RFC 9112 section 6.3 rule 4 first: without a final chunked the body has no end.
    if not codings or codings[-1] != b"chunked":
        raise RemoteProtocolError("request body coding is not chunked", 400)
    for coding in codings[:-1]:
        name = coding.partition(b";")[0].rstrip(b" \t")
        if name == b"chunked":
            raise RemoteProtocolError("chunked applied more than once", 400)
        if TOKEN.fullmatch(name) is None:
            raise RemoteProtocolError("malformed Transfer-Encoding", 400)
    if len(codings) > 1:
        raise RemoteProtocolError("unsupported transfer coding", 501)


def _reduce_target(method: bytes, target: bytes) -> tuple[bytes, bytes | None]:
    """Turn absolute-form into origin-form plus its authority; allow asterisk-form for
    OPTIONS and authority-form for CONNECT (the caller answers those methods with 405).

    >>> _reduce_target(b"GET", b"http://example.com/a?b")
    (b'/a?b', b'example.com')
    >>> _reduce_target(b"GET", b"HTTP://Example.com:80")
    (b'/', b'Example.com:80')
    """
    lower = target[:8].lower()
    if lower.startswith((b"http://", b"https://")):
        rest = target[target.index(b"//") + 2 :]
        cut = min((i for i in (rest.find(b"/"), rest.find(b"?")) if i >= 0), default=len(rest))
        authority, path = rest[:cut], rest[cut:]
        if not authority or HOST.fullmatch(authority) is None:
            raise RemoteProtocolError("invalid absolute-form target", 400)
        return (path if path.startswith(b"/") else b"/" + path), authority
    if target == b"*" and method == b"OPTIONS":
        return target, None
    if method == b"CONNECT":
        return target, None
    raise RemoteProtocolError("request-target is not origin-form", 400)


def _bad_request_line(line: bytes) -> RemoteProtocolError:
    # A well-formed request line with another major version matched REQUEST_LINE and is a
    # 505 above. A malformed one is a 400 whatever its last word looks like: "HTTP/2",
    # "HTTP/01.1" are not HTTP-version (RFC 9112 section 2.3), and guessing 505 from them
    # made the status depend on how the bytes arrived (HTTPConnection rejects junk such as
    # "GET\t/ HTTP/2.0" with a 400 before the line is complete).
    return RemoteProtocolError(f"malformed request line {line[:80]!r}", 400)


def _bad_field_block(head: bytes, start: int) -> RemoteProtocolError:
    # Only on the error path: find the first offending line for a precise message.
    for line in head[start:-2].split(b"\r\n"):
        if FIELD_LINE.fullmatch(line) is None:
            if line[:1] in (b" ", b"\t"):
                return RemoteProtocolError("obsolete line folding in header", 400)
            name = line.partition(b":")[0]
            if b":" not in line:
                return RemoteProtocolError("header line without colon", 400)
            if not name:
                return RemoteProtocolError("empty header name", 400)
            if name[-1:] in (b" ", b"\t"):
                return RemoteProtocolError("whitespace before colon in header", 400)
            if b"\r" in line:
                return RemoteProtocolError("bare CR in header", 400)
            return RemoteProtocolError("invalid character in header", 400)
    return RemoteProtocolError("malformed header block", 400)
