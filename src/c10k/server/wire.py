"""Wire: a response's exact bytes, memoized per second, and the error responses.

The static handler pre-renders a cached file's status line and headers once
(``Response.head``). What changes is the ``Date`` line (once a second) and the
``Connection`` line (per request: keep-alive for HTTP/1.1 needs none, HTTP/1.0 keep-alive
must say so, a closing response says ``close``). So per Response object and Connection
variant the complete message (head, Date, Connection, empty line, body) is built once and
kept until the Date second changes: a cached file costs one dict lookup to put on the
wire, in every server mode.

The memo is keyed by the Response object, which also keeps it alive: within the second no
other object can take its identity. Answers made per request (a byte range, a listing, a
status page) are built and not kept (``ONE_OFF_STATUSES``, and a bounded memo), so they
cannot fill it.

Error responses (400, 408, 431, 500, 503 ...) are made once per process and reused.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from c10k.http.writers import Response, error_response, http_date
from c10k.region import FileRegion

# Connection header variants: the index into a response's memo entry.
KEEP_11 = 0  # HTTP/1.1 keep-alive: no Connection header needed
CLOSE = 1
KEEP_10 = 2  # HTTP/1.0 keep-alive must be announced (index = (minor << 1) ^ 2)
CONNECTION_LINES = (b"", b"Connection: close\r\n", b"Connection: keep-alive\r\n")

ONE_OFF_STATUSES = frozenset((206, 416))
WIRE_MEMO_MAX_ENTRIES = 4096
PLAIN_TWINS_MAX = 64  # append_plain: the engine's few error responses, as PlainResponses

Out = list[bytes | FileRegion]


class PlainResponse(Response):
    """A response made for a plain-HTTP listener (the --redirect-https one): it never
    carries the lines only HTTPS may send (Strict-Transport-Security, RFC 6797 7.2)."""

    __slots__ = ()


class Wire:
    """The Date line, the wire memo and the error responses of one process.

    Args:
        hsts: seconds for ``Strict-Transport-Security: max-age=`` on every response but
            a ``PlainResponse``; None: no such line. (Only set when every listener that
            serves content is HTTPS: see c10k.server.settings.)
    """

    def __init__(self, hsts: int | None = None) -> None:
        self.wire_memo: dict[Response, list[bytes | None]] = {}
        # Hoisted for the hot path (the dict keeps its identity: only ever cleared).
        self.wire_memo_get = self.wire_memo.get
        # The head of a response with a file body (a large cached file's GET: a new
        # Response per request, its ``head`` the entry's one bytes object), per
        # Connection variant, keyed by that ``head``: the Session's flat file path.
        self.file_heads: dict[bytes, list[bytes | None]] = {}
        self.file_heads_get = self.file_heads.get
        self.date_line = self.plain_date_line = b""
        self.hsts_line = (
            b"" if hsts is None else b"Strict-Transport-Security: max-age=%d\r\n" % hsts
        )
        self._errors: dict[int, Response] = {}
        self._plain_twins: dict[Response, PlainResponse] = {}
        # Set while the process sleeps (no Date tick: c10k.server.base): called before the
        # next response that carries a Date line, which renders it again first.
        self.asleep: Callable[[], None] | None = None
        self.update_date(time.time())

    def update_date(self, wall: float) -> None:
        """Render the Date line for wall-clock time ``wall``; the memo goes with it."""
        self.plain_date_line = b"Date: " + http_date(wall) + b"\r\n"
        self.date_line = self.plain_date_line + self.hsts_line
        self.wire_memo.clear()
        self.file_heads.clear()

    def sleep(self, wake: Callable[[], None]) -> None:
        """Stop trusting the Date line until ``wake()``: the memo goes (so every response
        is built by ``append``, which calls ``wake`` first)."""
        self.asleep = wake
        self.wire_memo.clear()
        self.file_heads.clear()

    def wake(self) -> None:
        wake, self.asleep = self.asleep, None
        if wake is not None:
            wake()

    def append(self, out: Out, resp: Response, kind: int, head: bool) -> int:
        """Put ``resp``'s wire form (Connection variant ``kind``; without the body for a
        HEAD) on ``out``; return the bytes it puts on the wire, a file body counted whole
        (so a pipelined batch stops after a big file: a slow reader then holds one open
        file, not one per request it queued)."""
        body = resp.body
        if body is None or body.__class__ is bytes:
            memo = self.wire_memo
            wires = memo.get(resp)
            if wires is None:
                if self.asleep is not None:
                    self.wake()
                wires = [None, None, None]
                # A paced response (its own Pace: a copy made per request, c10k.server.sites)
                # is never kept: nothing could hit it, and the memo must not fill up.
                if (
                    resp.status not in ONE_OFF_STATUSES
                    and len(memo) < WIRE_MEMO_MAX_ENTRIES
                    and resp.pace is None
                ):
                    memo[resp] = wires
            wire = wires[kind]
            if wire is None:
                date = self.date_line if resp.__class__ is Response else self.plain_date_line
                wire = wires[kind] = b"".join(
                    (resp.head, date, CONNECTION_LINES[kind], b"\r\n", body or b"")
                )
            if head and body:  # a HEAD answered with a GET's response (error pages)
                wire = wire[: len(wire) - len(body)]
            out.append(wire)
            return len(wire)
        if self.asleep is not None:
            self.wake()
        out.append(self._head(resp, kind))
        size = len(out[-1])
        for part in body if isinstance(body, tuple) else (body,):
            if head:
                if isinstance(part, FileRegion):
                    part.release()
            else:
                out.append(part)
                size += len(part)
        return size

    def _head(self, resp: Response, kind: int) -> bytes:
        """The head of ``resp`` (a file body's), memoized by ``file_heads`` but for the
        per-request heads (a range) and once the memo is full."""
        heads = self.file_heads.get(resp.head)
        if heads is None:
            heads = [None, None, None]
            if resp.status not in ONE_OFF_STATUSES and len(self.file_heads) < WIRE_MEMO_MAX_ENTRIES:
                self.file_heads[resp.head] = heads
        head = heads[kind]
        if head is None:
            head = heads[kind] = b"".join(
                (resp.head, self.date_line, CONNECTION_LINES[kind], b"\r\n")
            )
        return head

    def append_plain(self, out: Out, resp: Response, kind: int, head: bool) -> int:
        """``append`` for a connection that is not HTTPS (the --redirect-https listener):
        the engine's own responses (400, 405, 408, 503, ...) go without HSTS there too."""
        if resp.__class__ is Response:
            twin = self._plain_twins.get(resp)
            if twin is None:
                if len(self._plain_twins) >= PLAIN_TWINS_MAX:
                    self._plain_twins.clear()
                twin = PlainResponse(resp.status, resp.head, resp.body, resp.close)
                if resp.body is None or resp.body.__class__ is bytes:
                    self._plain_twins[resp] = twin  # no file regions kept alive
            resp = twin
        return self.append(out, resp, kind, head)

    def error(self, status: int) -> Response:
        """A closing error response for a protocol error (400, 408, 414, 431, 500)."""
        resp = self._errors.get(status)
        if resp is None:
            resp = self._errors[status] = error_response(status, close=True)
        return resp

    def method_response(self, status: int) -> Response:
        """405 (with Allow) or 501 for a method a static server does not serve."""
        resp = self._errors.get(-status)
        if resp is None:
            extra = [(b"Allow", b"GET, HEAD")] if status == 405 else None
            resp = self._errors[-status] = error_response(status, extra)
        return resp

    def overload_response(self) -> Response:
        """Overload tier 2: 503 with Retry-After (RFC 9110 section 15.6.4); it closes its
        connection within the tiers' budget, as any response (c10k.server.overload)."""
        resp = self._errors.get(-503)
        if resp is None:
            resp = self._errors[-503] = error_response(503, [(b"Retry-After", b"1")])
        return resp


def release_body(resp: Response) -> None:
    """Release the file regions of a response that will not be sent."""
    body = resp.body
    for part in body if isinstance(body, tuple) else (body,):
        if isinstance(part, FileRegion):
            part.release()
