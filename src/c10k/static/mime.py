"""File name -> Content-Type, decided once per file and never per request.

Theory of operation
-------------------
``mimetypes.guess_type`` is the obvious tool, but it has two problems for a server:

1. Its answer depends on the machine. The first call reads ``/etc/mime.types`` (and more
   files listed in ``mimetypes.knownfiles``) and lets them override the built-in table, so
   the same docroot is served with different types on Debian, Alpine and macOS.
2. It understands compound suffixes: ``guess_type("x.tar.gz")`` is
   ``("application/x-tar", "gzip")``. A static server that does not send
   ``Content-Encoding: gzip`` must label that file ``application/gzip``, or browsers
   unpack it.

So the table here is built at import time from two fixed sources only: CPython's built-in
default table (``MimeTypes().types_map[True]``, which is filled from the module's own
defaults, not from system files) overlaid by ``WEB_TYPES`` below, which pins the types
that matter on the web and that the stdlib gets wrong or lacks in some versions (``.js``
was ``application/javascript`` before RFC 9239; ``.woff2``, ``.webp`` and ``.md`` are
missing in 3.11). Only the last suffix counts, compared case-insensitively.

``text/*`` types get ``; charset=utf-8``. Without a charset a browser guesses (HTML
sniffing, or windows-1252 for text/plain), and UTF-8 is what editors write today; nginx
leaves it off by default (``charset off``) and users add it back with ``charset utf-8``.
Other textual types (JSON, SVG, web manifests) define their own encoding rules and get
no parameter, as RFC 8259 section 11 asks for JSON.

The values are pre-encoded ``bytes``: the handler calls ``content_type`` once when it
loads a file and stores the result in the pre-rendered response head.
"""

from __future__ import annotations

import mimetypes
import os

DEFAULT_TYPE = b"application/octet-stream"  # RFC 9110 section 8.3: "unknown" means octet-stream

# Pinned types. Sources: the WHATWG MIME Sniffing / HTML specs, IANA registrations, and
# nginx's conf/mime.types, which most static servers copy.
WEB_TYPES: dict[str, str] = {
    ".html": "text/html",
    ".htm": "text/html",
    ".css": "text/css",
    ".js": "text/javascript",  # RFC 9239 section 6: text/javascript is the one to use
    ".mjs": "text/javascript",
    ".json": "application/json",
    ".map": "application/json",  # source maps
    ".webmanifest": "application/manifest+json",
    ".txt": "text/plain",
    ".md": "text/markdown",  # RFC 7763
    ".csv": "text/csv",
    ".xml": "text/xml",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
    ".avif": "image/avif",
    ".ico": "image/x-icon",  # what nginx sends; browsers accept both this and vnd.microsoft.icon
    ".woff": "font/woff",  # RFC 8081
    ".woff2": "font/woff2",
    ".ttf": "font/ttf",
    ".otf": "font/otf",
    ".wasm": "application/wasm",  # required for WebAssembly.instantiateStreaming
    ".pdf": "application/pdf",
    ".zip": "application/zip",
    ".gz": "application/gzip",  # RFC 6713
    ".mp4": "video/mp4",
    ".webm": "video/webm",
    ".mp3": "audio/mpeg",
    ".ogg": "audio/ogg",
}


def _with_charset(mime: str) -> bytes:
    if mime.startswith("text/"):
        return (mime + "; charset=utf-8").encode("ascii")
    return mime.encode("ascii")


def _build_table() -> dict[str, bytes]:
    # MimeTypes() triggers mimetypes.init() (which reads /etc/mime.types into the *global*
    # table), but the instance's own map is seeded only from the module's built-in
    # defaults, so system files never reach this table.
    table = dict(mimetypes.MimeTypes().types_map[True])
    table.update(WEB_TYPES)
    return {ext.lower(): _with_charset(mime) for ext, mime in table.items()}


TYPES: dict[str, bytes] = _build_table()


def content_type(path: str) -> bytes:
    """The Content-Type field value for a file name, from its last suffix only.

    Args:
        path: a file name or path; only the final suffix is looked at.

    Returns:
        The field value as bytes, ``application/octet-stream`` if the suffix is unknown.

    >>> content_type("index.html")
    b'text/html; charset=utf-8'
    >>> content_type("/srv/app.JS")
    b'text/javascript; charset=utf-8'
    >>> content_type("backup.tar.gz")
    b'application/gzip'
    >>> content_type("README")
    b'application/octet-stream'
    """
    return TYPES.get(os.path.splitext(path)[1].lower(), DEFAULT_TYPE)
