"""TLS for every mode: a layer between a mode's transport and the connection's Session.

A mode moves bytes; with TLS the bytes it moves are records. ``TLSLayer`` is the
Session's transport (the same face: ``writelines``, ``close``, ``pending_bytes``...) and
the mode transport's protocol (``data_received``, ``pause_writing``...), with an
``ssl.SSLObject`` over two ``MemoryBIO``s in between, so the handshake never blocks and no
mode needs to know that TLS exists: level- and edge-triggered loops, io_uring, threads and
asyncio all feed it the same way (the "OpenSSL under edge-triggered I/O" question of the
C10K page does not arise: the layer always reads everything the mode delivered).

The path of one keep-alive request over TLS: the mode reads records -> ``data_received``
feeds them to the SSLObject and reads all the plaintext out -> ``Session.data_received``
returns the memoized response -> it is encrypted into the outgoing BIO -> the records are
*returned* to the mode, which writes them: still one read and one write.

File bodies cannot go by sendfile (the kernel would send plaintext; kTLS is what lifts
that, and Python 3.11 cannot switch it on): regions are read in ``CHUNK`` pieces with
``os.preadv`` into one reused buffer per layer, encrypted and written, until the mode's
transport says stop (``pause_writing``) or ``TURN_BYTES`` went out in this turn, when the
rest waits for ``resume_writing`` or the next turn (``call_soon``), so one fast client
cannot hold the loop. A chunk not in the page cache is never read on the loop: the read
asks ``RWF_NOWAIT`` first, and a chunk the kernel would have to fetch from the disk (EAGAIN;
or any chunk of a file whose filesystem cannot answer that, EOPNOTSUPP) is read in the
disk pool (``loop.run_in_thread``) while the loop serves others, then encrypted when it is
back (the page's AMPED note, nginx's ``aio threads``). The Session sees a transport that
is writing until the last region is out (``pause_writing``/``resume_writing`` pass
through, held while regions remain).

Closing: ``close`` and ``write_eof`` wait for the regions, then send close_notify and
close the mode's transport after its queue drains. ``abort`` drops everything at once.

Plain HTTP sent to a TLS port (OpenSSL's "http request" error) is answered with a plain
400 that says so (nginx's 497 page, as a 400 since 497 is not a status clients know),
then closed; any other failed handshake is counted and dropped without an answer.
"""

from __future__ import annotations

import errno
import logging
import os
import ssl
from concurrent.futures import Future
from typing import Any

from c10k.core import diskio
from c10k.core.transport import DETACHED
from c10k.region import FileRegion
from c10k.server.layer import Layer

NOWAIT = diskio.RWF_NOWAIT or 0  # where the kernel cannot say, read on the loop
log = logging.getLogger("c10k.tls")

CHUNK = 16 * 1024  # one full TLS record of plaintext per read
TURN_BYTES = 1 << 20  # region bytes encrypted per loop turn before yielding to others
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 51\r\n"
    b"Connection: close\r\n\r\nThis port speaks HTTPS: the request was plain HTTP.\n"
)


class TLSLayer(Layer):
    """One connection's TLS; see the module comment."""

    __slots__ = (
        "app",
        "base",
        "buf",
        "closing",
        "handshaking",
        "held",
        "inc",
        "loop",
        "orphan",
        "out",
        "reading",
        "regions",
        "scheduled",
        "sslobj",
        "stats",
        "subject",
        "waiting",
    )

    def __init__(self, app: Any, context: ssl.SSLContext, loop: Any, stats: Any) -> None:
        self.app = app
        self.loop = loop
        self.stats = stats  # has tls_handshakes, tls_failures, tls_plain_http counters
        self.inc = ssl.MemoryBIO()
        self.out = ssl.MemoryBIO()
        self.sslobj = context.wrap_bio(self.inc, self.out, server_side=True)
        self.base: Any = None
        self.handshaking = True
        self.regions: list[FileRegion] = []
        self.buf: bytearray | None = None  # the region read buffer, made on first use
        self.held = False  # the Session was told pause_writing and waits for resume
        self.waiting = False  # the mode's transport is full (its pause_writing)
        self.scheduled = False  # a _pump is due on the next loop turn
        self.closing = 0  # 1: close, 2: write_eof, once the regions are out
        self.subject: str | None = None  # the verified client certificate's subject
        self.reading: FileRegion | None = None  # a chunk of it being read in the disk pool
        self.orphan = False  # that region was released meanwhile: release it when back

    # -- the mode's transport calls these ------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.base = transport
        self.app.connection_made(self)

    def data_received(self, data: bytes) -> bytes | None:
        self.inc.write(data)
        if self.handshaking and not self._handshake():
            return self._records()
        plain, eof = self._read_plain()
        if plain and not self.base.closed:  # a bad record after good ones aborted it
            reply = self.app.data_received(plain)
            if reply:
                self.sslobj.write(reply)
        if eof and not self.base.closed:  # the client's close_notify, after its data
            self.app.eof_received()
        return self._records()

    def eof_received(self) -> None:
        if not self.handshaking:
            self.app.eof_received()
        else:
            self.base.close()

    def pause_writing(self) -> None:
        self.waiting = True
        self._hold()

    def resume_writing(self) -> None:
        self.waiting = False
        self._pump()

    def connection_lost(self, exc: BaseException | None) -> None:
        self._release()
        app, self.app = self.app, DETACHED  # no cycle left: freed at once
        app.connection_lost(exc)

    # -- the Session calls these ---------------------------------------------------------
    @property
    def peer(self) -> object:
        return self.base.peer

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def writelines(self, items: list[bytes | FileRegion]) -> None:
        if self.handshaking or self.base.closed:
            _release(items)
            return
        for item in items:
            if isinstance(item, FileRegion) or self.regions:
                if isinstance(item, FileRegion):
                    self.regions.append(item)
                else:  # bytes after a region: keep their order
                    self.regions.append(_BytesItem(item))  # type: ignore[arg-type]
            else:
                self.sslobj.write(item)
        self._flush()
        if self.regions:
            self._pump()

    def pending_bytes(self) -> int:
        return int(self.base.pending_bytes()) + sum(len(r) for r in self.regions)

    def close(self) -> None:
        self._end(1)

    def write_eof(self) -> None:
        self._end(2)

    def abort(self, reset: bool = False) -> None:
        self._release()
        self.base.abort(reset)

    # -- inside --------------------------------------------------------------------------
    def _handshake(self) -> bool:
        """True once the handshake is done (and the layer carries application data)."""
        try:
            self.sslobj.do_handshake()
        except ssl.SSLWantReadError:
            return False
        except ssl.SSLError as exc:
            self._failed(exc)
            return False
        self.handshaking = False
        self.stats.tls_handshakes += 1
        cert = self.sslobj.getpeercert()
        if cert:
            self.subject = _subject(cert)
        return True

    def _failed(self, exc: ssl.SSLError) -> None:
        self.handshaking = True  # never carries data
        if exc.reason == "HTTP_REQUEST":
            self.stats.tls_plain_http += 1
            self._drain_out()
            self.base.writelines([PLAIN_HTTP_ANSWER])
            self.base.close()
            return
        self.stats.tls_failures += 1
        log.debug("TLS handshake failed: %s", exc)
        out = self._drain_out()  # an alert, if OpenSSL made one
        if out:
            self.base.writelines([out])
        self.base.close()

    def _read_plain(self) -> tuple[bytes, bool]:
        """All the plaintext the records carried, and whether close_notify came."""
        read = self.sslobj.read
        try:
            chunk = read(65536)
        except ssl.SSLWantReadError:
            return b"", False
        except ssl.SSLError as exc:
            return self._read_failed(exc), isinstance(exc, ssl.SSLZeroReturnError)
        if chunk and not self.inc.pending and not self.sslobj.pending():
            # The common case, one request in whole records: done without asking again
            # (the next read would only raise SSLWantReadError, a costly exception).
            return chunk, False
        chunks = [chunk]
        eof = not chunk  # close_notify, as SSLObject reports it
        while not eof:
            try:
                chunk = read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLError as exc:
                self._read_failed(exc)
                eof = isinstance(exc, ssl.SSLZeroReturnError)
                break
            if not chunk:
                eof = True
                break
            chunks.append(chunk)
        return b"".join(chunks), eof

    def _read_failed(self, exc: ssl.SSLError) -> bytes:
        if not isinstance(exc, ssl.SSLZeroReturnError):  # that one is close_notify
            self.stats.tls_failures += 1
            log.debug("TLS error on a connection: %s", exc)
            self.abort()
        return b""

    def _drain_out(self) -> bytes:
        return self.out.read() if self.out.pending else b""

    def _records(self) -> bytes | None:
        """Records made while handling a read, for the mode to write itself."""
        return self.out.read() if self.out.pending else None

    def _flush(self) -> None:
        if self.out.pending:
            self.base.write(self.out.read())

    def _hold(self) -> None:
        if not self.held:
            self.held = True
            self.app.pause_writing()

    def _pump(self) -> None:
        """Encrypt and write queued regions until the mode's transport is full or this
        turn's share is spent; tell the Session once everything is out."""
        self.scheduled = False
        sent = 0
        while self.regions and not self.waiting and not self.base.closed and not self.reading:
            if sent >= TURN_BYTES:
                self._hold()
                self.scheduled = True
                self.loop.call_soon(self._pump)
                return
            sent += self._encrypt_some()
            self._flush()
        if self.regions:
            if not self.base.closed:
                self._hold()
            return
        if self.closing:
            self._finish_close()
        elif self.held and not self.waiting:
            self.held = False
            self.app.resume_writing()

    def _encrypt_some(self) -> int:
        region = self.regions[0]
        if isinstance(region, _BytesItem):
            self.sslobj.write(region.data)
            self.regions.pop(0)
            return len(region.data)
        if self.buf is None:
            self.buf = bytearray(CHUNK)
        view = memoryview(self.buf)[: min(CHUNK, region.count)]
        try:
            n = os.preadv(region.fd, [view], region.offset, NOWAIT if diskio.enabled() else 0)
        except (BlockingIOError, OSError) as exc:
            if isinstance(exc, BlockingIOError) or exc.errno == errno.EOPNOTSUPP:
                self._read_in_pool(region, view)  # not in memory: never on the loop
                return 0
            log.warning("reading a file for TLS failed: %s", exc)
            n = 0
        return self._encrypt_read(region, view, n)

    def _encrypt_read(self, region: FileRegion, view: memoryview, n: int) -> int:
        if n <= 0:  # the file shrank or failed: the promised length cannot be kept
            self.abort()
            return 0
        self.sslobj.write(view[:n])
        region.offset += n
        region.count -= n
        if region.count == 0:
            self.regions.pop(0).release()
        return n

    def _read_in_pool(self, region: FileRegion, view: memoryview) -> None:
        self.reading = region
        self.stats.offloaded += 1
        fd, offset = region.fd, region.offset
        self.loop.run_in_thread(
            os.preadv, fd, [view], offset, done=lambda f: self._pool_read_done(region, view, f)
        )

    def _pool_read_done(self, region: FileRegion, view: memoryview, fut: Future[int]) -> None:
        self.reading = None
        if self.orphan:  # aborted or closed while the disk worked: its fd is ours to close
            self.orphan = False
            region.release()
            return
        try:
            n = fut.result()
        except OSError as exc:
            log.warning("reading a file for TLS failed: %s", exc)
            n = 0
        self._encrypt_read(region, view, n)
        self._flush()
        self._pump()

    def _end(self, how: int) -> None:
        if self.base.closed or (self.closing and how >= self.closing):
            return
        if self.closing:
            # A close after write_eof (a lingering answer whose client is done): the
            # close_notify has gone or goes with the regions; close instead of shutting.
            self.closing = how
            if not self.regions:
                self.base.close()
            return
        self.closing = how
        if not self.regions:
            self._finish_close()

    def _finish_close(self) -> None:
        if not self.handshaking:
            try:
                self.sslobj.unwrap()  # queues close_notify; the client's is not awaited
            except ssl.SSLError:
                pass
            self._flush()
        if self.closing == 2:
            self.base.write_eof()
        else:
            self.base.close()

    def _release(self) -> None:
        regions, self.regions = self.regions, []
        if self.reading is not None and self.reading in regions:
            regions.remove(self.reading)  # a pool thread reads its fd: released when back
            self.orphan = True
        _release(regions)


class _BytesItem:
    """Bytes queued behind a region, so they go out after it."""

    __slots__ = ("count", "data")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.count = len(data)

    def __len__(self) -> int:
        return self.count

    def release(self) -> None:
        pass


def _release(items: list[Any]) -> None:
    for item in items:
        if isinstance(item, (FileRegion, _BytesItem)):
            item.release()


# RFC 4514's short names for the attributes getpeercert() spells out.
_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "localityName": "L",
    "stateOrProvinceName": "ST",
    "domainComponent": "DC",
    "userId": "UID",
}


def _subject(cert: dict[str, Any]) -> str:
    """``CN=alice,O=Example`` from getpeercert()'s nested tuples.

    >>> _subject({"subject": ((("commonName", "alice"),), (("organizationName", "Ex"),))})
    'CN=alice,O=Ex'
    """
    parts = [f"{_SHORT.get(k, k)}={v}" for rdn in cert.get("subject", ()) for k, v in rdn]
    return ",".join(parts)
