"""File bodies over TLS whose pages are not in memory are read in the disk pool (issue 14:
"cold ones in the disk pool"), on every mode.

A file on a disk-backed filesystem, its pages dropped (fsync, then POSIX_FADV_DONTNEED), is
fetched over HTTPS: the body arrives intact, and the status page's ``offloaded`` counter
shows reads went to the pool beyond what the same request costs warm (a chunk read on the
loop would not count). The slow-disk behaviour itself (the
loop answering others while a read waits) is tests/faults/test_faults_slowdisk.py's.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import time
from pathlib import Path

import pytest

from c10k.server.status import STATUS_TTL
from helpers import ServerProcess, backend_params, local_ca, make_docroot

SIZE = 3 * 1024 * 1024 + 17  # ~190 TLS records of 16 KiB


def _evict(path: Path) -> bool:
    """Drop the file's pages; False if a read that must not wait still found one."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        buf = bytearray(1)
        try:
            os.preadv(fd, [buf], SIZE // 2, os.RWF_NOWAIT)
        except BlockingIOError:
            return True  # cold, as wanted
    finally:
        os.close(fd)
    return False


def _cold_fetch(port: int, cold: Path, data: bytes, warm: int) -> int:
    """Fetch ``cold`` with its pages dropped; how many reads beyond ``warm`` went to the
    pool. Tried three times: the server's own NOWAIT read of a dropped page can rightly
    find it back (the read it starts may end before it looks: tests/core/test_core_diskio.py),
    and then no chunk needs the pool; a server that reads on the loop misses every time."""
    evicted, cold_reads = False, 0
    for _ in range(3):
        before = _offloaded(port)
        if not _evict(cold):
            continue
        evicted = True
        status, body = _fetch(port, "/cold.bin")
        assert status == 200
        assert hashlib.sha256(body).digest() == hashlib.sha256(data).digest()
        cold_reads = _offloaded(port) - before - warm
        if cold_reads >= 1:
            break
    if not evicted:
        pytest.skip("this filesystem keeps the file in memory (tmpfs?): nothing to evict")
    return cold_reads


def _fetch(port: int, path: str) -> tuple[int, bytes]:
    ctx = ssl.create_default_context(cafile=str(local_ca()["dir"] / "ca.pem"))
    conn = http.client.HTTPSConnection("localhost", port, timeout=30, context=ctx)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def _offloaded(port: int) -> int:
    time.sleep(STATUS_TTL * 2)  # the page is memoized that long
    status, body = _fetch(port, "/_c10k/status")
    assert status == 200
    line = next(x for x in body.decode().splitlines() if x.startswith("offloaded: "))
    return int(line.split(": ")[1])


@pytest.mark.parametrize("backend", backend_params())
def test_tls_cold_file_read_in_the_pool(tmp_path: Path, backend: str) -> None:
    root = make_docroot(tmp_path / "www")
    data = os.urandom(SIZE)
    cold = root / "cold.bin"
    cold.write_bytes(data)
    srv = ServerProcess(root, backend, "--status", "--cache-max-file-bytes", "1024", tls=True)
    try:
        assert _fetch(srv.port, "/cold.bin") == (200, data)  # written just now: in memory
        before = _offloaded(srv.port)
        assert _fetch(srv.port, "/cold.bin") == (200, data)
        warm = _offloaded(srv.port) - before  # the handler's own pool work, if any
        cold_reads = _cold_fetch(srv.port, cold, data, warm)
        # The same request, its pages dropped: at least one chunk read went to the pool
        # (kernel readahead warms the rest; on the loop none would be counted).
        assert cold_reads >= 1, (warm, cold_reads)
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-4000:]
