"""Conditional requests (RFC 9110 section 13): If-Match, If-Unmodified-Since,
If-None-Match, If-Modified-Since and If-Range.

Theory of operation
-------------------
``evaluate(headers, etag, mtime_seconds)`` runs the preconditions in the order of RFC 9110
section 13.2.2 and returns the status they decide, or 0 to go on:

    1. If-Match present: false -> 412. (Strong comparison; ``*`` matches any current
       representation, and we only get here with one.)
    2. If-Match absent, If-Unmodified-Since present: modified after the date -> 412.
    3. If-None-Match present: true ("the client has it") -> 304 for GET/HEAD.
    4. If-None-Match absent, If-Modified-Since present: not modified -> 304.
    5. Range with If-Range: evaluated by the caller with ``if_range_matches``, only after
       the above passed and only for GET (section 13.2.2 step 5).

so a present If-None-Match decides alone, even when it does not match and the date
would have, and If-Match beats everything.

Comparison functions (section 8.8.3.2): If-Match and If-Range use the *strong* one (both
tags strong and equal); If-None-Match the *weak* one (opaque-tags equal, ``W/`` or not).

Dates have one-second resolution, so the file's mtime is compared after truncation to
whole seconds (the second that Last-Modified shows). An unparsable date is ignored, as
section 13.1.3 requires: an invalid If-Modified-Since or If-Unmodified-Since is as if absent.
If-Range with a date matches only an exact match of Last-Modified (section 13.1.5); a
date we cannot parse never matches, so the full representation is sent (the safe side).

Everything here is a pure function of bytes and numbers, so the doctests are the spec.
"""

from __future__ import annotations

import datetime
import email.utils
import re

# entity-tag = [ weak ] opaque-tag ; opaque-tag = DQUOTE *etagc DQUOTE
# etagc = %x21 / %x23-7E / obs-text  (section 8.8.3). A comma is a legal etagc, so the list
# is not split on commas: the regex pulls out every quoted opaque-tag instead. Garbage
# between members is skipped rather than rejected (a lenient reading can only ever turn a
# 200 into a 304 for a tag we actually issued).
_OPAQUE_TAG = re.compile(rb'"[\x21\x23-\x7e\x80-\xff]*"')


def none_match(value: bytes, etag: bytes) -> bool:
    """Whether an If-None-Match field value matches ``etag`` (weak comparison).

    ``True`` means "the client has it": the condition is false and the answer is 304.

    Args:
        value: the If-None-Match field value (repeated fields already joined with ``, ``).
        etag: our entity-tag, quotes included, optionally ``W/``-prefixed.

    Returns:
        True if ``value`` is ``*`` or lists an entity-tag whose opaque-tag equals ours.

    >>> none_match(b'"1a-2b"', b'"1a-2b"')
    True
    >>> none_match(b'W/"1a-2b"', b'"1a-2b"')
    True
    >>> none_match(b'"x", W/"y" ,"1a-2b"', b'"1a-2b"')
    True
    >>> none_match(b'*', b'"1a-2b"')
    True
    >>> none_match(b'"1a-2c"', b'"1a-2b"')
    False
    >>> none_match(b'1a-2b', b'"1a-2b"')
    False
    >>> none_match(b'"a,b"', b'"a"')
    False
    """
    if value.strip() == b"*":
        return True
    if etag.startswith(b"W/"):
        etag = etag[2:]
    return etag in _OPAQUE_TAG.findall(value)


def parse_http_date(value: bytes) -> int | None:
    """Parse an HTTP-date into whole POSIX seconds, or None if it is not one.

    All three formats of RFC 9110 section 5.6.7 are accepted (IMF-fixdate, obsolete
    RFC 850 and asctime), as ``email.utils.parsedate_to_datetime`` reads them; a date
    without a zone is taken as UTC.

    >>> parse_http_date(b"Sun, 06 Nov 1994 08:49:37 GMT")
    784111777
    >>> parse_http_date(b"Sunday, 06-Nov-94 08:49:37 GMT")
    784111777
    >>> parse_http_date(b"Sun Nov  6 08:49:37 1994")
    784111777
    >>> parse_http_date(b"yesterday") is None
    True
    >>> parse_http_date(b"") is None
    True
    """
    try:
        parsed = email.utils.parsedate_to_datetime(value.decode("latin-1"))
    except (TypeError, ValueError, IndexError, OverflowError):
        # 3.10+ raises ValueError; older releases raised TypeError on None from parsedate_tz.
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    try:
        return int(parsed.timestamp())
    except (OverflowError, OSError, ValueError):
        return None


def modified_since(value: bytes, mtime_seconds: int) -> bool:
    """Evaluate If-Modified-Since: has the file changed after the given date?

    ``False`` means the answer is 304. An unparsable date counts as "modified", which
    is how section 13.1.3 says to ignore it.

    Args:
        value: the If-Modified-Since field value.
        mtime_seconds: the file's mtime, truncated to whole seconds.

    >>> modified_since(b"Sun, 06 Nov 1994 08:49:37 GMT", 784111777)
    False
    >>> modified_since(b"Sun, 06 Nov 1994 08:49:37 GMT", 784111778)
    True
    >>> modified_since(b"not a date", 0)
    True
    """
    since = parse_http_date(value)
    return since is None or mtime_seconds > since


def is_not_modified(headers: dict[bytes, bytes], etag: bytes, mtime_seconds: int) -> bool:
    """Whether a GET/HEAD with these request headers should be answered with 304.

    If-None-Match takes precedence over If-Modified-Since (RFC 9110 section 13.2.2).

    Args:
        headers: request header fields, lower-cased names.
        etag: the current entity-tag of the file.
        mtime_seconds: the file's mtime, truncated to whole seconds.

    Returns:
        True to answer 304 Not Modified.

    >>> ims = b"Sun, 06 Nov 1994 08:49:37 GMT"
    >>> is_not_modified({b"if-modified-since": ims}, b'"e"', 784111777)
    True
    >>> stale = {b"if-none-match": b'"other"', b"if-modified-since": ims}
    >>> is_not_modified(stale, b'"e"', 784111777)
    False
    >>> is_not_modified({b"if-none-match": b'"e"', b"if-modified-since": b"junk"}, b'"e"', 9)
    True
    >>> is_not_modified({}, b'"e"', 0)
    False
    """
    value = headers.get(b"if-none-match")
    if value is not None:
        return none_match(value, etag)
    value = headers.get(b"if-modified-since")
    if value is not None:
        return not modified_since(value, mtime_seconds)
    return False


def match_strong(value: bytes, etag: bytes) -> bool:
    """Whether an If-Match field value matches ``etag`` (strong comparison).

    >>> match_strong(b'"a", "b"', b'"b"'), match_strong(b"*", b'"b"')
    (True, True)
    >>> match_strong(b'W/"b"', b'"b"'), match_strong(b'"b"', b'W/"b"')
    (False, False)
    """
    if value.strip() == b"*":
        return True
    if etag.startswith(b"W/"):
        return False
    # Every tag in the list, minus the weak ones (the regex finds the opaque-tag of a
    # ``W/"x"`` too; those are removed by looking for the prefix).
    strong = {
        m.group()
        for m in _OPAQUE_TAG.finditer(value)
        if value[max(m.start() - 2, 0) : m.start()] != b"W/"
    }
    return etag in strong


def evaluate(headers: dict[bytes, bytes], etag: bytes, mtime_seconds: int) -> int:
    """Preconditions of a GET/HEAD, RFC 9110 section 13.2.2 steps 1 to 4.

    Args:
        headers: request header fields, lower-cased names.
        etag: the selected representation's entity-tag.
        mtime_seconds: its mtime, truncated to whole seconds.

    Returns:
        412, 304, or 0 when the request proceeds (to Range handling, then 200).

    >>> ims = b"Sun, 06 Nov 1994 08:49:37 GMT"
    >>> evaluate({b"if-match": b'"x"', b"if-none-match": b'"e"'}, b'"e"', 0)
    412
    >>> evaluate({b"if-unmodified-since": ims}, b'"e"', 784111778)
    412
    >>> evaluate({b"if-match": b'"e"', b"if-unmodified-since": ims}, b'"e"', 784111778)
    0
    >>> evaluate({b"if-unmodified-since": b"junk"}, b'"e"', 784111778)
    0
    >>> evaluate({b"if-none-match": b'W/"e"'}, b'"e"', 0)
    304
    >>> evaluate({}, b'"e"', 0)
    0
    """
    value = headers.get(b"if-match")
    if value is not None:
        if not match_strong(value, etag):
            return 412
    else:
        value = headers.get(b"if-unmodified-since")
        if value is not None:
            since = parse_http_date(value)
            if since is not None and mtime_seconds > since:
                return 412
    return 304 if is_not_modified(headers, etag, mtime_seconds) else 0


def if_range_matches(value: bytes, etag: bytes, mtime_seconds: int) -> bool:
    """Whether an If-Range validator still holds, so the Range applies (section 13.1.5).

    An entity-tag must match strongly; a date must equal Last-Modified exactly.

    >>> if_range_matches(b'"e"', b'"e"', 0), if_range_matches(b'W/"e"', b'"e"', 0)
    (True, False)
    >>> if_range_matches(b"Sun, 06 Nov 1994 08:49:37 GMT", b'"e"', 784111777)
    True
    >>> if_range_matches(b"Sun, 06 Nov 1994 08:49:36 GMT", b'"e"', 784111777)
    False
    >>> if_range_matches(b"garbage", b'"e"', 0)
    False
    """
    value = value.strip()
    if value.startswith((b'"', b"W/")):
        return not etag.startswith(b"W/") and value == etag
    return parse_http_date(value) == mtime_seconds
