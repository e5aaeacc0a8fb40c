"""StaticFiles: a parsed request in, a Response out. No sockets, no event loop, no clock.

Theory of operation
-------------------
Three entry points, each a shortcut through the next:

- **Hot path** (``handle``, first lines; nginx ``open_file_cache`` hit, lwan's in-memory
  small-file strategy): look the raw request-target up in the cache, check the entry is
  inside its trust period and the request carries none of the fields that change the
  answer (conditionals, Range: one ``frozenset.isdisjoint`` call), and return the
  pre-rendered GET or HEAD ``Response``: the very same object every time, so the server's
  per-object wire-bytes memo hits too. No decoding, no syscalls, no allocation. Files
  with precompressed siblings skip this (the answer depends on Accept-Encoding).
- **Memory path** (``handle_fast``, for the event loop): everything that can be answered
  without a filesystem call: a cached entry in its trust period with any conditional,
  Range or Accept-Encoding (304, 412, 416, 206 of a small file, the chosen encoding), or
  an error that follows from the request alone (405, a malformed path -> 400, traversal
  or dotfile -> 404). Otherwise it returns None and the server calls ``handle`` in a
  worker thread (the C10K page's note on Flash's AMPED architecture: helper threads for
  disk I/O so a cold file never stalls the sockets).
- **Slow path** (``handle``, the rest): revalidation (``cache.py``), per-request ``open``
  of large files, and on a miss the full resolution:

    1. ``resolve.decode_path``: percent-decode once per segment, normalise, refuse
       traversal and dot-names (lexical safety).
    2. ``realpath`` must stay inside the real root (tornado ``validate_absolute_path``):
       catches symlinks leading out. Symlinks that stay inside are fine.
    3. ``stat`` *before* ``open``: only regular files are ever opened. Opening a FIFO
       blocks until a writer shows up (O_NONBLOCK avoids that for readers, but it is
       still not a file), and opening some devices has side effects (tape rewind,
       ``/dev/watchdog``), so the type check cannot wait for ``fstat``.
    4. ``open(O_RDONLY|O_NONBLOCK|O_CLOEXEC|O_NOCTTY|O_NOFOLLOW)`` then ``fstat`` the fd
       and require the same (dev, ino) regular file the ``stat`` saw. From here on the
       fd, not the path, is the truth: size, mtime and ETag come from ``fstat``.
    5. Small files are read whole and cached with their pre-rendered responses; large
       ones are cached as a resolution and opened (and ``fstat``-checked) when a GET
       finds no response of that version under way; responses under way at once share
       the fd (``sharedfd.py``), each in a ``FileRegion`` of its own that whoever sends
       it releases, the last release closing it. A HEAD never leaves an fd open.
    6. With ``precompressed``, the same for ``x.br`` and ``x.gz`` (see ``_sibling``).
    7. A directory without index: a listing (``autoindex``), never cached; with
       listings off, a 404 whose page hints at ``--autoindex``.

Answering, for the representation chosen by Accept-Encoding (``encoding.py``), in the
order of RFC 9110 section 13.2.2: preconditions (``conditional.evaluate``: 412, 304),
then HEAD, then Range (``ranges.py``; GET only, gated by If-Range), then the 200. Every
response for a file with a sibling carries ``Vary: Accept-Encoding``, 304s included.
Cached Responses are never mutated; 206s, 416s and large-file 200s are fresh objects.

Precompressed siblings (nginx ``gzip_static``, Caddy ``precompressed``): ``x.br`` and
``x.gz`` are used only if they are regular files whose ``realpath`` stays inside the root
(a symlinked ``x.gz`` leading out is ignored, like any other escape) and are not older
than ``x``. nginx serves a stale sibling anyway; we do not, because gzip clients would then
see different content from everyone else after an edit that forgot the ``.gz``. Equal
mtimes are fine: ``gzip -k`` and ``brotli -k`` give the output the input's mtime. Each
representation has its own ETag (the coding is a suffix) and Content-Length; all share
the original's Content-Type. Ranges apply to the encoded bytes; a multi-range request on
an encoded representation gets the whole representation (each part would need its own
Content-Encoding, which no client decodes).

On-the-fly compression (issue 16; ``compress.py``): a compressible file of 1 KiB to 8 MiB
is read whole once per version in the disk pool, gzipped (and brotli-encoded when that
package is installed), and the encodings become representations of the entry like
siblings (``derived``), so negotiation, 304s, HEAD and the hot path treat them alike; a
file with precompressed siblings is served from those alone. Their ETag is the file's
with the coding and level as a suffix (``"...-gzip6"``). A Range request gets the
identity representation instead (still with ``Vary``): the encoded bytes are ours, not
the file's, so a range of them names bytes that exist nowhere on disk. Another worker, a
restart with another zlib or brotli version could encode the file differently under a
tag that only names the file and the level, and a client resuming a download across the
two would stitch a corrupt body; identity offsets are stable as long as the file is.
Range clients (download managers, media players) want file offsets anyway.

Cache-Control per suffix, and Expires when it has ``max-age``. Expires is absolute, so it
is rendered when an entry is built and re-rendered each time the entry is revalidated:
it lags Date + max-age by at most ``revalidate_seconds`` (1 s), i.e. an HTTP/1.0 cache
sees the response expire up to a second early, never late. HTTP/1.1 caches use max-age
and ignore Expires (RFC 9111 section 5.3).

Threads. ``handle`` and ``handle_fast`` may run concurrently from the loop and pool
threads. The cache is mutated only under its lock (``cache.FileCache``); entries and
Responses are immutable once published, so readers need no lock and the hot path stays
two dict lookups. Every filesystem call goes through ``fsio`` (one module-level
``delay_hook``), which is how tests slow a file down or prove ``handle_fast`` never
touches the disk.

Operator pages and headers (issue 16): with ``fallback``, ``_load`` answers a path that
does not exist with a 404 object of its own (``_missing``), which ``_load_or_fallback``
swaps for the fallback file's entry, so refusals (their 404s are other objects) are never
turned into 200s and the fallback gets preconditions and ranges like any file. With
``error_pages``, ``_respond`` gives every error it made to ``_with_page``, which loads the
page with the plain resolver (no loop). Both are in ``pages.py``; added header fields
(``headers.py``) are rendered into each entry's responses in ``_extra_fields``.

Errors map to statuses by errno (``ERRNO_STATUS``). Error pages are the generic ones from
``error_response`` and never name a filesystem path; the common ones are rendered once
and returned by identity like cached files.

Known races, accepted: between ``realpath`` and ``open`` someone with write access to the
docroot can swap a directory for a symlink (the fix is ``openat2(RESOLVE_BENEATH)``,
Linux 5.6+, not in the stdlib). A regular file atomically renamed over between ``stat``
and ``open`` gets one 404 (the (dev, ino) check); the next request finds the new file.
"""

from __future__ import annotations

import errno
import functools
import math
import os
import re
import secrets
import stat
import time
from collections.abc import Callable, Iterable, Mapping

from c10k.http.errors import LocalProtocolError
from c10k.http.events import Request
from c10k.http.writers import Body, Response, build_response, error_response, http_date
from c10k.region import FileRegion
from c10k.static import fsio
from c10k.static.autoindex import Item, listable, no_index_page, render
from c10k.static.cache import CacheEntry, FileCache, Ident, file_ident
from c10k.static.compress import (
    DEFAULT_LEVEL,
    DEFAULT_MAX_BYTES,
    DEFAULT_MIN_BYTES,
    Compressor,
    Encoded,
)
from c10k.static.conditional import evaluate, if_range_matches
from c10k.static.encoding import SIBLINGS, choose_encoding
from c10k.static.headers import HeaderRules
from c10k.static.mime import build_types, content_type
from c10k.static.pages import ErrorPages, page_problem
from c10k.static.ranges import (
    MAX_RANGES,
    Ranges,
    content_range,
    parse_range,
    unsatisfied_range,
)
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
_ERROR_STATUSES = (400, 403, 404, 412, 500, 503)

# Request fields that make a cached 200 the wrong answer. The hot path checks them with
# one C call (``frozenset.isdisjoint`` walks the request's few header names).
_SPECIAL = frozenset(
    {b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since", b"range"}
)
_PRECONDITIONS = frozenset(
    {b"if-none-match", b"if-modified-since", b"if-match", b"if-unmodified-since"}
)

# Cache-Control max-age (RFC 9111 section 5.2.2.1), for the matching Expires.
_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*\"?(\d{1,10})\"?\s*(?:,|$)", re.IGNORECASE)

# Accept-Encoding value -> chosen coding, per tuple of available codings. Browsers send a
# handful of distinct strings; cleared when full so a client cannot grow it.
_AE_MEMO_MAX = 256
# Per cache entry: Accept-Encoding values whose negotiated representation the hot path
# remembers (CacheEntry.hot_ae), and the longest value kept. Browsers send a handful of
# short strings; anything else takes the memory path, which is still syscall-free.
_HOT_AE_MAX = 8
_HOT_AE_MAX_BYTES = 128
# Sentinel for "no remembered representation" (the hot path's dict.get default).
_NO_PAIR: tuple[None, None] = (None, None)
# Runs a function off the loop (the caller's disk pool): how error_page asks for a read.
Defer = Callable[[Callable[[], None]], object]

_LISTING_TYPE = b"text/html; charset=utf-8"


def _status_for(exc: OSError) -> int:
    return ERRNO_STATUS.get(exc.errno or 0, 500)


def _read_all(fd: int, size: int) -> bytes:
    # A regular file returns everything in one read() in practice; loop anyway, and stop
    # at EOF if the file shrank after fstat (Content-Length follows what was read).
    data = fsio.read(fd, size) if size else b""
    if len(data) == size or not data:
        return data
    chunks = [data]
    remaining = size - len(data)
    while remaining > 0:
        chunk = fsio.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def max_age_of(value: str) -> int | None:
    """The max-age of a Cache-Control value, or None.

    >>> max_age_of("public, max-age=3600"), max_age_of("no-store"), max_age_of("s-max-age=1")
    (3600, None, None)
    """
    m = _MAX_AGE.search(value)
    return int(m.group(1)) if m else None


class _Loaded:
    # One representation read from disk: what CacheEntry needs, before it is built.
    __slots__ = ("content", "path", "real", "st")

    def __init__(self, path: str, real: str, st: os.stat_result, content: bytes | None) -> None:
        self.path = path
        self.real = real
        self.st = st
        self.content = content


class StaticFiles:
    """Serve files below a directory: GET and HEAD, conditional requests, byte ranges,
    precompressed siblings, directory listings, an open-file cache.

    Args:
        root: the document root. Resolved with ``realpath`` once, here.
        index: the file served for a URL ending in ``/`` (a plain name, no slashes).
        serve_dotfiles: serve names starting with ``.`` (``.git``, ``.env``); off by default.
        cache_max_file_bytes: files up to this size are served from memory (lwan's
            ``MMAP_SIZE_THRESHOLD`` is 16 KiB); larger ones as a ``FileRegion``.
        cache_max_total_bytes: bound on the cache, content plus bookkeeping.
        revalidate_seconds: how long a cache entry is trusted before the next request
            re-stats the file (nginx ``open_file_cache_valid``).
        autoindex: list a directory that has no index file (nginx ``autoindex``).
        precompressed: serve ``x.br``/``x.gz`` for ``x`` when the client accepts it
            (nginx ``gzip_static``, Caddy ``precompressed``).
        cache_control: file suffix (``".css"``, case-insensitive) -> Cache-Control value.
        cache_control_default: Cache-Control for files whose suffix is not listed.
        charset: added to textual Content-Types; ``""`` adds none.
        max_ranges: more range-specs than this in one Range field -> 200 (see ranges.py).
        fallback: URL path of the file that answers (200) a GET or HEAD for a path that
            does not exist (nginx ``try_files $uri $uri/ /index.html``; see pages.py).
        error_pages: status -> URL path of a page sent, with that status, in place of
            the built-in error page (nginx ``error_page``).
        add_headers: ``Name: value`` lines added to 200, 206, 304 and 301 responses
            (nginx ``add_header``; see headers.py).
        add_header_paths: URL path prefix -> more such lines for paths under it.
        compress: gzip (and br, with the ``brotli`` package) compressible files of
            ``compress_min_bytes`` to ``compress_max_bytes`` once per file version and
            serve the encodings from the cache (``compress.py``).
        compress_level: gzip level and brotli quality, 1-9.

    Raises:
        NotADirectoryError: ``root`` is not a directory (or does not exist).
        ValueError: ``index`` is not a plain file name, a limit is negative, a
            Cache-Control value, charset or added header cannot go into a header, or
            the fallback or an error page cannot name a file below the root (that it
            exists is for the caller to check: ``pages.page_problem``).
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
        autoindex: bool = False,
        precompressed: bool = False,
        cache_control: dict[str, str] | None = None,
        cache_control_default: str | None = None,
        charset: str = "utf-8",
        max_ranges: int = MAX_RANGES,
        fallback: str | None = None,
        error_pages: dict[int, str] | None = None,
        add_headers: Iterable[str] = (),
        add_header_paths: Mapping[str, Iterable[str]] | None = None,
        compress: bool = True,
        compress_level: int = DEFAULT_LEVEL,
        compress_min_bytes: int = DEFAULT_MIN_BYTES,
        compress_max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        real_root = os.path.realpath(os.fspath(root))
        if not os.path.isdir(real_root):
            raise NotADirectoryError(errno.ENOTDIR, "static root is not a directory", real_root)
        if not index or index in (".", "..") or any(c in index for c in "/\\\x00"):
            raise ValueError(f"index must be a plain file name, got {index!r}")
        if cache_max_file_bytes < 0 or cache_max_total_bytes < 0 or revalidate_seconds < 0:
            raise ValueError("cache limits and revalidate_seconds must be >= 0")
        if max_ranges < 0:
            raise ValueError("max_ranges must be >= 0")
        self._root = real_root
        # realpath("/") is "/", which already ends in the separator.
        self._root_prefix = real_root if real_root.endswith(os.sep) else real_root + os.sep
        self._index = index
        self._serve_dotfiles = serve_dotfiles
        self._max_file_bytes = cache_max_file_bytes
        self._revalidate_seconds = float(revalidate_seconds)
        self._autoindex = autoindex
        self._precompressed = precompressed
        self._max_ranges = max_ranges
        self._types = build_types(charset)
        self._cache_control = {
            ("." + ext.lstrip(".")).lower(): self._header_value(value)
            for ext, value in (cache_control or {}).items()
        }
        self._cache_control_default = (
            self._header_value(cache_control_default) if cache_control_default else None
        )
        # Wall clock for Expires (``now`` is monotonic); tests may replace it.
        self.wall_clock = time.time
        self._cache = FileCache(cache_max_total_bytes)
        self._ae_memo: dict[tuple[bytes, tuple[bytes, ...]], bytes | None] = {}
        # Hoisted for the hot path: one bound-method call instead of two attribute loads.
        self._lookup = self._cache.entries.get
        self._errors_get = {
            status: error_response(
                status, [(b"Retry-After", b"1")] if status == 503 else None
            )  # 503: out of fds/memory is temporary; RFC 9110 section 10.2.3
            for status in _ERROR_STATUSES
        }
        self._errors_head = {
            status: Response(status, r.head, None) for status, r in self._errors_get.items()
        }
        self._method_not_allowed = error_response(405, _METHOD_NOT_ALLOWED_FIELDS)
        # A directory without an index, listings off: a 404 that says how to get one
        # (autoindex.no_index_page). Same bytes for every directory: rendered once.
        self._no_index_get = build_response(
            404, [(b"Content-Type", _LISTING_TYPE)], no_index_page(index)
        )
        self._no_index_head = Response(404, self._no_index_get.head, None)
        self._headers = HeaderRules(add_headers, add_header_paths)
        self._init_pages(fallback, error_pages or {})
        self._compressor = (
            Compressor(compress_level, compress_min_bytes, compress_max_bytes) if compress else None
        )
        self._warm_pages()

    def _init_pages(self, fallback: str | None, error_pages: dict[int, str]) -> None:
        # Only that each can name a file below the root: c10k serve checks the files exist
        # at start and on reload; one deleted later is "gone", not a reason for a
        # restarted worker to fail (pages.py).
        for path in [*([fallback] if fallback else []), *error_pages.values()]:
            problem = page_problem(self._root, path, self._serve_dotfiles, exists=False)
            if problem:
                raise ValueError(problem)
        if any(not 400 <= status <= 599 for status in error_pages):
            raise ValueError(f"error pages are for statuses 400-599, got {sorted(error_pages)}")
        self._fallback = fallback.encode("ascii") if fallback else None
        self._pages = ErrorPages(error_pages) if error_pages else None
        # A missing file's 404 as _load returns it: distinct objects when there is a
        # fallback, so _respond can tell "no such file" from the other 404s (refusals).
        self._missing = {
            False: Response(404, self._errors_get[404].head, self._errors_get[404].body),
            True: Response(404, self._errors_head[404].head, None),
        }
        if fallback is None:
            self._missing = {False: self._errors_get[404], True: self._errors_head[404]}

    @staticmethod
    def _header_value(value: str) -> tuple[bytes, int | None]:
        try:
            raw = value.encode("ascii")
        except UnicodeEncodeError:
            raise ValueError(f"Cache-Control must be ASCII, got {value!r}") from None
        if any(c in raw for c in b"\r\n\x00") or not raw.strip():
            raise ValueError(f"Cache-Control cannot go into a header: {value!r}")
        return raw, max_age_of(value)

    @property
    def root(self) -> str:
        """The real (symlink-resolved) document root."""
        return self._root

    @property
    def cache(self) -> FileCache:
        """The open-file cache (read it for stats; the handler owns its contents)."""
        return self._cache

    def handle(self, request: Request, now: float) -> Response:
        """Answer one request. Thread-safe: pool threads may call it concurrently.

        The returned Response must not be mutated: cached ones are returned again to later
        requests. A ``FileRegion`` body (or the last region of a tuple body) owns an open
        fd; whoever sends it (or drops the response) must call ``release()`` on every
        region of the body.

        Args:
            request: a parsed request head; only GET and HEAD are served.
            now: a monotonic clock reading, used only to time cache revalidation.

        Returns:
            200 (``bytes``, ``FileRegion`` or, for HEAD, ``None`` body), 206 (a part, or
            a ``multipart/byteranges`` tuple), 304, 412, 416, 301 to the slash-terminated
            directory URL, a directory listing, or an error page.
        """
        entry = self._lookup(request.target)
        if (
            entry is not None
            and now - entry.checked < self._revalidate_seconds
            and _SPECIAL.isdisjoint(request.headers)
        ):
            method = request.method
            # hot_ae: an entry with encodings answers what it negotiated before for
            # this Accept-Encoding value (CacheEntry.hot_ae), as cheaply.
            hot = entry.hot_ae
            if method == b"GET":
                response = (
                    entry.hot_get
                    if hot is None
                    else hot.get(request.headers.get(b"accept-encoding"), _NO_PAIR)[0]
                )
                if response is not None:
                    return response
            elif method == b"HEAD":
                response = (
                    entry.hot_head
                    if hot is None
                    else hot.get(request.headers.get(b"accept-encoding"), _NO_PAIR)[1]
                )
                if response is not None:
                    return response
        response = self._respond(request, now, False)
        if response is None:  # pragma: no cover - only the fast variant returns None
            raise AssertionError("slow path returned no response")
        return response

    def handle_fast(self, request: Request, now: float) -> Response | None:
        """Answer from memory only, or return None if the answer needs the filesystem.

        For the event loop: a cached file inside its trust period (any method, any
        conditional or Range header, any Accept-Encoding), an error that follows from the
        request alone (405, a malformed or forbidden path), all without a syscall. None
        means "call ``handle`` in a worker thread": a miss, a due revalidation, a large
        file's GET when no response of that version has its fd open (it must be
        opened), a directory listing.

        Every filesystem call goes through ``c10k.static.fsio``; setting
        ``fsio.delay_hook`` slows chosen paths down in tests (it never runs here).
        """
        entry = self._lookup(request.target)
        if (
            entry is not None
            and now - entry.checked < self._revalidate_seconds
            and _SPECIAL.isdisjoint(request.headers)
        ):
            method = request.method
            # hot_ae: an entry with encodings answers what it negotiated before for
            # this Accept-Encoding value (CacheEntry.hot_ae), as cheaply.
            hot = entry.hot_ae
            if method == b"GET":
                response = (
                    entry.hot_get
                    if hot is None
                    else hot.get(request.headers.get(b"accept-encoding"), _NO_PAIR)[0]
                )
                if response is not None:
                    return response
                if hot is None:
                    # A large file (no hot_get), whole: a region of the fd its responses
                    # share, or the pool opens one. What _answer would do, without its
                    # walk (path split, lookup, plan): a 1 MiB response's Python is most
                    # of what it costs beyond nginx's.
                    shared = entry.shared
                    fd = shared.take(entry.same_file)
                    if fd < 0:
                        return None
                    # (_file_response's whole-file case, inlined)
                    region = FileRegion(fd, 0, entry.size, shared.release, shared.residency)
                    return Response(200, entry.head_response.head, region)
            elif method == b"HEAD":
                response = (
                    entry.hot_head
                    if hot is None
                    else hot.get(request.headers.get(b"accept-encoding"), _NO_PAIR)[1]
                )
                if response is not None:
                    return response
        return self._respond(request, now, True)

    # -- the request path ----------------------------------------------------------------

    def _respond(self, request: Request, now: float, fast: bool) -> Response | None:
        method = request.method
        if method == b"GET":
            head = False
        elif method == b"HEAD":
            head = True
        else:
            # The server answers other methods itself; this is the defensive fallback.
            return self._with_page(self._method_not_allowed, False, now, fast)
        response = self._answer(request, head, now, fast)
        if response is None or response.status < 400 or self._pages is None:
            return response
        return self._with_page(response, head, now, fast)

    def _answer(self, request: Request, head: bool, now: float, fast: bool) -> Response | None:

        raw_path, query = split_target(request.target)
        entry = self._lookup(raw_path)
        if entry is not None and now - entry.checked >= self._revalidate_seconds:
            if fast:
                return None
            entry = self._revalidate(raw_path, entry, now)
        fresh = False
        if entry is None:
            if fast:
                try:
                    decode_path(raw_path, self._serve_dotfiles)
                except ResolveError as exc:
                    return self._error(exc.status, head)
                return None
            loaded = self._load_or_fallback(raw_path, query, head, now)
            if isinstance(loaded, Response):
                return loaded
            entry, fresh = loaded, True

        headers = request.headers
        while True:
            rep = entry
            if entry.codings:
                rep = self._negotiate(entry, headers)
                if rep.derived and not head and b"range" in headers:
                    rep = entry  # see "On-the-fly compression" in the module comment
            plan = self._plan(rep, headers, head)
            if isinstance(plan, Response):
                return plan
            if fast:
                # A version some response is sending has its fd open (sharedfd.py): that
                # costs no filesystem call, so the loop answers; only an open goes to
                # the disk pool (a pool round trip per big download cost more CPU than
                # the sendfile's own Python).
                fd = rep.shared.take(rep.same_file)
                return None if fd < 0 else self._file_response(rep, plan, fd)
            fd = self._open(rep)
            if fd >= 0:
                return self._file_response(rep, plan, fd)
            if fresh:
                return self._error(-fd, head)
            # A cached large file changed (or vanished) within its trust period: fstat
            # saw it. Forget the entry and resolve once more from scratch (a fallback
            # entry is not under raw_path: the drop does nothing, and _load replaces it).
            self._cache.drop(raw_path, entry)
            loaded = self._load_or_fallback(raw_path, query, head, now)
            if isinstance(loaded, Response):
                return loaded
            entry, fresh = loaded, True

    def _load_or_fallback(
        self, raw_path: bytes, query: bytes | None, head: bool, now: float
    ) -> Response | CacheEntry:
        # _load; for a path that does not exist, the fallback file's entry when there is
        # one (nginx try_files: only a missing file falls back, never a refusal: 400,
        # 403, a dotfile's 404 stay as they are). Fallback gone: the plain 404.
        loaded = self._load(raw_path, query, head, now)
        if self._fallback is None or loaded is not self._missing[head]:
            return loaded
        page = self._page(self._fallback, now, False)
        return page if isinstance(page, CacheEntry) else self._error(404, head)

    def _page(self, raw_path: bytes, now: float, fast: bool) -> CacheEntry | bool:
        # The trusted cache entry of an internal page (fallback, error page), loaded with
        # the plain resolver (which never consults the pages: no loop); False when it is
        # not a servable file now; True when only the filesystem can tell (fast path).
        entry = self._lookup(raw_path)
        if entry is not None and now - entry.checked < self._revalidate_seconds:
            return entry
        if fast:
            return True
        if entry is not None:
            entry = self._revalidate(raw_path, entry, now)
            if entry is not None:
                return entry
        loaded = self._load(raw_path, None, False, now)
        return loaded if isinstance(loaded, CacheEntry) else False

    # -- the server's own errors (pages.py: "The server's own errors") ---------------------
    def error_page(
        self, response: Response, head: bool, now: float, defer: Defer, req: object = None
    ) -> Response:
        """``response``, an error the server made itself (400, 408, 429, 503 ...), with its
        configured page, from memory only. A page due for (re)reading is handed to
        ``defer(fn)`` (off the loop) once; meanwhile the page as last read, or the
        built-in one, goes. (``req``: the request, when there is one; unused here, the
        site handler picks the site by it.)"""
        pages = self._pages
        raw = pages.pages.get(response.status) if pages is not None else None
        if pages is None or raw is None:
            return response
        entry = self._lookup(raw)
        # When it was last known (None: never tried), which a page gone asks no more
        # often than a present one: a 400 flood costs one stat per trust period.
        checked = self._pages_tried.get(raw) if entry is None else entry.checked
        if (checked is None or now - checked >= self._revalidate_seconds) and (
            raw not in self._pages_due
        ):
            self._pages_due.add(raw)
            defer(functools.partial(self._refresh_page, raw, now))
        if entry is None or entry.content is None:
            return response
        return pages.render(response, entry, head)

    def page_for(self, response: Response, head: bool, now: float, fast: bool) -> Response | None:
        """An error response made outside the handler (a site's unknown-host 421/404)
        with its configured page, as the handler's own errors get it; None: the fast
        path cannot tell without the filesystem (call again with ``fast=False``)."""
        return self._with_page(response, head, now, fast)

    def _refresh_page(self, raw: bytes, now: float) -> None:
        try:
            self._page(raw, now, False)
        finally:
            self._pages_tried[raw] = now
            self._pages_due.discard(raw)

    def _warm_pages(self) -> None:
        # Read the error pages now (the handler is built before the process serves), so
        # the engine's first 408 already has its page. Checked "at the beginning of
        # time": the caller's clock is its own, so the first use revalidates as usual.
        self._pages_due: set[bytes] = set()
        self._pages_tried: dict[bytes, float] = {}
        if self._pages is not None:
            for raw in set(self._pages.pages.values()):
                self._page(raw, -math.inf, False)

    def _with_page(self, response: Response, head: bool, now: float, fast: bool) -> Response | None:
        # An error response with the configured page's content (pages.py), or as it is
        # when there is no page for its status or the page is gone; None: the fast path
        # cannot tell without the filesystem.
        pages = self._pages
        raw_page = pages.pages.get(response.status) if pages is not None else None
        if pages is None or raw_page is None:
            return response
        page = self._page(raw_page, now, fast)
        if page is True:
            return None
        if not isinstance(page, CacheEntry):
            return response
        if page.content is not None:
            return pages.render(response, page, head)
        if head:
            return pages.render_head(response, page)
        if fast:
            return None
        fd = self._open(page)
        return pages.render_region(response, page, fd) if fd >= 0 else response

    def _plan(self, rep: CacheEntry, headers: dict[bytes, bytes], head: bool) -> Response | Ranges:
        # Decide the answer for one representation without touching the disk. Returns the
        # Response when memory suffices, else the ranges to send from the file ([] = all).
        if not _PRECONDITIONS.isdisjoint(headers):
            status = evaluate(headers, rep.etag, rep.mtime_seconds)
            if status == 304:
                return rep.not_modified
            if status == 412:
                return self._error(412, head)
        if head:
            return rep.head_response  # Range applies to GET only (RFC 9110 section 14.2)
        value = headers.get(b"range")
        if value is not None:
            if_range = headers.get(b"if-range")
            if if_range is None or if_range_matches(if_range, rep.etag, rep.mtime_seconds):
                ranges = parse_range(value, rep.size, self._max_ranges)
                if ranges is not None and not ranges:
                    return self._unsatisfiable(rep)
                # Several ranges of an encoded representation would need Content-Encoding
                # inside each part, which no client decodes: send the whole (section 14.2
                # lets a server ignore Range).
                if ranges and (len(ranges) == 1 or rep.encoding is None):
                    content = rep.content
                    if content is not None:
                        return self._partial(rep, ranges, content, -1)
                    return ranges
        if rep.get_response is not None:
            return rep.get_response
        return []

    def _file_response(self, rep: CacheEntry, ranges: Ranges, fd: int) -> Response:
        if not ranges:
            # Same head as HEAD: pre-rendered once per entry, only the body is new.
            region = FileRegion(fd, 0, rep.size, rep.shared.release, rep.shared.residency)
            return Response(200, rep.head_response.head, region)
        return self._partial(rep, ranges, None, fd)

    def _partial(self, rep: CacheEntry, ranges: Ranges, content: bytes | None, fd: int) -> Response:
        # 206 from memory (content) or from an open fd (closed by the last region).
        size = rep.size
        if len(ranges) == 1:
            start, stop = ranges[0]
            single: bytes | FileRegion = (
                content[start:stop]
                if content is not None
                else FileRegion(fd, start, stop - start, rep.shared.release, rep.shared.residency)
            )
            fields = [*rep.fields, (b"Content-Range", content_range(start, stop, size))]
            return build_response(206, fields, single)
        # multipart/byteranges (RFC 9110 section 14.6): a fresh random boundary per
        # response, so no file content can contain it by accident or design.
        boundary = secrets.token_hex(16).encode("ascii")
        parts: list[bytes | FileRegion] = []
        last = len(ranges) - 1
        for i, (start, stop) in enumerate(ranges):
            parts.append(
                b"%s--%s\r\nContent-Type: %s\r\nContent-Range: %s\r\n\r\n"
                % (
                    b"\r\n" if i else b"",
                    boundary,
                    rep.content_type,
                    content_range(start, stop, size),
                )
            )
            if content is not None:
                parts.append(content[start:stop])
            else:
                # The server sends parts in order and releases every region (all of them
                # on abort), so only the last one releases the fd.
                closer = rep.shared.release if i == last else None
                parts.append(FileRegion(fd, start, stop - start, closer, rep.shared.residency))
        parts.append(b"\r\n--%s--\r\n" % boundary)
        fields = [(b"Content-Type", b"multipart/byteranges; boundary=" + boundary)]
        fields += [f for f in rep.fields if f[0] != b"Content-Type"]
        body: Body = (
            b"".join(p for p in parts if isinstance(p, bytes))
            if content is not None
            else tuple(parts)
        )
        return build_response(206, fields, body)

    def _unsatisfiable(self, rep: CacheEntry) -> Response:
        fields = [(b"Content-Range", unsatisfied_range(rep.size))]
        fields += [f for f in rep.extra_fields if f[0] == b"Vary"]
        return error_response(416, fields)

    def _negotiate(self, entry: CacheEntry, headers: dict[bytes, bytes]) -> CacheEntry:
        # The representation Accept-Encoding chooses, remembered in the entry for the hot
        # path (a few short values per entry: a client cannot grow it).
        value = headers.get(b"accept-encoding")
        coding = self._choose(value, entry.codings)
        rep = entry if coding is None else entry.encoded[entry.codings.index(coding)]
        hot = entry.hot_ae
        if (
            hot is not None
            and len(hot) < _HOT_AE_MAX
            and (value is None or len(value) <= _HOT_AE_MAX_BYTES)
        ):
            hot[value] = (rep.get_response, rep.head_response)
        return rep

    def _choose(self, value: bytes | None, codings: tuple[bytes, ...]) -> bytes | None:
        if value is None:
            return None
        key = (value, codings)
        memo = self._ae_memo
        try:
            return memo[key]
        except KeyError:
            pass
        coding = choose_encoding(value, codings)
        if len(memo) >= _AE_MEMO_MAX:
            memo.clear()
        memo[key] = coding
        return coding

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

    def _open(self, rep: CacheEntry) -> int:
        # Open a representation for sending: the fd (shared with the other responses
        # sending this version: sharedfd.py; released by the region's closer), or minus
        # the status to answer when it is gone, unreadable or no longer the same file.
        fd = rep.shared.take(rep.same_file)
        if fd >= 0:
            return fd
        try:
            fd = fsio.open_fd(rep.real, OPEN_FLAGS)
        except OSError as exc:
            return -_status_for(exc)
        try:
            st = fsio.fstat(fd)
            if stat.S_ISREG(st.st_mode) and file_ident(st) == rep.ident:
                return rep.shared.keep(fd)
        except OSError as exc:
            fsio.close(fd)
            return -_status_for(exc)
        except BaseException:
            fsio.close(fd)
            raise
        fsio.close(fd)
        return -404

    def _redirect(self, segments: list[str], query: bytes | None, head: bool) -> Response:
        # RFC 9110 section 15.4.2. Built from the normalised segments, never from the raw
        # target, so "//evil.example" cannot become a protocol-relative Location.
        location = encode_path(segments, trailing_slash=True)
        if query is not None:
            location += b"?" + query
        added = self._headers.fields_for("/" + "/".join(segments))
        try:
            response = build_response(301, [(b"Location", location), *added], b"")
        except LocalProtocolError:
            return self._error(400, head)  # CR/LF/NUL in the query: the parser let it by
        return Response(301, response.head, None) if head else response

    # -- loading (filesystem) ------------------------------------------------------------

    def _revalidate(self, raw_path: bytes, entry: CacheEntry, now: float) -> CacheEntry | None:
        if not self._cache.revalidate(raw_path, entry, now):
            return None
        if entry.max_age is None:
            return entry
        # Expires is absolute: re-render it (from memory, no read) each time the entry is
        # re-trusted, so it lags Date + max-age by at most revalidate_seconds.
        original = _Loaded(entry.path, entry.real, entry.st, entry.content)
        siblings = [
            (e.encoding or b"", _Loaded(e.path, e.real, e.st, e.content))
            for e in entry.encoded
            if not e.derived
        ]
        derived = tuple((e.encoding or b"", e.content or b"") for e in entry.encoded if e.derived)
        new = self._assemble(original, siblings, derived, entry.watch, now)
        self._cache.replace(raw_path, entry, new)
        return new

    def _read(self, path: str, real: str, st: os.stat_result) -> _Loaded | int:
        # Open, fstat and (small files) read a regular file; the status on failure.
        try:
            fd = fsio.open_fd(real, OPEN_FLAGS)
        except OSError as exc:
            return _status_for(exc)
        content: bytes | None = None
        try:
            fst = fsio.fstat(fd)
            same_file = stat.S_ISREG(fst.st_mode) and (fst.st_dev, fst.st_ino) == (
                st.st_dev,
                st.st_ino,
            )
            if same_file and (
                fst.st_size <= self._max_file_bytes or self._compresses(path, fst.st_size)
            ):
                content = _read_all(fd, fst.st_size)
        except OSError as exc:
            return _status_for(exc)
        finally:
            fsio.close(fd)
        if not same_file:
            return 404
        return _Loaded(path, real, fst, content)

    def _load(
        self, raw_path: bytes, query: bytes | None, head: bool, now: float
    ) -> Response | CacheEntry:
        # The miss path: resolve, check, read, and build (and cache) an entry; or the
        # response to send instead (error, redirect, directory listing).
        try:
            segments = decode_path(raw_path, self._serve_dotfiles)
        except ResolveError as exc:
            return self._error(exc.status, head)

        path = os.path.join(self._root, *segments)
        real = fsio.realpath(path)
        if not self._inside_root(real):
            return self._error(403, head)
        try:
            st = fsio.stat(real)
        except OSError as exc:
            status = _status_for(exc)
            return self._missing[head] if status == 404 else self._error(status, head)

        if stat.S_ISDIR(st.st_mode):
            if not raw_path.endswith(b"/"):
                return self._redirect(segments, query, head)
            dir_real = real
            path = os.path.join(path, self._index)
            real = fsio.realpath(path)
            if not self._inside_root(real):
                return self._error(403, head)
            try:
                st = fsio.stat(real)
            except OSError as exc:
                if exc.errno == errno.ENOENT:
                    if self._autoindex:
                        return self._listing(segments, dir_real, head)
                    return self._no_index_head if head else self._no_index_get
                return self._error(_status_for(exc), head)
        elif raw_path.endswith(b"/"):
            # "/file.txt/" asks for a directory; open(2) would say ENOTDIR too (nginx: 404).
            return self._missing[head]
        if not stat.S_ISREG(st.st_mode):
            return self._error(404, head)  # directory-as-index, FIFO, socket, device

        original = self._read(path, real, st)
        if isinstance(original, int):
            return self._error(original, head)
        siblings: list[tuple[bytes, _Loaded]] = []
        watch: list[tuple[str, Ident | None]] = []
        if self._precompressed:
            for suffix, coding in SIBLINGS:
                sibling = self._sibling(path + suffix, original.st)
                if isinstance(sibling, _Loaded):
                    siblings.append((coding, sibling))
                else:
                    watch.append((path + suffix, sibling))
        derived = self._derive(original, siblings)
        entry = self._assemble(original, siblings, derived, tuple(watch), now)
        self._cache.put(raw_path, entry)
        return entry

    def _compresses(self, path: str, size: int) -> bool:
        # Compressed on the fly (compress.py): a compressible type within the size bounds,
        # and small enough that its encodings stay in the cache (else every request
        # would compress it again).
        compressor = self._compressor
        return (
            compressor is not None
            and size <= self._cache.max_total_bytes // 4
            and compressor.wants(content_type(path, self._types), size)
        )

    def _derive(self, original: _Loaded, siblings: list[tuple[bytes, _Loaded]]) -> Encoded:
        # The on-the-fly encodings of a loaded file, once per file version (the pool
        # threads that miss it at the same time share one compression). Precompressed
        # siblings win: whoever made x.gz (or x.br) chose the file's encodings, as with
        # nginx, whose gzip_static answers before any compressing filter runs. A file
        # above cache_max_file_bytes was read only for this: its identity bytes go out
        # with sendfile, as any large file's.
        data = original.content
        compressor = self._compressor
        if (
            data is None
            or siblings
            or compressor is None
            or not self._compresses(original.path, len(data))
        ):
            if data is not None and len(data) > self._max_file_bytes:
                original.content = None
            return ()
        derived = compressor.compress((original.real, file_ident(original.st)), data)
        if len(data) > self._max_file_bytes:
            original.content = None
        return derived

    def _sibling(self, path: str, original: os.stat_result) -> _Loaded | Ident | None:
        # A precompressed sibling, if usable; else what revalidation must watch: None if
        # there is no such file, its identity if it exists but is not used.
        try:
            st = fsio.stat(path)
        except OSError:
            return None  # missing (or unreadable: watched as missing, re-checked each second)
        ident = file_ident(st)
        if not stat.S_ISREG(st.st_mode):
            return ident
        # A sibling older than the file is stale: someone edited x and forgot x.gz. nginx
        # gzip_static serves it anyway; we do not, since gzip and non-gzip clients would
        # then see different content. Equal mtimes are fine (gzip -k and brotli -k copy
        # the original's mtime to the output).
        if st.st_mtime_ns < original.st_mtime_ns:
            return ident
        real = fsio.realpath(path)
        if not self._inside_root(real):
            return ident  # a symlinked x.gz leading out of the root is never followed
        loaded = self._read(path, real, st)
        return loaded if isinstance(loaded, _Loaded) else ident

    def _extra_fields(
        self, path: str, vary: bool
    ) -> tuple[tuple[tuple[bytes, bytes], ...], int | None]:
        fields: list[tuple[bytes, bytes]] = []
        if vary:
            fields.append((b"Vary", b"Accept-Encoding"))
        suffix = os.path.splitext(path)[1].lower()
        cache_control = self._cache_control.get(suffix, self._cache_control_default)
        max_age = None
        if cache_control is not None:
            value, max_age = cache_control
            fields.append((b"Cache-Control", value))
            if max_age is not None:
                # RFC 9111 section 5.3: for HTTP/1.0 caches; max-age wins where both exist.
                fields.append((b"Expires", http_date(self.wall_clock() + max_age)))
        # --add-header: the path of the file served (its URL below the root), so an index
        # or the fallback gets what its own URL would (headers.py).
        fields += self._headers.fields_for("/" + path[len(self._root_prefix) :])
        return tuple(fields), max_age

    def _assemble(
        self,
        original: _Loaded,
        siblings: list[tuple[bytes, _Loaded]],
        derived: Encoded,
        watch: tuple[tuple[str, Ident | None], ...],
        now: float,
    ) -> CacheEntry:
        ctype = content_type(original.path, self._types)
        extra, max_age = self._extra_fields(original.path, bool(siblings or derived))
        entry = CacheEntry(
            original.path, original.real, original.st, original.content, ctype, now, None, extra
        )
        reps = [
            CacheEntry(s.path, s.real, s.st, s.content, ctype, now, coding, extra)
            for coding, s in siblings
        ]
        if derived:
            assert self._compressor is not None
            suffixes = self._compressor.suffixes
            reps += [
                CacheEntry(
                    original.path,
                    original.real,
                    original.st,
                    data,
                    ctype,
                    now,
                    coding,
                    extra,
                    suffixes[coding],
                )
                for coding, data in derived
            ]
        entry.add_siblings(tuple(reps), watch)
        entry.max_age = max_age
        return entry

    def _listing(self, segments: list[str], real_dir: str, head: bool) -> Response:
        # Directory listing (autoindex.py renders; reading happens here). Not cached.
        try:
            dirents = fsio.scandir(real_dir)
        except OSError as exc:
            return self._error(_status_for(exc), head)
        items = []
        for dirent in dirents:
            name = dirent.name
            if not listable(name, self._serve_dotfiles):
                continue
            try:
                st = dirent.stat()  # follows symlinks; a dangling one is skipped
                if dirent.is_symlink() and not self._inside_root(
                    fsio.realpath(os.path.join(real_dir, name))
                ):
                    continue  # it would answer 403: do not advertise it
            except OSError:
                continue
            is_dir = stat.S_ISDIR(st.st_mode)
            if is_dir or stat.S_ISREG(st.st_mode):
                items.append(Item(name, is_dir, st.st_size, st.st_mtime))
        url_path = "/" + "".join(s + "/" for s in segments)
        fields = [(b"Content-Type", _LISTING_TYPE), *self._headers.fields_for(url_path)]
        response = build_response(200, fields, render(url_path, items))
        return Response(200, response.head, None) if head else response
