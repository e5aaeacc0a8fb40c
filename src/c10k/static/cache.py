"""The open-file cache: pre-rendered responses for small files, resolutions for large ones.

Theory of operation
-------------------
A static server spends most of its time answering the same few URLs. For those, the work
that does not depend on the request (decode the path, resolve symlinks, stat, open, read,
pick a MIME type, format Last-Modified and ETag, render the head) can be done once and
kept. What stays per request is two dict lookups and one comparison against the clock.

Two strategies, picked per entry by size (lwan ``mod-serve-files`` does the same with its
``MMAP_SIZE_THRESHOLD`` of 16 KiB: below it files are served from memory, above it with
``sendfile`` from an fd):

- **Small files** (``size <= cache_max_file_bytes``, 16 KiB by default after lwan): the
  content is read into memory and three ``Response`` objects are rendered up front: GET
  (head + bytes), HEAD (same head, no body) and 304. A hit returns one of them *by
  identity*. The server memoizes the wire bytes per response object, so a hit costs no
  allocation, no syscall besides the ``send``, and no formatting. The contract that makes
  this safe: a Response is never mutated after it was handed out. When the file changes,
  new Responses are built and the old ones are simply dropped.
- **Large files**: the entry keeps the resolution (lexical path, real path, identity) and
  the rendered head, so a hit skips decoding, ``realpath`` (one ``lstat`` per path
  component) and ``stat``. The file is still opened per GET and confirmed with ``fstat``:
  this version never caches an fd (a cached fd needs reference counting across in-flight
  sendfiles, and an fd limit of its own, like nginx's ``open_file_cache max=``).

Revalidation (nginx ``open_file_cache_valid``, default 60 s; lwan re-checks on its own
timer): an entry is trusted for ``revalidate_seconds`` after it was last checked. The
first request after that re-``stat``s the entry's *lexical* path (root + decoded
segments), following symlinks the same way a fresh lookup would, and compares
(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns). Any difference (new content, an
atomic rename, a re-pointed symlink, a chmod) drops the entry and the request takes the
full slow path, which re-resolves, re-checks the root, and loads a new entry. So an edit
shows up at most ``revalidate_seconds`` late, and between checks a hot file costs zero
syscalls. The default of 1 s is tighter than nginx's 60 s: it is the same order as the
once-per-second Date header, and one ``stat`` per second per hot file is noise.

Bounds: the cache is limited by ``cache_max_total_bytes``, counting content plus rendered
heads plus a fixed per-entry overhead (``ENTRY_OVERHEAD_BYTES``). The overhead charge
matters: it also bounds the *number* of entries, so large-file entries (no content) and
aliases of one file (``/a``, ``//a``, ``/./a`` are distinct raw keys) cannot grow the
dict without limit. Eviction is oldest-first from an ``OrderedDict``. Recency is
refreshed when an entry is revalidated, not on every hit, so the hot path pays nothing
for it; with the default 1 s this is LRU at one-second granularity.

Representations. With precompressed siblings on, one URL has up to three
representations: the file, ``x.br`` and ``x.gz``. The cached value for a URL is the
identity ``CacheEntry``; its ``encoded`` tuple holds one ``CacheEntry`` per usable sibling
(each with its own validators, size, content and pre-rendered responses), and ``watch``
the sibling paths that did not exist or were not used. Revalidation re-stats all of them
and requires the watched ones to be as they were, so a sibling created (or refreshed)
later is noticed within ``revalidate_seconds``. An entry with siblings has no
``hot_get``/``hot_head``: the handler must negotiate Accept-Encoding first (still from
memory, without syscalls). What it chose for an Accept-Encoding value is kept in the
entry's ``hot_ae`` (value -> that representation's GET and HEAD responses, a few values
per entry), so the next request with the same value is a hit as cheap as ``hot_get``.

On-the-fly encodings (``compress.py``) are representations of the same kind, marked
``derived``: their content is the compressed bytes, their file is the original's (so
revalidation has nothing more to stat), their ETag the original's with the coding and
level as a suffix. They count against the bound like any content.

Threads. ``StaticFiles.handle`` may run on several pool threads at once, concurrently
with ``handle_fast`` on the loop thread. Readers take no lock: ``entries.get`` is one
atomic C call under the GIL, entries and their Responses are immutable once published
(``checked`` is a float store; a stale read only means one extra revalidation). Writers
(``put``, ``drop``, the bookkeeping of ``revalidate``) take ``lock``, so ``total_bytes``
and the ``OrderedDict`` order stay consistent. Filesystem calls happen outside the lock.

Keys are raw request paths (bytes, query already cut), which is what lets the handler
look a request up before decoding anything.
"""

from __future__ import annotations

import errno
import os
import stat
import threading
from collections import OrderedDict

from c10k.http.writers import Response, build_response, http_date
from c10k.static import fsio
from c10k.static.sharedfd import SharedFd

# What an entry costs beyond its variable-length parts: the entry object, three Response
# objects, the identity tuple, dict slots. Measured with sys.getsizeof on CPython 3.11 at
# roughly 450 bytes; rounded up.
ENTRY_OVERHEAD_BYTES = 512

Ident = tuple[int, int, int, int, int]

# A sibling path that must stay absent "is absent" with these errnos.
_ABSENT_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})


def file_ident(st: os.stat_result) -> Ident:
    """What must stay equal for a cached entry to still describe the file.

    (dev, ino) names the file, size and mtime its content; ctime also changes on chmod
    and chown, so a file made unreadable is not served from cache past the next check.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def make_etag(st: os.stat_result, suffix: bytes = b"") -> bytes:
    """A strong entity-tag from mtime (ns) and size, nginx style (``"<mtime>-<size>"``).

    Strong is justified for byte-identical content; mtime in nanoseconds (nginx uses
    seconds) keeps two writes within one second from sharing a tag. An encoded sibling
    gets its coding as a suffix, so each representation has its own tag even when
    ``gzip -k`` gave the sibling the original's mtime.

    >>> from types import SimpleNamespace
    >>> make_etag(SimpleNamespace(st_mtime_ns=1_700_000_000_123_456_789, st_size=4096))
    b'"17979cfe3d85cd15-1000"'
    >>> make_etag(SimpleNamespace(st_mtime_ns=16, st_size=16), b"-br")
    b'"10-10-br"'
    """
    return b'"%x-%x%s"' % (st.st_mtime_ns, st.st_size, suffix)


class CacheEntry:
    """One representation of a cached file: validators, pre-rendered responses, location.

    Args:
        path: root + decoded segments (+ sibling suffix), not symlink-resolved.
        real: the symlink-resolved path that was checked to be inside the root.
        st: the ``fstat`` of the file when loaded.
        content: the whole file for small files, None for large ones.
        content_type: the Content-Type value (the original's, for a sibling).
        now: the monotonic time of the check.
        encoding: the content-coding of a precompressed sibling, None for the file.
        extra_fields: fields every 200/206/304 of this URL carries (Vary, Cache-Control,
            Expires), rendered after the validators.
        derived_suffix: for an encoding made here from the file (``content`` is the
            encoded bytes, ``st`` the file's): the ETag suffix (``b"-gzip6"``).

    Attributes:
        path, real, encoding, content_type: as given.
        ident: ``file_ident`` of the file when loaded.
        st: the stat result (kept to rebuild the entry with a fresh Expires).
        size: the length of the representation.
        etag: the entity-tag, quotes included.
        mtime_seconds: mtime truncated to seconds, for the date preconditions.
        fields: the 200's fields without Content-Length (the base of a 206).
        get_response: the full 200 for small files; None for large ones (a FileRegion
            is made per request).
        head_response: the 200 without a body; for large files its head is also the head
            of every GET.
        not_modified: the 304.
        encoded: sibling representations (br, gzip), set on the identity entry only.
        codings: their content-codings, in the same order.
        watch: other paths whose state must not change unnoticed: ``(path, ident)``
            for a sibling that exists but is not used (older than the file, outside the
            root), ``(path, None)`` for one that does not exist.
        hot_get, hot_head: what the hot path may return without looking at the request
            beyond its method (None: take the slower path).
        hot_ae: for an entry with encodings, Accept-Encoding value (None: absent) ->
            (GET, HEAD) responses of the representation negotiated for it; filled by the
            handler. None for an entry without encodings.
        derived: the representation was encoded here from the file (``compress.py``).
        max_age: the Cache-Control max-age, if any (Expires is then re-rendered on
            revalidation).
        checked: the ``now`` at which the entry was last known to be current.
        shared: the fd every response of a large file sends from (``sharedfd.py``).
        cost: bytes charged against the cache bound (siblings included).
    """

    __slots__ = (
        "checked",
        "codings",
        "content_type",
        "cost",
        "derived",
        "encoded",
        "encoding",
        "etag",
        "extra_fields",
        "fields",
        "get_response",
        "head_response",
        "hot_ae",
        "hot_get",
        "hot_head",
        "ident",
        "max_age",
        "mtime_seconds",
        "not_modified",
        "path",
        "real",
        "shared",
        "size",
        "st",
        "watch",
    )

    def __init__(
        self,
        path: str,
        real: str,
        st: os.stat_result,
        content: bytes | None,
        content_type: bytes,
        now: float,
        encoding: bytes | None = None,
        extra_fields: tuple[tuple[bytes, bytes], ...] = (),
        derived_suffix: bytes | None = None,
    ) -> None:
        self.path = path
        self.real = real
        self.st = st
        self.ident = file_ident(st)
        self.shared = SharedFd()  # the open fd responses of this version send from
        self.encoding = encoding
        self.content_type = content_type
        self.extra_fields = extra_fields
        self.derived = derived_suffix is not None
        if derived_suffix is not None:
            self.etag = make_etag(st, derived_suffix)
        else:
            self.etag = make_etag(st, b"-" + encoding if encoding else b"")
        self.mtime_seconds = st.st_mtime_ns // 1_000_000_000
        last_modified = http_date(self.mtime_seconds)
        fields = [
            (b"Content-Type", content_type),
            (b"Last-Modified", last_modified),
            (b"ETag", self.etag),
        ]
        if encoding:
            fields.append((b"Content-Encoding", encoding))
        fields += extra_fields
        fields.append((b"Accept-Ranges", b"bytes"))  # RFC 9110 section 14.3
        self.fields = fields
        if content is not None:
            # The bytes actually read decide Content-Length (a file growing between fstat
            # and read must not break framing); the next revalidation sees the new size.
            self.size = len(content)
            get = build_response(200, fields, content)
            self.get_response: Response | None = get
            # Same head as the GET, so HEAD announces the GET's Content-Length.
            self.head_response = Response(200, get.head, None)
        else:
            self.size = st.st_size
            self.get_response = None
            self.head_response = build_response(200, fields, None, content_length=st.st_size)
        # RFC 9110 section 15.4.5: a 304 carries ETag, Vary, Cache-Control and Expires as
        # the 200 would, and SHOULD NOT carry other representation metadata: no
        # Last-Modified (the ETag already validates), no Content-Type/Encoding.
        self.not_modified = build_response(304, [(b"ETag", self.etag), *extra_fields], None)
        self.encoded: tuple[CacheEntry, ...] = ()
        self.codings: tuple[bytes, ...] = ()
        self.watch: tuple[tuple[str, Ident | None], ...] = ()
        self.hot_get = self.get_response
        self.hot_head: Response | None = self.head_response
        self.hot_ae: dict[bytes | None, tuple[Response | None, Response]] | None = None
        self.max_age: int | None = None
        self.checked = now
        self.cost = (
            ENTRY_OVERHEAD_BYTES
            + (len(content) if content is not None else 0)
            + 2 * len(self.head_response.head)
            + len(path)
            + len(real)
        )

    def same_file(self, fd: int) -> bool:
        """Is open ``fd`` still the file this entry describes? (An fstat of an open fd:
        no disk read, so the loop may ask; c10k.static.sharedfd asks it of an idle fd.)"""
        try:
            st = os.fstat(fd)
        except OSError:
            return False
        # (file_ident, inlined: an idle fd is checked once per large-file response)
        return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns) == self.ident

    def add_siblings(
        self, encoded: tuple[CacheEntry, ...], watch: tuple[tuple[str, Ident | None], ...]
    ) -> None:
        """Attach the precompressed representations (before the entry is published)."""
        self.encoded = encoded
        self.codings = tuple(e.encoding for e in encoded if e.encoding)
        self.watch = watch
        self.cost += sum(e.cost for e in encoded) + sum(len(p) + 64 for p, _ in watch)
        if encoded:
            self.hot_get = self.hot_head = None
            self.hot_ae = {}

    @property
    def content(self) -> bytes | None:
        """The file's bytes for a small file, None for a large one."""
        body = self.get_response.body if self.get_response is not None else None
        return body if isinstance(body, bytes) else None

    def __repr__(self) -> str:
        kind = "memory" if self.get_response is not None else "file"
        return f"CacheEntry({self.path!r}, {kind}, size={self.size}, checked={self.checked})"


def _retire(entry: CacheEntry) -> None:
    """An entry left the cache: the fds its versions keep idle close (sharedfd.py)."""
    entry.shared.retire()
    for rep in entry.encoded:
        rep.shared.retire()


def still_current(entry: CacheEntry) -> bool:
    """Re-stat an entry's file, siblings and watched paths (filesystem calls, no lock).

    Returns:
        True if every file is unchanged and every watched path as it was.
    """
    for rep in (entry, *entry.encoded):
        if rep.derived:
            continue  # the file itself, checked as ``entry``
        try:
            st = fsio.stat(rep.path)
        except OSError:
            return False
        if not stat.S_ISREG(st.st_mode) or file_ident(st) != rep.ident:
            return False
    for path, ident in entry.watch:
        try:
            st = fsio.stat(path)
        except OSError as exc:
            if ident is None and exc.errno in _ABSENT_ERRNOS:
                continue
            return False
        if ident is None or file_ident(st) != ident:
            return False
    return True


class FileCache:
    """Raw path -> CacheEntry, bounded by total bytes, evicting the least recently checked.

    Attributes:
        entries: the mapping itself; the handler reads it directly (``entries.get``) on
            the hot path, without the lock.
        total_bytes: the sum of the entries' ``cost``.
        max_total_bytes: the bound on ``total_bytes``.
        lock: held by every mutation (``put``, ``drop``, ``revalidate``'s bookkeeping).
    """

    __slots__ = ("entries", "lock", "max_total_bytes", "total_bytes")

    def __init__(self, max_total_bytes: int) -> None:
        self.entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self.total_bytes = 0
        self.max_total_bytes = max_total_bytes
        self.lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: bytes, entry: CacheEntry) -> bool:
        """Insert or replace ``key``, evicting the oldest entries to make room.

        Returns:
            False if the entry alone exceeds the bound (it is then not stored).
        """
        with self.lock:
            self._drop(key, None)
            if entry.cost > self.max_total_bytes:
                return False
            entries = self.entries
            while self.total_bytes + entry.cost > self.max_total_bytes:
                _, old = entries.popitem(last=False)
                self.total_bytes -= old.cost
                _retire(old)
            entries[key] = entry
            self.total_bytes += entry.cost
            return True

    def drop(self, key: bytes, entry: CacheEntry | None = None) -> None:
        """Forget ``key`` if present (only if it still maps to ``entry``, when given:
        another thread may have stored a newer one meanwhile)."""
        with self.lock:
            self._drop(key, entry)

    def _drop(self, key: bytes, entry: CacheEntry | None) -> None:
        old = self.entries.get(key)
        if old is not None and (entry is None or old is entry):
            del self.entries[key]
            self.total_bytes -= old.cost
            _retire(old)

    def replace(self, key: bytes, old: CacheEntry, new: CacheEntry) -> None:
        """Put ``new`` under ``key`` if ``key`` still maps to ``old``."""
        with self.lock:
            if self.entries.get(key) is not old:
                return
            self._drop(key, old)
            if self.total_bytes + new.cost <= self.max_total_bytes:
                self.entries[key] = new
                self.total_bytes += new.cost

    def revalidate(self, key: bytes, entry: CacheEntry, now: float) -> bool:
        """Re-stat an entry whose trust period ran out; keep it or drop it.

        Returns:
            True if the file is unchanged (the entry is trusted again from ``now`` and
            becomes the most recent); False if it changed or vanished (it is dropped).
        """
        if not still_current(entry):
            self.drop(key, entry)
            return False
        entry.checked = now
        with self.lock:
            if self.entries.get(key) is entry:
                self.entries.move_to_end(key)
        return True
