"""slowfs: a real slow disk for tests (issue 15). A read-only FUSE mirror of a directory whose
reads of chosen files wait for a gate the test opens, and then sleep a fixed delay.

Theory of operation
-------------------
A cold ``read()``/``sendfile()`` blocks its thread until the disk answers. A mock cannot
show what that does to an event loop: the loop must really sit in the kernel, inside
``sendfile``, waiting for a page. So the disk here is a FUSE filesystem: the kernel turns
every page-cache miss on the mount into a READ request to this process, and the server's
thread waits in the kernel until we answer it.

- **Files** are mirrored read-only from SOURCE (getattr, readdir, open, read, release,
  readlink, statfs). Writes, creates and renames fail with EROFS: nothing can be written.
- **Slow files** are those whose path (relative to the mount, e.g. ``big0.bin``) matches
  one of the ``--slow`` globs (fnmatch). A read of a slow file first waits for the gate
  (while it is closed), then sleeps ``--delay`` seconds (e.g. 0.05: a busy disk), then
  ``pread``s the source. Other files are answered at once.
- **Cold.** libfuse's high-level API opens files without ``kernel_cache``/``auto_cache``,
  so the kernel gets no FOPEN_KEEP_CACHE and drops the inode's cached pages at each
  open: the first open by a new server reads from us. We do not use ``direct_io``: the
  kernel keeps its page cache and readahead, and ``sendfile`` works as on a real disk (a
  file the server sent once stays cached while it holds the fd, as on ext4). The test
  side (``SlowFS.drop_cache``) also calls ``posix_fadvise(DONTNEED)`` through the mount;
  ``stats`` counts the bytes we served, so a test can check that a download really came
  from this "disk" and not from the cache.
- **Control**, from the test: a Unix socket (``--control PATH``); one line per command,
  one JSON line back, one connection per command:
  ``close [N]`` / ``open`` (the gate; ``close N`` lets N more reads of slow files through
  first, so a download can be stopped in its middle), ``delay SECONDS``, ``slow GLOB...``
  (replaces the set),
  ``stats`` (``reads``: reads of slow files served, ``bytes``: their bytes, ``waiting``:
  reads blocked at the gate now, ``per_file``: bytes served per path). Every reply holds
  the stats.
- **Threads.** libfuse runs multithreaded (no ``-s``): a read waiting at the gate holds
  one libfuse worker thread (it waits on a Condition, without the GIL), and getattr,
  open, and reads of other files go on in the others. The control socket has a thread of
  its own, started in ``init`` (after the mount, as mfusepy asks).

The binding: ``mfusepy`` (PyPI, ISC), the maintained fork of fusepy (fusepy's last release
is from 2018): pure Python over ctypes, so it installs without a compiler, and it loads
libfuse 3 (Debian ``libfuse3-3``) or libfuse 2. pyfuse3 and llfuse are Cython extensions
built against libfuse's headers (a compiler and ``libfuse3-dev`` in CI) and pyfuse3 also
needs trio; speaking the /dev/fuse protocol ourselves over ctypes would be a few hundred
lines of kernel ABI to get right. We ask for libfuse 3 by name (FUSE_LIBRARY_NAME, read by
mfusepy) so the same library is used whether or not libfuse2 is also installed.

Run as a program (the test's fixture does, through ``SlowFS.start``):
``python slowfs.py SOURCE MOUNTPOINT --control SOCK [--slow GLOB]... [--delay S] [--closed]``.
It mounts in the foreground and returns when the mount is unmounted (``fusermount3 -u``);
``SlowFS.stop`` does that, ends the process by its PID if it lingers, and never leaves a
mount behind.
"""

from __future__ import annotations

import argparse
import errno
import fnmatch
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

# -- The filesystem (runs in its own process) --------------------------------------------


class Gate:
    """Which files are slow, whether their reads may proceed, and what was served."""

    def __init__(self, slow: list[str], delay: float, closed: bool) -> None:
        self.cond = threading.Condition()
        self.slow = list(slow)
        self.delay = delay
        self.open = not closed
        self.allowance = 0  # reads that may still pass the closed gate
        self.reads = 0  # reads of slow files served
        self.bytes = 0
        self.waiting = 0  # reads of slow files blocked at the gate now
        self.per_file: dict[str, int] = {}

    def is_slow(self, rel: str) -> bool:
        return any(fnmatch.fnmatchcase(rel, pattern) for pattern in self.slow)

    def before_read(self, rel: str) -> None:
        with self.cond:
            if not self.is_slow(rel):
                return
            self.waiting += 1
            try:
                while not self.open and self.allowance <= 0:
                    self.cond.wait()
            finally:
                self.waiting -= 1
            if not self.open:
                self.allowance -= 1
            delay = self.delay
        if delay > 0:
            time.sleep(delay)

    def served(self, rel: str, n: int) -> None:
        with self.cond:
            if self.is_slow(rel):
                self.reads += 1
                self.bytes += n
                self.per_file[rel] = self.per_file.get(rel, 0) + n

    def stats(self) -> dict[str, Any]:
        with self.cond:
            return {
                "open": self.open,
                "delay": self.delay,
                "slow": self.slow,
                "reads": self.reads,
                "bytes": self.bytes,
                "waiting": self.waiting,
                "allowance": self.allowance,
                "per_file": dict(self.per_file),
            }

    def command(self, line: str) -> dict[str, Any]:
        words = line.split()
        verb, args = (words[0], words[1:]) if words else ("stats", [])
        with self.cond:
            if verb == "open":
                self.open = True
                self.cond.notify_all()
            elif verb == "close":
                self.open = False
                self.allowance = int(args[0]) if args else 0
            elif verb == "delay":
                self.delay = float(args[0])
            elif verb == "slow":
                self.slow = args
            elif verb != "stats":
                return {"error": f"unknown command {verb!r}"}
        return self.stats()


def serve_control(path: str, gate: Gate) -> None:
    """Answer control commands on a Unix socket, one per connection, forever (daemon)."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path + ".tmp")
    os.rename(path + ".tmp", path)  # the path appears only once it accepts
    srv.listen(16)
    while True:
        conn, _ = srv.accept()
        with conn:
            conn.settimeout(5)
            data = b""
            try:
                while not data.endswith(b"\n"):
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                reply = gate.command(data.decode())
                conn.sendall(json.dumps(reply).encode() + b"\n")
            except (OSError, ValueError, IndexError) as exc:
                try:
                    conn.sendall(json.dumps({"error": repr(exc)}).encode() + b"\n")
                except OSError:
                    pass


def make_operations(source: str, gate: Gate, control: str) -> Any:
    import mfusepy

    def real(path: str) -> str:
        return os.path.join(source, path.lstrip("/"))

    def oserror(exc: OSError) -> mfusepy.FuseOSError:
        return mfusepy.FuseOSError(exc.errno or errno.EIO)

    class SlowMirror(mfusepy.Operations):  # type: ignore[misc]
        use_ns = True  # st_*time in ns, as mfusepy asks of new filesystems

        def init(self, path: str) -> None:
            threading.Thread(target=serve_control, args=(control, gate), daemon=True).start()

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            try:
                st = os.lstat(real(path))
            except OSError as exc:
                raise oserror(exc) from None
            attrs = {
                key: getattr(st, key)
                for key in ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino")
            }
            attrs["st_mode"] &= ~0o222  # read-only
            for key in ("st_atime", "st_mtime", "st_ctime"):
                attrs[key] = getattr(st, key + "_ns")
            return attrs

        def readdir(self, path: str, fh: int) -> list[str]:
            try:
                return [".", "..", *os.listdir(real(path))]
            except OSError as exc:
                raise oserror(exc) from None

        def readlink(self, path: str) -> str:
            try:
                return os.readlink(real(path))
            except OSError as exc:
                raise oserror(exc) from None

        def open(self, path: str, flags: int) -> int:
            if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
                raise mfusepy.FuseOSError(errno.EROFS)
            try:
                return os.open(real(path), os.O_RDONLY)
            except OSError as exc:
                raise oserror(exc) from None

        def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
            rel = path.lstrip("/")
            gate.before_read(rel)
            data = os.pread(fh, size, offset)
            gate.served(rel, len(data))
            return data

        def release(self, path: str, fh: int) -> int:
            os.close(fh)
            return 0

        def statfs(self, path: str) -> dict[str, int]:
            sv = os.statvfs(source)
            return {
                key: getattr(sv, key)
                for key in (
                    "f_bsize",
                    "f_frsize",
                    "f_blocks",
                    "f_bfree",
                    "f_bavail",
                    "f_files",
                    "f_ffree",
                    "f_namemax",
                )
            }

    return SlowMirror()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source")
    ap.add_argument("mountpoint")
    ap.add_argument("--control", required=True, help="Unix socket path for commands")
    ap.add_argument("--slow", action="append", default=[], help="glob of slow files")
    ap.add_argument("--delay", type=float, default=0.0, help="seconds per read of a slow file")
    ap.add_argument("--closed", action="store_true", help="start with the gate closed")
    args = ap.parse_args(argv)
    os.environ.setdefault("FUSE_LIBRARY_NAME", "fuse3")
    import mfusepy

    gate = Gate(args.slow, args.delay, args.closed)
    ops = make_operations(os.path.realpath(args.source), gate, args.control)
    mfusepy.FUSE(
        ops,
        args.mountpoint,
        foreground=True,
        ro=True,
        fsname="slowfs",
        subtype="slowfs",
    )
    return 0


# -- The test's side: start, command, stop ------------------------------------------------


def _mounted(mountpoint: Path) -> bool:
    # From /proc, not stat(): a stat of a hung FUSE mount would hang too.
    target = os.fsencode(str(mountpoint)).replace(b" ", b"\\040")
    with open("/proc/self/mountinfo", "rb") as f:
        return any(line.split()[4] == target for line in f)


def fuse_unavailable() -> str | None:
    """Why a slowfs cannot be mounted here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if os.geteuid() != 0 and shutil.which("fusermount3") is None:
        return "not root and no fusermount3 (Debian package fuse3)"
    import importlib.util

    if importlib.util.find_spec("mfusepy") is None:
        return "pip install mfusepy (the test extra)"
    from ctypes.util import find_library

    if find_library("fuse3") is None:
        return "no libfuse 3 (Debian package libfuse3-3, or fuse3)"
    return None


class SlowFS:
    """A slowfs mounted in a child process; the test's handle on it.

    Args:
        source: the directory to mirror.
        mountpoint: an empty directory (made if missing).
        slow: globs of the slow files (paths relative to the mount).
        delay: seconds per read of a slow file.
        closed: start with the gate closed.
    """

    def __init__(
        self,
        source: Path,
        mountpoint: Path,
        slow: list[str],
        delay: float = 0.0,
        closed: bool = False,
    ) -> None:
        self.source = source
        self.mountpoint = mountpoint
        self.control = str(mountpoint.parent / (mountpoint.name + ".ctl"))
        mountpoint.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, __file__, str(source), str(mountpoint), "--control"]
        argv += [self.control, "--delay", str(delay), *(["--closed"] if closed else [])]
        for pattern in slow:
            argv += ["--slow", pattern]
        # Its output goes to a file: a pipe nobody reads could fill and stall the disk.
        self.log = mountpoint.parent / (mountpoint.name + ".log")
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT
            )
        self.pid = self.proc.pid
        try:
            deadline = time.monotonic() + 15
            while not (_mounted(mountpoint) and os.path.exists(self.control)):
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"slowfs did not mount: {self._output()}")
                time.sleep(0.02)
        except BaseException:
            self.stop()
            raise

    def _output(self) -> str:
        return self.log.read_bytes().decode(errors="replace")[-2000:]

    def command(self, line: str) -> dict[str, Any]:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(self.control)
            s.sendall(line.encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        reply: dict[str, Any] = json.loads(data)
        if "error" in reply:
            raise RuntimeError(f"slowfs {line!r}: {reply['error']}")
        return reply

    def open_gate(self) -> dict[str, Any]:
        return self.command("open")

    def close_gate(self) -> dict[str, Any]:
        return self.command("close")

    def stats(self) -> dict[str, Any]:
        return self.command("stats")

    def wait_waiting(self, n: int = 1, timeout: float = 10.0) -> bool:
        """Wait until at least ``n`` reads are blocked at the gate."""
        deadline = time.monotonic() + timeout
        while self.stats()["waiting"] < n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    def drop_cache(self, rel: str) -> None:
        """Drop the kernel's cached pages of a file on the mount (the next read is cold)."""
        fd = os.open(self.mountpoint / rel, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)

    def stop(self) -> None:
        """Open the gate, unmount, end the process (by its PID); never leaves a mount."""
        if self.proc.poll() is None and os.path.exists(self.control):
            try:
                self.open_gate()
            except (OSError, ValueError, RuntimeError):
                pass
        umount = shutil.which("fusermount3") or shutil.which("fusermount")
        for cmd in (
            [umount, "-u", "-q", str(self.mountpoint)] if umount else None,
            ["umount", str(self.mountpoint)],
        ):
            if cmd is None or not _mounted(self.mountpoint):
                continue
            subprocess.run(cmd, capture_output=True, timeout=10, check=False)
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # this process only, by its PID
            self.proc.wait(timeout=5)
        if _mounted(self.mountpoint):
            # The filesystem is gone; a lazy unmount detaches what a busy user still holds.
            subprocess.run(
                ["umount", "-l", str(self.mountpoint)], capture_output=True, timeout=10, check=False
            )
        assert not _mounted(self.mountpoint), f"{self.mountpoint} still mounted"

    def __enter__(self) -> SlowFS:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
