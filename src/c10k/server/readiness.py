"""Server: the readiness-loop mode, on any backend of c10k.core (select ... epoll, kqueue).

The driver is the toolkit itself: a ``Loop``, one ``Acceptor`` per listening socket, and
per connection a ``core.transport.Transport`` whose protocol is the connection's
``Session``. The path of one request:

1. **Accept.** The listener is readable; ``Acceptor`` accepts up to 64 connections per
   wakeup as bare nonblocking fds (no ``socket.socket`` per connection): one
   accept4(SOCK_NONBLOCK) through libc when nothing needs the peer's address, else
   ``sock._accept()`` + one ioctl(FIONBIO); re-posting itself on an edge-triggered backend.
   Under overload ``Policy.admit`` may refuse one (tier 3, or a stale wait).
2. **First read.** The listeners defer accept until the request is there
   (TCP_DEFER_ACCEPT), so ``_on_accept`` reads the fd at once. A one-shot client (a GET
   of a cached file that asks to close: Kegel's test 1) is answered from
   ``session.answer_at_accept``, written and closed with no Session, Transport or
   deadline. Otherwise (or on a TLS, PROXY or redirect listener) it makes the Session
   (its header deadline filed) and the Transport, which takes what was read and
   registers the fd only if the connection stays open (READ; READ|WRITE once on an
   edge-triggered backend). At the connection cap the acceptors pause; the kernel
   backlog holds the rest.
3. **Read.** The loop calls ``Transport._ready``: one ``read(2)``, then
   ``Session.data_received``, which for a keep-alive GET of a cached file returns the
   memoized response bytes.
4. **Write.** The transport ``write(2)``s them; whatever the socket does not take is
   queued and the Session is told (``pause_writing``). File bodies go out by sendfile,
   corked behind their head.
5. **Next.** The Session moved its deadline to keep-alive (one store); pipelined requests
   in the buffer are answered in order; a closing response closes (or lingers).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Iterator
from typing import Any

from c10k.core.backend import Capability
from c10k.core.listener import Acceptor
from c10k.core.loop import Loop
from c10k.core.transport import Transport
from c10k.server.base import FD_RESERVE, ServerBase, session_of
from c10k.server.session import Session

log = logging.getLogger("c10k.server")


def _send_closing(transport: Transport, rest: memoryview) -> None:
    """A one-shot client's closing wire that the socket did not take whole: its Session
    sends the rest (under the send deadline) and closes."""
    transport.protocol.send_closing(rest)
    transport.watch()


class Server(ServerBase):
    """An HTTP/1.1 server on one readiness loop; see the module comment and ServerBase."""

    def _setup(self) -> None:
        config = self.config
        self.loop = Loop(config.backend, threads=max(1, config.io_threads))
        backend = self.loop.backend
        self.backend_name = backend.name  # type: ignore[misc]
        limits = []
        if backend.capabilities & Capability.FD_LIMIT and backend.max_fd is not None:
            limits.append(
                (
                    backend.max_fd - FD_RESERVE,
                    f"the {backend.name} backend cannot watch fds >= {backend.max_fd} "
                    f"(FD_SETSIZE) minus {FD_RESERVE} reserved; use --backend epoll for more",
                )
            )
        self._set_capacity(limits)
        self._reading_first: Transport | None = None
        read_size = self.policy.read_size
        self.transport_class: type[Transport] = (
            Transport
            if read_size == Transport.read_size
            else type("Transport", (Transport,), {"__slots__": (), "read_size": read_size})
        )
        # exclusive: a listener shared by several workers (Unix sockets; TCP without
        # SO_REUSEPORT) wakes one of them per connection; with one waiter it changes nothing.
        self.acceptors = [
            Acceptor(
                self.loop,
                s,
                functools.partial(self._on_accept, i),
                raw_fds=True,
                exclusive=True,
                on_backlog=self.backlog_alert if config.max_accept_wait > 0 else None,
                # The address only when something logs or limits it (one accept4 else).
                peer=self.policy.keep_peer,
            )
            for i, s in enumerate(self.socks)
        ]

    def _on_accept(self, index: int, fd: int, addr: object) -> None:
        policy = self.policy
        policy.accepts += 1
        if policy.accept_guard and not policy.admit(fd):
            return
        if not self.plain[index]:
            self._serve(index, fd, addr, Transport.read_first)  # (its layers read)
            return
        first = self.first_read(fd, self.loop.now)
        if first is None:
            return  # answered and closed with no Session (answer_at_accept), or gone
        if isinstance(first, memoryview):
            self._serve(index, fd, addr, _send_closing, first)
        elif first:
            self._serve(index, fd, addr, Transport.read_first, first)
        else:
            self._serve(index, fd, addr, Transport.watch)  # nothing there yet

    def _serve(self, index: int, fd: int, addr: object, first: Any, *args: Any) -> None:
        """A Session and a transport for a new connection; then ``first(transport,
        *args)``: read it, watch it, or give it what was read already."""
        policy = self.policy
        loop = self.loop
        protocol = self.make_protocol(loop, index)
        try:
            # The peer address is kept only when something logs or limits it (a tuple per
            # connection otherwise, at C1M scale). Not watched yet: ``first`` does it.
            transport = self.transport_class(
                loop, fd, protocol, addr if policy.keep_peer else None, register=False
            )
        except (OSError, ValueError) as exc:
            log.warning("cannot serve a new connection (fd %d): %s", fd, exc)
            session = session_of(protocol)
            assert session is not None
            session.deadline = None
            loop.deadlines.discard(session)
            os.close(fd)
            return
        self.opened()
        # The fd enters the backend only if the connection stays open, so a client
        # answered and closed on its first read costs no epoll_ctl or wakeup.
        self._reading_first = transport  # (not in the loop's fds yet: see sessions())
        try:
            first(transport, *args)
        except (OSError, ValueError) as exc:
            # e.g. select with an fd >= FD_SETSIZE when files held open pushed the socket
            # past the reserve: this one client is closed, nothing leaks.
            log.warning("cannot watch a new connection (fd %d): %s", fd, exc)
        finally:
            self._reading_first = None

    # -- ServerBase hooks ------------------------------------------------------------
    def sessions(self) -> Iterator[Session]:
        first = self._reading_first  # a status page asked for on a brand-new connection
        transports = [] if first is None or first.closed else [first]
        for cb in self.loop.callbacks():
            transport = getattr(cb, "__self__", None)
            if isinstance(transport, Transport):
                transports.append(transport)
        for transport in transports:
            session = session_of(transport.protocol)
            if session is not None:
                yield session

    def accept_counts(self) -> list[int]:
        return [a.accepted for a in self.acceptors]

    def pressure_reading(self) -> tuple[float, float]:
        return self.loop.lag, self.loop.load

    def _pause_accepting(self) -> None:
        for acceptor in self.acceptors:
            acceptor.pause()

    def _resume_accepting(self) -> None:
        for acceptor in self.acceptors:
            acceptor.resume()

    def _close_listeners(self) -> None:
        # Draining: who waits now is served (with Connection: close); see Acceptor.close.
        for acceptor in self.acceptors:
            acceptor.close(sweep=True)

    def _stop_loop(self) -> None:
        self.loop.stop()

    # -- running ---------------------------------------------------------------------
    def install_signal_handlers(self) -> None:
        """SIGINT/SIGTERM drain the server gracefully (a second one stops it at once).
        Call before announcing readiness, so a signal sent right after the announcement
        cannot hit the default action."""
        for sig in self.handled_signals:
            self.loop.add_signal_handler(sig, self.on_signal)

    def serve_forever(self, install_signals: bool = True) -> None:
        """Accept and serve until SIGINT/SIGTERM or ``stop()``; then close everything."""
        if install_signals:
            self.install_signal_handlers()
        for acceptor in self.acceptors:
            acceptor.start()
        self._start_housekeeping()
        try:
            self.loop.run()
        finally:
            self.close()

    def stop(self) -> None:
        self.loop.stop()

    def shutdown_threadsafe(self, timeout: float | None = None) -> None:
        self.loop.call_soon_threadsafe(self.shutdown, timeout)

    def close(self) -> None:
        self.policy.close()
        for acceptor in self.acceptors:
            acceptor.close()
        for cb in self.loop.callbacks():
            transport: Any = getattr(cb, "__self__", None)
            if isinstance(transport, Transport):
                transport.abort()
        self.loop.close()
