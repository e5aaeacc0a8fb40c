"""c10k.core.diskio: the residency probe and the answer regions of one file share.

Real files, real page cache: a file is made cold with ``posix_fadvise(DONTNEED)`` after an
fsync (clean pages are dropped at once on ext4 and most filesystems; where the kernel keeps
them, as on tmpfs, the cold cases skip), and the probes are counted by ``diskio.COUNTS``.
Coldness is checked with ``mincore``, not with a probe: a ``preadv2(RWF_NOWAIT)`` that finds
a page missing starts a small readahead there (4 pages on Linux 6.x), so a checking probe
would warm the first pages of the file it checks, a few milliseconds later.

A probe of a cold page can rightly answer "resident": the read it starts may end before
it looks again (two tests in one whole run here saw it; likely the host serving the
virtio read while the guest's CPU was not running, which was not proven). So a test
that needs a cold answer probes until it gets one (``first_cold_answer``), and checks
every "resident" answer against ``mincore``: a probe that vouched for pages that are not
there fails the test.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from time import monotonic

import pytest

from c10k.core import diskio
from c10k.region import FileRegion, Residency

SIZE = 1 << 20


@pytest.fixture
def fd(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(SIZE))
    fd = os.open(path, os.O_RDONLY)
    os.pread(fd, SIZE, 0)  # in memory
    yield fd
    os.close(fd)


_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t] + [ctypes.c_int] * 3 + [ctypes.c_long]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]


def pages_in_memory(fd: int) -> int:
    """How many of the file's SIZE bytes' pages are in the page cache (mincore, which
    starts no I/O)."""
    addr = _libc.mmap(None, SIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    try:
        vec = ctypes.create_string_buffer(SIZE // mmap.PAGESIZE)
        assert _libc.mincore(addr, SIZE, vec) == 0, os.strerror(ctypes.get_errno())
        return sum(b & 1 for b in vec.raw)
    finally:
        _libc.munmap(addr, SIZE)


def make_cold(fd: int) -> None:
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    if pages_in_memory(fd):
        pytest.skip("this filesystem keeps clean pages after DONTNEED: cannot make a cold file")


def probed_pages_in_memory(fd: int) -> bool:
    """Are the two pages a probe of the whole file reads (the first and the last) in
    memory now?"""
    addr = _libc.mmap(None, SIZE, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value), os.strerror(ctypes.get_errno())
    try:
        vec = ctypes.create_string_buffer(SIZE // mmap.PAGESIZE)
        assert _libc.mincore(addr, SIZE, vec) == 0, os.strerror(ctypes.get_errno())
        return bool(vec.raw[0] & 1 and vec.raw[-1] & 1)
    finally:
        _libc.munmap(addr, SIZE)


ATTEMPTS = 10


def first_cold_answer(fd: int, region: Callable[[], FileRegion]) -> FileRegion:
    """Make the file cold and probe a new ``region()`` until a probe says cold; returns
    that region. Each "resident" answer before it must be true (the probe's own read
    ended first, see the module's docstring)."""
    for _ in range(ATTEMPTS):
        make_cold(fd)
        answer = region()
        if diskio.cold(answer, SIZE):
            return answer
        assert probed_pages_in_memory(fd), "a probe vouched for pages that are not in memory"
    pytest.skip(f"the disk answered each of {ATTEMPTS} probes' own reads before they looked")


needs_nowait = pytest.mark.skipif(diskio.RWF_NOWAIT is None, reason="no preadv2(RWF_NOWAIT)")


@needs_nowait
def test_regions_of_one_file_share_a_probe(fd: int) -> None:
    shared = Residency()
    first = FileRegion(fd, 0, SIZE, None, shared)
    probes = diskio.COUNTS.probes
    assert not diskio.cold(first, SIZE)
    assert diskio.COUNTS.probes == probes + 1
    second = FileRegion(fd, 0, SIZE, None, shared)
    assert not diskio.cold(second, SIZE)
    assert diskio.COUNTS.probes == probes + 1  # vouched for by the first one's probe
    assert second.warm_end == SIZE  # and not asked about again for the rest of it
    alone = FileRegion(fd, 0, SIZE)
    assert not diskio.cold(alone, SIZE)
    assert diskio.COUNTS.probes == probes + 2  # no Residency: its own probe


@needs_nowait
def test_a_shared_answer_expires_and_covers_only_its_range(fd: int) -> None:
    shared = Residency()
    assert not diskio.cold(FileRegion(fd, 0, SIZE // 2, None, shared), SIZE // 2)
    probes = diskio.COUNTS.probes
    # Beyond what the probe saw: asked again.
    assert not diskio.cold(FileRegion(fd, SIZE // 2, SIZE // 2, None, shared), SIZE // 2)
    assert diskio.COUNTS.probes == probes + 1
    # Within it, but after TRUST_SECONDS: asked again.
    shared.until -= diskio.TRUST_SECONDS + 1
    assert not diskio.cold(FileRegion(fd, SIZE // 2, SIZE // 2, None, shared), SIZE // 2)
    assert diskio.COUNTS.probes == probes + 2


@needs_nowait
def test_a_cold_file_is_never_vouched_for(fd: int) -> None:
    shared = Residency()
    first_cold_answer(fd, lambda: FileRegion(fd, 0, SIZE, None, shared))
    assert shared.until == 0.0  # a cold answer is not noted for the others
    # The next response asks again. The first probe's EAGAIN started a readahead of the
    # first pages, so this one may find the first page and go on to the last: still cold,
    # unless the reads both probes started have ended (then it must be true).
    probes = diskio.COUNTS.probes
    region = FileRegion(fd, 0, SIZE, None, shared)
    if diskio.cold(region, SIZE):
        assert shared.until == 0.0
    else:
        assert probed_pages_in_memory(fd), "a probe vouched for pages that are not in memory"
    assert diskio.COUNTS.probes == probes + 1
    # Warmed (as the disk pool does), the next probe finds it and vouches for it.
    assert diskio.warm(*diskio.warm_region(region)) == SIZE
    assert not diskio.cold(FileRegion(fd, 0, SIZE, None, shared), SIZE)
    assert shared.end == SIZE


@needs_nowait
def test_a_file_gone_cold_since_its_last_probe_is_found_after_the_window(fd: int) -> None:
    shared = Residency()
    assert not diskio.cold(FileRegion(fd, 0, SIZE, None, shared), SIZE)
    assert shared.until > 0.0

    def after_the_window() -> FileRegion:
        shared.until = min(shared.until, monotonic() - 1)
        return FileRegion(fd, 0, SIZE, None, shared)

    first_cold_answer(fd, after_the_window)


def test_a_slice_keeps_its_files_residency() -> None:
    shared = Residency()
    assert FileRegion(3, 0, 10, None, shared).slice(2, 5).residency is shared
