"""Host names: the ``names`` of a ``[[site]]`` checked, and a request's Host matched to one.

Theory of operation
-------------------
Names (checked once, at start; ``check_name``): exact host names (``example.com``, an
IPv4 address, a bracketed IPv6 literal) and wildcards ``*.example.com``. As in nginx, a
wildcard matches a name with one or more labels in place of the ``*``
(``a.example.com``, ``a.b.example.com``) and never the bare ``example.com``; a ``*``
anywhere else (``a.*.com``) or alone is refused. Names are ASCII: a Unicode name is
refused with its punycode (IDNA) spelling, which is what browsers send. Case is folded
and one trailing dot dropped (``Example.COM.`` is ``example.com``); a port is refused
(sites are chosen by name; listeners by ``--listen``).

Matching (per request; ``host_key`` then ``HostTable.match``): the Host value (the
parser has checked it against the RFC 3986 grammar: ASCII, no spaces; for an
absolute-form target it is the target's authority, RFC 9112 section 3.2.2) without its
port, lower-cased, one trailing dot dropped. An exact name wins; else the longest
matching wildcard (nginx's order, without its regexes): the suffixes of the host are
tried from the longest down, one dict lookup each. No match: None, and the caller
decides (the first site, or 421/404).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Generic, TypeVar

T = TypeVar("T")

# A DNS label (RFC 1123, plus "_" which real names use): letters, digits, inner hyphens.
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")
_WILDCARD_HELP = "a wildcard is '*.' then a name, e.g. *.example.com"


def check_name(name: object) -> tuple[str, str | None]:
    """A site name as it will be matched (lower case, no trailing dot), or what is wrong.

    >>> check_name("WWW.Example.com."), check_name("*.example.com")
    (('www.example.com', None), ('*.example.com', None))
    >>> check_name("a.*.com")[1]
    "'a.*.com': a wildcard is '*.' then a name, e.g. *.example.com"
    """
    if not isinstance(name, str):
        return "", f"{name!r}: a name must be a string"
    if not name.isascii():
        try:
            spelled = name.encode("idna").decode("ascii")
        except UnicodeError:
            return "", f"{name!r}: not a host name"
        return "", f"{name!r}: write it as browsers send it: {spelled!r}"
    host = name.lower()
    if host.endswith(".") and len(host) > 1:
        host = host[:-1]
    if host.startswith("["):
        if not host.endswith("]"):
            return "", f"{name!r}: names take no port (the site answers on every listener)"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "", f"{name!r}: not an IPv6 address in brackets"
        return host, None
    rest = host
    if "*" in host:
        if not host.startswith("*.") or "*" in host[2:]:
            return "", f"{name!r}: {_WILDCARD_HELP}"
        rest = host[2:]
    if ":" in rest:
        return "", f"{name!r}: names take no port (the site answers on every listener)"
    if not rest or not all(_LABEL.fullmatch(label) for label in rest.split(".")):
        return "", f"{name!r}: not a host name (letters, digits, '-' and '.')"
    return host, None


def host_key(raw: bytes | None) -> str:
    """The Host value as names are matched: no port, lower case, one trailing dot gone
    ("" when there is no Host: an HTTP/1.0 request).

    >>> host_key(b"WWW.Example.com.:8080"), host_key(b"[::1]:80"), host_key(None)
    ('www.example.com', '[::1]', '')
    """
    if not raw:
        return ""
    host = raw.decode("latin-1").lower()
    if host.startswith("["):
        return host[: host.find("]") + 1]
    host = host.partition(":")[0]
    return host[:-1] if host.endswith(".") else host


class HostTable(Generic[T]):
    """Names (checked with ``check_name``) to values; ``match`` finds a host's value.

    >>> t = HostTable([("example.com", 1), ("*.example.com", 2), ("*.b.example.com", 3)])
    >>> [t.match(h) for h in ("example.com", "a.example.com", "x.b.example.com", "com")]
    [1, 2, 3, None]
    """

    __slots__ = ("_exact", "_wild")

    def __init__(self, entries: Iterable[tuple[str, T]]) -> None:
        self._exact: dict[str, T] = {}
        self._wild: dict[str, T] = {}  # ".example.com" for *.example.com
        for name, value in entries:
            if name.startswith("*."):
                self._wild.setdefault(name[1:], value)
            else:
                self._exact.setdefault(name, value)

    def match(self, host: str) -> T | None:
        value = self._exact.get(host)
        if value is not None or not self._wild:
            return value
        dot = host.find(".")
        while dot > 0:  # the longest suffix first (a leading dot is no label: no match)
            value = self._wild.get(host[dot:])
            if value is not None:
                return value
            dot = host.find(".", dot + 1)
        return None
