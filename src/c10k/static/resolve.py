"""Request-target -> list of path segments, the only place URL paths are decoded.

Theory of operation
-------------------
Path traversal bugs come from decoding twice, or from deciding what a separator is
*after* decoding. So the order here is fixed and each step happens once:

1. Cut the fragment (``#``, never sent by conforming clients, but cheap to drop) and then
   the query (``?``). The raw path left over is also the static cache key, which is why
   the handler can look a request up before any of the steps below run.
2. Split the raw path on ``/``. Only a literal ``/`` separates segments; ``%2F`` is data.
3. Percent-decode each segment exactly once. A ``%`` not followed by two hex digits is a
   malformed URI (RFC 3986 section 2.1) -> 400. ``%252e`` therefore becomes the
   three-character name ``%2e``, never ``.``.
4. Decode the bytes as strict UTF-8 -> 400 on failure. Strict decoding rejects overlong
   forms (``%c0%ae`` for ``.``, the IIS 2000 bug, CVE-2000-0884) and surrogates.
5. A decoded segment containing ``/``, ``\\`` or NUL -> 404: it cannot name a single file
   on POSIX and only ever shows up in attacks (``\\`` is a separator on Windows).
6. Empty segments (``//``) and ``.`` are dropped; ``..`` pops one segment, and popping
   past the root is a 404 (RFC 3986 section 5.2.4 would silently clamp at the root;
   nginx answers 400; we answer 404 because there is no such file below the root).
7. Dot-names (``.git``, ``.env``, ``.htpasswd``) -> 404 unless the operator opts in.

What comes out is a list of plain names with no separators in them, safe to pass to
``os.path.join``. This is a *lexical* guarantee only: symlinks can still lead anywhere,
so the handler also checks ``os.path.realpath`` against the root (tornado's
``validate_absolute_path``).
"""

from __future__ import annotations

from urllib.parse import quote


class ResolveError(Exception):
    """The request-target cannot name a file below the root.

    Attributes:
        status: the status to answer with (400 malformed, 404 never a file here).
    """

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


# Two hex digits (any case) -> the byte they encode: one dict lookup per escape, and any
# key not in the table is a malformed escape.
_HEX_PAIRS: dict[bytes, bytes] = {
    (a + b).encode("ascii"): bytes([int(a + b, 16)])
    for a in "0123456789abcdefABCDEF"
    for b in "0123456789abcdefABCDEF"
}

# RFC 3986 pchar minus pct-encoded: unreserved / sub-delims / ":" / "@".
_PCHAR_SAFE = "-._~!$&'()*+,;=:@"


def split_target(target: bytes) -> tuple[bytes, bytes | None]:
    """Split an origin-form request-target into raw path and raw query.

    Args:
        target: the request-target as sent.

    Returns:
        ``(path, query)``; ``query`` is None when there is no ``?``.

    >>> split_target(b"/a/b?x=1&y#frag")
    (b'/a/b', b'x=1&y')
    >>> split_target(b"/a#f?x")
    (b'/a', None)
    >>> split_target(b"/?")
    (b'/', b'')
    """
    # The fragment goes first: a fragment may contain "?", a query never contains "#".
    hash_at = target.find(b"#")
    if hash_at >= 0:
        target = target[:hash_at]
    path, sep, query = target.partition(b"?")
    return path, (query if sep else None)


def _unquote(segment: bytes) -> bytes:
    # Strict: urllib's unquote_to_bytes keeps "%zz" as-is, which is exactly the leniency
    # that lets two decoders disagree.
    first, *rest = segment.split(b"%")
    out = [first]
    for part in rest:
        byte = _HEX_PAIRS.get(part[:2])
        if byte is None:
            raise ResolveError(400)
        out.append(byte)
        out.append(part[2:])
    return b"".join(out)


def decode_path(raw_path: bytes, serve_dotfiles: bool = False) -> list[str]:
    """Decode and normalise a raw URL path into file-name segments.

    Args:
        raw_path: the path part of the request-target, still percent-encoded.
        serve_dotfiles: allow segments that start with ``.``.

    Returns:
        The segments, each a non-empty name without ``/``, ``\\`` or NUL and never
        ``.`` or ``..``. An empty list is the root.

    Raises:
        ResolveError: ``status`` 400 for malformed encoding, 404 for paths that cannot
            name a file below the root.

    >>> decode_path(b"/a/./b//../c%20d/")
    ['a', 'c d']
    >>> decode_path(b"/caf%C3%A9")
    ['café']
    >>> decode_path(b"/%252e%252e")
    ['%2e%2e']
    >>> decode_path(b"/")
    []

    Errors, through a helper that returns the status instead of raising:

    >>> def status(raw, **kw):
    ...     try:
    ...         return decode_path(raw, **kw)
    ...     except ResolveError as e:
    ...         return e.status
    >>> status(b"/../etc/passwd"), status(b"/a/%2e%2e/%2e%2e/x"), status(b"/..%2fetc")
    (404, 404, 404)
    >>> status(b"/%zz"), status(b"/%4"), status(b"/%c0%ae%c0%ae"), status(b"a")
    (400, 400, 400, 400)
    >>> status(b"/.git/config"), status(b"/a%5c..%5c"), status(b"/%00")
    (404, 404, 404)
    >>> decode_path(b"/.well-known/x", serve_dotfiles=True)
    ['.well-known', 'x']
    """
    if not raw_path.startswith(b"/"):
        raise ResolveError(400)  # not origin-form; the parser should never let one through
    segments: list[str] = []
    for raw in raw_path.split(b"/"):
        if not raw:
            continue
        if b"%" in raw:
            raw = _unquote(raw)
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ResolveError(400) from None
        if name == ".":
            continue
        if name == "..":
            if not segments:
                raise ResolveError(404)
            segments.pop()
            continue
        if "/" in name or "\\" in name or "\x00" in name:
            raise ResolveError(404)
        if name[0] == "." and not serve_dotfiles:
            raise ResolveError(404)
        segments.append(name)
    return segments


def encode_path(segments: list[str], trailing_slash: bool = False) -> bytes:
    """Re-encode normalised segments into an absolute URL path.

    Used for redirect Locations. Built from the normalised segments rather than from the
    raw target, so ``//evil.example/`` can never come out as a protocol-relative URL.

    >>> encode_path(["a b", "café"], trailing_slash=True)
    b'/a%20b/caf%C3%A9/'
    >>> encode_path([], trailing_slash=True)
    b'/'
    """
    path = "/" + "/".join(quote(s, safe=_PCHAR_SAFE) for s in segments)
    if trailing_slash and not path.endswith("/"):
        path += "/"
    return path.encode("ascii")
