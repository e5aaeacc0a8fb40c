"""c10k.server: the only package that puts core, http and static together.

``make_server(config)`` builds the server for ``config.backend``: the readiness ``Server``
for a readiness backend (select ... epoll, kqueue), or the driver of a server mode
(uring, threads, asyncio, uvloop). Every one runs the same Session and Policy.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from c10k.http.events import Request
from c10k.http.writers import Response
from c10k.server.base import ServerBase
from c10k.server.config import ServerConfig
from c10k.server.modes import server_class
from c10k.server.readiness import Server

__all__ = ["Server", "ServerBase", "ServerConfig", "make_server"]


def make_server(
    config: ServerConfig,
    handler: Callable[[Request, float], Response] | None = None,
    sock: socket.socket | list[socket.socket] | None = None,
) -> ServerBase:
    """The server for ``config.backend`` (see the module comment).

    Raises:
        ModeUnavailable: a server mode that cannot run here.
        BackendUnavailable: a readiness backend that cannot run here.
    """
    return server_class(config.backend)(config, handler, sock)
