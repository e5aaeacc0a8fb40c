"""Accept-Encoding negotiation for precompressed siblings (RFC 9110 section 12.5.3).

Theory of operation
-------------------
The handler knows, per file, which encoded siblings exist (``x.br``, ``x.gz``); this module
picks one for a request from its Accept-Encoding value, or None for the file itself.

Rules, section 12.5.3:

- No Accept-Encoding field: identity. (Any coding would be acceptable, but nginx
  ``gzip_static`` and Caddy ``precompressed`` only send an encoding a client asked for,
  and so do we.)
- Codings are case-insensitive; ``x-gzip`` is ``gzip`` (section 8.4.1.3). ``q`` ranges
  0 to 1; ``q=0`` means "not acceptable". An unparsable q counts as 0 (safe side).
- ``*`` gives its q to every coding not named explicitly.
- Highest q wins; at equal q, br before gzip (smaller, and every browser that sends br
  decodes it). Identity competes only when named (or via ``*``) with a *higher* q than
  the best coding: a browser's plain ``gzip, deflate, br`` still gets br.
- When no encoded sibling is acceptable we send identity, even if the client excluded
  it with ``identity;q=0``: section 12.5.3 allows that (a 415 helps nobody for a GET).

The parse of a field value is memoized by the handler (browsers repeat the same string).
"""

from __future__ import annotations

# Our sibling suffixes and the content-coding each one carries, in preference order.
SIBLINGS: tuple[tuple[str, bytes], ...] = (
    (".br", b"br"),
    (".gz", b"gzip"),
)

_ALIASES = {b"x-gzip": b"gzip"}


def parse_accept_encoding(value: bytes) -> dict[bytes, float]:
    """Coding (lower-case) -> q from an Accept-Encoding value.

    >>> parse_accept_encoding(b"gzip;q=0.5, BR, x-gzip;q=0.1, *;q=0")
    {b'gzip': 0.5, b'br': 1.0, b'*': 0.0}
    >>> parse_accept_encoding(b"gzip;q=x, identity")
    {b'gzip': 0.0, b'identity': 1.0}
    """
    out: dict[bytes, float] = {}
    for item in value.split(b","):
        coding, *params = item.split(b";")
        coding = coding.strip().lower()
        if not coding:
            continue
        coding = _ALIASES.get(coding, coding)
        q = 1.0
        for param in params:
            name, _, val = param.partition(b"=")
            if name.strip().lower() == b"q":
                try:
                    q = float(val.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:  # also rejects nan
                    q = 0.0
        if coding not in out:  # first mention wins (x-gzip after gzip does not override)
            out[coding] = q
    return out


def choose_encoding(value: bytes | None, available: tuple[bytes, ...]) -> bytes | None:
    """The content-coding to send, or None for identity.

    Args:
        value: the Accept-Encoding field value, None if absent.
        available: codings we have a sibling for, in preference order (br, gzip).

    >>> choose_encoding(b"gzip, deflate, br", (b"br", b"gzip"))
    b'br'
    >>> choose_encoding(b"gzip, br;q=0.9", (b"br", b"gzip"))
    b'gzip'
    >>> choose_encoding(b"br;q=0, *", (b"br", b"gzip"))
    b'gzip'
    >>> choose_encoding(b"identity, gzip;q=0.5", (b"gzip",)) is None
    True
    >>> choose_encoding(b"", (b"gzip",)) is None, choose_encoding(None, (b"gzip",)) is None
    (True, True)
    >>> choose_encoding(b"*;q=0, identity", (b"gzip",)) is None
    True
    """
    if not value or not available:
        return None
    prefs = parse_accept_encoding(value)
    star = prefs.get(b"*", 0.0)
    best: bytes | None = None
    best_q = 0.0
    for coding in available:
        q = prefs.get(coding, star)
        if q > best_q:
            best, best_q = coding, q
    if best is not None and prefs.get(b"identity", -1.0) > best_q:
        return None
    return best
