"""HTTPConnection: the sans-I/O request side of one HTTP/1.1 connection.

    conn.receive_data(data)        # b"" means EOF
    while (event := conn.next_event()) is not NEED_DATA: ...

Theory of operation
-------------------
Rule 1: the connection holds only undecoded bytes (``_buf``) and two flags. Nothing is
allocated for an idle connection: ``_buf`` is the shared empty ``b""`` between requests,
so a million idle keep-alive connections hold no buffers (the server subclasses this class
and adds its socket slots to the same object).

Rule 2: a request head ends at the first CRLFCRLF. ``next_event`` finds it, hands the head
to ``parse_head`` and keeps the rest for the next call, so pipelined requests come out one
by one, in order. Searching resumes 3 bytes before the previous end of the buffer, so a
client trickling one byte at a time costs O(n), not O(n^2).

Rule 3: after a request that announces a body, or after any protocol error, the connection
is PAUSED for good: this static server never reads a body, so it answers and the caller
closes (RFC 9112 section 9.6 allows closing; section 11.2 is why we must never parse body
bytes as a request). A PAUSED connection never produces another request.

Rule 4: parsing is a pure function of the head's bytes, and most clients repeat the same
head byte for byte (a keep-alive client fetching the same object, health checks, load
generators, browsers re-validating). So parsed heads are memoized by their bytes
(CRLFCRLF included) in a small dict shared per ``Limits``: a repeat costs one hash and one
lookup (~0.2 us) instead of a parse (~3 us here, most of the per-request Python budget).
Requests are therefore shared and must be treated as read-only by every consumer. The memo
holds at most MEMO_MAX_ENTRIES heads of at most MEMO_MAX_HEAD_BYTES each (<= 512 KiB) and
is simply cleared when full, so a flood of unique heads costs one insert each and bounded memory.

Limits (defaults chosen from the precedents):
    max_header_bytes (request line + fields): 8 KiB -> 431, or 414 when the request line
        alone is longer.  nginx: 1 KiB buffer growing to 4 x 8 KiB; Apache:
        LimitRequestLine 8190 and LimitRequestFieldSize 8190; tomcat: 8 KiB;
        node.js: 16 KiB (was 80 KiB); h11: 16 KiB.
    max_fields: 100 -> 431.  Apache LimitRequestFields 100; Go: no count limit (1 MiB
        total); h11: none.
"""

from __future__ import annotations

from c10k.http.abnf import EMPTY_LINES, REQUEST_PREFIX
from c10k.http.errors import RemoteProtocolError
from c10k.http.events import NEED_DATA, PAUSED, Request
from c10k.http.readers import parse_head

MEMO_MAX_ENTRIES = 512
MEMO_MAX_HEAD_BYTES = 1024


class ConnectionClosed:
    """The peer closed its side with no partial request pending (h11 ConnectionClosed)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "ConnectionClosed()"


CONNECTION_CLOSED = ConnectionClosed()

KNOWN_METHODS = frozenset(
    (b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"CONNECT", b"OPTIONS", b"TRACE", b"PATCH")
)
ALLOWED_METHODS = frozenset((b"GET", b"HEAD"))


def method_status(method: bytes) -> int:
    """200 for a method a static server serves, 405 for another standard one, 501 else.

    RFC 9110 section 9.1: "An origin server that receives a request method that is
    unrecognized or not implemented SHOULD respond with the 501 status code"; a known
    method the resource does not allow is a 405 with ``Allow``.

    >>> method_status(b"GET"), method_status(b"POST"), method_status(b"BREW")
    (200, 405, 501)
    """
    if method in ALLOWED_METHODS:
        return 200
    return 405 if method in KNOWN_METHODS else 501


class Limits:
    """Client-controlled sizes, shared by every connection of a server (one object)."""

    __slots__ = ("head_memo", "max_fields", "max_header_bytes")

    def __init__(self, max_header_bytes: int = 8192, max_fields: int = 100) -> None:
        self.max_header_bytes = max_header_bytes
        self.max_fields = max_fields
        # Parsed heads by their exact bytes; see "Rule 4" in the module comment.
        self.head_memo: dict[bytes, Request] = {}


DEFAULT_LIMITS = Limits()


class HTTPConnection:
    """Request-side state of one connection; see the module comment."""

    __slots__ = ("_buf", "_eof", "_paused", "_scan", "limits")

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self._buf = b""
        self._scan = 0
        self._eof = False
        self._paused = False

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Unparsed bytes and whether EOF was seen (h11's name)."""
        return self._buf, self._eof

    def receive_data(self, data: bytes) -> None:
        """Append bytes from the peer; ``b""`` means the peer closed its side.

        Args:
            data: bytes as received.

        Raises:
            RemoteProtocolError: data after EOF (a caller bug, reported as the peer's).
        """
        if not data:
            self._eof = True
        elif self._eof:
            raise RemoteProtocolError("data after EOF", 400)
        elif self._buf:
            self._buf += data
        else:
            self._buf = data

    def next_event(self) -> Request | type[NEED_DATA] | type[PAUSED] | ConnectionClosed:
        """The next request, or NEED_DATA / PAUSED / CONNECTION_CLOSED.

        Returns:
            A Request; NEED_DATA when the buffered bytes hold no complete head;
            PAUSED after a request with a body or an error (answer it, then close);
            CONNECTION_CLOSED at a clean EOF.

        Raises:
            RemoteProtocolError: malformed or oversized input. The connection is PAUSED
                afterwards; answer with ``error_status_hint`` and close.
        """
        if self._paused:
            return PAUSED
        buf = self._buf
        end = buf.find(b"\r\n\r\n", self._scan)
        if end < 0:
            return self._incomplete(buf)
        if buf[0] == 13:
            # RFC 9112 section 2.2: SHOULD ignore at least one empty line (CRLF) received
            # before a request-line. We ignore any number; the header timeout bounds them.
            buf = _skip_empty_lines(buf)
            self._buf = buf
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return self._incomplete(buf)
        if end + 4 > self.limits.max_header_bytes:
            self._paused = True
            raise _rejected(buf, self.limits.max_header_bytes)
        self._buf = buf[end + 4 :]
        self._scan = 0
        # The memo key is the whole head *with* its empty line, exactly the bytes a
        # client sends for one request: a server can look a whole read up as is.
        key = buf[: end + 4]
        memo = self.limits.head_memo
        req = memo.get(key)
        if req is None:
            try:
                req = parse_head(buf[: end + 2], self.limits.max_fields)
            except RemoteProtocolError:
                self._paused = True
                raise
            if len(key) <= MEMO_MAX_HEAD_BYTES:
                if len(memo) >= MEMO_MAX_ENTRIES:
                    memo.clear()
                memo[key] = req
        if req.has_body:
            self._paused = True
        return req

    def _incomplete(self, buf: bytes) -> type[NEED_DATA] | ConnectionClosed:
        n = len(buf)
        if n:  # an empty buffer (after every request) needs no checks
            if buf[0] == 13:
                # Empty lines before a request-line, as in next_event: strip them here too,
                # so they count against no limit however the bytes were split into reads.
                buf = _skip_empty_lines(buf)
                self._buf = buf
                n = len(buf)
            # Reject early what can never become a valid head (binary junk, TLS hellos,
            # bare LF or CR) rather than wait for the header timeout. Look at no more
            # than limit + 1 bytes: see _rejected.
            end = self.limits.max_header_bytes + 1
            if n >= end or _malformed(buf, end):
                self._paused = True
                raise _rejected(buf, end - 1)
        self._scan = n - 3 if n > 3 else 0
        if self._eof:
            if n:
                self._paused = True
                raise RemoteProtocolError("connection closed inside a request head", 400)
            return CONNECTION_CLOSED
        return NEED_DATA


def _skip_empty_lines(buf: bytes) -> bytes:
    m = EMPTY_LINES.match(buf)  # always matches (maybe nothing): one pass in C
    return buf[m.end() :] if m is not None else buf


def _malformed(buf: bytes, end: int) -> bool:
    # Whether buf[:end] can never start a valid head: a prefix that is no method, a bare
    # LF, or a bare CR (a CR followed by anything but LF; a CR at the very end may still
    # be the first half of a CRLF). All three are prefix-closed (if buf[:k] fails, so does
    # every longer prefix), which is what makes the early reject independent of how the
    # bytes were split.
    if REQUEST_PREFIX.match(buf, 0, end) is None:
        return True
    crlf = buf.count(b"\r\n", 0, end)
    if buf.count(b"\n", 0, end) != crlf:
        return True
    stop = min(end, len(buf))
    return buf.count(b"\r", 0, stop) - crlf > buf.endswith(b"\r", 0, stop)


def _rejected(buf: bytes, limit: int) -> RemoteProtocolError:
    # The status depends on buf[:limit + 1] only: that is exactly what a client feeding
    # one byte at a time has sent when the limit trips, so every split of the same bytes
    # gets the same status (STYLE.md section 6).
    # - junk or a bare LF in those bytes -> 400, as _incomplete would have said earlier;
    # - no CRLF in them: the request line alone is longer than the limit -> 414 (RFC 9110
    #   section 15.5.15); otherwise the fields are -> 431 (RFC 6585 section 5).
    end = limit + 1
    if _malformed(buf, end):
        return RemoteProtocolError("malformed request", 400)
    if buf.find(b"\r\n", 0, end) < 0:
        return RemoteProtocolError("request-target too long", 414)
    return RemoteProtocolError("request header fields too large", 431)
