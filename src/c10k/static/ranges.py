"""Byte ranges (RFC 9110 section 14): parse ``Range``, defend against range attacks.

Theory of operation
-------------------
``parse_range(value, size)`` turns a ``Range`` field value into one of three answers:

- ``None``: ignore the field and send the whole representation (200). This is what
  section 14.2 asks for a field we do not understand ("An origin server MUST ignore a
  Range header field that contains a range unit it does not understand"; a syntactically
  invalid ranges-specifier may be ignored too), and what we answer to requests that look
  like an attack (below).
- ``[]`` (empty list): every range-spec is unsatisfiable -> 416 with
  ``Content-Range: bytes */LEN`` (section 15.5.17).
- a list of ``(start, stop)`` Python slice bounds, ascending, non-overlapping and not
  adjacent: the parts to send. One part -> a single-part 206 with ``Content-Range``,
  several -> ``multipart/byteranges`` (section 14.6).

Grammar (section 14.1.2): ``bytes=`` (unit case-insensitive), then a comma list of
``first-last``, ``first-`` or ``-suffix``; OWS around commas; empty list elements are
skipped as the #rule of section 5.6.1 requires. ``last < first`` makes the whole field
invalid. ``last`` past the end is clamped; ``first`` past the end makes that one spec
unsatisfiable; a suffix longer than the file means the whole file; ``-0`` is
unsatisfiable. Numbers longer than 18 digits are read as "larger than any file" rather
than handed to ``int`` (whose 4300-digit limit raises, and whose cost grows with length).

Range attacks. "Apache killer" (CVE-2011-3192) sent ``bytes=0-,5-0,5-1,...`` with
hundreds of overlapping ranges; Apache built every part in memory. slowhttptest ``-R``
does the same. Defences, in order:

1. **Cap the count** at ``MAX_RANGES`` = 16 range-specs: more -> ignore the field (200).
   Precedents: nginx ``max_ranges`` (unlimited by default; exceeding it means "processed
   as if there were no byte ranges"), Apache ``MaxRanges`` (default 200, added in 2.2.21,
   exceeding it also returns the full response). 16 is generous for real clients (PDF
   readers fetch a handful at a time, video players one) and small for attackers.
2. **Refuse inflated totals**: if the satisfiable ranges together ask for more bytes than
   the file has, they must overlap: ignore the field (200). nginx's range filter and
   Apache's ``ap_set_byterange`` (since 2.2.20) both decline in exactly this case.
3. **Coalesce** what is left: sort, merge overlapping and adjacent ranges (section 14.3
   allows coalescing). So the answer never holds more parts, or more bytes, than the file.
   Sorting departs from the SHOULD of section 14.6 (parts in request order) only for
   requests that list ranges out of order, which 14.3 itself calls a sign of attack.

Every function here is pure; the doctests are the spec.
"""

from __future__ import annotations

import re

# nginx max_ranges (unlimited by default), Apache MaxRanges (200). See above.
MAX_RANGES = 16

# Digits beyond this are "bigger than any file" (10**18 bytes is an exabyte).
_MAX_DIGITS = 18
_HUGE = 10**18

_SPEC = re.compile(rb"[ \t]*(?:(\d+)-(\d*)|-(\d+))[ \t]*")

Ranges = list[tuple[int, int]]


def _int(digits: bytes) -> int:
    return int(digits) if len(digits) <= _MAX_DIGITS else _HUGE


def parse_range(value: bytes, size: int, max_ranges: int = MAX_RANGES) -> Ranges | None:
    """Parse a ``Range`` field value against a representation of ``size`` bytes.

    Args:
        value: the Range field value.
        size: the length of the selected representation.
        max_ranges: more range-specs than this -> None (ignore the field).

    Returns:
        None to ignore the field (send 200), ``[]`` if nothing is satisfiable (416), or
        the coalesced ``(start, stop)`` slice bounds to send (206).

    >>> parse_range(b"bytes=0-9", 100)
    [(0, 10)]
    >>> parse_range(b"bytes=-6", 100), parse_range(b"bytes=95-", 100)
    ([(94, 100)], [(95, 100)])
    >>> parse_range(b"bytes=90-200", 100), parse_range(b"bytes=-500", 100)
    ([(90, 100)], [(0, 100)])
    >>> parse_range(b"bytes=0-9, 20-29", 100)
    [(0, 10), (20, 30)]
    >>> parse_range(b"bytes=0-9,10-19", 100)  # adjacent: coalesced
    [(0, 20)]
    >>> parse_range(b"bytes=100-", 100), parse_range(b"bytes=-0", 100)
    ([], [])
    >>> parse_range(b"bytes=0-0", 0)
    []
    >>> parse_range(b"bytes=5-1", 100) is None  # invalid: ignored
    True
    >>> parse_range(b"items=0-1", 100) is None, parse_range(b"bytes=x", 100) is None
    (True, True)
    >>> parse_range(b"bytes=0-,0-,0-", 100) is None  # more bytes than the file: ignored
    True
    >>> parse_range(b"bytes=" + b",".join([b"1-1"] * 17), 100) is None  # too many
    True
    >>> parse_range(b"BYTES=200-300, 0-1", 100)  # unit is case-insensitive
    [(0, 2)]
    """
    unit, eq, spec_list = value.partition(b"=")
    if not eq or unit.strip().lower() != b"bytes":
        return None
    specs = [s for s in spec_list.split(b",") if s.strip()]
    if not specs or len(specs) > max_ranges:
        return None
    ranges: Ranges = []
    total = 0
    for spec in specs:
        m = _SPEC.fullmatch(spec)
        if m is None:
            return None
        first, last, suffix = m.groups()
        if suffix is not None:
            length = _int(suffix)
            if length == 0 or size == 0:
                continue  # unsatisfiable spec
            start, stop = max(size - length, 0), size
        else:
            start = _int(first)
            if last:
                end = _int(last)
                if end < start:
                    return None  # section 14.1.1: invalid, so the whole field is
                stop = min(end + 1, size)
            else:
                stop = size
            if start >= size:
                continue  # unsatisfiable spec
        ranges.append((start, stop))
        total += stop - start
    if total > size:
        return None  # overlapping ranges asking for more than the file (defence 2)
    return coalesce(ranges)


def coalesce(ranges: Ranges) -> Ranges:
    """Sort and merge overlapping or adjacent ``(start, stop)`` ranges.

    >>> coalesce([(20, 30), (0, 10), (5, 12), (12, 15)])
    [(0, 15), (20, 30)]
    >>> coalesce([])
    []
    """
    merged: Ranges = []
    for start, stop in sorted(ranges):
        if merged and start <= merged[-1][1]:
            if stop > merged[-1][1]:
                merged[-1] = (merged[-1][0], stop)
        else:
            merged.append((start, stop))
    return merged


def content_range(start: int, stop: int, size: int) -> bytes:
    """The ``Content-Range`` value of one part (section 14.4); stop is exclusive.

    >>> content_range(0, 10, 100)
    b'bytes 0-9/100'
    """
    return b"bytes %d-%d/%d" % (start, stop - 1, size)


def unsatisfied_range(size: int) -> bytes:
    """The ``Content-Range`` value of a 416 (section 15.5.17).

    >>> unsatisfied_range(100)
    b'bytes */100'
    """
    return b"bytes */%d" % size
