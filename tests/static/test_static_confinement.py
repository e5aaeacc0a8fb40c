"""Pins for two mutations a mutation run found uncaught (issue 19), without sockets:

- the docroot check must compare against ``root + os.sep``: a plain prefix check lets a
  symlink reach a *sibling* of the root whose name starts with the root's name
  (``www`` / ``www-private``);
- the cache's file identity must include ctime: a file rewritten in place with its mtime
  put back, or chmod-ed, changes nothing else that ``stat`` shows.

tests/server/test_server_mutations.py checks the same over the wire in every mode.
"""

from __future__ import annotations

import errno
import os
import pathlib
import time

import pytest

from c10k.http.events import Request
from c10k.static import StaticFiles

SECRET = b"PRIVATE: beside the root, never below it\n"


def _get(files: StaticFiles, target: bytes, now: float = 0.0) -> tuple[int, bytes]:
    response = files.handle(Request(b"GET", target, 1, {}, True), now=now)
    body = response.body
    assert body is None or isinstance(body, bytes)
    return response.status, body or b""


@pytest.fixture
def www(tmp_path: pathlib.Path) -> pathlib.Path:
    www = tmp_path / "www"
    private = tmp_path / "www-private"
    (www / "sub").mkdir(parents=True)
    private.mkdir()
    (private / "secret.txt").write_bytes(SECRET)
    (www / "sub" / "small.txt").write_bytes(b"small\n")
    (www / "leak.txt").symlink_to("../www-private/secret.txt")
    (www / "leakdir").symlink_to("../www-private")
    (www / "inside.txt").symlink_to("sub/small.txt")
    return www


@pytest.mark.parametrize("target", [b"/leak.txt", b"/leakdir/secret.txt", b"/leakdir/"])
def test_confinement_symlink_to_root_name_prefixed_sibling_403(
    www: pathlib.Path, target: bytes
) -> None:
    # Same answer as any symlink leading out (test_server_contract: /escape.txt -> 403).
    status, body = _get(StaticFiles(www, autoindex=True), target)
    assert status == 403
    assert SECRET not in body


def test_confinement_symlink_inside_root_served(www: pathlib.Path) -> None:
    assert _get(StaticFiles(www), b"/inside.txt") == (200, b"small\n")


@pytest.mark.parametrize("target", [b"/sub%2Fsmall.txt", b"/sub%2fsmall.txt", b"/sub%5csmall.txt"])
def test_confinement_encoded_separator_404(www: pathlib.Path, target: bytes) -> None:
    assert _get(StaticFiles(www), b"/sub/small.txt")[0] == 200  # the file is there
    assert _get(StaticFiles(www), target)[0] == 404


def _ctime_changes(path: pathlib.Path, change: object) -> None:
    # Run ``change`` until the file's ctime really moved: it is stamped from a coarse clock
    # (a jiffy or so), and a change within the same tick as the last one would leave it
    # equal, so that the test would prove nothing.
    before = path.stat().st_ctime_ns
    for _ in range(200):
        change()  # type: ignore[operator]
        if path.stat().st_ctime_ns != before:
            return
        time.sleep(0.005)
    raise AssertionError("ctime never changed")


def rewrite_in_place(path: pathlib.Path, content: bytes) -> None:
    """New bytes, same inode, same size, same mtime: only ctime tells."""
    st = path.stat()
    assert len(content) == st.st_size

    def change() -> None:
        with path.open("r+b") as f:
            f.write(content)
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))

    _ctime_changes(path, change)
    after = path.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )


def make_unreadable(path: pathlib.Path) -> None:
    """chmod 000 (ctime moves; nothing else does)."""
    _ctime_changes(path, lambda: path.chmod(0))


def test_confinement_cache_notices_rewrite_in_place(www: pathlib.Path) -> None:
    page = www / "page.txt"
    page.write_bytes(b"version 1\n")
    files = StaticFiles(www, revalidate_seconds=1.0)
    assert _get(files, b"/page.txt", now=0.0) == (200, b"version 1\n")
    rewrite_in_place(page, b"version 2\n")
    assert _get(files, b"/page.txt", now=0.5) == (200, b"version 1\n")  # trusted for 1 s
    assert _get(files, b"/page.txt", now=1.5) == (200, b"version 2\n")


def test_confinement_cache_notices_chmod(
    www: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = www / "page.txt"
    page.write_bytes(b"readable\n")
    real_open = os.open

    def open_as_non_root(path: str, flags: int, *args: int) -> int:
        # What open(2) does for a process without CAP_DAC_OVERRIDE (tests here may run as
        # root, which reads a mode-000 file anyway).
        if not os.stat(path).st_mode & 0o444:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", open_as_non_root)
    files = StaticFiles(www, revalidate_seconds=1.0)
    assert _get(files, b"/page.txt", now=0.0) == (200, b"readable\n")
    make_unreadable(page)
    try:
        assert _get(files, b"/page.txt", now=1.5)[0] == 403
    finally:
        page.chmod(0o644)
    assert _get(files, b"/page.txt", now=3.0) == (200, b"readable\n")
