"""TLS for the Python generator (``client.py``): an ``ssl.SSLObject`` over two MemoryBIOs per
connection, the socket I/O left to the generator's own loop.

Theory of operation
-------------------
Why not ``ssl.SSLSocket``: its ``recv`` returns at most one TLS record (16 KiB) per call and
raises ``SSLWantReadError`` (an ``OSError``) where a plain socket raises
``BlockingIOError``, so every read, write and error path of the generator's state machine
would need a TLS twin.  With BIOs the raw socket stays what it was (``connect_ex``,
``recv_into``, ``send``, one epoll loop for thousands of them) and TLS is two calls at its
edges, the shape the server's own TLS layer has (server/tls.py):

- ``handshake()`` after the TCP connect, and again whenever the socket is readable, until it
  says done; the bytes it produced go out with one ``send`` (a ClientHello or a Finished
  on a fresh connection always fits the socket buffer).  Nonblocking: a generator process
  runs hundreds of handshakes at once (``client.CONNECT_WINDOW``).
- ``encrypt(request)`` gives the bytes to send in place of the request.
- ``decrypt_into(raw, out)`` feeds what one ``recv_into`` read and takes *all* the plaintext
  out at once, so a level-triggered loop never waits on bytes OpenSSL holds: the raw read
  is at most ``RAW_READ_BYTES``, leaving room in ``out`` for a partial record left from
  the read before.  Post-handshake messages (TLS 1.3 session tickets) give no plaintext.

The peer's ``close_notify`` sets ``closed``, gives no plaintext and is answered with ours
(``pending_out`` then holds it), as RFC 5246 7.2.1 asks: lighttpd waits for that answer
before its FIN, a second a connection without it.  The generator goes on reading to the
TCP FIN, so that the server stays the active closer (client.py's module doc) and holds
TIME_WAIT.  Otherwise the generator sends no close_notify: a connection it closes first is
the end of a run or a reconnect, and servers treat a bare FIN alike.

Sessions are resumed as wrk and h2load resume them (each offers, on a new connection, the
ticket its previous connection got: with TLS 1.3 that is a PSK with a fresh ECDHE, no
certificate sent or signed): a generator process offers the newest ticket any of its
connections received (``resumable``), so a new-connection run measures mostly resumed
handshakes whichever generator drives it.  The first connections of a process, and every
one to a server without tickets, are full handshakes.  Per idle connection the client
holds the SSL object and two empty BIOs (CPython sets SSL_MODE_RELEASE_BUFFERS): about
31 KiB of generator RSS.
"""

from __future__ import annotations

import ssl
from typing import cast

# The biggest TLS record is 2^14 plaintext bytes plus at most 256 bytes of expansion, plus a
# 5-byte header (RFC 8446 section 5.2).
MAX_RECORD_BYTES = 16384 + 256 + 5
# Raw bytes read per recv_into: the plaintext of one read, plus a partial record left from
# the read before, must fit the generator's 256 KiB scratch buffer.
RAW_READ_BYTES = 256 * 1024 - 2 * MAX_RECORD_BYTES


class TLSWire:
    """One client connection's TLS state (see the module doc)."""

    __slots__ = ("closed", "incoming", "obj", "outgoing")

    def __init__(
        self, ctx: ssl.SSLContext, server_hostname: str, session: ssl.SSLSession | None = None
    ) -> None:
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(
            self.incoming, self.outgoing, server_hostname=server_hostname, session=session
        )
        self.closed = False

    def resumable(self) -> ssl.SSLSession | None:
        """This connection's session if a new connection may resume it (it has a ticket:
        a TLS 1.3 session without one cannot be resumed)."""
        session = self.obj.session
        return session if session is not None and session.has_ticket else None

    def handshake(self, raw: bytes | memoryview = b"") -> bool:
        """Feed ``raw`` and go on with the handshake; True once it is done.

        Raises:
            ssl.SSLError: the handshake failed (bad certificate, no common version...).
        """
        if raw:
            self.incoming.write(raw)
        try:
            self.obj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        return True

    def pending_out(self) -> bytes:
        """The bytes TLS wants sent (handshake messages, encrypted data), emptied."""
        return self.outgoing.read()

    def encrypt(self, data: bytes) -> bytes:
        self.obj.write(data)
        return self.outgoing.read()

    def decrypt_into(self, raw: bytes | memoryview, out: bytearray) -> int:
        """Feed ``raw`` and write all the plaintext there is into ``out``; returns its length.

        Raises:
            ssl.SSLError: a bad record (the connection is dead).
        """
        self.incoming.write(raw)
        got = 0
        view = memoryview(out)
        while got < len(out):
            try:
                # With a buffer, read() returns the count (typeshed says bytes).
                n = cast(int, self.obj.read(len(out) - got, view[got:]))
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self._answer_close_notify()
                break
            if n == 0:  # how read() reports a close_notify (SSL_ERROR_ZERO_RETURN)
                self._answer_close_notify()
                break
            got += n
        return got

    def _answer_close_notify(self) -> None:
        self.closed = True
        try:
            self.obj.unwrap()  # SSL_shutdown: ours goes to ``outgoing``
        except ssl.SSLError:
            pass  # the connection is over either way
