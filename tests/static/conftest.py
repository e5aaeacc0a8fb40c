"""Fixtures for the static handler tests: a docroot on disk, requests built by hand.

No sockets anywhere: ``StaticFiles.handle`` is called directly. File contents follow
nginx-tests ``range.t`` (``X%03dXXXXXX`` lines), so any 10-byte window names its offset.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable

import pytest

from c10k.http.events import Request
from c10k.static import sharedfd

SMALL_TEXT = b"hello, static world\n"
SECRET = b"TOP-SECRET-OUTSIDE-THE-ROOT\n"


def self_checking(size: int) -> bytes:
    """``size`` bytes of 10-byte records ``X%08d\\n``: record n starts at offset 10 * n."""
    records = b"".join(b"X%08d\n" % i for i in range((size + 9) // 10))
    return records[:size]


@pytest.fixture
def docroot(tmp_path: pathlib.Path) -> pathlib.Path:
    """tmp_path/www with a small and a large file, indexes, dotfiles; tmp_path/outside
    holds a secret that must never be served."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwd").write_bytes(SECRET)

    www = tmp_path / "www"
    www.mkdir()
    (www / "index.html").write_bytes(b"<h1>root index</h1>\n")
    (www / "hello.txt").write_bytes(SMALL_TEXT)
    (www / "big.bin").write_bytes(self_checking(100_000))
    (www / "sub").mkdir()
    (www / "sub" / "index.html").write_bytes(b"<h1>sub index</h1>\n")
    (www / "sub" / "page.html").write_bytes(b"<p>page</p>\n")
    (www / "emptydir").mkdir()
    (www / ".secret").write_bytes(b"dotfile\n")
    (www / ".hidden").mkdir()
    (www / ".hidden" / "file.txt").write_bytes(b"in a dot-directory\n")
    return www


@pytest.fixture
def secret() -> bytes:
    """The content of the file outside the root (``docroot/../outside/passwd``)."""
    return SECRET


@pytest.fixture
def make_request() -> Callable[..., Request]:
    def make(
        target: bytes, method: bytes = b"GET", headers: dict[bytes, bytes] | None = None
    ) -> Request:
        return Request(method, target, 1, dict(headers or {}), True)

    return make


def open_fd_count() -> int:
    """Open fds, not counting the big files' fds kept idle for the next download
    (c10k.static.sharedfd: test_static_sharedfd.py tests those)."""
    sharedfd.close_idle()
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def fd_count() -> Callable[[], int]:
    """Counts this process's open fds (Linux /proc); skips where /proc is missing."""
    if not os.path.isdir("/proc/self/fd"):
        pytest.skip("needs /proc/self/fd to count open file descriptors")
    return open_fd_count
