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
