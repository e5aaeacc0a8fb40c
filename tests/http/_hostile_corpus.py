"""The hostile-input corpus (issue 7), one table shared by two test modules.

``tests/http/test_http_hostile.py`` runs every case sans-I/O against ``HTTPConnection``
(whole and byte by byte); ``tests/server/test_server_hostile.py`` sends the same bytes to
a real server on every backend and server mode. Each case names its vector, the exact
status of the one response it must get, and what happens next:

- ``REJECT``: the parser raises ``RemoteProtocolError`` with that status; the server
  answers it with ``Connection: close`` and closes. Nothing sent after it is answered.
- ``BODY``: a well-formed head that announces a body. The parser yields it, then PAUSED;
  the server answers the head (``status`` comes from the handler: 200 for GET, 405 for
  POST) and closes without ever reading the body, so the bytes of a smuggled request
  inside it are never parsed (RFC 9112 section 11.2).
- ``KEEP``: acceptable; the connection stays open and the request after it is answered.
- ``CLOSE``: acceptable, but the client does not keep the connection (HTTP/1.0,
  ``Connection: close``): one response, then close.
- ``SILENT``: no request at all (empty lines, then EOF): no response, just a close.

Unless ``eof`` is set, ``FOLLOWUP`` (a valid request) is pipelined right after the case's
bytes: it must be answered only after ``KEEP`` cases. With ``eof`` the client half-closes
after the case's bytes instead, and nothing follows.

Statuses and precedents are explained in ``c10k.http.readers`` and ``c10k.http.abnf``;
``why`` says which rule each case tests. Vectors come from the request-smuggling
literature (Linhart et al. 2005, Kettle 2019), the llhttp and h11 test suites, and
RFC 9112's "MUST reject" sentences.
"""

from __future__ import annotations

from dataclasses import dataclass

REJECT = "reject"
BODY = "body"
KEEP = "keep"
CLOSE = "close"
SILENT = "silent"

FOLLOWUP = b"GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
FOLLOWUP_BODY = b"0123456789" * 51 + b"AB"  # tests/helpers.py make_docroot small.txt


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    status: int | None  # None for SILENT
    kind: str
    why: str
    eof: bool = False

    @property
    def wire(self) -> bytes:
        return self.data if self.eof else self.data + FOLLOWUP


H = b"GET /small.txt HTTP/1.1\r\nHost: x\r\n"  # append field lines, then b"\r\n"
P = b"POST /small.txt HTTP/1.1\r\nHost: x\r\n"
END = b"\r\n"
SMUGGLED = b"GET /index.html HTTP/1.1\r\nHost: x\r\n\r\n"
CHUNKED = b"Transfer-Encoding: chunked\r\n"


def _rl(line: bytes) -> bytes:
    return line + b"\r\nHost: x\r\n\r\n"


def _chunked_body(size: bytes) -> bytes:
    return size + b"\r\nhello\r\n0\r\n\r\n" + SMUGGLED


CASES: list[Case] = [
    # -- request smuggling: Content-Length / Transfer-Encoding (RFC 9112 section 6) --------
    Case("cl-and-te", H + b"Content-Length: 5\r\n" + CHUNKED + END + b"0\r\n\r\n",
         400, REJECT, "6.1: CL with TE ought to be an error; the classic CL.TE desync"),
    Case("te-and-cl", H + CHUNKED + b"Content-Length: 5\r\n" + END + b"0\r\n\r\n",
         400, REJECT, "same, fields in the other order (TE.CL)"),
    Case("cl-and-te-http10", b"GET /small.txt HTTP/1.0\r\nContent-Length: 3\r\n" + CHUNKED
         + END, 400, REJECT, "6.1: both framings, HTTP/1.0"),
    Case("duplicate-cl-same", H + b"Content-Length: 5\r\nContent-Length: 5\r\n" + END
         + b"hello", 400, REJECT, "6.3 rule 5 allows the strict reading; h11 accepts"),
    Case("duplicate-cl-differ", H + b"Content-Length: 5\r\nContent-Length: 6\r\n" + END
         + b"hello!", 400, REJECT, "6.3 rule 5: differing lengths MUST be rejected"),
    Case("cl-list-same", H + b"Content-Length: 5, 5\r\n" + END + b"hello", 400, REJECT,
         "6.3 rule 5; a list is not 1*DIGIT"),
    Case("cl-list-differ", H + b"Content-Length: 5, 6\r\n" + END + b"hello!", 400, REJECT,
         "6.3 rule 5"),
    Case("cl-plus", H + b"Content-Length: +5\r\n" + END + b"hello", 400, REJECT,
         "8.6 of RFC 9110: Content-Length = 1*DIGIT; int() would take a sign"),
    Case("cl-plus-underscore", H + b"Content-Length: +1_0\r\n" + END, 400, REJECT,
         "Python's int() takes '+1_0' as 10: the parser must not"),
    Case("cl-underscore", H + b"Content-Length: 1_0\r\n" + END, 400, REJECT, "1*DIGIT"),
    Case("cl-hex", H + b"Content-Length: 0x10\r\n" + END, 400, REJECT, "1*DIGIT"),
    Case("cl-negative", H + b"Content-Length: -1\r\n" + END, 400, REJECT, "1*DIGIT"),
    Case("cl-inner-space", H + b"Content-Length: 1 0\r\n" + END, 400, REJECT, "1*DIGIT"),
    Case("cl-decimal", H + b"Content-Length: 1.0\r\n" + END, 400, REJECT, "1*DIGIT"),
    Case("cl-exponent", H + b"Content-Length: 1e1\r\n" + END, 400, REJECT, "1*DIGIT"),
    Case("cl-unicode-digit", H + b"Content-Length: \xd9\xa1\r\n" + END, 400, REJECT,
         "int() accepts Arabic-Indic digits; DIGIT is ASCII only"),
    Case("cl-empty", H + b"Content-Length:\r\n" + END, 400, REJECT, "1*DIGIT: at least one"),
    Case("cl-huge", H + b"Content-Length: 99999999999999999999999\r\n" + END, 400, REJECT,
         "more than 18 digits: no 64-bit length (nginx: 400 on overflow)"),
    Case("cl-19-zeros", H + b"Content-Length: 0000000000000000000\r\n" + END, 400, REJECT,
         "length cap is by digits, so leading zeros cannot hide an overflow"),
    Case("cl-space-before-colon", H + b"Content-Length : 5\r\n" + END + b"hello", 400, REJECT,
         "RFC 9112 5.1: MUST 400 (a proxy that strips the space sees a body)"),
    Case("cl-obs-fold", H + b"Content-Length:\r\n 5\r\n" + END + b"hello", 400, REJECT,
         "RFC 9112 5.2: obs-fold rejected"),
    Case("cl-leading-zeros-body", H + b"Content-Length: 005\r\n" + END + b"hello", 200, BODY,
         "1*DIGIT allows leading zeros; GET with a body is answered, then closed"),
    Case("cl-body-is-a-request", P + b"Content-Length: %d\r\n\r\n" % len(SMUGGLED)
         + SMUGGLED, 405, BODY, "11.2: body bytes are never parsed as a request"),
    Case("cl-zero", H + b"Content-Length: 0\r\n" + END, 200, KEEP, "no body: keep going"),
    Case("cl-name-underscore", H + b"Content_Length: 5\r\n" + END, 200, KEEP,
         "a different field (token allows '_'): no body here, so no desync either"),
    # -- Transfer-Encoding --------------------------------------------------------------
    Case("te-chunked-post", P + CHUNKED + END + _chunked_body(b"5"), 405, BODY,
         "chunked body never read; the request inside it never answered"),
    Case("te-chunked-get", H + CHUNKED + END + _chunked_body(b"5"), 200, BODY,
         "GET with a body: answered, closed"),
    Case("chunk-size-0x", P + CHUNKED + END + _chunked_body(b"0x5"), 405, BODY,
         "llhttp/Kettle: 0x prefix; we never parse chunk sizes, we close"),
    Case("chunk-size-underscore", P + CHUNKED + END + _chunked_body(b"_5"), 405, BODY,
         "'_' in a chunk size"),
    Case("chunk-size-plus", P + CHUNKED + END + _chunked_body(b"+5"), 405, BODY,
         "'+' in a chunk size"),
    Case("chunk-size-overlong", P + CHUNKED + END + _chunked_body(b"0" * 40 + b"5"), 405, BODY,
         "overlong chunk size (integer overflow in C parsers)"),
    Case("chunk-size-huge", P + CHUNKED + END + _chunked_body(b"f" * 20), 405, BODY,
         "chunk size past 2**64"),
    Case("chunk-size-negative", P + CHUNKED + END + _chunked_body(b"-1"), 405, BODY,
         "negative chunk size"),
    Case("chunk-bare-lf", P + CHUNKED + END + b"5\nhello\n0\n\n" + SMUGGLED, 405, BODY,
         "bare LF in the chunked body (Kettle 2019)"),
    Case("chunk-ext-quoted-crlf", P + CHUNKED + END + b'5;a="\r\n"\r\nhello\r\n0\r\n\r\n'
         + SMUGGLED, 405, BODY, "chunk extension hiding a CRLF"),
    Case("te-duplicate", H + CHUNKED + CHUNKED + END + b"0\r\n\r\n", 400, REJECT,
         "RFC 9112 7: chunked applied twice is malformed"),
    Case("te-chunked-chunked", H + b"Transfer-Encoding: chunked, chunked\r\n" + END, 400,
         REJECT, "same, as a list"),
    Case("te-chunked-identity", H + b"Transfer-Encoding: chunked, identity\r\n" + END, 400,
         REJECT, "6.3 rule 4: chunked not final -> MUST 400"),
    Case("te-identity", H + b"Transfer-Encoding: identity\r\n" + END, 400, REJECT,
         "6.3 rule 4 (identity was retired by RFC 7230)"),
    Case("te-gzip", H + b"Transfer-Encoding: gzip\r\n" + END, 400, REJECT, "6.3 rule 4"),
    Case("te-duplicate-gzip-last", H + CHUNKED + b"Transfer-Encoding: gzip\r\n" + END, 400,
         REJECT, "combined value 'chunked, gzip': chunked not final"),
    Case("te-gzip-chunked", H + b"Transfer-Encoding: gzip, chunked\r\n" + END, 501, REJECT,
         "6.1: a transfer coding we do not implement SHOULD be 501 (nginx, h11)"),
    Case("te-identity-chunked", H + b"Transfer-Encoding: identity, chunked\r\n" + END, 501,
         REJECT, "6.1: identity is not a coding we know"),
    Case("te-chunked-params", H + b"Transfer-Encoding: chunked;q=1\r\n" + END, 400, REJECT,
         "chunked has no parameters; not the token 'chunked'"),
    Case("te-xchunked", H + b"Transfer-Encoding: xchunked\r\n" + END, 400, REJECT,
         "substring matchers see chunked here"),
    Case("te-quoted", H + b'Transfer-Encoding: "chunked"\r\n' + END, 400, REJECT,
         "a quoted string is not the coding"),
    Case("te-empty", H + b"Transfer-Encoding:\r\n" + END, 400, REJECT, "no coding at all"),
    Case("te-comma-only", H + b"Transfer-Encoding: ,\r\n" + END, 400, REJECT,
         "only empty list elements"),
    Case("te-vtab", H + b"Transfer-Encoding:\x0bchunked\r\n" + END, 400, REJECT,
         "VT is not OWS (Kettle 2019)"),
    Case("te-space-before-colon", H + b"Transfer-Encoding : chunked\r\n" + END, 400, REJECT,
         "RFC 9112 5.1: MUST 400"),
    Case("te-obs-fold", H + b"Transfer-Encoding:\r\n chunked\r\n" + END, 400, REJECT,
         "RFC 9112 5.2: obs-fold rejected"),
    Case("te-http10", b"POST /small.txt HTTP/1.0\r\n" + CHUNKED + END + b"0\r\n\r\n", 400,
         REJECT, "6.1: TE in HTTP/1.0 MUST be treated as faulty"),
    Case("te-upper-case", P + b"Transfer-Encoding: CHUNKED\r\n" + END + b"0\r\n\r\n", 405,
         BODY, "coding names are case-insensitive (RFC 9110 7.8 / 10.1.4)"),
    Case("te-tab-ows", P + b"Transfer-Encoding:\tchunked \r\n" + END + b"0\r\n\r\n", 405, BODY,
         "HTAB and SP are OWS around a value"),
    Case("te-empty-element", P + b"Transfer-Encoding: , chunked\r\n" + END + b"0\r\n\r\n", 405,
         BODY, "RFC 9110 5.6.1.2: empty list elements are ignored"),
    Case("te-name-underscore", H + b"Transfer_Encoding: chunked\r\n" + END, 200, KEEP,
         "a different field: no body"),
    # -- line endings (RFC 9112 section 2.2) ----------------------------------------------
    Case("bare-lf-everywhere", b"GET /small.txt HTTP/1.1\nHost: x\n\n", 400, REJECT,
         "2.2 lets a server reject bare LF; nginx, h11 accept, we do not"),
    Case("bare-lf-request-line", b"GET /small.txt HTTP/1.1\nHost: x\r\n\r\n", 400, REJECT, "2.2"),
    Case("bare-lf-field-line", H + b"A: b\n" + END, 400, REJECT, "2.2"),
    Case("bare-lf-final", H + b"\n", 400, REJECT, "2.2: '\\r\\n\\n' ends no head"),
    Case("lf-cr", b"GET /small.txt HTTP/1.1\n\rHost: x\r\n\r\n", 400, REJECT, "2.2"),
    Case("bare-cr-request-line", b"GET /small.txt HTTP/1.1\rHost: x\r\n\r\n", 400, REJECT,
         "2.2: bare CR MUST be rejected or replaced"),
    Case("bare-cr-value", H + b"A: b\rc\r\n" + END, 400, REJECT, "2.2"),
    Case("bare-cr-name", H + b"A\r: b\r\n" + END, 400, REJECT, "2.2"),
    Case("bare-cr-final", H + b"\r\r\n", 400, REJECT, "2.2"),
    # -- NUL and other CTLs (RFC 9110 section 5.5) -----------------------------------------
    Case("nul-in-value", H + b"A: b\x00c\r\n" + END, 400, REJECT, "5.5: NUL MUST be rejected"),
    Case("nul-in-name", H + b"A\x00: b\r\n" + END, 400, REJECT, "token"),
    Case("nul-in-target", _rl(b"GET /small.txt\x00 HTTP/1.1"), 400, REJECT, "VCHAR only"),
    Case("nul-in-method", _rl(b"G\x00T /small.txt HTTP/1.1"), 400, REJECT, "token"),
    Case("nul-in-version", _rl(b"GET /small.txt HTTP/1.1\x00"), 400, REJECT, "HTTP-version"),
    Case("soh-in-value", H + b"A: b\x01\r\n" + END, 400, REJECT, "5.5: CTL"),
    Case("esc-in-value", H + b"A: \x1b[31m\r\n" + END, 400, REJECT, "5.5: CTL (log injection)"),
    Case("ff-in-value", H + b"A: b\x0cc\r\n" + END, 400, REJECT, "5.5: CTL"),
    Case("del-in-value", H + b"A: b\x7f\r\n" + END, 400, REJECT, "5.5: DEL is not VCHAR"),
    Case("vt-in-name", H + b"A\x0b: b\r\n" + END, 400, REJECT, "token"),
    Case("tab-in-target", _rl(b"GET /small\t.txt HTTP/1.1"), 400, REJECT, "VCHAR only"),
    Case("del-in-target", _rl(b"GET /small.txt\x7f HTTP/1.1"), 400, REJECT, "VCHAR only"),
    Case("obs-text-in-value", H + b"A: caf\xc3\xa9\r\n" + END, 200, KEEP,
         "obs-text %x80-FF is allowed in values"),
    # -- field names and folding (RFC 9112 section 5) --------------------------------------
    Case("space-before-colon", H + b"A : b\r\n" + END, 400, REJECT, "5.1: MUST 400"),
    Case("tab-before-colon", H + b"A\t: b\r\n" + END, 400, REJECT, "5.1: MUST 400"),
    Case("host-space-before-colon", b"GET /small.txt HTTP/1.1\r\nHost : x\r\n\r\n", 400, REJECT,
         "5.1"),
    Case("obs-fold-space", H + b"A: b\r\n c\r\n" + END, 400, REJECT,
         "5.2: MUST reject or unfold; we reject"),
    Case("obs-fold-tab", H + b"A: b\r\n\tc\r\n" + END, 400, REJECT, "5.2"),
    Case("obs-fold-first-field", b"GET /small.txt HTTP/1.1\r\n Host: x\r\n\r\n", 400, REJECT,
         "2.2: whitespace before the first field line"),
    Case("empty-name", H + b": b\r\n" + END, 400, REJECT, "field-name = token (1*tchar)"),
    Case("colon-only", H + b":\r\n" + END, 400, REJECT, "token"),
    Case("missing-colon", H + b"NoColon\r\n" + END, 400, REJECT, "field-line grammar"),
    Case("paren-in-name", H + b"A(b): c\r\n" + END, 400, REJECT, "token"),
    Case("slash-in-name", H + b"A/b: c\r\n" + END, 400, REJECT, "token"),
    Case("brace-in-name", H + b"A{b}: c\r\n" + END, 400, REJECT, "token"),
    Case("quote-in-name", H + b'A"b: c\r\n' + END, 400, REJECT, "token"),
    Case("space-in-name", H + b"A b: c\r\n" + END, 400, REJECT, "token"),
    Case("non-ascii-name", H + b"caf\xc3\xa9: c\r\n" + END, 400, REJECT, "token"),
    # -- methods (RFC 9110 section 9) ------------------------------------------------------
    Case("non-token-method", _rl(b"G(T /small.txt HTTP/1.1"), 400, REJECT, "method = token"),
    Case("method-with-slash", _rl(b"GET/ /small.txt HTTP/1.1"), 400, REJECT, "token"),
    Case("empty-method", _rl(b" /small.txt HTTP/1.1"), 400, REJECT, "token"),
    Case("non-ascii-method", _rl(b"G\xc3\x89T /small.txt HTTP/1.1"), 400, REJECT, "token"),
    Case("lower-case-method", _rl(b"get /small.txt HTTP/1.1"), 501, KEEP,
         "methods are case-sensitive: 'get' is unknown -> 501 (9.1)"),
    Case("unknown-method", _rl(b"BREW /small.txt HTTP/1.1"), 501, KEEP, "9.1: SHOULD 501"),
    Case("long-token-method", _rl(b"X" * 200 + b" /small.txt HTTP/1.1"), 501, KEEP,
         "an unknown method of any length within the header limit"),
    Case("delete-method", _rl(b"DELETE /small.txt HTTP/1.1"), 405, KEEP, "405 with Allow"),
    # -- request line (RFC 9112 section 3) -------------------------------------------------
    Case("two-spaces-after-method", _rl(b"GET  /small.txt HTTP/1.1"), 400, REJECT,
         "3: exactly one SP"),
    Case("two-spaces-after-target", _rl(b"GET /small.txt  HTTP/1.1"), 400, REJECT, "3"),
    Case("trailing-space", _rl(b"GET /small.txt HTTP/1.1 "), 400, REJECT, "3"),
    Case("leading-space", _rl(b" GET /small.txt HTTP/1.1"), 400, REJECT, "3"),
    Case("tab-separators", _rl(b"GET\t/small.txt\tHTTP/1.1"), 400, REJECT,
         "3: SP only (3 allows whitespace leniency; we take none)"),
    Case("space-in-target", _rl(b"GET /small .txt HTTP/1.1"), 400, REJECT,
         "3.2: no whitespace in a target"),
    Case("http09-simple-request", b"GET /small.txt\r\n\r\n", 400, REJECT,
         "HTTP/0.9 has no version: not an HTTP/1.x request line"),
    Case("method-only", b"GET\r\n\r\n", 400, REJECT, "3"),
    Case("lower-case-version", _rl(b"GET /small.txt http/1.1"), 400, REJECT,
         "2.3: HTTP-name is case-sensitive"),
    Case("version-no-minor", _rl(b"GET /small.txt HTTP/1"), 400, REJECT, "2.3"),
    Case("version-two-digit-minor", _rl(b"GET /small.txt HTTP/1.10"), 400, REJECT,
         "2.3: DIGIT '.' DIGIT"),
    Case("version-two-digit-major", _rl(b"GET /small.txt HTTP/01.1"), 400, REJECT, "2.3"),
    Case("http-2.0", _rl(b"GET /small.txt HTTP/2.0"), 505, REJECT,
         "RFC 9110 15.6.6: major version not supported"),
    Case("http-3.0", _rl(b"GET /small.txt HTTP/3.0"), 505, REJECT, "15.6.6"),
    Case("http-0.9-versioned", b"GET /small.txt HTTP/0.9\r\n\r\n", 505, REJECT, "15.6.6"),
    Case("h2-preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, REJECT,
         "prior-knowledge HTTP/2 to an HTTP/1.1 server (RFC 9113 3.4)"),
    Case("http-1.2", _rl(b"GET /small.txt HTTP/1.2"), 200, KEEP,
         "RFC 9110 2.5: a higher minor version is processed as 1.1"),
    Case("http-1.0", b"GET /small.txt HTTP/1.0\r\n\r\n", 200, CLOSE,
         "HTTP/1.0 without keep-alive: Host optional, connection closes"),
    Case("http-1.0-keep-alive", b"GET /small.txt HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
         200, KEEP, "RFC 9112 9.3: 1.0 keep-alive"),
    Case("connection-close", H + b"Connection: close\r\n" + END, 200, CLOSE, "9.6"),
    # -- limits ----------------------------------------------------------------------------
    Case("request-line-too-long", _rl(b"GET /" + b"a" * 9000 + b" HTTP/1.1"), 414, REJECT,
         "RFC 9110 15.5.15 (limit 8 KiB: nginx, Apache, tomcat)"),
    Case("request-line-too-long-no-crlf", b"GET /" + b"a" * 9000, 414, REJECT,
         "rejected before the line ends, not after the header timeout"),
    Case("field-too-long", H + b"X: " + b"b" * 9000 + b"\r\n" + END, 431, REJECT,
         "RFC 6585 5"),
    Case("field-too-long-no-end", H + b"X: " + b"b" * 9000, 431, REJECT, "RFC 6585 5"),
    Case("too-many-fields", H + b"".join(b"X%d: y\r\n" % i for i in range(150)) + END, 431,
         REJECT, "RFC 6585 5 (100 fields: Apache LimitRequestFields)"),
    Case("fields-at-limit", H + b"".join(b"X%d: y\r\n" % i for i in range(99)) + END, 200,
         KEEP, "exactly 100 fields (Host + 99) is fine"),
    # -- request-target forms (RFC 9112 section 3.2) ---------------------------------------
    Case("pct-invalid-hex", _rl(b"GET /%zz HTTP/1.1"), 400, REJECT,
         "RFC 3986 2.1: pct-encoded = '%' HEXDIG HEXDIG"),
    Case("pct-truncated", _rl(b"GET /small.txt%4 HTTP/1.1"), 400, REJECT, "RFC 3986 2.1"),
    Case("pct-lone", _rl(b"GET /% HTTP/1.1"), 400, REJECT, "RFC 3986 2.1"),
    Case("pct-double-percent", _rl(b"GET /%%34%31 HTTP/1.1"), 400, REJECT,
         "'%%34%31' decodes to '%41' in one pass, 'A' in two"),
    Case("pct-in-query", _rl(b"GET /small.txt?a=%zz HTTP/1.1"), 400, REJECT,
         "RFC 3986 2.1 applies to the query too"),
    Case("pct-unicode-iis", _rl(b"GET /%u002e%u002e/small.txt HTTP/1.1"), 400, REJECT,
         "IIS %u encoding is not pct-encoded"),
    Case("pct-valid", _rl(b"GET /%73mall%2Etxt HTTP/1.1"), 200, KEEP, "decoded once: small.txt"),
    Case("absolute-form", _rl(b"GET http://x/small.txt HTTP/1.1"), 200, KEEP,
         "3.2.2: a server MUST accept absolute-form"),
    Case("absolute-form-upper-scheme", _rl(b"GET HTTP://X/small.txt HTTP/1.1"), 200, KEEP,
         "scheme is case-insensitive"),
    Case("absolute-form-https", _rl(b"GET https://x:443/small.txt?q HTTP/1.1"), 200, KEEP,
         "3.2.2"),
    Case("absolute-form-empty-authority", _rl(b"GET http:///small.txt HTTP/1.1"), 400, REJECT,
         "http URIs need a host (RFC 9110 4.2.1)"),
    Case("absolute-form-userinfo", _rl(b"GET http://u:p@x/small.txt HTTP/1.1"), 400, REJECT,
         "RFC 9110 4.2.4: userinfo is deprecated, treat as an error"),
    Case("absolute-form-other-scheme", _rl(b"GET ftp://x/small.txt HTTP/1.1"), 400, REJECT,
         "we only serve http(s)"),
    Case("absolute-form-one-slash", _rl(b"GET http:/small.txt HTTP/1.1"), 400, REJECT,
         "not absolute-form"),
    Case("absolute-form-no-host", b"GET http://x/small.txt HTTP/1.1\r\n\r\n", 400, REJECT,
         "3.2: Host is required in 1.1 even with absolute-form"),
    Case("asterisk-options", _rl(b"OPTIONS * HTTP/1.1"), 405, KEEP,
         "3.2.4: asterisk-form for OPTIONS; a static server allows GET, HEAD"),
    Case("asterisk-get", _rl(b"GET * HTTP/1.1"), 400, REJECT, "3.2.4: OPTIONS only"),
    Case("asterisk-plus", _rl(b"OPTIONS *x HTTP/1.1"), 400, REJECT, "3.2.4"),
    Case("authority-connect", _rl(b"CONNECT x:443 HTTP/1.1"), 405, KEEP,
         "3.2.3: authority-form for CONNECT; we are no proxy"),
    Case("authority-get", _rl(b"GET x:443 HTTP/1.1"), 400, REJECT, "3.2.3: CONNECT only"),
    Case("relative-target", _rl(b"GET small.txt HTTP/1.1"), 400, REJECT, "3.2"),
    Case("query-only-target", _rl(b"GET ?a HTTP/1.1"), 400, REJECT, "3.2"),
    Case("non-ascii-target", _rl(b"GET /caf\xc3\xa9 HTTP/1.1"), 400, REJECT,
         "RFC 3986: ASCII only, clients percent-encode"),
    Case("fragment-in-target", _rl(b"GET /small.txt#frag HTTP/1.1"), 200, KEEP,
         "a fragment is not sent by conforming clients; dropped (nginx, h11 accept)"),
    # -- Host (RFC 9112 section 3.2) -------------------------------------------------------
    Case("missing-host", b"GET /small.txt HTTP/1.1\r\n\r\n", 400, REJECT, "3.2: MUST 400"),
    Case("duplicate-host", H + b"Host: x\r\n" + END, 400, REJECT, "3.2: MUST 400"),
    Case("duplicate-host-differ", H + b"host: y\r\n" + END, 400, REJECT, "3.2 (host confusion)"),
    Case("duplicate-host-http10", b"GET /small.txt HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400,
         REJECT, "3.2: more than one Host"),
    Case("host-space", b"GET /small.txt HTTP/1.1\r\nHost: a b\r\n\r\n", 400, REJECT,
         "3.2: invalid field value"),
    Case("host-slash", b"GET /small.txt HTTP/1.1\r\nHost: a/b\r\n\r\n", 400, REJECT, "3.2"),
    Case("host-userinfo", b"GET /small.txt HTTP/1.1\r\nHost: u@a\r\n\r\n", 400, REJECT, "3.2"),
    Case("host-bad-port", b"GET /small.txt HTTP/1.1\r\nHost: a:b\r\n\r\n", 400, REJECT, "3.2"),
    Case("host-empty", b"GET /small.txt HTTP/1.1\r\nHost:\r\n\r\n", 200, KEEP,
         "RFC 9110 7.2: empty Host when the target has no authority"),
    Case("host-missing-http10", b"GET /small.txt HTTP/1.0\r\n\r\n", 200, CLOSE,
         "Host is optional in 1.0"),
    # -- not HTTP at all; EOF inside a head ------------------------------------------------
    Case("tls-client-hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(32), 400,
         REJECT, "TLS to a plain port: rejected on the first bytes"),
    Case("ssh-banner", b"SSH-2.0-OpenSSH_9.6\r\n", 400, REJECT, "not a method + SP"),
    Case("nul-bytes", b"\x00" * 16, 400, REJECT, "not a method"),
    Case("high-bytes", b"\xff\xfe\xfd\xfc", 400, REJECT, "not a method"),
    Case("eof-inside-request-line", b"GET /sm", 400, REJECT, "EOF inside a head", eof=True),
    Case("eof-inside-fields", H + b"A: b\r\n", 400, REJECT, "EOF inside a head", eof=True),
    Case("eof-after-empty-lines", b"\r\n\r\n\r\n", None, SILENT,
         "RFC 9112 2.2: empty lines before a request are ignored", eof=True),
]  # fmt: skip

_ids = [c.id for c in CASES]
assert len(set(_ids)) == len(_ids), "duplicate case ids"
