"""A really slow disk (issue 15): ``c10k serve`` on a FUSE mount whose reads wait.

The docroot is a slowfs (tests/faults/slowfs.py): a read-only FUSE mirror whose reads of
``big*.bin`` wait at a gate the test opens, or sleep 50 ms each. The server runs as a
subprocess on the mount, in every mode, and its files are cold (each open drops the
pages; the slowfs counts the bytes it served, and the tests check the download came from
it). What must hold, as the C10K page says of Flash's AMPED design (a ``read()`` or
``sendfile()`` of a page not in core blocks the whole loop):

- liveness: while one client's download is stuck in a disk read, another client's GET of
  a file the server already holds in memory is answered (within a generous 5 s: the
  property is "not blocked", not a latency goal), and the stuck download then completes
  intact;
- no false slow-reader verdict: cold downloads slowed by the server's own disk complete
  intact and are never reset as slow readers (issue 15 saw resets).

Every mode holds both: the loop modes ask the kernel before each file chunk whether its
pages are in memory and read cold ones in the disk pool (c10k.core.diskio); the threads mode
blocks only the client's own thread. And the first property is shown to need that: with
``--io-threads 0`` (no pool: everything on the loop) the same cached GET is not answered
while the cold read waits, on every loop mode.
"""

from __future__ import annotations

import functools
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from _fault_support import RECORD_BYTES, get, records, wait_until
from slowfs import SlowFS, fuse_unavailable

from helpers import ServerProcess, backend_params, read_response

pytestmark = pytest.mark.skipif(
    fuse_unavailable() is not None, reason=f"no FUSE here: {fuse_unavailable()}"
)

SMALL = b"0123456789" * 51 + b"AB"  # 512 bytes: in the server's memory cache once fetched
# 2 MiB of self-describing 10-byte records, 16 reads of 128 KiB each (issue 15 used 8 MiB;
# a quarter keeps the four slowed downloads below within seconds on every mode).
BIG_BYTES = 2 * 1024 * 1024 // 10 * 10
ANSWER_WITHIN = 5.0  # generous: a cached answer takes milliseconds
# The slow-reader defence, compressed in time: with --send-timeout 0.5 a client that takes
# nothing for half a second is reset. Ours read all they are sent, so a reset means the
# server charged its own disk to them. The disk stalls for 3 such timeouts once every
# download has 512 KiB (a quarter) served.
SEND_TIMEOUT = 0.5
STALL = 1.5
STALL_AFTER = 512 * 1024
DELAY = 0.05  # seconds per read of a big file: a busy disk (issue 15's mirror)


@functools.cache
def big_content() -> bytes:
    return records(0, BIG_BYTES // RECORD_BYTES)


def modes(blocking: set[str], reason: str) -> list[object]:
    """Every server mode; those in ``blocking`` marked xfail(strict) with ``reason``."""
    out: list[object] = []
    for p in backend_params():
        if isinstance(p, str) and p in blocking:
            out.append(pytest.param(p, marks=pytest.mark.xfail(strict=True, reason=reason), id=p))
        else:
            out.append(p)
    return out


LIVENESS = NO_RESET = backend_params()
LOOP_MODES = [p for p in backend_params() if p != "threads"]  # (threads has no pool)


@pytest.fixture
def slowdisk(tmp_path: Path) -> Iterator[tuple[SlowFS, dict[str, bytes]]]:
    """A slowfs over a docroot of small.txt, index.html and big0..3.bin (BIG_BYTES each)."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "index.html").write_bytes(b"<h1>index</h1>\n")
    (src / "small.txt").write_bytes(SMALL)
    files = {}
    for i, mark in enumerate(b"ABCD"):  # four different files: a mix-up shows
        files[f"big{i}.bin"] = content = big_content().replace(b"X", bytes([mark]))
        (src / f"big{i}.bin").write_bytes(content)
    with SlowFS(src, tmp_path / "mnt", slow=["big*.bin"]) as fs:
        yield fs, files
    # (SlowFS.stop asserts the mount is gone.)


class Download(threading.Thread):
    """One GET on its own connection, read to the end: the response, or the error."""

    def __init__(self, port: int, path: str, timeout: float = 30.0) -> None:
        super().__init__(daemon=True)
        self.port, self.path, self.timeout = port, path, timeout
        self.status = 0
        self.body = b""
        self.error: BaseException | None = None
        self.elapsed = 0.0

    def run(self) -> None:
        t0 = time.monotonic()
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout) as s:
                s.sendall(get(self.path))
                self.status, _, self.body = read_response(s, bytearray())
        except OSError as exc:  # reset, closed inside the body, timeout
            self.error = exc
        self.elapsed = time.monotonic() - t0


def served(fs: SlowFS, files: dict[str, bytes]) -> list[int]:
    per_file = fs.stats()["per_file"]
    return [per_file.get(name, 0) for name in files]


def fetch(port: int, path: str, timeout: float) -> tuple[int, bytes]:
    d = Download(port, path, timeout)
    d.run()
    if d.error is not None:
        raise d.error
    return d.status, d.body


def _ask_while_stuck(
    fs: SlowFS, port: int, within: float
) -> tuple[tuple[int, bytes], float, dict[str, object], Download]:
    """Start a download of big0.bin, stop it inside a disk read, GET the cached small.txt,
    then let the disk go: (the answer, its time, the disk's state while asked, the download)."""
    assert fetch(port, "/small.txt", 10) == (200, SMALL)  # now in memory
    # The download starts (its open, stat, head and first 1 MiB come through), then its
    # next read waits at the gate: the server is inside a disk read of big0.
    fs.drop_cache("big0.bin")
    fs.command("close 8")
    big = Download(port, "/big0.bin")
    big.start()
    assert fs.wait_waiting(1, timeout=10), fs.stats()
    t0 = time.monotonic()
    try:
        answer = fetch(port, "/small.txt", within)
    except OSError as exc:
        answer = (0, repr(exc).encode())
    elapsed = time.monotonic() - t0
    stuck = fs.stats()
    fs.open_gate()
    big.join(30)
    return answer, elapsed, stuck, big


@pytest.mark.parametrize("mode", LIVENESS)
def test_slowdisk_cached_file_answered_while_a_cold_read_waits(
    mode: str, slowdisk: tuple[SlowFS, dict[str, bytes]]
) -> None:
    fs, files = slowdisk
    server = ServerProcess(fs.mountpoint, mode)
    big = None
    try:
        answer, elapsed, stuck, big = _ask_while_stuck(fs, server.port, ANSWER_WITHIN)
        assert answer == (200, SMALL), f"no answer within {ANSWER_WITHIN} s: {answer[1][:200]!r}"
        assert elapsed < ANSWER_WITHIN
        assert stuck["waiting"] >= 1, "the download was not stuck in a read while we asked"
        assert not big.is_alive()
        assert big.error is None, f"the download failed: {big.error!r}"
        assert big.status == 200
        assert big.body == files["big0.bin"]
        assert fs.stats()["per_file"]["big0.bin"] >= BIG_BYTES  # it came from the disk
    finally:
        fs.open_gate()
        server.stop()
        if big is not None:
            big.join(10)


@pytest.mark.parametrize("mode", LOOP_MODES)
def test_slowdisk_without_the_pool_the_loop_waits(
    mode: str, slowdisk: tuple[SlowFS, dict[str, bytes]]
) -> None:
    """The control: ``--io-threads 0`` sends file bodies from the loop thread, which then
    sits in the disk read, and the cached GET gets no answer until the disk goes on."""
    fs, files = slowdisk
    server = ServerProcess(fs.mountpoint, mode, "--io-threads", "0")
    big = None
    try:
        answer, elapsed, stuck, big = _ask_while_stuck(fs, server.port, 2.0)
        assert stuck["waiting"] >= 1, "the download was not stuck in a read while we asked"
        assert answer != (200, SMALL), f"answered in {elapsed:.2f} s with the loop in a read?"
        assert big.error is None  # and nothing was lost
        assert big.body == files["big0.bin"]
    finally:
        fs.open_gate()
        server.stop()
        if big is not None:
            big.join(10)


# Alone: in make test's parallel phase on the 2026-12-07 machine, all four downloads were
# reset as slow readers ~0.7-1.2 s in on 3-6 of the modes, every run (the server logged
# "client reads below --min-send-rate"), though the test passes run by itself. Which
# neighbour keeps these client threads from taking their bytes for a send_timeout is not
# found.
@pytest.mark.alone
@pytest.mark.slow
@pytest.mark.parametrize("mode", NO_RESET)
def test_slowdisk_concurrent_cold_downloads_complete(
    mode: str, slowdisk: tuple[SlowFS, dict[str, bytes]]
) -> None:
    fs, files = slowdisk
    fs.command(f"delay {DELAY}")
    server = ServerProcess(fs.mountpoint, mode, "--send-timeout", str(SEND_TIMEOUT))
    downloads = [Download(server.port, f"/{name}", timeout=40) for name in files]
    try:
        for name in files:
            fs.drop_cache(name)
        for d in downloads:
            d.start()
        # Mid-way, the disk stalls for longer than --send-timeout (a hiccup: a busy
        # array, a retry), then goes on at DELAY per read.
        assert wait_until(lambda: min(served(fs, files)) >= STALL_AFTER, timeout=20)
        fs.close_gate()
        time.sleep(STALL)
        fs.open_gate()
        for d in downloads:
            d.join(45)
        for d, (name, content) in zip(downloads, files.items(), strict=True):
            assert not d.is_alive()
            assert d.error is None, f"{name}: {d.error!r} after {d.elapsed:.1f} s"
            assert d.status == 200
            assert d.body == content, name
        per_file = fs.stats()["per_file"]
        assert all(per_file.get(name, 0) >= BIG_BYTES for name in files), per_file
    finally:
        fs.open_gate()
        server.stop()
        for d in downloads:
            d.join(10)
