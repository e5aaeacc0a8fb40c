"""Disk I/O off the loop: a file whose open/stat hangs stalls only its own request.

The static layer does every filesystem call through ``c10k.static.fsio``; its
``delay_hook`` makes one path hang until the test releases it (a FUSE-less slow disk).
The server answers from memory on the loop (``handle_fast``) and sends the rest to its
``io_threads`` pool; with ``io_threads=0`` (handler inline on the loop) the same test
shows the stall the pool prevents, so the test can fail.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from c10k.core.registry import available_backends
from c10k.server import ServerBase as Server
from c10k.server import ServerConfig, make_server
from c10k.static import fsio
from helpers import read_response

SLOW = b"slow file\n" * 1000


@pytest.fixture
def slowroot(tmp_path: Path) -> Path:
    (tmp_path / "slow.bin").write_bytes(SLOW)
    for i in range(5):
        (tmp_path / f"f{i}.txt").write_bytes(b"file %d\n" % i)
    return tmp_path


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    release = threading.Event()

    def hook(path: str) -> None:
        if path.endswith("slow.bin"):
            release.wait(20)

    fsio.delay_hook = hook
    yield release
    release.set()
    fsio.delay_hook = None


def _start(root: Path, backend: str, io_threads: int) -> tuple[Server, threading.Thread]:
    config = ServerConfig(root=str(root), port=0, backend=backend, io_threads=io_threads)
    server = make_server(config)
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    thread.start()
    return server, thread


def _get(sock: socket.socket, path: str) -> None:
    sock.sendall(b"GET /%s HTTP/1.1\r\nHost: t\r\n\r\n" % path.encode())


@pytest.mark.parametrize("backend", available_backends())
def test_server_slow_file_does_not_stall_others(
    slowroot: Path, gate: threading.Event, backend: str
) -> None:
    server, thread = _start(slowroot, backend, io_threads=2)
    try:
        slow = socket.create_connection(server.address, timeout=10)
        _get(slow, "slow.bin")
        # Meanwhile other clients get cold files (pool) and cached ones (loop) at once.
        with socket.create_connection(server.address, timeout=5) as other:
            for _ in range(2):
                for i in range(5):
                    _get(other, f"f{i}.txt")
                    status, _, body = read_response(other, bytearray())
                    assert (status, body) == (200, b"file %d\n" % i)
        slow.settimeout(0.2)
        with pytest.raises(TimeoutError):
            slow.recv(1)  # still waiting for its disk
        gate.set()
        slow.settimeout(10)
        status, _, body = read_response(slow, bytearray())
        assert (status, body) == (200, SLOW)
        slow.close()
        assert server.offloaded >= 6
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_server_without_pool_the_loop_stalls(slowroot: Path, gate: threading.Event) -> None:
    # The control: handler inline (io_threads=0), the hung open stalls everyone.
    server, thread = _start(slowroot, "epoll", io_threads=0)
    try:
        slow = socket.create_connection(server.address, timeout=10)
        _get(slow, "slow.bin")
        with socket.create_connection(server.address, timeout=1) as other:
            _get(other, "f0.txt")
            with pytest.raises(TimeoutError):
                read_response(other, bytearray())
        gate.set()
        assert read_response(slow, bytearray())[0] == 200
        slow.close()
    finally:
        gate.set()
        server.stop()
        thread.join(timeout=10)


@pytest.mark.parametrize("backend", ["epoll", "epoll-et", "poll"])
def test_server_pipelined_requests_keep_order_around_the_pool(
    slowroot: Path, gate: threading.Event, backend: str
) -> None:
    server, thread = _start(slowroot, backend, io_threads=2)
    try:
        with socket.create_connection(server.address, timeout=10) as c:
            # cached, slow (pool), cold (pool), cached: answers must come in this order.
            _get(c, "f0.txt")
            buf = bytearray()
            assert read_response(c, buf)[2] == b"file 0\n"
            c.sendall(
                b"GET /f0.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /slow.bin HTTP/1.1\r\nHost: t\r\n\r\n"
                b"GET /f3.txt HTTP/1.1\r\nHost: t\r\n\r\n"
                b"HEAD /f0.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            )
            assert read_response(c, buf)[2] == b"file 0\n"
            c.settimeout(0.3)
            with pytest.raises(TimeoutError):
                read_response(c, buf)  # the slow one blocks what follows it, in order
            gate.set()
            c.settimeout(10)
            assert read_response(c, buf)[2] == SLOW
            assert read_response(c, buf)[2] == b"file 3\n"
            status, headers, _ = read_response(c, buf, head_only=True)
            assert (status, headers["content-length"]) == (200, "7")
            _get(c, "f4.txt")  # the connection is still usable
            assert read_response(c, buf)[2] == b"file 4\n"
    finally:
        server.stop()
        thread.join(timeout=10)
