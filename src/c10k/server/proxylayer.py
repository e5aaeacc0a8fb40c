"""The PROXY protocol on a listener: a layer that reads the balancer's header first.

Behind HAProxy (``send-proxy-v2``) or a cloud network balancer, every connection starts with
a PROXY header naming the client (c10k.http.proxy parses it). ``ProxyLayer`` sits between
the mode's transport and what serves the connection (the Session, or a TLSLayer on an HTTPS
listener, since the header comes before the TLS handshake): it holds the first bytes until
the header is whole, then hands the rest on and gets out of the way, and its ``peer`` is
the client the header named, so the access log, the status page and per-client limits see
the client, not the balancer. Like TLS it is a layer, so every mode has it.

The header is required on such a listener: a connection without one, with a malformed one,
or one that does not finish it before the Session's header deadline is closed without an
answer (whatever talks there is not our balancer) and counted. Nothing written before the
header is whole reaches the wire (the Session's 408 for a stalled header, in particular).
"""

from __future__ import annotations

import logging
from typing import Any

from c10k.core.transport import DETACHED
from c10k.http.proxy import ProxyError, parse
from c10k.server.layer import Layer

log = logging.getLogger("c10k.proxy")


class ProxyLayer(Layer):
    """One connection's PROXY header; see the module comment."""

    __slots__ = ("app", "base", "buf", "client", "stats")

    def __init__(self, app: Any, stats: Any) -> None:
        self.app = app  # the Session or TLSLayer behind the header
        self.stats = stats  # has proxy_headers, proxy_errors counters
        self.base: Any = None
        self.buf: bytearray | None = bytearray()  # None once the header is read
        self.client: object = None  # the header's source, or the connection's own peer

    # -- the mode's transport calls these ------------------------------------------------
    def connection_made(self, transport: Any) -> None:
        self.base = transport
        self.app.connection_made(self)  # the Session's header deadline covers our header

    def data_received(self, data: bytes) -> bytes | None:
        if self.buf is None:
            return self.app.data_received(data)  # type: ignore[no-any-return]
        self.buf += data
        try:
            header = parse(self.buf)
        except ProxyError as exc:
            self._refuse(str(exc))
            return None
        if header is None:
            return None
        rest = bytes(self.buf[header.length :])
        self.buf = None
        self.stats.proxy_headers += 1
        self.client = header.source or self.base.peer
        return self.app.data_received(rest) if rest else None

    def eof_received(self) -> None:
        if self.buf is None:
            self.app.eof_received()
        else:
            self._refuse("the connection ended inside the PROXY header")

    def pause_writing(self) -> None:
        self.app.pause_writing()

    def resume_writing(self) -> None:
        self.app.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        app, self.app = self.app, DETACHED  # no cycle left: freed at once
        app.connection_lost(exc)

    # -- what is served calls these ------------------------------------------------------
    @property
    def peer(self) -> object:
        return self.base.peer if self.client is None else self.client

    @property
    def closed(self) -> bool:
        return bool(self.base.closed)

    def write(self, data: bytes) -> None:
        if self.buf is None:
            self.base.write(data)

    def writelines(self, items: list[Any]) -> None:
        if self.buf is None:
            self.base.writelines(items)
            return
        for item in items:  # the header is not whole: nothing reaches the balancer
            release = getattr(item, "release", None)
            if release is not None:
                release()

    def pending_bytes(self) -> int:
        return int(self.base.pending_bytes())

    def close(self) -> None:
        if self.buf is not None and not self.base.closed:
            self._refuse("closed before its PROXY header was whole (header timeout or drain)")
            return
        self.base.close()

    def write_eof(self) -> None:
        if self.buf is None:
            self.base.write_eof()
        else:
            self.close()

    def abort(self, reset: bool = False) -> None:
        self.base.abort(reset)

    # -- inside --------------------------------------------------------------------------
    def _refuse(self, why: str) -> None:
        self.stats.proxy_errors += 1
        log.debug("PROXY protocol from %s: %s", self.base.peer, why)
        self.buf = bytearray()  # still not whole: nothing more is read or written
        self.base.abort()
