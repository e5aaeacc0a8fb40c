"""In-process Server tests: conditions a subprocess cannot be pushed into from outside."""

from __future__ import annotations

import os
import socket
import threading
from pathlib import Path

from c10k.server import Server, ServerConfig
from helpers import read_response

GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"


def test_server_select_refuses_fd_above_fd_setsize_without_leak(docroot: Path) -> None:
    # With select, a client whose socket lands on fd >= 1024 (here: because the process
    # holds many other files) cannot be watched. It must be refused (closed), not leaked,
    # and the server must go on serving.
    server = Server(ServerConfig(root=str(docroot), port=0, backend="select"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    thread.start()
    filler: list[int] = []
    try:
        while True:  # occupy every fd below FD_SETSIZE
            fd = os.open(os.devnull, os.O_RDONLY)
            filler.append(fd)
            if fd >= 1030:
                break
        with socket.create_connection(server.address, timeout=5) as c:
            c.sendall(GET)
            try:
                data = c.recv(100)
            except ConnectionResetError:  # closed with our request unread: RST
                data = b""
            assert data == b""  # refused: closed without a response (TimeoutError if not)
        assert len(server.connections) == 0
        for fd in filler:
            os.close(fd)
        filler.clear()
        with socket.create_connection(server.address, timeout=5) as c:
            c.sendall(GET)
            assert read_response(c, bytearray())[0] == 200
    finally:
        for fd in filler:
            os.close(fd)
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
