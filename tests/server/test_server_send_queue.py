"""A client's socket gets about a second of its speed as its unsent limit, in every loop
mode (server/session.py's module doc: a client's kernel memory).

The server runs in this process, so the test reads the limit straight off the server's
end of the connection (``TCP_NOTSENT_LOWAT`` on the accepted socket, found by its peer
address). A client that reads 20 kB a second until the server's first check (2-3 s)
must leave its socket with a limit between 4 and 128 KiB (a new connection's is 256
KiB); reading the rest as fast as it can on the same keep-alive connection gives it at
least the default back. A
client that reads a big file as fast as it can gets ``MAX_SEND_QUEUE`` (a fast client's
big file in few wakeups), except on uvloop, whose transport is fed by our own pread
pump a chunk at a time: the Session may not see a big write there, and the limit may
stay.
The threads mode has no deadlines to check on (a blocking send per thread): not applied
there, and not run.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from c10k.core.fdio import TCP_NOTSENT_LOWAT
from c10k.core.listener import NOTSENT_LOWAT_BYTES
from c10k.server import ServerConfig, make_server
from c10k.server.base import ServerBase
from c10k.server.session import MAX_SEND_QUEUE
from helpers import backend_params

SIZE = 4 * 1024 * 1024
LOOP_MODES = [p for p in backend_params() if p != "threads"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sendq")
    (d / "big.bin").write_bytes(os.urandom(SIZE))
    return d


@contextlib.contextmanager
def serving(root: Path, mode: str) -> Iterator[ServerBase]:
    server = make_server(ServerConfig(root=str(root), port=0, backend=mode))
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def server_lowat(client: socket.socket) -> int:
    """TCP_NOTSENT_LOWAT of the server's end of ``client``'s connection (this process)."""
    me = client.getsockname()
    seen = []
    for name in os.listdir("/proc/self/fd"):
        try:
            fd = os.dup(int(name))
        except OSError:
            continue
        try:
            s = socket.socket(fileno=fd)
        except OSError as e:
            os.close(fd)
            seen.append((name, repr(e)))
            continue
        with s:
            try:
                peer = s.getpeername()
            except OSError as e:
                seen.append((name, repr(e)))
                continue
            seen.append((name, peer))
            if peer == me:
                return s.getsockopt(socket.IPPROTO_TCP, TCP_NOTSENT_LOWAT)
    raise AssertionError(f"no server socket with peer {me}: {seen}")


def read_body(c: socket.socket, want: int, rate: float | None, seconds: float = 0.0) -> int:
    """Read up to ``want`` bytes: at ``rate`` bytes/s for ``seconds``, or all at once."""
    got = 0
    start = time.monotonic()
    while got < want:
        if rate is not None:
            if time.monotonic() - start >= seconds:
                return got
            due = start + got / rate
            time.sleep(max(0.0, due - time.monotonic()))
            n = len(c.recv(min(2048, want - got)))
        else:
            n = len(c.recv(min(1 << 20, want - got)))
        if not n:
            raise AssertionError(f"the server closed the connection after {got} bytes")
        got += n
    return got


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_slow_reader_socket_holds_a_second_of_its_speed(root: Path, mode: str) -> None:
    with serving(root, mode) as server, socket.socket() as c:
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)  # a small window, like a modem
        c.settimeout(10)
        c.connect(server.address)
        request = b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n"
        c.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.recv(1)
        assert head.startswith(b"HTTP/1.1 200")
        # The server's first look comes SEND_QUEUE_CHECK (2 s) into the blocked write, on a
        # deadline bucket a second wide: keep reading at the pace until it has looked.
        got, slow = 0, NOTSENT_LOWAT_BYTES
        start = time.monotonic()
        while slow > NOTSENT_LOWAT_BYTES // 2 and time.monotonic() - start < 8.0:
            got += read_body(c, SIZE - got, rate=20_000, seconds=0.25)
            slow = server_lowat(c)
        # About a second of 20 kB/s is 32 KiB; a mode's view of the client's progress may
        # lag (asyncio's sendfile steps) or run ahead by a buffer (uvloop's pump), so the
        # test asks for what matters: well below the default, never below the floor.
        assert 4096 <= slow <= NOTSENT_LOWAT_BYTES // 2, f"{mode}: {slow} after {got} B"
        read_body(c, SIZE - got, rate=None)
        # The end of the write (the rest, taken fast) gives at least the default back:
        # the server notes it once its last send returns, which may be just after the
        # client has read the last byte.
        deadline = time.monotonic() + 5
        while server_lowat(c) < NOTSENT_LOWAT_BYTES and time.monotonic() < deadline:
            time.sleep(0.02)
        assert server_lowat(c) >= NOTSENT_LOWAT_BYTES, mode


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_fast_reader_gets_a_bigger_limit(root: Path, mode: str) -> None:
    with serving(root, mode) as server, socket.socket() as c:
        c.settimeout(10)
        c.connect(server.address)
        c.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += c.recv(1)
        read_body(c, SIZE, rate=None)
        deadline = time.monotonic() + 5  # (noted once the last send returns)
        while server_lowat(c) != MAX_SEND_QUEUE and time.monotonic() < deadline:
            time.sleep(0.02)
        if mode == "uvloop":  # (module doc) more or the same, never less
            assert server_lowat(c) >= NOTSENT_LOWAT_BYTES
        else:
            assert server_lowat(c) == MAX_SEND_QUEUE, mode
