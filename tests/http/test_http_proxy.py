"""c10k.http.proxy: the PROXY protocol header, v1 and v2, without sockets."""

from __future__ import annotations

import pytest

from c10k.http.proxy import (
    PP2_TYPE_ALPN,
    PP2_TYPE_AUTHORITY,
    PP2_TYPE_NOOP,
    V1_MAX,
    V2_MAX,
    V2_SIGNATURE,
    ProxyError,
    ProxyHeader,
    build_v1,
    build_v2,
    crc32c,
    parse,
)

HTTP = b"GET / HTTP/1.1\r\nHost: t\r\n\r\n"
# What HAProxy sent for a client 172.19.0.1:42578 to 172.19.0.3:80 (send-proxy-v2),
# captured by netcat in the seriousben/experiment-proxy-protocol README.
HAPROXY_V2 = bytes.fromhex("0d0a0d0a000d0a515549540a2111000cac130001ac130003a6520050")


def test_v1_tcp4() -> None:
    raw = b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n"
    got = parse(raw + HTTP)
    assert got == ProxyHeader(1, len(raw), ("192.0.2.1", 56324), ("198.51.100.7", 443))


def test_v1_tcp6_and_the_longest_line() -> None:
    v6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    raw = f"PROXY TCP6 {v6} {v6} 65535 65535\r\n".encode()
    got = parse(raw)
    assert got is not None
    assert got.source == (v6, 65535)
    assert got.length == len(raw)
    assert parse(b"PROXY TCP6 2001:db8::1 ::1 1 0\r\n") == ProxyHeader(
        1, 32, ("2001:db8::1", 1), ("::1", 0)
    )


def test_v1_unknown_keeps_the_connection_addresses() -> None:
    assert parse(b"PROXY UNKNOWN\r\n" + HTTP) == ProxyHeader(1, 15)
    line = b"PROXY UNKNOWN whatever the sender put here\r\n"
    assert parse(line) == ProxyHeader(1, len(line))


@pytest.mark.parametrize(
    "raw",
    [
        HAPROXY_V2 + HTTP,
        b"PROXY TCP4 192.0.2.1 198.51.100.7 56324 443\r\n",
        build_v2(("2001:db8::5", 1234), ("2001:db8::1", 443), ((PP2_TYPE_ALPN, b"h2"),), True),
    ],
)
def test_every_prefix_asks_for_more(raw: bytes) -> None:
    whole = parse(raw)
    assert whole is not None
    for n in range(whole.length):
        assert parse(raw[:n]) is None, n


def test_haproxy_v2_header() -> None:
    got = parse(HAPROXY_V2 + HTTP)
    assert got == ProxyHeader(2, 28, ("172.19.0.1", 42578), ("172.19.0.3", 80))


def test_v2_ipv6_with_tlvs_and_crc() -> None:
    tlvs = ((PP2_TYPE_AUTHORITY, b"example.com"), (PP2_TYPE_NOOP, b"pad"), (0xE0, b"\x01"))
    raw = build_v2(("2001:db8::5", 1234), ("2001:db8::1", 443), tlvs, crc=True)
    got = parse(raw + HTTP)
    assert got is not None
    assert got.length == len(raw)
    assert (got.source, got.destination) == (("2001:db8::5", 1234), ("2001:db8::1", 443))
    assert got.tlvs == ((PP2_TYPE_AUTHORITY, b"example.com"), (0xE0, b"\x01"))  # NOOP dropped
    assert got.tlv(PP2_TYPE_AUTHORITY) == b"example.com"
    assert got.tlv(PP2_TYPE_ALPN) is None


def test_v2_local_and_unspec_keep_the_connection_addresses() -> None:
    assert parse(build_v2(None)) == ProxyHeader(2, 16)
    # LOCAL with an address block (HAProxy's health checks may send one): discarded
    local = bytearray(HAPROXY_V2)
    local[12] = 0x20
    assert parse(bytes(local)) == ProxyHeader(2, 28)
    unspec = V2_SIGNATURE + b"\x21\x00\x00\x00"
    assert parse(unspec) == ProxyHeader(2, 16)


def test_v2_unix_addresses() -> None:
    block = b"/run/a.sock".ljust(108, b"\x00") + b"/run/b.sock".ljust(108, b"\x00")
    raw = V2_SIGNATURE + b"\x21\x31" + len(block).to_bytes(2, "big") + block
    got = parse(raw)
    assert got is not None
    assert got.source == ("/run/a.sock", 0)
    assert got.destination == ("/run/b.sock", 0)


def test_crc32c_known_answer() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # RFC 3720 B.4's check value


def test_build_v1_round_trips() -> None:
    raw = build_v1(("192.0.2.1", 5), ("192.0.2.2", 80))
    assert parse(raw) == ProxyHeader(1, len(raw), ("192.0.2.1", 5), ("192.0.2.2", 80))


def _v2(ver_cmd: int = 0x21, fam: int = 0x11, body: bytes = bytes(12)) -> bytes:
    return V2_SIGNATURE + bytes([ver_cmd, fam]) + len(body).to_bytes(2, "big") + body


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (HTTP, "no PROXY protocol header"),
        (b"proxy TCP4 1.2.3.4 1.2.3.4 1 2\r\n", "no PROXY protocol header"),
        (b"\x16\x03\x01\x02\x00", "no PROXY protocol header"),  # a TLS ClientHello
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2" + b" " * 100, "without CRLF"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "bare CR or LF"),
        (b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n", "control or non-ASCII"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n", "is not 'PROXY TCP4"),
        (b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n", "is not 'PROXY TCP4"),
        (b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n", "is not 'PROXY TCP4"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "is not 'PROXY TCP4"),
        (b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n", "is not an IPv4 address"),
        (b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n", "is not an IPv6 address"),
        (b"PROXY TCP4 1.2.3.004 5.6.7.8 1 2\r\n", "is not an IPv4 address"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "above 65535"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n", "is not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 +80 2\r\n", "is not a port"),
        (b"PROXY TCP4 1.2.3.4 5.6.7.8 \xd9\xa1 2\r\n", "control or non-ASCII"),
        (_v2(ver_cmd=0x11), "version 1"),
        (_v2(ver_cmd=0x22), "command 0x2"),
        (_v2(fam=0x41), "family/transport"),
        (_v2(fam=0x13), "family/transport"),
        (_v2(fam=0x12), "datagram"),
        (_v2(fam=0x10), "datagram or unspecified"),
        (_v2(body=bytes(8)), "address block of 8 bytes"),
        (_v2(fam=0x21, body=bytes(12)), "address block of 12 bytes"),
        (_v2(body=bytes(12) + b"\x01\x00"), "TLV cut short"),
        (_v2(body=bytes(12) + b"\x01\x00\x05ab"), "runs past the header"),
        (_v2(body=bytes(12) + b"\x03\x00\x02ab"), "CRC32C TLV of 2 bytes"),
        (_v2(body=bytes(12) + b"\x03\x00\x04abcd"), "fails its CRC32C"),
        (V2_SIGNATURE + b"\x21\x11\xff\xff", f"at most {V2_MAX}"),
    ],
)
def test_bad_headers_say_why(raw: bytes, why: str) -> None:
    with pytest.raises(ProxyError, match=why.replace("(", r"\(").replace("+", r"\+")):
        parse(raw)


def test_a_corrupted_crc_is_caught() -> None:
    raw = bytearray(build_v2(("192.0.2.1", 5), ("192.0.2.2", 80), crc=True))
    raw[17] ^= 0x01  # the source address, after the checksum was computed
    with pytest.raises(ProxyError, match="CRC32C"):
        parse(bytes(raw))


def test_v1_line_limit_is_the_spec_worst_case() -> None:
    assert V1_MAX == 107
    with pytest.raises(ProxyError, match="without CRLF"):
        parse(b"PROXY UNKNOWN " + b"x" * 93 + b"\r\n")  # 109 bytes
    line = b"PROXY UNKNOWN " + b"x" * 91 + b"\r\n"  # 107 bytes
    assert parse(line) == ProxyHeader(1, 107)
