"""The big files' shared fds (c10k.static.sharedfd): kept open idle after the last
download, at most IDLE_MAX of them, closed when they have been idle long enough or their
cache entry goes. Counted in this process's /proc/self/fd."""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable, Iterator

import pytest

from c10k.http.events import Request
from c10k.region import FileRegion
from c10k.static import StaticFiles, sharedfd
from c10k.static.cache import FileCache
from c10k.static.sharedfd import SharedFd


@pytest.fixture(autouse=True)
def no_idle() -> Iterator[None]:
    sharedfd.close_idle()
    yield
    sharedfd.close_idle()


def is_open(fd: int) -> bool:
    return os.path.exists(f"/proc/self/fd/{fd}")


def opened(shared: SharedFd, path: pathlib.Path) -> int:
    return shared.keep(os.open(path, os.O_RDONLY))


@pytest.fixture
def files(tmp_path: pathlib.Path) -> list[pathlib.Path]:
    paths = [tmp_path / f"f{i}" for i in range(sharedfd.IDLE_MAX + 2)]
    for p in paths:
        p.write_bytes(b"x" * 100)
    return paths


def test_last_release_leaves_the_fd_idle_for_the_next_take(files: list[pathlib.Path]) -> None:
    shared = SharedFd()
    fd = opened(shared, files[0])
    assert shared.take() == fd  # a second user
    shared.release(fd)
    shared.release(fd)  # the last one
    assert is_open(fd)
    assert shared.take() == fd  # no open: the idle fd is used again
    shared.release(fd)
    assert sharedfd.expire(0.0, 10.0) == 1  # ... and it counts as idle once more


def test_expire_closes_what_was_idle_long_enough(files: list[pathlib.Path]) -> None:
    shared = SharedFd()
    fd = opened(shared, files[0])
    shared.release(fd)
    assert sharedfd.expire(0.0, 10.0) == 1  # (monotonic 0: long before it went idle)
    assert is_open(fd)
    assert sharedfd.expire(float("inf"), 10.0) == 0
    assert not is_open(fd)
    assert shared.take() == -1  # the next user opens it again


def test_idle_fds_are_bounded_oldest_closes_first(files: list[pathlib.Path]) -> None:
    pairs = []
    for path in files:  # IDLE_MAX + 2 files, each released in turn
        shared = SharedFd()
        fd = opened(shared, path)
        shared.release(fd)
        pairs.append((shared, fd))
    assert sharedfd.expire(0.0, 10.0) == sharedfd.IDLE_MAX
    assert [shared.fd for shared, _ in pairs[:2]] == [-1, -1]  # (their numbers are reused)
    assert all(shared.fd == fd and is_open(fd) for shared, fd in pairs[2:])
    assert pairs[0][0].take() == -1


def test_an_idle_fd_of_a_changed_file_is_not_taken(files: list[pathlib.Path]) -> None:
    shared = SharedFd()
    fd = opened(shared, files[0])
    shared.release(fd)
    assert shared.take(lambda _fd: True) == fd  # still the same file
    shared.release(fd)
    assert shared.take(lambda _fd: False) == -1  # changed in place: closed, not taken
    assert shared.fd == -1
    assert sharedfd.expire(0.0, 10.0) == 0


def test_retired_fd_closes_now_if_idle_else_with_its_last_user(
    files: list[pathlib.Path],
) -> None:
    idle, busy = SharedFd(), SharedFd()
    idle_fd = opened(idle, files[0])
    idle.release(idle_fd)
    busy_fd = opened(busy, files[1])
    idle.retire()
    busy.retire()
    assert not is_open(idle_fd)
    assert is_open(busy_fd)  # a response still sends from it
    busy.release(busy_fd)
    assert not is_open(busy_fd)
    assert sharedfd.expire(0.0, 10.0) == 0


def test_an_entry_leaving_the_cache_closes_its_idle_fd(
    tmp_path: pathlib.Path, make_request: Callable[..., Request]
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * 1024))
    files = StaticFiles(tmp_path)
    resp = files.handle(make_request(b"/big.bin"), now=0.0)
    assert isinstance(resp.body, FileRegion)
    fd = resp.body.fd
    resp.body.release()
    assert is_open(fd)  # idle, for the next download
    cache: FileCache = files.cache
    cache.drop(b"/big.bin")
    assert not is_open(fd)
