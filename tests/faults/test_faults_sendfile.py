"""Faults in the middle of a sendfile: the client resets, or the file changes under us.

The file is 16 MB of self-describing 10-byte records, far more than the socket buffers
hold (net.ipv4.tcp_wmem max 4 MB), and the client's receive buffer is small, so the
server is provably inside the send (it holds the file open, checked in /proc) when the
fault happens. After each fault the file's fd is released, the server's fd count returns
to where it was, and (at the module's end) its stderr has no traceback.

What a file change may do to a response whose Content-Length is already on the wire:
- truncated: the promised length cannot be honoured; the connection must be closed
  after a prefix of the original bytes (nginx: "sendfile() reported that ... was
  truncated", then the connection is closed);
- grown: exactly Content-Length bytes, the original ones, and the connection stays usable;
- replaced by rename, or deleted: the open fd still names the old inode, so every
  original byte arrives; the next request sees the new file (or 404).
Never more bytes than Content-Length, never a byte that is not the original's, no hang.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fault_support import (
    RECORD_BYTES,
    get,
    make_big_file,
    open_paths,
    read_head,
    read_until_close,
    records,
    slow_socket,
    stop_clean,
    wait_until,
)

from helpers import ServerProcess, backend_params, connect, make_docroot, read_response

pytestmark = pytest.mark.timed  # see conftest.SIBLING_MODES

SIZE = 16_000_000
READ_FIRST = 1_000_000  # bytes the client reads before the fault
SMALL = b"0123456789" * 51 + b"AB"


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_docroot(tmp_path_factory.mktemp("faults-sendfile") / "www")


@pytest.fixture(scope="module", params=backend_params())
def srv(request: pytest.FixtureRequest, root: Path) -> Iterator[ServerProcess]:
    # open_file_idle 0: a file's fd closes at the tick after its last download, not a
    # second later (each test waits for it; tests/server/test_server_shared_fd.py is
    # where keeping it idle is tested).
    config = root.parent / "c10k.toml"
    config.write_text("open_file_idle = 0\n")
    server = ServerProcess(root, request.param, "--config", str(config))
    yield server
    stop_clean(server)


def _holds(srv: ServerProcess, path: Path) -> bool:
    name = str(path)
    return any(p.startswith(name) for p in open_paths(srv.pid))  # "... (deleted)" too


def _start_slow_download(srv: ServerProcess, path: Path) -> tuple[socket.socket, bytearray]:
    s = slow_socket(srv.port)
    s.sendall(get("/" + path.name))
    status, headers, buf = read_head(s)
    assert status == 200
    assert int(headers["content-length"]) == SIZE
    while len(buf) < READ_FIRST:
        data = s.recv(65536)
        assert data, "closed early"
        buf += data
    # The server is blocked in the middle of the body, with the file open.
    assert wait_until(lambda: _holds(srv, path))
    return s, buf


def _served_small(port: int) -> None:
    with connect(port) as c:
        c.sendall(get("/small.txt"))
        status, _, body = read_response(c, bytearray())
    assert (status, body) == (200, SMALL)


def test_faults_client_reset_mid_sendfile(srv: ServerProcess, root: Path) -> None:
    path = root / "reset.bin"
    make_big_file(path, SIZE)
    baseline = srv.fd_count()
    for _ in range(3):
        s, _ = _start_slow_download(srv, path)
        _served_small(srv.port)  # others are served while the big send is parked
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        s.close()  # SO_LINGER 0: RST
        assert wait_until(lambda: not _holds(srv, path)), "file fd not released after RST"
        assert srv.wait_fd_count(baseline) == baseline
        _served_small(srv.port)


@pytest.mark.parametrize("change", ["truncate", "truncate0", "grow", "replace", "delete"])
def test_faults_file_changes_while_sent(srv: ServerProcess, root: Path, change: str) -> None:
    path = root / f"{change}.bin"
    original = make_big_file(path, SIZE)
    baseline = srv.fd_count()
    s, buf = _start_slow_download(srv, path)
    try:
        if change.startswith("truncate"):
            os.truncate(path, 0 if change == "truncate0" else SIZE // 2)
        elif change == "grow":
            with open(path, "ab") as f:
                f.write(records(SIZE // RECORD_BYTES, 100_000))
        elif change == "replace":
            tmp = root / f".{change}.tmp"
            tmp.write_bytes(b"Z" * (SIZE // 2))
            os.replace(tmp, path)
        else:
            path.unlink()
        # The fault has happened mid-send; read the rest at loopback speed (the 4 KiB
        # window took 2-3 s for 16 MB; the window scale came from tcp_rmem's maximum, so
        # a bigger buffer now widens it).
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        closed = read_until_close(s, buf, SIZE)
        assert len(buf) <= SIZE, f"{len(buf) - SIZE} bytes past Content-Length"
        # Compare without a 16 MB diff in the failure message.
        good = buf == original[: len(buf)]
        assert good, f"bytes differ from the original, first at {_first_diff(buf, original)}"
        if change.startswith("truncate"):
            assert closed, "length cannot be honoured: the connection must be closed"
            assert len(buf) < SIZE
        else:
            assert len(buf) == SIZE
            assert not closed
            # The connection goes on; the next response describes the file as it is now.
            s.sendall(get("/" + path.name))
            rest = bytearray()
            status, headers, _ = read_response(s, rest, head_only=True)
            if change == "delete":
                assert status == 404
            else:
                expected = SIZE + 1_000_000 if change == "grow" else SIZE // 2
                assert (status, int(headers["content-length"])) == (200, expected)
    finally:
        s.close()
    assert wait_until(lambda: not _holds(srv, path)), "file fd not released"
    assert srv.wait_fd_count(baseline) == baseline
    _served_small(srv.port)


def _first_diff(got: bytes | bytearray, want: bytes) -> int:
    for i in range(0, len(got), 4096):
        if got[i : i + 4096] != want[i : i + 4096]:
            return i + next(j for j in range(4096) if got[i + j] != want[i + j])
    return -1
