"""The PROXY protocol, versions 1 and 2 (HAProxy's proxy-protocol.txt), sans-I/O.

A balancer in front (HAProxy, an AWS or GCP network load balancer, nginx's stream module)
opens the TCP connection itself and first sends one header naming the client it relays.
``parse(buf)`` reads that header from the start of what a connection received: ``None``
while more bytes are needed, a ``ProxyHeader`` once it is whole (its ``length`` bytes are
the header; what follows is the client's own bytes), or ``ProxyError`` with the reason.

Strict on purpose, as the specification asks of a receiver: a listener either requires the
header or never reads one (a header from an untrusted client would let it choose its own
address), so anything that is not a well-formed header means the wrong peer is talking,
and the connection is to be closed. Version 1 is one text line of at most 107 bytes;
version 2 is a 16-byte binary prefix, an address block and TLVs, its CRC32C checked when
one is sent.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX = 107  # "PROXY UNKNOWN" + two IPv6 addresses + two ports + CRLF, the spec's worst case
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
# The spec allows 65,535 bytes after the prefix; HAProxy's default buffer holds 16 KiB.
# A real header with TLVs is a few hundred bytes.
V2_MAX = 16384

LOCAL, PROXY = 0x0, 0x1
UNSPEC, INET, INET6, UNIX = 0x0, 0x1, 0x2, 0x3
STREAM, DGRAM = 0x1, 0x2
ADDRESS_BYTES = {UNSPEC: 0, INET: 12, INET6: 36, UNIX: 216}

PP2_TYPE_ALPN = 0x01
PP2_TYPE_AUTHORITY = 0x02
PP2_TYPE_CRC32C = 0x03
PP2_TYPE_NOOP = 0x04
PP2_TYPE_UNIQUE_ID = 0x05
PP2_TYPE_SSL = 0x20


class ProxyError(ValueError):
    """The bytes are not a valid PROXY protocol header; the message says why."""


Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """A parsed header. ``source``/``destination`` are None when the connection's own
    addresses stand (v2 LOCAL, as a balancer's health check sends; v1 UNKNOWN; v2 UNSPEC).
    A UNIX source is (path, 0)."""

    version: int
    length: int
    source: Address | None = None
    destination: Address | None = None
    tlvs: tuple[tuple[int, bytes], ...] = ()

    def tlv(self, kind: int) -> bytes | None:
        return next((value for t, value in self.tlvs if t == kind), None)


def parse(buf: bytes | bytearray | memoryview) -> ProxyHeader | None:
    """The header at the start of ``buf``, None if more bytes are needed."""
    data = bytes(buf[: max(V1_MAX, V2_MAX)])
    if data.startswith(V2_SIGNATURE):
        return _parse_v2(data)
    if data.startswith(V1_PREFIX):
        return _parse_v1(data)
    if V2_SIGNATURE.startswith(data) or V1_PREFIX.startswith(data):
        return None
    raise ProxyError("no PROXY protocol header (this listener requires one)")


# -- version 1: "PROXY TCP4 192.0.2.1 198.51.100.1 56324 443\r\n" ---------------------------


def _parse_v1(data: bytes) -> ProxyHeader | None:
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyError(f"PROXY v1 line without CRLF in its first {V1_MAX} bytes")
        if b"\n" in data or b"\r" in data.rstrip(b"\r"):
            raise ProxyError("PROXY v1 line with a bare CR or LF")
        return None
    line = data[:end]
    if not line.isascii() or b"\r" in line or b"\n" in line:
        raise ProxyError("PROXY v1 line with a control or non-ASCII byte")
    parts = line.decode("ascii").split(" ")
    if parts[1:2] == ["UNKNOWN"]:
        return ProxyHeader(version=1, length=end + 2)  # the rest of the line is ignored
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ProxyError(f"PROXY v1 line is not 'PROXY TCP4|TCP6 SRC DST SPORT DPORT': {line!r}")
    kind = ipaddress.IPv4Address if parts[1] == "TCP4" else ipaddress.IPv6Address
    src, dst = (_v1_address(kind, text) for text in parts[2:4])
    sport, dport = (_v1_port(text) for text in parts[4:6])
    return ProxyHeader(version=1, length=end + 2, source=(src, sport), destination=(dst, dport))


def _v1_address(kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address], text: str) -> str:
    try:
        return str(kind(text))
    except ValueError:
        family = "IPv4" if kind is ipaddress.IPv4Address else "IPv6"
        raise ProxyError(f"PROXY v1: {text!r} is not an {family} address") from None


def _v1_port(text: str) -> int:
    # Decimal 0..65535 without sign, spaces or leading zeros (int() would take all three).
    if not text.isdigit() or not text.isascii() or (len(text) > 1 and text[0] == "0"):
        raise ProxyError(f"PROXY v1: {text!r} is not a port")
    port = int(text)
    if port > 65535:
        raise ProxyError(f"PROXY v1: port {port} is above 65535")
    return port


# -- version 2: signature, ver/cmd, family/transport, length, addresses, TLVs -------------


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if len(data) < 16:
        return None
    version, command = data[12] >> 4, data[12] & 0xF
    family, transport = data[13] >> 4, data[13] & 0xF
    total = 16 + int.from_bytes(data[14:16], "big")
    if version != 2:
        raise ProxyError(f"PROXY v2 header with version {version}")
    if command not in (LOCAL, PROXY):
        raise ProxyError(f"PROXY v2 header with command {command:#x}")
    if family not in ADDRESS_BYTES or transport > DGRAM:
        raise ProxyError(f"PROXY v2 header with family/transport {data[13]:#04x}")
    if total > V2_MAX:
        raise ProxyError(f"PROXY v2 header of {total} bytes (at most {V2_MAX} taken)")
    if len(data) < total:
        return None
    header = data[:total]
    if command == LOCAL:  # a balancer's own connection (health check): the block is discarded
        return ProxyHeader(version=2, length=total)
    if family != UNSPEC and transport != STREAM:
        raise ProxyError("PROXY v2 header for a datagram or unspecified transport")
    source, destination = _v2_addresses(header, family)
    tlvs = _v2_tlvs(header, 16 + ADDRESS_BYTES[family])
    return ProxyHeader(2, total, source, destination, tlvs)


def _v2_addresses(header: bytes, family: int) -> tuple[Address | None, Address | None]:
    block = header[16:]
    if len(block) < ADDRESS_BYTES[family]:
        raise ProxyError(f"PROXY v2 address block of {len(block)} bytes is too short")
    if family == UNSPEC:
        return None, None
    if family == UNIX:
        return (_unix_path(block[:108]), 0), (_unix_path(block[108:216]), 0)
    size = 4 if family == INET else 16
    kind = ipaddress.IPv4Address if family == INET else ipaddress.IPv6Address
    src, dst = str(kind(block[:size])), str(kind(block[size : 2 * size]))
    ports = block[2 * size : 2 * size + 4]
    return (src, int.from_bytes(ports[:2], "big")), (dst, int.from_bytes(ports[2:], "big"))


def _unix_path(raw: bytes) -> str:
    return raw.split(b"\x00", 1)[0].decode("utf-8", "backslashreplace")


def _v2_tlvs(header: bytes, start: int) -> tuple[tuple[int, bytes], ...]:
    out: list[tuple[int, bytes]] = []
    pos = start
    while pos < len(header):
        if pos + 3 > len(header):
            raise ProxyError("PROXY v2 TLV cut short")
        kind, size = header[pos], int.from_bytes(header[pos + 1 : pos + 3], "big")
        if pos + 3 + size > len(header):
            raise ProxyError(f"PROXY v2 TLV {kind:#04x} of {size} bytes runs past the header")
        if kind == PP2_TYPE_CRC32C:
            _check_crc(header, pos + 3, size)
        elif kind != PP2_TYPE_NOOP:
            out.append((kind, header[pos + 3 : pos + 3 + size]))
        pos += 3 + size
    return tuple(out)


def _check_crc(header: bytes, at: int, size: int) -> None:
    if size != 4:
        raise ProxyError(f"PROXY v2 CRC32C TLV of {size} bytes (4 expected)")
    zeroed = header[:at] + b"\x00\x00\x00\x00" + header[at + 4 :]
    if crc32c(zeroed) != int.from_bytes(header[at : at + 4], "big"):
        raise ProxyError("PROXY v2 header fails its CRC32C")


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as the PP2_TYPE_CRC32C TLV carries it."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def build_v1(source: Address, destination: Address) -> bytes:
    """A v1 line for these addresses (tests and the bench speak as a balancer would)."""
    kind = "TCP6" if ":" in source[0] else "TCP4"
    return f"PROXY {kind} {source[0]} {destination[0]} {source[1]} {destination[1]}\r\n".encode()


def build_v2(
    source: Address | None,
    destination: Address | None = None,
    tlvs: tuple[tuple[int, bytes], ...] = (),
    crc: bool = False,
) -> bytes:
    """A v2 header: PROXY over TCP for these addresses, or LOCAL when ``source`` is None."""
    if source is None:
        ver_cmd, fam, block = 0x20 | LOCAL, UNSPEC << 4, b""
    else:
        dst = destination or ("0.0.0.0" if ":" not in source[0] else "::", 0)
        src_ip, dst_ip = ipaddress.ip_address(source[0]), ipaddress.ip_address(dst[0])
        family = INET if src_ip.version == 4 else INET6
        ver_cmd, fam = 0x20 | PROXY, family << 4 | STREAM
        block = src_ip.packed + dst_ip.packed + source[1].to_bytes(2, "big")
        block += dst[1].to_bytes(2, "big")
    body = block + b"".join(bytes([t]) + len(v).to_bytes(2, "big") + v for t, v in tlvs)
    if crc:
        body += bytes([PP2_TYPE_CRC32C]) + (4).to_bytes(2, "big") + bytes(4)
    header = V2_SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body
    if crc:
        header = header[:-4] + crc32c(header).to_bytes(4, "big")
    return header
