"""Disk read errors (EIO), in process: a real file system does not fail on demand, so the
server runs in a thread of this process with ``os.sendfile`` / ``os.open`` / ``os.read``
made to fail with EIO for file fds. Real sockets, real files otherwise.

Expected, as nginx does on a read error in the middle of a body: the response cannot be
completed, so the connection is closed after a prefix of the file (the client sees fewer
bytes than Content-Length), the file fd is released, the error is logged without a
traceback, and other requests are served. An error before the response starts is a 500.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from _fault_support import get, read_head, read_until_close, wait_until

from c10k.server import ServerBase as Server
from c10k.server import ServerConfig, make_server
from c10k.static import sharedfd
from helpers import backend_params, big_content, make_docroot, read_response

SMALL = b"0123456789" * 51 + b"AB"
BIG = big_content()


def _fd_count() -> int:
    """Open fds, not counting big files' fds kept idle for the next download (sharedfd)."""
    sharedfd.close_idle()
    return len(os.listdir("/proc/self/fd"))


def _back_to(baseline: int) -> bool:
    # The server thread closes its side a moment after the client closed its own.
    return wait_until(lambda: _fd_count() == baseline, timeout=5)


@pytest.fixture(params=backend_params())
def running(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    root = make_docroot(tmp_path / "www")
    server = make_server(ServerConfig(root=str(root), port=0, backend=request.param))
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    thread.start()
    try:
        # Serving (io_uring re-makes its ring in the serving thread) and warmed up (the
        # disk pool's threads started): fd counts taken from here on are the steady state.
        assert _request(server, get("/sub/page.html"))[0] == 200
        assert wait_until(lambda: not server.nconn)  # the warm-up's server side closed too
        yield server
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def _is_file(fd: int) -> bool:
    try:
        return stat.S_ISREG(os.fstat(fd).st_mode)
    except OSError:
        return False


def _eio(*_: Any) -> Any:
    raise OSError(errno.EIO, os.strerror(errno.EIO))


def _request(server: Server, raw: bytes) -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection(server.address, timeout=5) as c:
        c.sendall(raw)
        return read_response(c, bytearray())


def test_faults_sendfile_eio_mid_body_closes_and_releases(
    running: Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # File bodies go out by sendfile, except on uvloop, which has none for TCP: there the
    # body is read (pread) and written. The first call succeeds, the next fails.
    real_sendfile: Callable[[int, int, int, int], int] = os.sendfile
    real_pread: Callable[[int, int, int], bytes] = os.pread
    calls = 0

    def sendfile(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        nonlocal calls
        calls += 1
        if calls == 1:  # the first 64 KiB go out, then the disk fails
            return real_sendfile(out_fd, in_fd, offset, min(count, 65536))
        return _eio()  # type: ignore[no-any-return]

    def pread(fd: int, count: int, offset: int) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            return real_pread(fd, min(count, 65536), offset)
        return _eio()  # type: ignore[no-any-return]

    baseline = _fd_count()
    monkeypatch.setattr(os, "sendfile", sendfile)
    monkeypatch.setattr(os, "pread", pread)
    with (
        caplog.at_level(logging.ERROR, logger="c10k.server"),
        socket.create_connection(running.address, timeout=5) as c,
    ):
        c.sendall(get("/big.bin"))
        status, headers, body = read_head(c)
        assert (status, int(headers["content-length"])) == (200, len(BIG))
        closed = read_until_close(c, body, len(BIG), timeout=10)
    assert closed
    assert 0 < len(body) < len(BIG)
    assert body == BIG[: len(body)]
    assert calls == 2
    assert "Input/output error" in caplog.text
    assert "Traceback" not in caplog.text
    monkeypatch.undo()
    assert _request(running, get("/big.bin"))[::2] == (200, BIG)
    assert wait_until(lambda: not running.connections)
    assert _back_to(baseline)  # client socket, server socket and file fd all closed


def test_faults_open_eio_is_500(running: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = os.open

    def open_(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        if os.fspath(path).endswith("big.bin"):
            return _eio()  # type: ignore[no-any-return]
        return real_open(path, flags, *args, **kwargs)

    baseline = _fd_count()
    monkeypatch.setattr(os, "open", open_)
    with socket.create_connection(running.address, timeout=5) as c:
        buf = bytearray()
        c.sendall(get("/big.bin"))
        status, _, body = read_response(c, buf)
        assert status == 500
        assert b"big.bin" not in body
        c.sendall(get("/small.txt"))  # the connection survives a 500 from the handler
        assert read_response(c, buf)[::2] == (200, SMALL)
    monkeypatch.undo()
    assert _request(running, get("/big.bin"))[::2] == (200, BIG)
    assert _back_to(baseline)


def test_faults_read_eio_small_file_is_500_no_fd_leak(
    running: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_read = os.read

    def read(fd: int, n: int) -> bytes:
        if _is_file(fd):
            return _eio()  # type: ignore[no-any-return]
        return real_read(fd, n)

    baseline = _fd_count()
    monkeypatch.setattr(os, "read", read)
    assert _request(running, get("/small.txt"))[0] == 500
    monkeypatch.undo()
    # Not cached by the failure: the next request reads the file again.
    assert _request(running, get("/small.txt"))[::2] == (200, SMALL)
    assert _back_to(baseline)
