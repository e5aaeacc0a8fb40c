"""On-the-fly compression, done once per file version (issue 16).

Theory of operation
-------------------
nginx's gzip filter compresses every response it sends: a 40 KB page at level 6 costs
about a millisecond of CPU, per request, forever. A static file changes rarely, so here
the work is done once, when the file is loaded into the cache (in the disk I/O pool,
``StaticFiles._load``), and the encoded bytes are kept in the cache entry beside the
identity representation, as if a precompressed sibling had been found on disk. A hit on a
compressed representation is then the same dict lookups and memoized wire bytes as an
identity hit; the encoded bytes count against the cache's memory bound like any content.

What is compressed (``Compressor.wants``): a compressible type (``mime.compressible``:
text, script, JSON, XML, SVG, wasm, ...) of at least ``min_bytes`` (1 KiB: below that the
gzip header and a TCP segment make the saving moot; nginx ``gzip_min_length`` is 20, Caddy
``minimum_length`` 512, Akamai 860) and at most ``max_bytes`` (8 MiB by default: a huge
file would be read whole into memory and hold a pool thread for a second or more; it is
sent identity, with sendfile).

Codings: gzip always (stdlib ``zlib``; the output carries mtime 0, so every worker and
every restart at the same level makes the same bytes) and br when the optional
``brotli`` package imports (``pip install 'c10k[brotli]'``; without it, gzip only, and
the start banner says what to install). One level for both (``--compress-level``, 1-9,
default 6: what nginx users set for ``gzip_comp_level``, ngx_brotli's
``brotli_comp_level`` default). An encoding that does not come out smaller than the file
is dropped (a mislabelled JPEG).

Once means once: several pool threads that miss the same file version at the same moment
(a cold start under load) share one compression (``_SingleFlight``, after Go's
``singleflight``), keyed by (real path, file identity); the others wait for its result.
"""

from __future__ import annotations

import importlib
import threading
import zlib
from collections.abc import Callable
from typing import Any

from c10k.static.mime import compressible


def _import_brotli() -> Any:
    # The optional extra (c10k[brotli]); imported by name so the stdlib-only install and
    # mypy (the package has no type hints) need nothing of it.
    try:
        return importlib.import_module("brotli")
    except ImportError:  # pragma: no cover - depends on what is installed
        return None


brotli: Any = _import_brotli()

BROTLI_INSTALL = "pip install 'c10k[brotli]'"

# nginx gzip_comp_level (users' usual 6; its default is 1), ngx_brotli brotli_comp_level 6.
DEFAULT_LEVEL = 6
DEFAULT_MIN_BYTES = 1024
DEFAULT_MAX_BYTES = 8 * 1024 * 1024

Encoded = tuple[tuple[bytes, bytes], ...]  # (coding, bytes), in preference order


def brotli_available() -> bool:
    """Whether br can be produced here (the ``brotli`` package imports)."""
    return brotli is not None


def _gzip(data: bytes, level: int) -> bytes:
    # wbits 31: the gzip wrapper (RFC 1952) with mtime 0 and no file name, so the bytes
    # depend only on the input and the level.
    return zlib.compress(data, level, wbits=31)


def _brotli(data: bytes, level: int) -> bytes:
    return bytes(brotli.compress(data, quality=level))


class _Call:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Encoded = ()
        self.error: BaseException | None = None


class _SingleFlight:
    # Concurrent calls with one key run the function once; the others get its result.
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: dict[object, _Call] = {}

    def do(self, key: object, fn: Callable[[], Encoded]) -> Encoded:
        with self._lock:
            call = self._calls.get(key)
            leader = call is None
            if call is None:
                call = self._calls[key] = _Call()
        if not leader:
            call.done.wait()
            if call.error is not None:
                raise call.error
            return call.result
        try:
            call.result = fn()
        except BaseException as exc:
            call.error = exc
            raise
        finally:
            with self._lock:
                del self._calls[key]
            call.done.set()
        return call.result


class Compressor:
    """Which files to compress, and the compression itself.

    Args:
        level: gzip level and brotli quality, 1-9.
        min_bytes: smaller files are sent as they are.
        max_bytes: larger files are sent as they are (not read into memory).
        use_brotli: also make br; None: when the ``brotli`` package imports.

    Raises:
        ValueError: a level outside 1-9, a negative size, or brotli asked for but absent.
    """

    __slots__ = ("_flight", "codings", "level", "max_bytes", "min_bytes", "suffixes")

    def __init__(
        self,
        level: int = DEFAULT_LEVEL,
        min_bytes: int = DEFAULT_MIN_BYTES,
        max_bytes: int = DEFAULT_MAX_BYTES,
        use_brotli: bool | None = None,
    ) -> None:
        if not 1 <= level <= 9:
            raise ValueError(f"compression level must be 1 to 9, got {level}")
        if min_bytes < 0 or max_bytes < 0:
            raise ValueError("compression size bounds must be >= 0")
        if use_brotli and brotli is None:
            raise ValueError(f"br needs the brotli package: {BROTLI_INSTALL}")
        with_br = brotli is not None if use_brotli is None else use_brotli
        self.level = level
        self.min_bytes = min_bytes
        self.max_bytes = max_bytes
        # Preference order at equal q, as encoding.SIBLINGS: br (smaller), then gzip.
        self.codings: tuple[bytes, ...] = (b"br", b"gzip") if with_br else (b"gzip",)
        # The ETag suffix of each coding: the level is part of it, so a changed level
        # never reuses a tag for other bytes; it differs from a sibling's ("-gzip").
        self.suffixes = {c: b"-%s%d" % (c, level) for c in self.codings}
        self._flight = _SingleFlight()

    def wants(self, content_type: bytes, size: int) -> bool:
        """Whether a file of this type and size is compressed on the fly."""
        return self.min_bytes <= size <= self.max_bytes and compressible(content_type)

    def compress(self, key: object, data: bytes) -> Encoded:
        """``data`` in each coding, best first; a coding whose output is not smaller than
        ``data`` is left out. Calls made at the same time with the same ``key`` (the file
        version) compress once."""
        return self._flight.do(key, lambda: self._encode(data))

    def _encode(self, data: bytes) -> Encoded:
        out = []
        for coding in self.codings:
            encoded = (_brotli if coding == b"br" else _gzip)(data, self.level)
            if len(encoded) < len(data):
                out.append((coding, encoded))
        return tuple(out)
