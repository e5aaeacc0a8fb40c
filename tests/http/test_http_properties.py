"""Property-based tests (hypothesis) of the sans-I/O request parser.

1. Any bytes, in any chunking: ``next_event`` returns only a Request, NEED_DATA, PAUSED or
   CONNECTION_CLOSED, or raises RemoteProtocolError (STYLE.md section 6, "Fuzzing"); and
   the outcome does not depend on the chunking (the sans-I/O contract).
2. Generated valid requests round-trip: method, target, version and header values.
3. The hostile corpus (``_hostile_corpus.py``), mutated byte-wise and split anywhere: the
   same outcome in every chunking, and never a request after an error or PAUSED.

Runs are bounded (max_examples=200, no deadline) so the suite stays quick.
"""

from __future__ import annotations

from itertools import pairwise

from _hostile_corpus import CASES
from _http_support import outcome, summarize, valid_requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from c10k.http import (
    CONNECTION_CLOSED,
    NEED_DATA,
    PAUSED,
    HTTPConnection,
    Limits,
    RemoteProtocolError,
    Request,
)

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Pieces that steer random input into the parser's interesting states.
FRAGMENTS = [
    b"GET", b"HEAD", b"POST", b"OPTIONS", b"CONNECT", b" ", b"  ", b"/", b"/a?b", b"*",
    b"http://h/p", b"h:1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/0.9", b"HTTP/1",
    b"http/1.1", b"\r\n", b"\r\n\r\n", b"\r", b"\n", b"\t", b"\x00", b"\x7f", b"\x80\xff",
    b"\x16\x03\x01", b"Host: x", b"Host:", b"host: y", b"Host: a b", b":", b" :", b"X: v",
    b"X : v", b"Content-Length: ", b"Content-Length: 0", b"Content-Length: 5",
    b"Content-Length: +1", b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip",
    b"Connection: close", b"Connection: keep-alive", b"0", b"1", b"a" * 40,
]  # fmt: skip

noise = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.binary(max_size=4)), max_size=40).map(
        b"".join
    ),
)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    # No empty chunk: receive_data(b"") means EOF.
    return [data[a:b] for a, b in pairwise(edges) if b > a]


limits_st = st.sampled_from([None, 64, 200]).map(
    lambda n: Limits() if n is None else Limits(max_header_bytes=n, max_fields=5)
)


@SETTINGS
@given(data=noise, cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12))
@example(data=b"\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", cuts=[1])
@example(data=b"GET / HTTP/2.0\r\nA: b\nc\r\n\r\n", cuts=[])
def test_http_property_any_bytes_only_events_or_protocol_error(
    data: bytes, cuts: list[int]
) -> None:
    allowed = (NEED_DATA, PAUSED, CONNECTION_CLOSED)
    for chunks in (_chunks(data, cuts), [data]):
        conn = HTTPConnection(Limits(max_header_bytes=200))
        stopped = False
        for chunk in [*chunks, b""]:  # b"" = EOF at the end
            conn.receive_data(chunk)
            for _ in range(len(data) + 3):
                try:
                    event = conn.next_event()
                except RemoteProtocolError as exc:
                    status = exc.error_status_hint
                    assert 400 <= status <= 599
                    assert conn.next_event() is PAUSED
                    stopped = True
                    break
                if isinstance(event, Request):
                    assert not stopped
                    continue
                assert event in allowed, event
                if event is PAUSED:
                    stopped = True
                break
            else:
                raise AssertionError("next_event never asked for more data")


@SETTINGS
@given(
    data=noise,
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
    eof=st.booleans(),
    limits=limits_st,
)
def test_http_property_outcome_independent_of_chunking(
    data: bytes, cuts: list[int], eof: bool, limits: Limits
) -> None:
    # Fresh Limits per run: a memo hit must give the same outcome as a parse, so sharing
    # one Limits between the two runs is also part of what is tested.
    whole = outcome([data], eof, limits)
    split = outcome(_chunks(data, cuts), eof, limits)
    assert split == whole
    assert outcome((data[i : i + 1] for i in range(len(data))), eof, limits) == whole


# -- valid requests round-trip -----------------------------------------------------------


@SETTINGS
@given(req=valid_requests(), cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=6))
def test_http_property_valid_requests_round_trip(
    req: tuple[bytes, bytes, bytes, int, dict[bytes, bytes]], cuts: list[int]
) -> None:
    head, method, target, minor, headers = req
    expected = ("req", method, target, minor, headers, minor == 1, False)
    # Two pipelined copies: the second is a memo hit and must be equal.
    result = outcome(_chunks(head + head, cuts), limits=Limits())
    assert result == [expected, expected, NEED_DATA]
    conn = HTTPConnection(Limits())
    conn.receive_data(head)
    parsed = conn.next_event()
    assert isinstance(parsed, Request)
    assert summarize(parsed) == expected


# -- the hostile corpus, mutated ------------------------------------------------------------

MUTATION_BYTES = [b"\r", b"\n", b"\r\n", b"\r\n\r\n", b" ", b"\t", b"\x00", b":", b",", b"%"]


@st.composite
def mutated_hostile(draw: st.DrawFn) -> bytes:
    data = draw(st.sampled_from(CASES)).wire
    for _ in range(draw(st.integers(0, 4))):
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "duplicate"]))
        if op == "insert":
            data = data[:at] + draw(st.sampled_from(MUTATION_BYTES)) + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + 1 :]
        elif op == "replace":
            data = data[:at] + draw(st.binary(min_size=1, max_size=1)) + data[at + 1 :]
        else:
            data = data[:at] + data[at : at + 16] + data[at:]
    return data


@SETTINGS
@given(
    data=mutated_hostile(),
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=12),
    eof=st.booleans(),
    limits=limits_st,
)
def test_http_property_mutated_hostile_independent_of_chunking(
    data: bytes, cuts: list[int], eof: bool, limits: Limits
) -> None:
    # outcome() itself asserts no request after an error or PAUSED.
    whole = outcome([data], eof, limits)
    assert outcome(_chunks(data, cuts), eof, limits) == whole
    if len(data) <= 1024:
        assert outcome((data[i : i + 1] for i in range(len(data))), eof, limits) == whole
