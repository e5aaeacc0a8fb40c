"""Internal pages: the SPA fallback file and custom error pages (nginx ``try_files`` and
``error_page``), named by URL path, checked at start, rendered from the file cache.

Theory of operation
-------------------
Both name a file by its URL path below the root (``/index.html``, ``/404.html``), which
the handler serves like any other request for that path: through the open-file cache, so
the page is read once, revalidated each ``revalidate_seconds`` and its edits show up.

- ``page_problem`` is the start-time check (``c10k serve`` refuses to start otherwise,
  nginx's strictness; and so does a SIGHUP reload): the path decodes, stays inside the
  root (symlinks resolved), and names a readable regular file. Later the file may go
  away; then the fallback answers a plain 404 and an error page the built-in page.
  Neither can loop: the handler loads an internal page with its plain resolver, which
  never consults them.
- The server's own errors (a malformed request's 400, a header timeout's 408, 414, 431,
  a per-client limit's 503 or 429, overload's 503, 405/501) get the page too, as nginx's
  error_page covers them, but from memory only (``StaticFiles.error_page``): the engine
  answers them on the loop, often with no request to hand to the disk pool. So the
  handler reads its error pages when it is built, a page due for revalidation is sent as
  last read while the pool re-reads it, and a page not in memory (gone, or larger than
  the cache's per-file bound) leaves the built-in page. A closing original stays closing.
- An error page is sent with the ORIGINAL status (``error_page 404 /404.html``, not
  ``=200``), the page's Content-Type and Content-Length, and the original's other fields
  (``Allow`` of a 405, ``Retry-After`` of a 503, ``Content-Range`` of a 416). No ETag or
  Last-Modified: they would validate the page, not the resource the client asked for.
  ``ErrorPages.render`` memoizes the rendered Response per (original head, page entry),
  so a 404 flood answered with a cached page returns one object, as cached files do, and
  the server's wire memo hits.
"""

from __future__ import annotations

import os
import stat

from c10k.http.writers import Response, build_response
from c10k.region import FileRegion
from c10k.static.cache import CacheEntry
from c10k.static.resolve import ResolveError, decode_path

# Distinct (original head, page) pairs kept; cleared when full, so nothing grows unbounded.
_MEMO_MAX = 256
# Fields of a built-in error response that the page replaces.
_REPLACED = frozenset({b"server", b"content-type", b"content-length"})


def parse_error_page(spec: str) -> tuple[tuple[int, ...], str]:
    """``"404=/404.html"`` or ``"404,410=/gone.html"`` -> (codes, path).

    Raises:
        ValueError: one line saying what is wrong.

    >>> parse_error_page("404,410=/gone.html")
    ((404, 410), '/gone.html')
    """
    codes_text, eq, path = spec.partition("=")
    if not eq or not path:
        raise ValueError(f"{spec!r}: must be CODE=/PATH, e.g. 404=/404.html")
    codes = []
    for text in codes_text.split(","):
        text = text.strip()
        if not text.isdigit() or not 400 <= int(text) <= 599:
            raise ValueError(f"{spec!r}: {text!r} is not a status from 400 to 599")
        codes.append(int(text))
    if not path.startswith("/"):
        raise ValueError(f"{spec!r}: the page must be a URL path starting with '/'")
    if any(c in path for c in "?#") or any(not " " < c <= "~" for c in path):
        raise ValueError(f"{spec!r}: the page must be a plain path (no spaces, '?' or '#')")
    return tuple(codes), path


def error_pages_from(specs: list[str]) -> dict[int, str]:
    """Status -> page path from ``CODE[,CODE]=/PATH`` specs; a later one wins.

    >>> error_pages_from(["404=/a.html", "404,500=/b.html"])
    {404: '/b.html', 500: '/b.html'}
    """
    pages: dict[int, str] = {}
    for spec in specs:
        codes, path = parse_error_page(spec)
        pages.update(dict.fromkeys(codes, path))
    return pages


def page_problem(root: str, url_path: str, serve_dotfiles: bool, exists: bool = True) -> str | None:
    """Why ``url_path`` cannot be served as an internal page from ``root``, or None.

    ``exists=False`` checks only that it can name a file below the root: what a worker
    checks when it builds its handler, so a page deleted while the server runs makes a
    restarted worker serve the plain page instead of failing to start.
    """
    try:
        segments = decode_path(url_path.encode("ascii"), serve_dotfiles)
    except (ResolveError, UnicodeEncodeError):
        more = " (names starting with '.' need --dotfiles)" if "/." in url_path else ""
        return f"{url_path} cannot name a file below the root{more}"
    if not exists:
        return None
    real_root = os.path.realpath(root)
    real = os.path.realpath(os.path.join(real_root, *segments))
    if not real.startswith(real_root.rstrip(os.sep) + os.sep):
        return f"{url_path} leads out of the root {real_root}"
    try:
        st = os.stat(real)
    except OSError:
        return f"{url_path}: no such file in {real_root}"
    if not stat.S_ISREG(st.st_mode):
        return f"{url_path} is not a regular file"
    return None if os.access(real, os.R_OK) else f"{url_path} is not readable"


def _carried(original: Response) -> list[tuple[bytes, bytes]]:
    # The original's fields other than those the page replaces (Allow, Retry-After, ...).
    fields = []
    for line in original.head.split(b"\r\n")[1:]:
        name, sep, value = line.partition(b": ")
        if sep and name.lower() not in _REPLACED:
            fields.append((name, value))
    return fields


class ErrorPages:
    """Renders error responses with a page's content (see the module comment).

    Args:
        pages: status -> the page's raw URL path (bytes, as a request would send it).
    """

    __slots__ = ("_memo", "pages")

    def __init__(self, pages: dict[int, str]) -> None:
        self.pages = {status: path.encode("ascii") for status, path in pages.items()}
        self._memo: dict[tuple[bytes, bool, int], tuple[CacheEntry, Response, Response]] = {}

    def render(self, original: Response, page: CacheEntry, head: bool) -> Response:
        """``original``'s status and fields with the content of a small (cached) page."""
        key = (original.head, original.close, id(page))  # the head has no Connection line
        memo = self._memo
        hit = memo.get(key)
        if hit is None or hit[0] is not page:  # an id reused by a newer entry: rebuild
            fields = [(b"Content-Type", page.content_type), *_carried(original)]
            get = build_response(original.status, fields, page.content or b"", close=original.close)
            hit = (page, get, Response(original.status, get.head, None, original.close))
            if len(memo) >= _MEMO_MAX:
                memo.clear()
            memo[key] = hit
        return hit[2] if head else hit[1]

    def render_region(self, original: Response, page: CacheEntry, fd: int) -> Response:
        """The same with a large page's open ``fd`` as the body (a GET; closed when sent)."""
        fields = [(b"Content-Type", page.content_type), *_carried(original)]
        region = FileRegion(fd, 0, page.size, page.shared.release, page.shared.residency)
        return build_response(original.status, fields, region, close=original.close)

    def render_head(self, original: Response, page: CacheEntry) -> Response:
        """A HEAD answered with a large page: its length, no body, no fd."""
        fields = [(b"Content-Type", page.content_type), *_carried(original)]
        head = build_response(original.status, fields, None, content_length=page.size).head
        return Response(original.status, head, None, original.close)
