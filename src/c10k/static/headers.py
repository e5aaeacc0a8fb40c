"""Extra response headers (nginx ``add_header``): everywhere, or under a URL path prefix.

Theory of operation
-------------------
The operator's lines (``"X-Frame-Options: DENY"``) are parsed and checked once, when the
handler is built, and the fields each file gets are decided when its cache entry is built:
they are rendered into the entry's pre-rendered 200, HEAD and 304 (and so into every 206
built from the entry's fields). A cache hit therefore costs nothing more with headers than
without: the bytes are already in the Response the hot path returns.

Which responses carry them: nginx ``add_header`` without ``always`` adds to 200, 201, 204,
206, 301, 302, 303, 304, 307 and 308. We do the same for the ones this handler makes:
200 (files and directory listings), 206, 304 and the 301 to a directory's slash URL.
Error responses (4xx, 5xx, error pages included) get none, which is what nginx users
expect: a ``Cache-Control: immutable`` on ``/assets/`` must not make a 404 immutable.

Which paths: a prefix is matched against the decoded path of the file served, nginx's
URI after its internal redirects: ``/sub/`` serves ``/sub/index.html`` and the SPA
fallback of a missing ``/app/x`` serves (say) ``/index.html``, and those are the paths
matched. The fields of every matching prefix are added, after the global ones, shortest
prefix first (nginx instead takes the one longest-matching location and drops inherited
``add_header`` lines when a location has its own; adding all of them is easier to read
in a flat TOML table and never hides a header the operator set).

Refused names: the fields this server owns (framing, hop-by-hop, Date, Server, and the
representation metadata the handler computes per file). A duplicate of one of those
would contradict the real one (two Content-Lengths are a request-smuggling vector, RFC
9112 section 6.3), so it is refused at start, with the reason, instead of being sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Fields = tuple[tuple[bytes, bytes], ...]

# RFC 9110 section 5.6.2: tchar.
_TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")

_FRAMING = "c10k frames every message itself (RFC 9112 section 6)"
_HOP = "a hop-by-hop field (RFC 9110 section 7.6.1): c10k manages the connection"
_COMPUTED = "c10k computes it for each file"
# Lower-cased name -> why it cannot be added.
OWNED: dict[str, str] = {
    "content-length": _FRAMING,
    "transfer-encoding": _FRAMING,
    "connection": _HOP,
    "keep-alive": _HOP,
    "proxy-connection": _HOP,
    "te": _HOP,
    "trailer": _HOP,
    "upgrade": _HOP,
    "date": "c10k sends it on every response",
    "server": "c10k sends it on every response",
    "content-type": "c10k sets it from the file name (and --charset)",
    "content-encoding": "c10k sets it for precompressed x.gz/x.br siblings",
    "content-range": _COMPUTED,
    "etag": _COMPUTED,
    "last-modified": _COMPUTED,
    "accept-ranges": _COMPUTED,
    "location": "c10k sets it on its redirects",
    "strict-transport-security": "use --hsts",
}


def parse_header(line: str) -> tuple[bytes, bytes]:
    """One ``Name: value`` line as (name, value) bytes, checked.

    Raises:
        ValueError: one line that says what is wrong.

    >>> parse_header("X-Frame-Options:  DENY ")
    (b'X-Frame-Options', b'DENY')
    >>> parse_header("Date: now")
    Traceback (most recent call last):
    ...
    ValueError: 'Date: now': Date cannot be added: c10k sends it on every response
    """
    name, colon, value = line.partition(":")
    value = value.strip(" \t")
    if not colon:
        raise ValueError(f"{line!r}: must be 'Name: value', e.g. 'X-Frame-Options: DENY'")
    if not name or not all(ord(c) in _TCHAR for c in name):
        raise ValueError(f"{line!r}: {name!r} is not a header name (RFC 9110 token characters)")
    reason = OWNED.get(name.lower())
    if reason is not None:
        raise ValueError(f"{line!r}: {name} cannot be added: {reason}")
    if not value:
        raise ValueError(f"{line!r}: the value is empty")
    if any(not " " <= c <= "~" for c in value):
        raise ValueError(f"{line!r}: the value must be printable ASCII (no line breaks)")
    return name.encode("ascii"), value.encode("ascii")


def check_prefix(prefix: str) -> None:
    """A path prefix for per-path headers: starts with ``/``, printable, no ``?``/``#``.

    Raises:
        ValueError: what is wrong, in one line.
    """
    if not prefix.startswith("/"):
        raise ValueError(f"{prefix!r}: a path prefix must start with '/', e.g. '/assets/'")
    if any(c in prefix for c in "?#") or any(not " " <= c <= "~" for c in prefix):
        raise ValueError(f"{prefix!r}: a path prefix is a plain path (no '?', '#' or controls)")


class HeaderRules:
    """Extra fields for the responses of each path (see the module comment).

    Args:
        everywhere: ``Name: value`` lines added for every path.
        by_prefix: decoded URL path prefix (``"/assets/"``) -> more lines for paths
            under it.

    Raises:
        ValueError: a bad line or prefix (the first one found).
    """

    __slots__ = ("_everywhere", "_prefixes")

    def __init__(
        self, everywhere: Iterable[str] = (), by_prefix: Mapping[str, Iterable[str]] | None = None
    ) -> None:
        self._everywhere: Fields = tuple(parse_header(line) for line in everywhere)
        prefixes = []
        for prefix, lines in (by_prefix or {}).items():
            check_prefix(prefix)
            prefixes.append((prefix, tuple(parse_header(line) for line in lines)))
        prefixes.sort(key=lambda p: len(p[0]))  # shortest first: the order they are added
        self._prefixes = tuple(prefixes)

    def __bool__(self) -> bool:
        return bool(self._everywhere or self._prefixes)

    def fields_for(self, url_path: str) -> Fields:
        """The fields for a decoded URL path (``/assets/app.js``).

        >>> HeaderRules(["A: 1"], {"/x/": ["B: 2"], "/": ["C: 3"]}).fields_for("/x/y")
        ((b'A', b'1'), (b'C', b'3'), (b'B', b'2'))
        """
        fields = self._everywhere
        for prefix, more in self._prefixes:
            if url_path.startswith(prefix):
                fields += more
        return fields
