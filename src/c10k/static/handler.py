"""StaticFiles: a parsed request in, a Response out. No sockets, no event loop, no clock.

Theory of operation
-------------------
``handle()`` has two paths, and the fast one is only a shortcut through the slow one:

- **Hot path** (nginx ``open_file_cache`` hit, lwan's in-memory small-file strategy):
  look the raw request-target up in the cache, check the entry is inside its trust
  period, check the request carries no conditional header, and return the pre-rendered
  GET or HEAD ``Response``: the very same object every time, so the server's per-object
  wire-bytes memo hits too. No decoding, no syscalls, no allocation. A target with a
  query string simply misses here (cache keys never contain ``?``) and is looked up
  again by its path on the slow path, still without decoding.
- **Slow path**: everything else. Method check, split off the query, cache lookup by raw
  path with revalidation (``cache.py``), conditional requests (``conditional.py``),
  per-request ``open`` of large files, and on a miss the full resolution:

    1. ``resolve.decode_path``: percent-decode once per segment, normalise, refuse
       traversal and dot-names (lexical safety).
    2. ``os.path.realpath`` must stay inside the real root (tornado
       ``validate_absolute_path``): catches symlinks leading out. Symlinks that stay
       inside are fine.
    3. ``stat`` *before* ``open``: only regular files are ever opened. Opening a FIFO
       blocks until a writer shows up (O_NONBLOCK avoids that for readers, but it is
       still not a file), and opening some devices has side effects (tape rewind,
       ``/dev/watchdog``), so the type check cannot wait for ``fstat``.
    4. ``open(O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_NOCTTY|O_NOFOLLOW)`` then ``fstat`` the fd
       and require the same (dev, ino) regular file the ``stat`` saw. From here on the
       fd, not the path, is the truth: size, mtime and ETag come from ``fstat``.
       ``O_NOFOLLOW`` is cheap insurance: ``realpath`` just resolved every link, so a
       symlink in the last component now means it was swapped in meanwhile.
    5. Small files are read whole and cached with their three pre-rendered responses;
       large ones get a ``FileRegion(fd, 0, size, closer=os.close)`` that whoever sends
       it releases. A HEAD never leaves an fd open.

Errors map to statuses by errno (``ERRNO_STATUS``). Error pages are the generic ones from
``error_response`` and never name a filesystem path; the common ones are rendered once
and returned by identity like cached files.

One StaticFiles per event loop: the cache is not locked, so a thread-pool backend that
calls ``handle`` from several threads needs one instance per thread (or a lock around it).

Known races, accepted: between ``realpath`` and ``open`` someone with write access to the
docroot can swap a directory for a symlink (the fix is ``openat2(RESOLVE_BENEATH)``,
Linux 5.6+, not in the stdlib). A regular file atomically renamed over between ``stat``
and ``open`` gets one 404 (the (dev, ino) check); the next request finds the new file.
"""

from __future__ import annotations

import errno
import os
import stat

from c10k.http.errors import LocalProtocolError
from c10k.http.events import Request
from c10k.http.writers import Response, build_response, error_response
from c10k.region import FileRegion
from c10k.static.cache import CacheEntry, FileCache, file_ident
from c10k.static.conditional import is_not_modified
from c10k.static.mime import content_type
from c10k.static.resolve import ResolveError, decode_path, encode_path, split_target

# O_NONBLOCK: never block the loop in open(2) (FIFOs, some network filesystems).
# O_CLOEXEC: a prefork master or a CGI-ish child must not inherit request fds.
# O_NOCTTY: opening a tty must not make it our controlling terminal (belt and braces:
#   ttys are refused by the S_ISREG check before we get here).
OPEN_FLAGS = (
    os.O_RDONLY
    | os.O_NONBLOCK
    | os.O_CLOEXEC
    | getattr(os, "O_NOCTTY", 0)
    | getattr(os, "O_NOFOLLOW", 0)
)

# errno -> status. Missing or unreachable -> 404; not allowed -> 403 (nginx does the same
# in ngx_http_static_handler). Out of fds or memory -> 503: the condition is temporary and
# 503 tells clients and balancers to retry elsewhere (nginx answers 500 here). Anything
# else -> 500.
ERRNO_STATUS: dict[int, int] = {
    errno.ENOENT: 404,
    errno.ENOTDIR: 404,
    errno.ELOOP: 404,  # symlink loop, or O_NOFOLLOW met a link swapped in after realpath
    errno.ENAMETOOLONG: 404,
    errno.EACCES: 403,
    errno.EPERM: 403,
    errno.EMFILE: 503,
    errno.ENFILE: 503,
    errno.ENOMEM: 503,
    errno.EAGAIN: 503,
}

_METHOD_NOT_ALLOWED_FIELDS = [(b"Allow", b"GET, HEAD")]

# Error statuses this handler produces; rendered once per StaticFiles.
_ERROR_STATUSES = (400, 403, 404, 500, 503)


def _status_for(exc: OSError) -> int:
    return ERRNO_STATUS.get(exc.errno or 0, 500)


def _read_all(fd: int, size: int) -> bytes:
    # A regular file returns everything in one read() in practice; loop anyway, and stop
    # at EOF if the file shrank after fstat (Content-Length follows what was read).
    data = os.read(fd, size) if size else b""
    if len(data) == size or not data:
        return data
    chunks = [data]
    remaining = size - len(data)
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


class StaticFiles:
    """Serve files below a directory: GET and HEAD, conditional requests, an open-file cache.

    Args:
        root: the document root. Resolved with ``realpath`` once, here.
        index: the file served for a URL ending in ``/`` (a plain name, no slashes).
        serve_dotfiles: serve names starting with ``.`` (``.git``, ``.env``); off by default.
        cache_max_file_bytes: files up to this size are served from memory (lwan's
            ``MMAP_SIZE_THRESHOLD`` is 16 KiB); larger ones as a ``FileRegion``.
        cache_max_total_bytes: bound on the cache, content plus bookkeeping.
        revalidate_seconds: how long a cache entry is trusted before the next request
            re-stats the file (nginx ``open_file_cache_valid``).

    Raises:
        NotADirectoryError: ``root`` is not a directory (or does not exist).
        ValueError: ``index`` is not a plain file name, or a limit is negative.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        index: str = "index.html",
        serve_dotfiles: bool = False,
        cache_max_file_bytes: int = 16 * 1024,
        cache_max_total_bytes: int = 64 * 1024 * 1024,
        revalidate_seconds: float = 1.0,
    ) -> None:
        real_root = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real_root):
            raise NotADirectoryError(errno.ENOTDIR, "static root is not a directory", real_root)
        if not index or index in (".", "..") or any(c in index for c in "/\\\x00"):
            raise ValueError(f"index must be a plain file name, got {index!r}")
        if cache_max_file_bytes < 0 or cache_max_total_bytes < 0 or revalidate_seconds < 0:
            raise ValueError("cache limits and revalidate_seconds must be >= 0")
        self._root = real_root
        # realpath("/") is "/", which already ends in the separator.
        self._root_prefix = real_root if real_root.endswith(os.sep) else real_root + os.sep
        self._index = index
        self._serve_dotfiles = serve_dotfiles
        self._max_file_bytes = cache_max_file_bytes
        self._revalidate_seconds = float(revalidate_seconds)
        self._cache = FileCache(cache_max_total_bytes)
        # Hoisted for the hot path: one bound-method call instead of two attribute loads.
        self._lookup = self._cache.entries.get
        self._errors_get = {status: error_response(status) for status in _ERROR_STATUSES}
        self._errors_head = {
            status: Response(status, r.head, None) for status, r in self._errors_get.items()
        }
        self._method_not_allowed = error_response(405, _METHOD_NOT_ALLOWED_FIELDS)

    @property
    def root(self) -> str:
        """The real (symlink-resolved) document root."""
        return self._root

    @property
    def cache(self) -> FileCache:
        """The open-file cache (read it for stats; the handler owns its contents)."""
        return self._cache

    def handle(self, request: Request, now: float) -> Response:
        """Answer one request.

        The returned Response must not be mutated: cached ones are returned again to later
        requests. A ``FileRegion`` body owns an open fd; whoever sends it (or drops the
        response) must call its ``release()`` exactly once.

        Args:
            request: a parsed request head; only GET and HEAD are served.
            now: a monotonic clock reading, used only to time cache revalidation.

        Returns:
            The response: 200 with ``bytes`` or ``FileRegion`` body (``None`` for HEAD),
            304, 301 to the slash-terminated directory URL, or an error page.
        """
        entry = self._lookup(request.target)
        if entry is not None and now - entry.checked < self._revalidate_seconds:
            headers = request.headers
            if b"if-none-match" not in headers and b"if-modified-since" not in headers:
                method = request.method
                if method == b"GET":
                    response = entry.get_response
                    if response is not None:
                        return response
                elif method == b"HEAD":
                    return entry.head_response
        return self._handle_slow(request, now)

    def _handle_slow(self, request: Request, now: float) -> Response:
        method = request.method
        if method == b"GET":
            head = False
        elif method == b"HEAD":
            head = True
        else:
            # The server answers other methods itself; this is the defensive fallback.
            return self._method_not_allowed

        raw_path, query = split_target(request.target)
        cache = self._cache
        entry = self._lookup(raw_path)
        if (
            entry is not None
            and now - entry.checked >= self._revalidate_seconds
            and not cache.revalidate(raw_path, entry, now)
        ):
            entry = None

        fd = -1
        if entry is not None and not head and entry.get_response is None:
            # Large file, cached resolution: open it for this response, and let fstat
            # catch a change that revalidation has not seen yet.
            fd = self._reopen(entry)
            if fd < 0:
                cache.drop(raw_path)
                entry = None
        if entry is None:
            loaded = self._load(raw_path, query, head, now)
            if isinstance(loaded, Response):
                return loaded
            entry, fd = loaded

        headers = request.headers
        if (b"if-none-match" in headers or b"if-modified-since" in headers) and is_not_modified(
            headers, entry.etag, entry.mtime_seconds
        ):
            response = entry.not_modified
        elif head:
            response = entry.head_response
        elif entry.get_response is not None:
            response = entry.get_response
        else:
            # Same head as HEAD: pre-rendered once per entry, only the body is new.
            region = FileRegion(fd, 0, entry.size, os.close)
            return Response(200, entry.head_response.head, region)
        if fd >= 0:
            os.close(fd)
        return response

    def _error(self, status: int, head: bool) -> Response:
        table = self._errors_head if head else self._errors_get
        response = table.get(status)
        if response is None:
            response = error_response(status)
            if head:
                response = Response(status, response.head, None)
        return response

    def _inside_root(self, real: str) -> bool:
        return real == self._root or real.startswith(self._root_prefix)

    def _reopen(self, entry: CacheEntry) -> int:
        # Open a cached large file; -1 if it is gone, unreadable or no longer the same
        # file (the caller then drops the entry and resolves from scratch).
        try:
            fd = os.open(entry.real, OPEN_FLAGS)
        except OSError:
            return -1
        try:
            st = os.fstat(fd)
            if stat.S_ISREG(st.st_mode) and file_ident(st) == entry.ident:
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return -1

    def _redirect(self, segments: list[str], query: bytes | None, head: bool) -> Response:
        # RFC 9110 section 15.4.2. Built from the normalised segments, never from the raw
        # target, so "//evil.example" cannot become a protocol-relative Location.
        location = encode_path(segments, trailing_slash=True)
        if query is not None:
            location += b"?" + query
        try:
            response = build_response(301, [(b"Location", location)], b"")
        except LocalProtocolError:
            return self._error(400, head)  # CR/LF/NUL in the query: the parser let it by
        return Response(301, response.head, None) if head else response

    def _load(
        self, raw_path: bytes, query: bytes | None, head: bool, now: float
    ) -> Response | tuple[CacheEntry, int]:
        # The miss path: resolve, check, open, and build (and cache) an entry. Returns the
        # entry plus an fd that is open only for a large file (-1 otherwise), or the
        # response to send instead (error or redirect).
        try:
            segments = decode_path(raw_path, self._serve_dotfiles)
        except ResolveError as exc:
            return self._error(exc.status, head)

        path = os.path.join(self._root, *segments)
        real = os.path.realpath(path)
        if not self._inside_root(real):
            return self._error(403, head)
        try:
            st = os.stat(real)
        except OSError as exc:
            return self._error(_status_for(exc), head)

        if stat.S_ISDIR(st.st_mode):
            if not raw_path.endswith(b"/"):
                return self._redirect(segments, query, head)
            path = os.path.join(path, self._index)
            real = os.path.realpath(path)
            if not self._inside_root(real):
                return self._error(403, head)
            try:
                st = os.stat(real)
            except OSError as exc:
                # No index: 404 until directory listings exist.
                return self._error(_status_for(exc), head)
        elif raw_path.endswith(b"/"):
            # "/file.txt/" asks for a directory; open(2) would say ENOTDIR too (nginx: 404).
            return self._error(404, head)
        if not stat.S_ISREG(st.st_mode):
            return self._error(404, head)  # directory-as-index, FIFO, socket, device

        try:
            fd = os.open(real, OPEN_FLAGS)
        except OSError as exc:
            return self._error(_status_for(exc), head)
        content: bytes | None = None
        try:
            fst = os.fstat(fd)
            same_file = stat.S_ISREG(fst.st_mode) and (fst.st_dev, fst.st_ino) == (
                st.st_dev,
                st.st_ino,
            )
            small = fst.st_size <= self._max_file_bytes
            if same_file and small:
                content = _read_all(fd, fst.st_size)
        except OSError as exc:
            os.close(fd)
            return self._error(_status_for(exc), head)
        except BaseException:
            os.close(fd)
            raise
        if not same_file:
            os.close(fd)
            return self._error(404, head)
        if small:
            os.close(fd)
            fd = -1

        entry = CacheEntry(path, real, fst, content, content_type(path), now)
        self._cache.put(raw_path, entry)
        return entry, fd
