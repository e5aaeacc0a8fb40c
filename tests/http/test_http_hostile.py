"""The hostile-input corpus (``_hostile_corpus.py``) against ``HTTPConnection``, sans-I/O.

Every case is fed with its pipelined follow-up request, whole and byte by byte (``both``
asserts the two agree), and must come out exactly as its kind says: one error with the
case's status and nothing after it, a request with a body and then PAUSED for good, or
an acceptable request followed by the follow-up. The same table runs over the wire in
``tests/server/test_server_hostile.py``.
"""

from __future__ import annotations

import pytest
from _hostile_corpus import BODY, CASES, CLOSE, KEEP, REJECT, SILENT, Case
from _http_support import both

from c10k.http import (
    CONNECTION_CLOSED,
    NEED_DATA,
    PAUSED,
    HTTPConnection,
    Limits,
    RemoteProtocolError,
)

FOLLOWUP_SUMMARY = ("req", b"GET", b"/small.txt", 1, {b"host": b"x", b"connection": b"close"})


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_http_hostile_case(case: Case) -> None:
    result = both(case.wire, eof=case.eof)
    if case.kind == REJECT:
        assert result == [("error", case.status)], case.why
        return
    if case.kind == SILENT:
        assert result == [CONNECTION_CLOSED]
        return
    first = result[0]
    assert isinstance(first, tuple), result
    assert first[0] == "req", result
    keep_alive, has_body = first[5], first[6]
    if case.kind == BODY:
        assert has_body is True
        assert result[1:] == [PAUSED], "bytes after a body were parsed as a request"
        return
    assert has_body is False
    assert keep_alive is (case.kind == KEEP)
    assert case.kind in (KEEP, CLOSE)
    followup = result[1]
    assert isinstance(followup, tuple)
    assert followup[:5] == FOLLOWUP_SUMMARY
    assert result[2:] == [NEED_DATA]


@pytest.mark.parametrize("case", [c for c in CASES if c.kind == REJECT], ids=lambda c: c.id)
def test_http_hostile_rejected_connection_stays_paused(case: Case) -> None:
    # The case's own bytes are enough to reject (no follow-up, no EOF needed unless the
    # case says so); afterwards even a stream of valid requests is never parsed.
    conn = HTTPConnection(Limits())
    conn.receive_data(case.data)
    if case.eof:
        conn.receive_data(b"")
    with pytest.raises(RemoteProtocolError) as info:
        conn.next_event()
    assert info.value.error_status_hint == case.status
    if not case.eof:
        conn.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" * 3)
    assert conn.next_event() is PAUSED
    assert conn.next_event() is PAUSED


# Issue 7's list of vectors -> the corpus cases that cover each. Fails if a case is renamed
# or dropped without another covering the vector.
ISSUE_7_VECTORS: dict[str, list[str]] = {
    "CL+TE": ["cl-and-te", "te-and-cl", "cl-and-te-http10"],
    "duplicate CL, same and different": ["duplicate-cl-same", "duplicate-cl-differ"],
    "Content-Length: +1_0, 0x10, negative, huge": [
        "cl-plus-underscore", "cl-hex", "cl-negative", "cl-huge",
    ],
    "chunk sizes 0x / _ / + / overlong": [
        "chunk-size-0x", "chunk-size-underscore", "chunk-size-plus", "chunk-size-overlong",
    ],
    "duplicate TE; chunked, identity; TE in HTTP/1.0": [
        "te-duplicate", "te-chunked-identity", "te-http10",
    ],
    "unknown transfer coding (501)": ["te-gzip-chunked"],
    "bare CR or LF line ends": ["bare-cr-request-line", "bare-lf-everywhere"],
    "NUL and CTLs in names, values, targets": ["nul-in-name", "nul-in-value", "nul-in-target"],
    "whitespace before the colon": ["space-before-colon", "tab-before-colon"],
    "obs-fold": ["obs-fold-space", "obs-fold-tab"],
    "empty header names": ["empty-name"],
    "non-token bytes in names and methods": ["paren-in-name", "non-token-method"],
    "overlong request line (414), header (431), too many fields (431)": [
        "request-line-too-long", "field-too-long", "too-many-fields",
    ],
    "invalid percent-encoding in the target": ["pct-invalid-hex", "pct-truncated"],
    "absolute-form and asterisk-form targets": ["absolute-form", "asterisk-options"],
    "HTTP/2 preface, HTTP/0.9, HTTP/2.0, HTTP/1.2": [
        "h2-preface", "http09-simple-request", "http-2.0", "http-1.2",
    ],
    "missing and duplicate Host": ["missing-host", "duplicate-host"],
}  # fmt: skip


def test_http_hostile_corpus_covers_issue_7() -> None:
    ids = {c.id for c in CASES}
    missing = {v: [i for i in want if i not in ids] for v, want in ISSUE_7_VECTORS.items()}
    assert not any(missing.values()), missing
