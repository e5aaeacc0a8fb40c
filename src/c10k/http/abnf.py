"""The RFC 9110/9112 grammar we need, as compiled regexes (h11 ``_abnf.py`` style).

    token          = 1*tchar
    tchar          = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-" / "." /
                     "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
    request-line   = method SP request-target SP HTTP-version      (RFC 9112 section 3)
    HTTP-version   = HTTP-name "/" DIGIT "." DIGIT
    field-line     = field-name ":" OWS field-value OWS            (RFC 9112 section 5)
    field-value    = *field-content
    field-content  = field-vchar [ 1*( SP / HTAB / field-vchar ) field-vchar ]
    field-vchar    = VCHAR / obs-text                 ; VCHAR %x21-7E, obs-text %x80-FF

Deliberately *not* accepted, each a 400 (RFC 9112 allows a server to reject them and the
desync/smuggling literature says it should):
- obs-fold (a field line starting with SP/HTAB; RFC 9112 section 5.2 "MUST either reject");
- whitespace between field name and colon (section 5.1 "MUST respond with 400");
- bare CR anywhere, bare LF as a line end (section 2.2 lets us reject; nginx, h11 do);
- NUL and other CTLs in values (RFC 9110 section 5.5).

The whole field block is checked by one ``fullmatch`` of ``FIELD_BLOCK``: that is one pass
in C over the bytes instead of a Python loop per character. The value class excludes CR, so
the regex cannot backtrack.
"""

import re

TCHAR = rb"!#$%&'*+\-.^_`|~0-9A-Za-z"
TOKEN = re.compile(rb"[" + TCHAR + rb"]+")

# The request-target is checked for visible ASCII only here; its form (origin, absolute,
# asterisk, authority) is decided by the parser. Non-ASCII bytes in a target are a 400:
# RFC 3986 targets are ASCII, clients percent-encode the rest.
REQUEST_LINE = re.compile(rb"([" + TCHAR + rb"]+) ([\x21-\x7e]+) HTTP/([0-9])\.([0-9])")

FIELD_BLOCK = re.compile(rb"(?:[" + TCHAR + rb"]+:[\t\x20-\x7e\x80-\xff]*\r\n)*")
FIELD_LINE = re.compile(rb"[" + TCHAR + rb"]+:[\t\x20-\x7e\x80-\xff]*")

# What an incomplete request may start with: a method, then a space. Lets us reject a TLS
# ClientHello or binary junk at once instead of waiting for the header timeout. Leading
# empty lines are stripped before this is tried, but a lone CR may be the first half of
# one (RFC 9112 section 2.2), so "\r" alone must pass or a CRLF split across two reads
# would be a 400.
REQUEST_PREFIX = re.compile(rb"\r\Z|[" + TCHAR + rb"]*(?: |\Z)")

# Empty lines (CRLF) a server SHOULD ignore before a request-line (RFC 9112 section 2.2).
# One regex pass: slicing one CRLF off at a time is O(n^2) in a buffer full of them.
EMPTY_LINES = re.compile(rb"(?:\r\n)*")

# uri-host [ ":" port ] (RFC 3986: reg-name / IPv4 / IP-literal), loosely: no whitespace,
# no "/", "?", "#", "@" or controls.
HOST = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")

CONTENT_LENGTH = re.compile(rb"[0-9]{1,18}")

# A "%" that does not start pct-encoded = "%" HEXDIG HEXDIG (RFC 3986 section 2.1).
BAD_PCT = re.compile(rb"%(?![0-9A-Fa-f]{2})")
