"""c10k.core: the event core. File descriptors, sockets and time; nothing about HTTP."""

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
from c10k.core.listener import Acceptor, bind_socket
from c10k.core.loop import Loop
from c10k.core.registry import available_backends, get_backend_class, make_backend

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
    "Loop",
    "available_backends",
    "bind_socket",
    "get_backend_class",
    "make_backend",
]
