"""The hot path's syscall budget, counted with strace: a keep-alive GET of a cached small
file is one read and one write on the socket, and no file-system syscall (beyond the once-per-second
revalidation stat). A count, never a time."""

from __future__ import annotations

import collections
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers import ServerProcess, connect, read_response

N = 300
FS_CALLS = {"openat", "open", "stat", "newfstatat", "fstat", "statx", "lstat", "pread64"}


@pytest.mark.skipif(
    shutil.which("strace") is None, reason="strace not installed (apt-get install strace)"
)
@pytest.mark.parametrize("backend", ["epoll", "epoll-et", "poll"])
def test_server_keepalive_get_is_one_read_one_write(
    docroot: Path, tmp_path: Path, backend: str
) -> None:
    srv = ServerProcess(docroot, backend)
    trace = tmp_path / "trace"
    try:
        with connect(srv.port) as s:
            buf = bytearray()
            req = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"
            s.sendall(req)
            assert read_response(s, buf)[0] == 200  # warm the caches
            st = subprocess.Popen(
                ["strace", "-qq", "-f", "-o", str(trace), "-p", str(srv.pid)],
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)  # strace attaches asynchronously
            started = time.monotonic()
            for _ in range(N):
                s.sendall(req)
                status, _, body = read_response(s, buf)
                assert status == 200
                assert len(body) == 512
            elapsed = time.monotonic() - started
            time.sleep(0.2)
            st.send_signal(signal.SIGINT)
            st.wait(timeout=10)
    finally:
        assert srv.stop()[0] == 0
    calls = collections.Counter(
        m.group(1)
        for line in trace.read_text().splitlines()
        if (m := re.match(r"(?:\d+\s+)?(\w+)\(", line))
    )
    # The connection is a bare fd: read(2)/write(2) (see c10k.core.fdio).
    assert calls["write"] == N, calls
    assert N <= calls["read"] <= N + 2, calls
    assert calls["sendto"] == calls["recvfrom"] == 0, calls
    fs = sum(calls[c] for c in FS_CALLS)
    # Revalidation stats at most once per second of the run (plus one second's slack);
    # no open(), so no file read() is hiding in the read count.
    assert fs <= 2 * (int(elapsed) + 2), calls
    assert calls["openat"] == 0, calls
    assert calls["epoll_ctl"] == 0, calls
