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

Textual types get ``; charset=utf-8`` (configurable: ``charset=""`` turns it off, any
other token replaces utf-8): ``text/*``, ``application/javascript``, ``application/json``,
``application/manifest+json`` and ``image/svg+xml`` (``CHARSET_TYPES``). Without a charset
a browser guesses (HTML sniffing, or windows-1252 for text/plain), and UTF-8 is what
editors write today. nginx leaves it off by default (``charset off``) and users add it
with ``charset utf-8``, which applies to its ``charset_types`` (text/html, text/xml,
text/plain, application/javascript, application/rss+xml). RFC 8259 section 11 defines
no charset parameter for JSON ("adding one really has no effect on compliant
recipients"), so adding it is harmless, and it helps the non-compliant ones that fall
back to latin-1.

Compressible types (``compressible``): what ``compress.py`` may gzip or brotli on the fly.
Text and the text-like application types (script, JSON, XML and any ``+xml``/``+json``,
SVG, wasm, fonts without compression of their own), as nginx users list them in
``gzip_types`` and Caddy's ``encode`` matches them by default. Images, audio, video,
archives, woff/woff2 are compressed already: a second pass costs CPU and saves nothing.

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


# Non-text types that are text in practice and get the charset parameter too.
CHARSET_TYPES = frozenset(
    {"application/javascript", "application/json", "application/manifest+json", "image/svg+xml"}
)

# Types worth compressing on the fly besides text/* and the +xml/+json suffixes (RFC 6839).
# Sources: Caddy's encode default matcher, nginx users' usual gzip_types, h5bp's server
# configs. ttf/otf/eot are uncompressed font formats (woff/woff2 carry their own); ico
# files are mostly BMPs.
COMPRESSIBLE_TYPES = frozenset(
    {
        "application/javascript",
        "application/x-javascript",
        "application/ecmascript",
        "application/json",
        "application/manifest+json",
        "application/xml",
        "application/wasm",
        "application/x-sh",
        "application/postscript",
        "application/vnd.ms-fontobject",
        "image/svg+xml",
        "image/x-icon",
        "image/vnd.microsoft.icon",
        "image/bmp",
        "font/ttf",
        "font/otf",
    }
)

# A charset name is an RFC 9110 token (section 5.6.2).
_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


def _with_charset(mime: str, charset: str) -> bytes:
    if charset and (mime.startswith("text/") or mime in CHARSET_TYPES):
        return f"{mime}; charset={charset}".encode("ascii")
    return mime.encode("ascii")


def _base_table() -> dict[str, str]:
    # MimeTypes() triggers mimetypes.init() (which reads /etc/mime.types into the *global*
    # table), but the instance's own map is seeded only from the module's built-in
    # defaults, so system files never reach this table.
    table = dict(mimetypes.MimeTypes().types_map[True])
    table.update(WEB_TYPES)
    return {ext.lower(): mime for ext, mime in table.items()}


BASE_TYPES: dict[str, str] = _base_table()


def build_types(charset: str = "utf-8") -> dict[str, bytes]:
    """Suffix -> Content-Type value, with ``charset`` on the textual types.

    Raises:
        ValueError: ``charset`` is not a token.

    >>> build_types("")[".css"], build_types("utf-8")[".json"]
    (b'text/css', b'application/json; charset=utf-8')
    """
    if any(c not in _TOKEN_CHARS for c in charset):
        raise ValueError(f"charset must be an HTTP token, got {charset!r}")
    return {ext: _with_charset(mime, charset) for ext, mime in BASE_TYPES.items()}


TYPES: dict[str, bytes] = build_types()


def content_type(path: str, types: dict[str, bytes] = TYPES) -> bytes:
    """The Content-Type field value for a file name, from its last suffix only.

    Args:
        path: a file name or path; only the final suffix is looked at.
        types: the table from ``build_types`` (default: charset utf-8).

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
    return types.get(os.path.splitext(path)[1].lower(), DEFAULT_TYPE)


def compressible(ctype: bytes) -> bool:
    """Whether a Content-Type value (parameters allowed) is worth compressing on the fly.

    >>> compressible(b"text/html; charset=utf-8"), compressible(b"application/rss+xml")
    (True, True)
    >>> compressible(b"image/png"), compressible(b"font/woff2"), compressible(b"application/gzip")
    (False, False, False)
    """
    mime = ctype.split(b";", 1)[0].strip().lower().decode("ascii", "replace")
    return (
        mime.startswith("text/") or mime in COMPRESSIBLE_TYPES or mime.endswith(("+xml", "+json"))
    )
