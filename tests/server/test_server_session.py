"""The Session (c10k.server.session) without sockets: a fake transport and a fake clock.

The engine every server mode runs. Each test feeds bytes and events and checks what the
Session asks its transport to do (write these bytes, pause reading, close, linger,
reset) and the deadline it is under; inputs are fed whole and byte by byte (STYLE 6).
"""

from __future__ import annotations

import re
from concurrent.futures import Future
from typing import Any

import pytest

from c10k.core.timers import Deadlines
from c10k.http.events import Request
from c10k.http.writers import Pace, Response, build_response
from c10k.region import FileRegion
from c10k.server.config import ServerConfig
from c10k.server.policy import Policy
from c10k.server.session import (
    CLOSED,
    IDLE,
    LINGERING,
    MAX_SEND_QUEUE,
    READING,
    SEND_GROW_CHECK,
    SEND_QUEUE_CHECK,
    WRITING,
    YIELDED,
    Session,
    answer_at_accept,
)

GET = b"GET /a HTTP/1.1\r\nHost: t\r\n\r\n"
GET_B = b"GET /b HTTP/1.1\r\nHost: t\r\n\r\n"
BODY_A = b"A" * 10
BODY_B = b"B" * 20


class FakeLoop:
    """``now`` set by the test; deadlines filed in real buckets; posted work recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.deadlines = Deadlines()
        self.soon: list[tuple[Any, tuple[Any, ...]]] = []
        self.jobs: list[tuple[Any, tuple[Any, ...], Any]] = []
        self.timers: list[tuple[float, Any]] = []  # (when, callback), run by advance

    def call_later(self, delay: float, callback: Any) -> None:
        self.timers.append((self.now + delay, callback))

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.soon.append((callback, args))

    def run_in_thread(self, fn: Any, *args: Any, done: Any) -> Future[Any]:
        self.jobs.append((fn, args, done))
        return Future()

    def run_soon(self) -> None:
        soon, self.soon = self.soon, []
        for callback, args in soon:
            callback(*args)

    def finish_jobs(self) -> None:
        jobs, self.jobs = self.jobs, []
        for fn, args, done in jobs:
            future: Future[Any] = Future()
            future.set_result(fn(*args))
            done(future)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        due = [t for t in self.timers if t[0] <= self.now]
        self.timers = [t for t in self.timers if t[0] > self.now]
        for _, callback in sorted(due, key=lambda t: t[0]):
            callback()
        self.deadlines.expire(self.now)


class FakeTransport:
    """Records what the Session asks. With ``block`` set, writes stay queued (the socket
    is full) until ``drain()``."""

    def __init__(self, protocol: Session) -> None:
        self.protocol = protocol
        self.peer = ("127.0.0.1", 5555)
        self.written: list[bytes | FileRegion] = []
        self.queued: list[bytes | FileRegion] = []
        self.block = False
        self.paused = False
        self.closed = False
        self.eof_written = False
        self.reset: bool | None = None
        self.unacked = 0
        self.calls = 0
        self.files = 0  # send_file calls (the flat large-file path)
        self.lowat: list[int] = []  # each unsent limit the Session set, in order
        protocol.connection_made(self)

    def feed(self, data: bytes) -> None:
        """Bytes arrive; a returned reply is written, as a real transport does."""
        reply = self.protocol.data_received(data)
        if reply is not None:
            self.writelines([reply])

    def writelines(self, items: list[bytes | FileRegion]) -> None:
        assert not self.closed, "write after close"
        self.calls += 1
        if self.block:
            was = bool(self.queued)
            self.queued.extend(items)
            if not was:
                self.protocol.pause_writing()
        else:
            self.written.extend(items)

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def send_file(self, head: bytes, region: FileRegion) -> None:
        self.files += 1
        self.writelines([head, region])

    def drain(self) -> None:
        self.block = False
        self.written.extend(self.queued)
        self.queued = []
        self.protocol.resume_writing()

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.protocol.connection_lost(None)

    def write_eof(self) -> None:
        self.eof_written = True

    def abort(self, reset: bool = False) -> None:
        self.reset = reset
        self.close()

    def pending_bytes(self) -> int:
        return sum(len(i) for i in self.queued) + self.unacked

    def unacked_bytes(self) -> int:
        return self.unacked

    def set_send_lowat(self, nbytes: int) -> None:
        self.lowat.append(nbytes)

    @property
    def wire(self) -> bytes:
        return b"".join(i for i in self.written if isinstance(i, bytes))


RESPONSES = {
    b"/a": build_response(200, [(b"Content-Type", b"text/plain")], BODY_A),
    b"/b": build_response(200, [(b"Content-Type", b"text/plain")], BODY_B),
}


def handler(req: Request, now: float) -> Response:
    if req.target == b"/boom":
        raise RuntimeError("handler bug")
    return RESPONSES.get(req.target) or build_response(404, [], b"nope")


@pytest.fixture
def loop() -> FakeLoop:
    return FakeLoop()


def make(loop: FakeLoop, **settings: Any) -> tuple[Session, FakeTransport, Policy]:
    config = ServerConfig(**{"max_accept_wait": 0, **settings})
    policy = Policy(config, handler)
    session = Session(policy, loop)
    return session, FakeTransport(session), policy


def statuses(wire: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) ", wire)]


# -- the hot path ---------------------------------------------------------------------
def test_session_memoized_get_is_returned_as_one_write(loop: FakeLoop) -> None:
    session, t, policy = make(loop)
    t.feed(GET)  # the first: parsed, rendered, memoized
    first = t.wire
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert first.endswith(b"\r\n\r\n" + BODY_A)
    reply = session.data_received(GET)  # the same head again: the memoized bytes
    assert reply == first
    assert session.deadline == loop.now + policy.keepalive_timeout
    assert session.state == IDLE
    assert policy.requests == 2


@pytest.mark.parametrize("chunk", [None, 1, 7])
def test_session_answers_the_same_however_the_bytes_are_split(loop: FakeLoop, chunk: int) -> None:
    _session, t, _ = make(loop)
    data = GET + GET_B + GET
    pieces = [data] if chunk is None else [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        t.feed(piece)
    assert statuses(t.wire) == [200, 200, 200]
    assert t.wire.count(BODY_A) == 2
    assert t.wire.count(BODY_B) == 1
    assert t.wire.index(BODY_B) < t.wire.rindex(BODY_A)  # in order


def test_session_pipelined_batch_is_one_write(loop: FakeLoop) -> None:
    _, t, _ = make(loop)
    t.feed(GET + GET_B)
    assert t.calls == 1
    assert statuses(t.wire) == [200, 200]


def test_session_http10_keepalive_is_announced(loop: FakeLoop) -> None:
    _, t, _ = make(loop)
    t.feed(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert b"Connection: keep-alive\r\n" in t.wire
    assert not t.closed


BIG_HEAD = build_response(200, [(b"Content-Type", b"application/octet-stream")], b"x" * 99).head


def big_file(req: Request, now: float) -> Response:
    """A large cached file's GET: a new Response per request around the entry's head."""
    return Response(200, BIG_HEAD, FileRegion(7, 0, 99))


@pytest.mark.parametrize(
    ("request_line", "connection"),
    [(b"GET /big HTTP/1.1", b""), (b"GET /big HTTP/1.0", b"Connection: keep-alive\r\n")],
)
def test_session_large_file_goes_flat_with_its_head_memoized(
    loop: FakeLoop, request_line: bytes, connection: bytes
) -> None:
    session, t, policy = make(loop)
    session.handle_fast = big_file
    get = request_line + b"\r\nHost: t\r\n" + connection + b"\r\n"
    t.feed(get)  # the first: parsed, the head rendered and memoized
    assert t.files == 0
    first = t.written[:]
    loop.now += 1.0
    t.feed(get)  # the same head again: the memoized head and the region, flat
    assert t.files == 1
    head, region = t.written[2:]
    assert head == first[0]  # the same bytes as the general path's
    assert head.endswith(connection + b"\r\n")  # type: ignore[union-attr]
    assert isinstance(region, FileRegion)
    assert region is not first[1]  # (each response its own region)
    assert (region.fd, region.offset, region.count) == (7, 0, 99)
    assert session.deadline == loop.now + policy.keepalive_timeout
    assert session.state == IDLE
    assert policy.requests == 2


@pytest.mark.parametrize(
    "case", ["closing-response", "paced-connection", "paced-response", "new-head"]
)
def test_session_large_file_takes_the_general_path_when_it_must(loop: FakeLoop, case: str) -> None:
    """The second GET would go flat but for what the case changes: a response that
    closes, a connection under --limit-rate, a response with its own rate, a head not
    memoized (one made per request, as a range's)."""
    fast = 1 << 30  # a rate that holds nothing back
    settings = {"limit_rate": fast, "limit_rate_after": fast} if case == "paced-connection" else {}
    session, t, _policy = make(loop, **settings)
    second = {
        "closing-response": lambda: Response(200, BIG_HEAD, FileRegion(7, 0, 99), close=True),
        "paced-response": lambda: Response(200, BIG_HEAD, FileRegion(7, 0, 99), pace=Pace(0)),
        "new-head": lambda: Response(200, BIG_HEAD + b"X-New: 1\r\n", FileRegion(7, 0, 99)),
    }.get(case, lambda: Response(200, BIG_HEAD, FileRegion(7, 0, 99)))
    answers = iter([lambda: Response(200, BIG_HEAD, FileRegion(7, 0, 99)), second])
    session.handle_fast = lambda req, now: next(answers)()
    get = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n"
    t.feed(get)
    t.feed(get)
    assert t.files == 0
    assert statuses(t.wire) == [200, 200]
    assert t.closed == (case == "closing-response")


def test_session_large_file_flat_write_that_blocks_waits_as_any(loop: FakeLoop) -> None:
    session, t, policy = make(loop)
    session.handle_fast = big_file
    get = b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n"
    t.feed(get)
    t.block = True
    t.feed(get)
    assert t.files == 1
    assert session.state == WRITING
    assert t.paused
    t.drain()
    assert session.state == IDLE
    assert not t.paused
    assert session.deadline == loop.now + policy.keepalive_timeout


# -- closing ----------------------------------------------------------------------------
def test_session_connection_close_closes_after_the_response(loop: FakeLoop) -> None:
    session, t, _ = make(loop)
    t.feed(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert b"Connection: close\r\n" in t.wire
    assert t.closed
    assert session.state == CLOSED
    assert t.reset is None


CLOSE_GET = b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"


def test_session_answer_at_accept_is_the_sessions_closing_wire(loop: FakeLoop) -> None:
    _, t, policy = make(loop)
    assert answer_at_accept(policy, CLOSE_GET, loop.now) is None  # head never seen yet
    t.feed(CLOSE_GET)  # a Session answers it: head and wire memoized
    assert policy.requests == 1
    wire = answer_at_accept(policy, CLOSE_GET, loop.now)
    assert wire == t.wire  # byte for byte what the Session sent, Connection: close
    assert policy.requests == 2  # counted as the Session counts it
    assert len(loop.deadlines) == 0  # no connection state left behind


@pytest.mark.parametrize(
    ("data", "settings", "why"),
    [
        (GET, {}, "keep-alive: the connection outlives the response"),
        (CLOSE_GET.replace(b"GET", b"HEAD"), {}, "not a GET"),
        (CLOSE_GET[:-2], {}, "an unfinished head"),
        (CLOSE_GET + GET, {}, "pipelined bytes after the head"),
        (CLOSE_GET, {"access_log": "-"}, "the access log needs the connection"),
        (CLOSE_GET, {"limit_conn_per_ip": 5}, "per-client limits need the connection"),
    ],
)
def test_session_answer_at_accept_leaves_the_rest_to_a_session(
    loop: FakeLoop, data: bytes, settings: dict[str, Any], why: str
) -> None:
    _, _, policy = make(loop, **settings)
    for head in (CLOSE_GET, CLOSE_GET.replace(b"GET", b"HEAD"), GET):
        FakeTransport(Session(policy, loop)).feed(head)  # each head parsed once: memoized
    before = policy.requests
    assert answer_at_accept(policy, data, loop.now) is None, why
    assert policy.requests == before


def test_session_answer_at_accept_not_while_shedding(loop: FakeLoop) -> None:
    _, t, policy = make(loop)
    t.feed(CLOSE_GET)
    policy.degraded = True  # overload tier 1 or draining: the Session's general path
    assert answer_at_accept(policy, CLOSE_GET, loop.now) is None


def test_session_answer_at_accept_releases_a_file_it_did_not_send(loop: FakeLoop) -> None:
    released: list[bool] = []

    class Region(FileRegion):
        def release(self) -> None:
            released.append(True)

    def files(req: Request, now: float) -> Response:
        return Response(200, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n", Region(-1, 0, 4))

    policy = Policy(ServerConfig(max_accept_wait=0), files)
    session = Session(policy, loop)
    t = FakeTransport(session)
    t.feed(CLOSE_GET)  # parsed once: the head is memoized
    assert answer_at_accept(policy, CLOSE_GET, loop.now) is None  # no memoized wire
    assert released == [True]


def test_session_send_closing_waits_for_the_socket_then_closes(loop: FakeLoop) -> None:
    session, t, _ = make(loop)
    t.block = True  # the socket took part of a one-shot answer: the rest goes here
    session.send_closing(b"rest of the response")
    assert session.state == WRITING
    assert session.deadline == loop.now + SEND_QUEUE_CHECK  # under the send checks
    assert not t.closed
    t.drain()
    assert t.wire == b"rest of the response"
    assert t.closed


def test_session_request_with_body_is_answered_then_lingers(loop: FakeLoop) -> None:
    session, t, policy = make(loop)
    t.feed(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab")
    assert statuses(t.wire) == [405]
    assert session.state == LINGERING
    assert t.eof_written
    assert not t.paused
    assert not t.closed
    t.feed(b"cde" + GET)  # discarded: never parsed as a request (smuggling)
    assert statuses(t.wire) == [405]
    loop.advance(policy.linger_timeout + 1)
    assert t.closed
    assert t.reset is False


def test_session_lingering_ends_at_the_clients_eof(loop: FakeLoop) -> None:
    session, t, _ = make(loop)
    t.feed(b"POST /a HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nab")
    session.eof_received()
    assert t.closed


def test_session_malformed_request_gets_400_then_lingers(loop: FakeLoop) -> None:
    session, t, _ = make(loop)
    t.feed(b"GET /a HTTP/1.1\r\nBad Header\r\n\r\n")
    # The client may still be sending: our side is shut, its bytes are read and dropped.
    assert statuses(t.wire) == [400]
    assert session.state == LINGERING
    assert t.eof_written


def test_session_eof_inside_a_head_is_400_without_lingering(loop: FakeLoop) -> None:
    session, t, _ = make(loop)
    t.feed(b"GET /sm")
    session.eof_received()
    assert statuses(t.wire) == [400]
    assert t.closed
    assert not t.eof_written


def test_session_eof_after_requests_closes_once_answered(loop: FakeLoop) -> None:
    session, t, _ = make(loop)
    t.block = True
    t.feed(GET)
    session.eof_received()  # a half-close while the response is still queued
    assert not t.closed
    t.drain()
    assert statuses(t.wire) == [200]
    assert t.closed


def test_session_handler_error_is_500(loop: FakeLoop) -> None:
    _, t, _ = make(loop)
    t.feed(b"GET /boom HTTP/1.1\r\nHost: t\r\n\r\n")
    assert statuses(t.wire) == [500]


def test_session_unknown_method_501_known_405(loop: FakeLoop) -> None:
    _, t, _ = make(loop)
    t.feed(b"BREW /a HTTP/1.1\r\nHost: t\r\n\r\n")
    assert statuses(t.wire) == [501]
    _, t2, _ = make(loop)
    t2.feed(b"DELETE /a HTTP/1.1\r\nHost: t\r\n\r\n")
    assert statuses(t2.wire) == [405]
    assert b"Allow: GET, HEAD\r\n" in t2.wire


# -- deadlines --------------------------------------------------------------------------
def test_session_header_timeout_is_not_extended_by_a_trickle(loop: FakeLoop) -> None:
    session, t, policy = make(loop, header_timeout=10.0)
    t.feed(b"G")
    assert session.state == READING
    started = loop.now
    for _ in range(8):  # slowloris: a byte a second
        loop.advance(1.0)
        t.feed(b"E")
    assert session.deadline == started + 10.0
    loop.advance(3.0)
    assert statuses(t.wire) == [408]
    assert t.closed
    assert policy.timeouts == 1


def test_session_idle_keepalive_times_out_silently(loop: FakeLoop) -> None:
    _session, t, _policy = make(loop, keepalive_timeout=5.0)
    t.feed(GET)
    loop.advance(4.0)
    assert not t.closed
    loop.advance(2.0)
    assert t.closed
    assert t.reset is False
    assert statuses(t.wire) == [200]


def test_session_fresh_connection_is_under_the_header_timeout(loop: FakeLoop) -> None:
    session, t, _ = make(loop, header_timeout=3.0)
    assert session.deadline == loop.now + 3.0
    loop.advance(4.0)
    assert t.closed
    assert t.wire == b""


# -- writing and slow readers ------------------------------------------------------------
def test_session_blocked_write_pauses_reading_and_holds_pipelined_requests(
    loop: FakeLoop,
) -> None:
    session, t, policy = make(loop)
    t.block = True
    t.feed(GET)
    assert session.state == WRITING
    assert t.paused
    assert session.deadline == loop.now + SEND_QUEUE_CHECK  # the send-queue check first
    assert policy.send_timeout > SEND_QUEUE_CHECK
    t.feed(GET_B)  # a read already under way when reading was paused: buffered
    assert session._buf == GET_B
    assert t.wire == b""
    t.drain()
    assert statuses(t.wire) == [200, 200]
    assert BODY_B in t.wire
    assert session.state == IDLE
    assert not t.paused


def test_session_slow_reader_is_reset(loop: FakeLoop) -> None:
    _session, t, policy = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.feed(GET)
    t.unacked = 100_000  # nothing the client acknowledges
    loop.advance(11.0)
    assert t.closed
    assert t.reset is True
    assert policy.timeouts == 1


def test_session_reader_on_pace_keeps_its_connection(loop: FakeLoop) -> None:
    _session, t, _policy = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.unacked = 100_000
    t.feed(GET)
    for _ in range(3):  # 20 kB acknowledged per 10 s: above 1000 B/s
        t.unacked -= 20_000
        loop.advance(10.0)
        assert not t.closed
    loop.advance(10.0)  # then nothing for a whole send_timeout: reset
    assert t.closed
    assert t.reset is True


def test_session_trickling_reader_below_the_rate_is_reset(loop: FakeLoop) -> None:
    _session, t, _ = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.unacked = 100_000
    t.feed(GET)
    t.unacked -= 10  # some progress, far below 1000 B/s
    loop.advance(10.5)
    assert t.closed
    assert t.reset is True


def test_session_wait_for_our_disk_is_not_charged_to_the_client(loop: FakeLoop) -> None:
    """Output queued here, the kernel's queue empty: the client took all it was sent and
    the transport waits for the disk (a cold chunk in the pool). No reset, however long;
    once the disk delivers, the client is judged from there on its own pace."""
    _session, t, policy = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.feed(GET)
    for _ in range(5):  # 50 s with nothing acknowledged and nothing in the kernel
        loop.advance(10.0)
        assert not t.closed
    t.unacked = 100_000  # the disk delivered; this time the client does not read it
    loop.advance(10.0)
    assert not t.closed  # one send_timeout from the last check, not from the start
    loop.advance(10.0)
    assert t.closed
    assert t.reset is True
    assert policy.timeouts == 1


def test_session_slow_reader_gets_a_second_of_its_speed_queued(loop: FakeLoop) -> None:
    """Two seconds into a blocked write, a client that took 7,200 bytes (a 28.8k modem)
    gets a 4 KiB unsent limit; it is judged for resets exactly as before."""
    _session, t, policy = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.unacked = 300_000
    t.feed(GET)
    t.unacked -= 7_200
    loop.advance(SEND_QUEUE_CHECK)
    assert t.lowat == [4096]
    t.unacked -= 20_000
    loop.advance(10.0 - SEND_QUEUE_CHECK)  # the rate check, a send_timeout from the start
    assert not t.closed
    assert t.lowat == [4096]  # set once per blocked write
    loop.advance(10.0)  # nothing acknowledged for a whole send_timeout: reset as before
    assert t.reset is True
    assert policy.timeouts == 1


def test_session_fast_reader_gets_more_and_a_slow_one_less(loop: FakeLoop) -> None:
    """A second of the client's speed, both ways: 1 MB/s at the first check gives 1 MiB;
    a later write at 10 kB/s 16 KiB; one that goes fast again the most there is."""
    session, t, _ = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.unacked = 3_000_000
    t.feed(GET)
    t.unacked -= 2_000_000  # 1 MB/s
    loop.advance(SEND_QUEUE_CHECK)
    assert t.lowat == [1 << 20]
    t.unacked -= 500_000
    t.drain()
    t.block = True
    t.unacked = 300_000
    t.feed(GET_B)
    t.unacked -= 20_000  # 10 kB/s
    loop.advance(SEND_QUEUE_CHECK)
    assert t.lowat[-1] == 16384
    assert session.send_queue == 16384
    t.drain()
    t.block = True
    t.unacked = 3_000_000
    t.feed(GET)
    loop.advance(0.5)
    t.unacked = 0  # 3 MB in half a second
    t.drain()
    assert t.lowat[-1] == MAX_SEND_QUEUE
    assert session.send_queue == MAX_SEND_QUEUE


def test_session_big_write_to_a_fast_client_grows_its_queue_early(loop: FakeLoop) -> None:
    """One big file to a fast client: SEND_GROW_CHECK into the write, not at its end."""
    session, t, _ = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.unacked = 100_000_000  # a 100 MB body, most of it queued
    t.feed(GET)
    t.unacked -= 5_000_000  # 100 MB/s
    loop.advance(SEND_GROW_CHECK)
    assert t.lowat == [MAX_SEND_QUEUE]
    assert session.send_queue == MAX_SEND_QUEUE
    assert session.state == WRITING


def test_session_a_window_taken_at_once_is_not_speed(loop: FakeLoop) -> None:
    """A reader that reads nothing still takes its receive window (here 200 kB) at once:
    over SEND_GROW_CHECK that looks like 4 MB/s, but it is less than twice the limit, so
    the limit stays; at the first check it is judged on what it took in two seconds."""
    session, t, _ = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.unacked = 100_000_000
    t.feed(GET)
    t.unacked -= 200_000
    loop.advance(SEND_GROW_CHECK)
    assert t.lowat == []
    loop.advance(SEND_QUEUE_CHECK - SEND_GROW_CHECK)
    assert t.lowat == [131072]  # 100 kB/s over the two seconds
    assert session.send_queue == 131072


def test_session_small_blocked_write_has_no_early_check(loop: FakeLoop) -> None:
    _session, t, _ = make(loop)
    t.block = True
    t.unacked = 300_000  # under SEND_GROW_WRITE times the limit
    t.feed(GET)
    assert loop.timers == []


def test_session_head_after_a_blocked_write_gets_a_whole_header_timeout(
    loop: FakeLoop,
) -> None:
    """The send deadline ends with the write: a pipelined head that is still coming is
    on the header timeout from then, not on a send check that is already past."""
    session, t, _ = make(loop, send_timeout=10.0, min_send_rate=1, header_timeout=30.0)
    t.block = True
    t.unacked = 100_000
    t.feed(GET + b"GET /b HTTP/1.1\r\n")  # the next head, half of it
    t.unacked -= 50_000
    loop.advance(3.0)
    t.unacked = 0
    t.drain()
    assert session.state == READING
    loop.advance(9.0)  # past the send check the write had (10 s from its start)
    assert not t.closed
    assert statuses(t.wire) == [200]
    t.feed(b"Host: t\r\n\r\n")
    assert statuses(t.wire) == [200, 200]


def test_session_wait_for_our_disk_does_not_shrink_the_send_queue(loop: FakeLoop) -> None:
    """Nothing in the kernel: the client took all it was sent, the wait is ours."""
    _session, t, _ = make(loop, send_timeout=10.0, min_send_rate=1000)
    t.block = True
    t.feed(GET)
    loop.advance(SEND_QUEUE_CHECK)
    assert t.lowat == []


def test_session_file_body_counts_whole_so_a_pipeline_stops_after_it(loop: FakeLoop) -> None:
    released: list[int] = []
    big = FileRegion(99, 0, 10 << 20, closer=released.append)
    session, t, _policy = make(loop)
    session.handle_fast = lambda req, now: (
        build_response(200, [], big) if req.target == b"/big" else handler(req, now)
    )
    t.block = True
    t.feed(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n" + GET + GET)
    # One file queued, the two small requests still unparsed: a slow reader holds one
    # open file, not one per request it pipelined.
    assert sum(isinstance(i, FileRegion) for i in t.queued) == 1
    assert session._buf == GET + GET
    t.drain()
    assert statuses(t.wire) == [200, 200, 200]


def test_session_late_bytes_past_max_buffer_pause_reading(loop: FakeLoop) -> None:
    session, t, _ = make(loop, max_buffer_bytes=64)
    t.block = True
    t.feed(GET)
    t.paused = False  # a transport whose pause takes effect late (io_uring, asyncio)
    t.feed(GET_B * 3)
    assert t.paused
    assert len(session._buf) >= 64


# -- the disk pool and yielding ------------------------------------------------------------
def test_session_offload_answers_in_order(loop: FakeLoop) -> None:
    session, t, policy = make(loop)
    session.handle_fast = lambda req, now: None if req.target == b"/cold" else handler(req, now)
    policy.handler = lambda req, now: build_response(200, [], b"COLD")  # type: ignore[method-assign]
    t.feed(GET + b"GET /cold HTTP/1.1\r\nHost: t\r\n\r\n" + GET_B)
    assert statuses(t.wire) == [200]
    assert t.paused
    assert session.job is not None
    assert len(loop.jobs) == 1
    assert policy.offloaded == 1
    loop.finish_jobs()
    assert statuses(t.wire) == [200, 200, 200]
    assert t.wire.index(b"COLD") < t.wire.index(BODY_B)
    assert not t.paused


def test_session_offload_answer_after_close_is_released(loop: FakeLoop) -> None:
    released: list[int] = []
    session, t, policy = make(loop)
    session.handle_fast = lambda req, now: None
    policy.handler = lambda req, now: build_response(  # type: ignore[method-assign]
        200, [], FileRegion(7, 0, 100, closer=released.append)
    )
    t.feed(GET)
    t.abort()
    loop.finish_jobs()
    assert released == [7]
    assert t.wire == b""


def test_session_yields_after_max_pipelined(loop: FakeLoop) -> None:
    session, t, _ = make(loop, max_pipelined=2)
    t.feed(GET * 5)
    assert statuses(t.wire) == [200, 200]
    assert session.job is YIELDED
    assert t.paused
    loop.run_soon()
    assert statuses(t.wire) == [200] * 4
    loop.run_soon()
    assert statuses(t.wire) == [200] * 5
    assert session.job is None
    assert not t.paused


# -- draining and overload ------------------------------------------------------------------
def test_session_draining_closes_after_the_response(loop: FakeLoop) -> None:
    _session, t, policy = make(loop)
    policy.begin_drain()
    t.feed(GET)
    assert b"Connection: close\r\n" in t.wire
    assert t.closed


def test_session_close_if_idle_spares_one_mid_request(loop: FakeLoop) -> None:
    idle, t_idle, policy = make(loop)
    t_idle.feed(GET)
    busy = Session(policy, loop)
    t_busy = FakeTransport(busy)
    t_busy.feed(b"GET /a HT")
    idle.close_if_idle()
    busy.close_if_idle()
    assert t_idle.closed
    assert not t_busy.closed


def test_session_overload_tier_2_answers_503(loop: FakeLoop) -> None:
    # 503 + Retry-After to every request; the connection closes within the tiers' budget
    # (one here), as under tier 1, and the next 503 keeps its connection.
    _, t, policy = make(loop)
    policy.shed_level = 2
    policy.degraded = True
    policy.close_budget = 1
    t.feed(GET)
    assert statuses(t.wire) == [503]
    assert b"Retry-After: 1\r\n" in t.wire
    assert t.closed
    t2 = FakeTransport(Session(policy, loop))
    t2.feed(GET)
    assert statuses(t2.wire) == [503]
    assert b"Connection: close" not in t2.wire
    assert not t2.closed
    assert policy.tiers.shed_503 == 2
    assert policy.tiers.shed_keepalive == 1


def shedding(loop: FakeLoop, budget: int, count: int) -> tuple[Policy, list[FakeTransport]]:
    """A Policy at tier 1 whose check allowed ``budget`` closes, and ``count`` sessions."""
    _, first, policy = make(loop)
    policy.shed_level = 1
    policy.degraded = True
    policy.close_budget = budget
    return policy, [first] + [FakeTransport(Session(policy, loop)) for _ in range(count - 1)]


def test_session_overload_tier_1_closes_only_what_its_check_allowed(loop: FakeLoop) -> None:
    # Tier 1 closes kept connections only as many times as its check allowed (half as
    # many as then waited to be accepted); the rest stay kept.
    policy, transports = shedding(loop, 2, 4)
    for t in transports:
        t.feed(GET)
    assert [t.closed for t in transports] == [True, True, False, False]
    assert [b"Connection: close\r\n" in t.wire for t in transports] == [True, True, False, False]
    assert policy.tiers.shed_keepalive == 2


def test_session_overload_a_request_that_closes_anyway_spends_nothing(loop: FakeLoop) -> None:
    policy, (t,) = shedding(loop, 1, 1)
    t.feed(b"GET /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
    assert t.closed
    assert policy.tiers.shed_keepalive == 0
    assert policy.close_budget == 1


def test_session_draining_closes_every_kept_connection(loop: FakeLoop) -> None:
    # (tier 1 in force too: draining is not bounded by its budget)
    policy, transports = shedding(loop, 1, 4)
    policy.begin_drain()
    for t in transports:
        t.feed(GET)
    assert all(t.closed for t in transports)


def test_session_counts_and_logs_when_observed(loop: FakeLoop) -> None:
    session, t, policy = make(loop, status_path="/_s")
    t.feed(GET)
    session.data_received(GET)  # the hot path accounts too
    assert policy.status_counts == {200: 2}
    assert policy.bytes_sent == 2 * len(BODY_A)
