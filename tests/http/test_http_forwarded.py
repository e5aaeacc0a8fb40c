"""c10k.http.forwarded: the client address behind trusted proxies, without sockets."""

from __future__ import annotations

import pytest

from c10k.http.forwarded import client_address, parse_networks

TRUSTED = parse_networks(["10.0.0.0/8", "2001:db8:ff::/48", "192.0.2.9"])


def test_an_untrusted_peer_speaks_for_itself() -> None:
    assert client_address("203.0.113.5", TRUSTED, x_forwarded_for=[b"1.1.1.1"]) == "203.0.113.5"
    assert client_address("203.0.113.5", [], x_forwarded_for=[b"1.1.1.1"]) == "203.0.113.5"


def test_x_forwarded_for_right_to_left() -> None:
    xff = [b"6.6.6.6, 198.51.100.4, 10.1.1.1"]  # spoofed, client, an inner proxy of ours
    assert client_address("10.0.0.2", TRUSTED, x_forwarded_for=xff) == "198.51.100.4"


def test_several_lines_are_one_list() -> None:
    xff = [b"6.6.6.6", b"198.51.100.4,10.1.1.1"]
    assert client_address("192.0.2.9", TRUSTED, x_forwarded_for=xff) == "198.51.100.4"


def test_no_header_from_a_trusted_peer_is_the_peer() -> None:
    assert client_address("10.0.0.2", TRUSTED) == "10.0.0.2"


def test_a_garbage_entry_stops_at_the_last_trusted_hop() -> None:
    xff = [b"198.51.100.4, unknown, 10.1.1.1"]
    assert client_address("10.0.0.2", TRUSTED, x_forwarded_for=xff) == "10.1.1.1"


def test_every_hop_trusted_gives_the_leftmost() -> None:
    assert client_address("10.0.0.2", TRUSTED, x_forwarded_for=[b"10.9.9.9"]) == "10.9.9.9"


@pytest.mark.parametrize(
    ("header", "client"),
    [
        (b"for=198.51.100.4", "198.51.100.4"),
        (b'for="198.51.100.4:4711";proto=https', "198.51.100.4"),
        (b'for="[2001:db8:cafe::17]:4711", for=10.1.1.1', "2001:db8:cafe::17"),
        (b"For=198.51.100.4;by=10.0.0.2", "198.51.100.4"),
        (b'for=6.6.6.6, for="_hidden", for=10.1.1.1', "10.1.1.1"),
        (b'for=198.51.100.4;x="a,b;c", for=10.1.1.1', "198.51.100.4"),
        (b"proto=https, for=10.1.1.1", "10.1.1.1"),  # an element without for=
    ],
)
def test_forwarded(header: bytes, client: str) -> None:
    assert client_address("10.0.0.2", TRUSTED, forwarded=[header]) == client


def test_forwarded_wins_over_x_forwarded_for() -> None:
    got = client_address(
        "10.0.0.2", TRUSTED, forwarded=[b"for=198.51.100.4"], x_forwarded_for=[b"6.6.6.6"]
    )
    assert got == "198.51.100.4"


def test_ipv6_peer_and_v4_mapped_peer() -> None:
    xff = [b"198.51.100.4"]
    assert client_address("2001:db8:ff::1", TRUSTED, x_forwarded_for=xff) == "198.51.100.4"
    assert client_address("::ffff:10.0.0.2", TRUSTED, x_forwarded_for=xff) == "198.51.100.4"


def test_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match=r"'10\.0\.0\.0/33' is not an IP address or CIDR"):
        parse_networks(["10.0.0.0/33"])
