"""Test helpers for the static tests: self-checking content, multipart/byteranges parsing."""

from __future__ import annotations

import re

_PART_HEAD_END = b"\r\n\r\n"


def self_checking(size: int) -> bytes:
    """``size`` bytes of 10-byte records ``X%08d\\n``: record n starts at offset 10 * n."""
    records = b"".join(b"X%08d\n" % i for i in range((size + 9) // 10))
    return records[:size]


def boundary_of(content_type: bytes) -> bytes:
    m = re.fullmatch(
        rb"multipart/byteranges; boundary=([0-9A-Za-z'()+_,\-./:=?]{1,70})", content_type
    )
    assert m is not None, content_type
    return m.group(1)


def parse_multipart(content_type: bytes, body: bytes) -> list[tuple[dict[bytes, bytes], bytes]]:
    """The parts of a multipart/byteranges body: (lower-cased headers, data) each.

    Strict about the framing our server promises (RFC 2046 section 5.1.1): the body starts
    with the first delimiter, every part is headers + CRLFCRLF + data, delimiters are
    CRLF "--" boundary, and the close delimiter ends the body.
    """
    boundary = boundary_of(content_type)
    delimiter = b"\r\n--" + boundary
    assert body.startswith(b"--" + boundary + b"\r\n"), body[:80]
    assert body.endswith(delimiter + b"--\r\n"), body[-80:]
    inner = body[len(boundary) + 2 : -len(delimiter + b"--\r\n")]
    parts = []
    for chunk in inner.split(delimiter):
        assert chunk.startswith(b"\r\n"), chunk[:40]
        head, sep, data = chunk[2:].partition(_PART_HEAD_END)
        assert sep, chunk[:80]
        headers = {}
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b": ")
            headers[name.lower()] = value
        parts.append((headers, data))
    return parts


def check_part(headers: dict[bytes, bytes], data: bytes, content: bytes) -> tuple[int, int]:
    """Assert a part's Content-Range names exactly its bytes of ``content``; return
    (first, last)."""
    m = re.fullmatch(rb"bytes (\d+)-(\d+)/(\d+)", headers[b"content-range"])
    assert m is not None, headers
    first, last, size = (int(g) for g in m.groups())
    assert size == len(content)
    assert data == content[first : last + 1]
    return first, last


def fields_of(head: bytes) -> dict[bytes, bytes]:
    """A response head's fields, names lower-cased; a duplicate name fails the test."""
    out: dict[bytes, bytes] = {}
    for line in head.split(b"\r\n")[1:-1]:
        name, _, value = line.partition(b": ")
        assert name.lower() not in out, f"duplicate field {name!r}"
        out[name.lower()] = value
    return out
