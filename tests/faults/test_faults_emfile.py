"""EMFILE at accept and at open: out of file descriptors, the server must neither spin nor
hang, must keep serving the clients it has, and must recover when fds free up.

The limit is lowered on the *running* server with ``prlimit --pid`` (see
``_fault_support.set_nofile``): started under a low limit, the server caps its connections
64 below it and pauses accepting at the cap, so it never reaches EMFILE that way.

What other servers do when open(2) fails with EMFILE: nginx's static handler answers 500
(``ngx_http_static_handler``: ENOENT/ENOTDIR/ENAMETOOLONG -> 404, EACCES -> 403, anything
else -> 500 with a crit log). c10k answers 503 (``c10k.static.handler.ERRNO_STATUS``):
the condition is temporary, and 503 tells clients and balancers to retry. A 503 for a
temporary condition should say when (RFC 9110 section 10.2.3, Retry-After); the last test
checks that.
"""

from __future__ import annotations

import select
import shutil
import socket
import time
from pathlib import Path

import pytest
from _fault_support import cpu_seconds, get, set_nofile, stop_clean, wait_until

from helpers import ServerProcess, backend_params, big_content, connect, read_response

pytestmark = [
    pytest.mark.timed,
    pytest.mark.skipif(
        shutil.which("prlimit") is None, reason="prlimit is not installed (util-linux)"
    ),
]

SMALL = b"0123456789" * 51 + b"AB"
FREE_FDS = 4  # client sockets the server may still open once the limit is lowered
EXTRA = 8  # clients beyond that, left waiting in the kernel's backlog
# io_uring reads RLIMIT_NOFILE when an accept is submitted (io_accept_prep), so a
# multishot accept armed at start keeps the limit of that moment: lowering the limit of a
# running server cannot make its accepts fail, which is how these tests make EMFILE.
URING_SKIP = "io_uring's armed multishot accept keeps the RLIMIT_NOFILE it was submitted under"


def _skip_uring(backend: str) -> None:
    if backend == "uring":
        pytest.skip(URING_SKIP)


def _responded(clients: list[socket.socket], timeout: float) -> list[socket.socket]:
    """The clients that have bytes to read within ``timeout`` (a response arrived)."""
    ready: set[socket.socket] = set()
    deadline = time.monotonic() + timeout
    while len(ready) < len(clients):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        r, _, _ = select.select([c for c in clients if c not in ready], [], [], left)
        ready.update(r)
    return [c for c in clients if c in ready]


@pytest.mark.parametrize("backend", backend_params())
def test_faults_emfile_at_accept_no_spin_then_recovers(docroot: Path, backend: str) -> None:
    _skip_uring(backend)
    srv = ServerProcess(docroot, backend)
    clients: list[socket.socket] = []
    try:
        baseline = srv.fd_count()
        # Prime the small-file cache, so answering needs no open(2) later.
        with connect(srv.port) as s:
            s.sendall(get("/small.txt"))
            assert read_response(s, bytearray())[0] == 200
        assert srv.wait_fd_count(baseline) == baseline
        set_nofile(srv.pid, baseline + FREE_FDS)
        for _ in range(FREE_FDS + EXTRA):
            c = connect(srv.port)  # the kernel completes the handshake; accept may not
            clients.append(c)
            c.sendall(get("/small.txt"))
        assert wait_until(lambda: srv.fd_count() == baseline + FREE_FDS)
        served = _responded(clients, 2.0)
        assert len(served) == FREE_FDS  # the others wait in the backlog, not refused
        for c in served:
            status, _, body = read_response(c, bytearray())
            assert (status, body) == (200, SMALL)
        # Out of fds with a non-empty backlog: the listener stays readable, so a server
        # that retried at once would spin at 100% CPU. The Acceptor sleeps 100 ms instead.
        before = cpu_seconds(srv.pid)
        time.sleep(2.0)
        used = cpu_seconds(srv.pid) - before
        assert used < 0.2, f"server used {used:.2f} s of CPU in 2 s while out of fds (spin)"
        # It keeps serving the clients it has (keep-alive requests on them).
        for c in served:
            c.sendall(get("/small.txt"))
            status, _, body = read_response(c, bytearray())
            assert (status, body) == (200, SMALL)
        # Free fds: each closed client lets the next one in the backlog be accepted.
        waiting = [c for c in clients if c not in served]
        for c in served:
            c.close()
        for c in waiting:
            c.settimeout(5.0)  # accepted within the 100 ms back-off, or this times out
            status, _, body = read_response(c, bytearray())
            assert (status, body) == (200, SMALL)
            c.close()
        assert srv.wait_fd_count(baseline) == baseline
    finally:
        for c in clients:
            c.close()
        err = stop_clean(srv)
    assert "Too many open files" in err  # logged, so an operator sees why


@pytest.mark.parametrize("backend", backend_params())
def test_faults_emfile_at_open_answers_503_then_recovers(docroot: Path, backend: str) -> None:
    _skip_uring(backend)
    srv = ServerProcess(docroot, backend)
    fillers: list[socket.socket] = []
    try:
        with connect(srv.port, timeout=5.0) as a:
            a.sendall(get("/small.txt"))
            buf = bytearray()
            assert read_response(a, buf)[0] == 200
            baseline = srv.fd_count()  # includes a's socket
            set_nofile(srv.pid, baseline + 2)
            fillers = [connect(srv.port) for _ in range(6)]  # some accepted, the rest waits
            # RLIMIT_NOFILE bounds fd *numbers*: a mode with holes in its fd table (uvloop
            # closes placeholders at start) takes one or two more, so not "== baseline + 2".
            assert wait_until(lambda: srv.fd_count() >= baseline + 2)
            # big.bin is not cached: answering needs open(2), which fails with EMFILE.
            a.sendall(get("/big.bin"))
            status, headers, body = read_response(a, buf)  # a hang raises TimeoutError
            assert status == 503, (status, headers, body[:200])
            assert str(docroot).encode() not in body  # an error page that names no path
            # The connection is still usable, and once fds are free the file is served.
            for f in fillers:
                f.close()
            assert srv.wait_fd_count(baseline) == baseline
            a.sendall(get("/big.bin"))
            status, _, body = read_response(a, buf)
            assert (status, body == big_content()) == (200, True)
        assert srv.wait_fd_count(baseline - 1) == baseline - 1
    finally:
        for f in fillers:
            f.close()
        stop_clean(srv)


def test_faults_emfile_at_open_503_has_retry_after(docroot: Path) -> None:
    srv = ServerProcess(docroot, "epoll")
    fillers: list[socket.socket] = []
    try:
        with connect(srv.port, timeout=5.0) as a:
            a.sendall(get("/small.txt"))
            buf = bytearray()
            assert read_response(a, buf)[0] == 200
            baseline = srv.fd_count()
            set_nofile(srv.pid, baseline + 1)
            fillers = [connect(srv.port) for _ in range(3)]
            assert wait_until(lambda: srv.fd_count() == baseline + 1)
            a.sendall(get("/big.bin"))
            status, headers, _ = read_response(a, buf)
        assert status == 503
        assert headers.get("retry-after", "").isdigit(), headers
    finally:
        for f in fillers:
            f.close()
        stop_clean(srv)
