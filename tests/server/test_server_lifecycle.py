"""A single process's life, in every mode: SIGHUP reopens the access log and says so, and
a stop that cuts responses short says how many and exits 1 (issue 19)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect, read_response

pytestmark = pytest.mark.timed  # see conftest.SIBLING_MODES

GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"


def wait_for(check: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


def lines(path: Path) -> int:
    return path.read_text().count("\n") if path.exists() else 0


def get_small(port: int) -> int:
    with connect(port) as s:
        s.sendall(GET)
        return read_response(s, bytearray())[0]


@pytest.mark.parametrize("backend", backend_params())
def test_lifecycle_sighup_reopens_the_access_log(
    docroot: Path, tmp_path: Path, backend: str
) -> None:
    log = tmp_path / "access.log"
    srv = ServerProcess(docroot, backend, "--access-log", str(log))
    try:
        assert get_small(srv.port) == 200
        assert wait_for(lambda: lines(log) == 1)
        rotated = tmp_path / "access.log.1"
        log.rename(rotated)  # logrotate without copytruncate
        srv.proc.send_signal(signal.SIGHUP)
        # Still serving after SIGHUP (its default action would have killed it)...
        assert wait_for(lambda: log.exists())
        assert get_small(srv.port) == 200
        # ...and the new line goes to the new file, not the renamed one.
        assert wait_for(lambda: lines(log) == 1)
        assert lines(rotated) == 1
    finally:
        code, out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "SIGHUP: access log reopened; the settings are re-read only with workers" in err
    assert "c10k stopped after 2 requests" in out


@pytest.mark.parametrize("backend", backend_params())
def test_lifecycle_sighup_without_access_log_is_logged(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend)
    try:
        srv.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)  # time for a (wrong) exit; checked, not timed
        assert srv.proc.poll() is None
        assert get_small(srv.port) == 200
    finally:
        code, out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "SIGHUP: the settings are re-read only with workers" in err
    assert "c10k stopped after 1 request\n" in out


def stalled_download(port: int) -> socket.socket:
    """A client that asked for the 1 MB file, took a little, and reads no more."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(b"GET /big.bin HTTP/1.1\r\nHost: t\r\n\r\n")
    s.recv(100)
    return s


@pytest.mark.parametrize("backend", backend_params())
def test_lifecycle_drain_deadline_says_what_it_cut(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--shutdown-timeout", "0.5")
    stalled = stalled_download(srv.port)
    idle = connect(srv.port)  # an idle keep-alive connection is not a cut response
    idle.sendall(GET)
    read_response(idle, bytearray())
    try:
        code, out, err = srv.stop()
    finally:
        stalled.close()
        idle.close()
    assert code == 1, err[-3000:]
    assert "c10k stopped after 2 requests; 1 response cut short" in out


@pytest.mark.parametrize("backend", backend_params())
def test_lifecycle_second_signal_says_what_it_cut(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend, "--shutdown-timeout", "30")
    stalled = [stalled_download(srv.port) for _ in range(2)]
    try:
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)  # draining now (the downloads hold it open)
        assert srv.proc.poll() is None
        code, out, err = srv.stop(signal.SIGINT)
    finally:
        for s in stalled:
            s.close()
    assert code == 1, err[-3000:]
    assert "; 2 responses cut short" in out


@pytest.mark.parametrize("backend", backend_params())
def test_lifecycle_clean_drain_exits_0_without_cut(docroot: Path, backend: str) -> None:
    srv = ServerProcess(docroot, backend)
    assert get_small(srv.port) == 200
    code, out, err = srv.stop()
    assert code == 0, err[-3000:]
    assert "cut short" not in out
