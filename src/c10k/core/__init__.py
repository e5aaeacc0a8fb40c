"""c10k.core: the event core, a toolkit for high-concurrency servers. Nothing about HTTP.

File descriptors, sockets and time, the way Kegel's "The C10K problem" lays them out: a
readiness loop over a pluggable backend (select, poll, epoll level- or edge-triggered,
realtime signals, kqueue, /dev/poll), a defensive acceptor, O(1)-per-request idle
deadlines, and a transport that moves bytes and file regions for a protocol::

    from c10k.core import Loop, Protocol, bind_socket, serve

    class Echo(Protocol):
        def data_received(self, data: bytes) -> bytes:
            return data

    loop = Loop("epoll")
    serve(loop, bind_socket("127.0.0.1", 7000), Echo)
    loop.run()

docs/TOOLKIT.md is the guide; examples/echo.py and examples/chat.py are whole programs.
The HTTP server (c10k.server) is built on these same pieces.
"""

from c10k.core.backend import (
    ERROR,
    HUP,
    READ,
    READ_MASK,
    WRITE,
    WRITE_MASK,
    Backend,
    BackendUnavailable,
    Capability,
)
from c10k.core.listener import Acceptor, bind_socket, bind_unix_socket
from c10k.core.loop import Loop
from c10k.core.registry import (
    available_backends,
    get_backend_class,
    make_backend,
    unavailable_backends,
)
from c10k.core.timers import Deadlines, TimerHandle
from c10k.core.transport import Protocol, Transport, serve
from c10k.region import FileRegion

__all__ = [
    "ERROR",
    "HUP",
    "READ",
    "READ_MASK",
    "WRITE",
    "WRITE_MASK",
    "Acceptor",
    "Backend",
    "BackendUnavailable",
    "Capability",
    "Deadlines",
    "FileRegion",
    "Loop",
    "Protocol",
    "TimerHandle",
    "Transport",
    "available_backends",
    "bind_socket",
    "bind_unix_socket",
    "get_backend_class",
    "make_backend",
    "serve",
    "unavailable_backends",
]
