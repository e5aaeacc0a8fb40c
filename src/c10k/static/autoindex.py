"""Directory listings (nginx ``autoindex``): a pure renderer, entries in, HTML bytes out.

Theory of operation
-------------------
The handler reads the directory (``fsio.scandir``, in the thread pool) and hands this
module plain ``Item``s; rendering does no I/O. What a listing must get right:

- **Escaping twice, for two languages.** A file name is data in two places: in the text
  of the page (``html.escape``: ``<``, ``&``, quotes) and in the ``href`` (percent-encode
  every byte that is not an unreserved or harmless sub-delim character, *then*
  HTML-escape the result for the attribute). ``#``, ``?``, ``%``, space and non-ASCII
  are all percent-encoded, so each link decodes (``resolve.decode_path``) to exactly the
  name on disk. ``:`` is encoded too: a file named ``javascript:alert(1)`` would
  otherwise be a link with a scheme (relative references must not contain ``:`` in
  their first segment, RFC 3986 section 4.2). Every href is also prefixed with ``./``.
- **Names that cannot be requested are not listed**: names that are not valid UTF-8
  (``decode_path`` would answer 400 for them) and dot-names unless dotfiles are served.
- **Order**: directories first, then files, each by name (case-insensitive, then exact),
  like Apache's ``IndexOptions FoldersFirst`` and lighttpd's dirlisting.
- **Columns**: name (directories with a trailing ``/``), modification time in UTC
  (``YYYY-MM-DD HH:MM``, nginx's ``autoindex_localtime off``), exact size in bytes for
  files (nginx ``autoindex_exact_size on``), ``-`` for directories.
- A ``../`` link except at the root.

The page is small, valid HTML5 with no scripts and no external resources, and always
UTF-8 (whatever ``charset`` is configured for files: names on disk are UTF-8 here).

With listings off, a directory without an index is still a 404 (nginx, and what an
operator who turned listings off wants), but ``http.server`` lists every directory, so
people coming from it expect a listing and see a bare 404. ``no_index_page`` is that 404's
body: it names the index file and the flag that turns listings on. It names no path (not
the request's, which the client already knows, and never one on disk), and is the same
bytes for every directory, so the handler renders it once.
"""

from __future__ import annotations

import html
import time
from typing import NamedTuple
from urllib.parse import quote

# RFC 3986 unreserved plus a few sub-delims that need no escaping in a path and cannot
# start a scheme, query or fragment. Not ":" (scheme), not "&" or "'" (attribute
# quoting), not "#", "?", "%" (their URL meanings).
_HREF_SAFE = "-._~!$()*+,;=@"


class Item(NamedTuple):
    """One directory entry to list."""

    name: str
    is_dir: bool
    size: int
    mtime: float


def href(name: str, is_dir: bool) -> str:
    """The href for a name in the current directory, ready for a double-quoted attribute.

    >>> href("a b#?%.txt", False)
    './a%20b%23%3F%25.txt'
    >>> href("café", True)
    './caf%C3%A9/'
    >>> href("javascript:x&y", False)
    './javascript%3Ax%26y'
    """
    return "./" + quote(name, safe=_HREF_SAFE) + ("/" if is_dir else "")


def sort_items(items: list[Item]) -> list[Item]:
    """Directories first, then by name, case-folded first and exact second.

    >>> [i.name for i in sort_items([Item("b", False, 0, 0), Item("A", False, 0, 0),
    ...                              Item("z", True, 0, 0), Item("a", False, 0, 0)])]
    ['z', 'A', 'a', 'b']
    """
    return sorted(items, key=lambda i: (not i.is_dir, i.name.casefold(), i.name))


def listable(name: str, serve_dotfiles: bool) -> bool:
    """Whether a name belongs in a listing: requestable, and not hidden.

    >>> listable("a.txt", False), listable(".env", False), listable(".env", True)
    (True, False, True)
    >>> listable("bad\\udcff", True)  # os.listdir's surrogate escape for invalid UTF-8
    False
    """
    if name.startswith(".") and not serve_dotfiles:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return "\\" not in name  # decode_path refuses backslashes; a link would 404


def render(path: str, items: list[Item]) -> bytes:
    """The listing page for the directory at decoded URL ``path`` (ends with ``/``).

    Args:
        path: the decoded URL path of the directory, for the title.
        items: the entries to list (already filtered with ``listable``).
    """
    title = html.escape(f"Index of {path}")
    rows = []
    if path != "/":
        rows.append('<tr><td><a href="../">../</a></td><td></td><td></td></tr>')
    for item in sort_items(items):
        shown = item.name + ("/" if item.is_dir else "")
        when = time.strftime("%Y-%m-%d %H:%M", time.gmtime(item.mtime))
        size = "-" if item.is_dir else str(item.size)
        rows.append(
            f'<tr><td><a href="{html.escape(href(item.name, item.is_dir))}">'
            f"{html.escape(shown)}</a></td><td>{when}</td>"
            f'<td class="size">{size}</td></tr>'
        )
    page = (
        "<!DOCTYPE html>\n"
        '<html><head><meta charset="utf-8">'
        f"<title>{title}</title>\n"
        "<style>body{font-family:sans-serif}td{padding:0 1em}"
        "td.size{text-align:right}</style></head>\n"
        f"<body><h1>{title}</h1>\n<table>\n"
        "<tr><th>Name</th><th>Last modified (UTC)</th><th>Size</th></tr>\n"
        + "\n".join(rows)
        + "\n</table></body></html>\n"
    )
    return page.encode("utf-8")


def no_index_page(index: str) -> bytes:
    """The body of the 404 for a directory that has no ``index`` file, listings off.

    >>> print(no_index_page("index.html").decode())  # doctest: +NORMALIZE_WHITESPACE
    <html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1>
    <p>This directory has no index.html; start c10k with --autoindex to list it.</p>
    </body></html>
    >>> b"a&amp;b" in no_index_page("a&b")
    True
    """
    return (
        "<html><head><title>404 Not Found</title></head><body><h1>404 Not Found</h1>\n"
        f"<p>This directory has no {html.escape(index)}; start c10k with --autoindex"
        " to list it.</p>\n</body></html>\n"
    ).encode()
