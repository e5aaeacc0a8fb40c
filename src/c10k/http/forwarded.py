"""The client address behind trusted proxies: ``Forwarded`` (RFC 7239) and
``X-Forwarded-For``, sans-I/O.

Each proxy appends the address it received the request from, so the header is a chain
that ends at the hop nearest us, and only the entries our trusted proxies appended can be
believed: anything to their left was written by whoever connected to them. So the chain
is walked right to left from the peer, as nginx's ``real_ip_recursive on`` does, and the
first address that is not a trusted proxy is the client. A peer that is not trusted
changes nothing (its headers are the client's own words). Where an entry is not an IP
address (``unknown``, an obfuscated ``_node``, garbage), the walk stops at the last
trusted hop: that proxy is the farthest we can vouch for.

``Forwarded`` wins over ``X-Forwarded-For`` when a request carries both (it is the
standard; proxies that write it write it for every hop). Several lines of one header are
one list, in order (RFC 9110 5.3).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_networks(texts: Iterable[str]) -> list[Network]:
    """``--trusted-proxy`` values (a CIDR or a bare address) as networks; ValueError with
    the bad value named."""
    out = []
    for text in texts:
        try:
            out.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP address or CIDR network") from None
    return out


def client_address(
    peer: str,
    trusted: Sequence[Network],
    forwarded: Sequence[bytes] = (),
    x_forwarded_for: Sequence[bytes] = (),
) -> str:
    """The client's address for a request from ``peer`` carrying these header lines."""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    chain = _forwarded_for(forwarded) if forwarded else _x_forwarded_for(x_forwarded_for)
    client = peer
    for entry in reversed(chain):
        address = _address(entry)
        if address is None:
            break
        client = str(address)
        if not _in(address, trusted):
            break
    return client


def _is_trusted(peer: str, trusted: Sequence[Network]) -> bool:
    address = _address(peer)
    return address is not None and _in(address, trusted)


def _in(address: IPAddress, trusted: Sequence[Network]) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped  # a dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d
    return any(address.version == net.version and address in net for net in trusted)


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _x_forwarded_for(lines: Sequence[bytes]) -> list[str]:
    return [item.strip() for line in lines for item in _latin1(line).split(",")]


def _forwarded_for(lines: Sequence[bytes]) -> list[str]:
    """The ``for=`` node of each element, in order; "" for an element without one.

    ``for=192.0.2.60``, ``for="[2001:db8::17]:4711"``, ``for="192.0.2.60:80"``: the port
    and brackets are dropped. Quoted strings are split with their quotes respected, so a
    comma or semicolon inside one does not split the element.
    """
    nodes = []
    for element in _split(",".join(_latin1(line) for line in lines), ","):
        node = ""
        for pair in _split(element, ";"):
            name, _, value = pair.strip().partition("=")
            if name.strip().lower() == "for":
                node = _node(value.strip())
        nodes.append(node)
    return nodes


def _node(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if value.startswith("["):  # "[v6]" or "[v6]:port"
        end = value.find("]")
        return value[1:end] if end > 0 else ""
    host, colon, _port = value.rpartition(":")
    return host if colon and "." in host else value


def _split(text: str, sep: str) -> list[str]:
    parts, start, quoted, escaped = [], 0, False, False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif ch == "\\" and quoted:
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == sep and not quoted:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def _latin1(raw: bytes) -> str:
    return raw.decode("latin-1")
