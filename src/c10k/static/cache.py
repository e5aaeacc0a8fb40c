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

Keys are raw request paths (bytes, query already cut), which is what lets the handler
look a request up before decoding anything.
"""

from __future__ import annotations

import os
import stat
from collections import OrderedDict

from c10k.http.writers import Response, build_response, http_date

# What an entry costs beyond its variable-length parts: the entry object, three Response
# objects, the identity tuple, dict slots. Measured with sys.getsizeof on CPython 3.11 at
# roughly 450 bytes; rounded up.
ENTRY_OVERHEAD_BYTES = 512

Ident = tuple[int, int, int, int, int]


def file_ident(st: os.stat_result) -> Ident:
    """What must stay equal for a cached entry to still describe the file.

    (dev, ino) names the file, size and mtime its content; ctime also changes on chmod
    and chown, so a file made unreadable is not served from cache past the next check.
    """
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def make_etag(st: os.stat_result) -> bytes:
    """A strong entity-tag from mtime (ns) and size, nginx style (``"<mtime>-<size>"``).

    Strong is justified for byte-identical content; mtime in nanoseconds (nginx uses
    seconds) keeps two writes within one second from sharing a tag.

    >>> from types import SimpleNamespace
    >>> make_etag(SimpleNamespace(st_mtime_ns=1_700_000_000_123_456_789, st_size=4096))
    b'"17979cfe3d85cd15-1000"'
    """
    return b'"%x-%x"' % (st.st_mtime_ns, st.st_size)


class CacheEntry:
    """One cached file: validators, pre-rendered responses and where it lives.

    Attributes:
        path: root + decoded segments, not symlink-resolved; re-stat'ed to revalidate.
        real: the symlink-resolved path that was checked to be inside the root; opened.
        ident: ``file_ident`` of the file when loaded.
        size: the file size when loaded.
        etag: the entity-tag, quotes included.
        mtime_seconds: mtime truncated to seconds, for If-Modified-Since.
        get_response: the full 200 for small files; None for large ones (a FileRegion
            is made per request).
        head_response: the 200 without a body; for large files its head is also the head
            of every GET.
        not_modified: the 304.
        checked: the ``now`` at which the entry was last known to be current.
        cost: bytes charged against the cache bound.
    """

    __slots__ = (
        "checked",
        "cost",
        "etag",
        "get_response",
        "head_response",
        "ident",
        "mtime_seconds",
        "not_modified",
        "path",
        "real",
        "size",
    )

    def __init__(
        self,
        path: str,
        real: str,
        st: os.stat_result,
        content: bytes | None,
        content_type: bytes,
        now: float,
    ) -> None:
        self.path = path
        self.real = real
        self.ident = file_ident(st)
        self.etag = make_etag(st)
        self.mtime_seconds = st.st_mtime_ns // 1_000_000_000
        last_modified = http_date(self.mtime_seconds)
        fields = [
            (b"Content-Type", content_type),
            (b"Last-Modified", last_modified),
            (b"ETag", self.etag),
        ]
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
        # RFC 9110 section 15.4.5: a 304 carries the validators the 200 would have.
        self.not_modified = build_response(
            304, [(b"Last-Modified", last_modified), (b"ETag", self.etag)], None
        )
        self.checked = now
        self.cost = (
            ENTRY_OVERHEAD_BYTES
            + (len(content) if content is not None else 0)
            + 2 * len(self.head_response.head)
            + len(path)
            + len(real)
        )

    def __repr__(self) -> str:
        kind = "memory" if self.get_response is not None else "file"
        return f"CacheEntry({self.path!r}, {kind}, size={self.size}, checked={self.checked})"


class FileCache:
    """Raw path -> CacheEntry, bounded by total bytes, evicting the least recently checked.

    Attributes:
        entries: the mapping itself; the handler reads it directly (``entries.get``) on
            the hot path.
        total_bytes: the sum of the entries' ``cost``.
        max_total_bytes: the bound on ``total_bytes``.
    """

    __slots__ = ("entries", "max_total_bytes", "total_bytes")

    def __init__(self, max_total_bytes: int) -> None:
        self.entries: OrderedDict[bytes, CacheEntry] = OrderedDict()
        self.total_bytes = 0
        self.max_total_bytes = max_total_bytes

    def __len__(self) -> int:
        return len(self.entries)

    def put(self, key: bytes, entry: CacheEntry) -> bool:
        """Insert or replace ``key``, evicting the oldest entries to make room.

        Returns:
            False if the entry alone exceeds the bound (it is then not stored).
        """
        self.drop(key)
        if entry.cost > self.max_total_bytes:
            return False
        entries = self.entries
        while self.total_bytes + entry.cost > self.max_total_bytes:
            _, old = entries.popitem(last=False)
            self.total_bytes -= old.cost
        entries[key] = entry
        self.total_bytes += entry.cost
        return True

    def drop(self, key: bytes) -> None:
        """Forget ``key`` if present."""
        old = self.entries.pop(key, None)
        if old is not None:
            self.total_bytes -= old.cost

    def revalidate(self, key: bytes, entry: CacheEntry, now: float) -> bool:
        """Re-stat an entry whose trust period ran out; keep it or drop it.

        Returns:
            True if the file is unchanged (the entry is trusted again from ``now`` and
            becomes the most recent); False if it changed or vanished (it is dropped).
        """
        try:
            st = os.stat(entry.path)
        except OSError:
            self.drop(key)
            return False
        if not stat.S_ISREG(st.st_mode) or file_ident(st) != entry.ident:
            self.drop(key)
            return False
        entry.checked = now
        self.entries.move_to_end(key)
        return True
