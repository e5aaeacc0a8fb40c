"""--limit-rate (c10k.server.pacing), without sockets: the Pacer's arithmetic, and a Session
that hands a big response to its transport at the rate, on a fake clock."""

from __future__ import annotations

from typing import Any

import pytest
from test_server_session import FakeLoop, FakeTransport, statuses

from c10k.http.writers import build_response
from c10k.region import FileRegion
from c10k.server.config import ServerConfig
from c10k.server.pacing import MIN_STEP, Pacer
from c10k.server.policy import Policy
from c10k.server.session import IDLE, WRITING, Session


def sizes(items: list[Any]) -> int:
    return sum(len(i) for i in items)


def test_pacer_sends_the_allowance_then_the_rate() -> None:
    p = Pacer(rate=10_000, after=3_000)
    ready = p.take([b"h" * 1_000, FileRegion(5, 0, 50_000)], now=0.0)
    assert sizes(ready) == 3_000  # the head and the first 2,000 file bytes
    assert sizes(p.held) == 48_000
    assert p.due(0.0) == pytest.approx(MIN_STEP / 10_000)  # a segment's worth (> rate/10)
    assert sizes(p.next(0.05)) == 500
    total = 3_500 + sizes(p.next(1.0))
    assert total == 13_000  # 3,000 + 10,000 a second, never more
    assert sizes(p.next(5.8)) == 48_000 - 10_000  # what is left, once it is allowed
    assert p.held == []


def test_pacer_slices_a_region_and_keeps_its_closer_for_the_last_slice() -> None:
    closed: list[int] = []
    region = FileRegion(7, 100, 5_000, closer=closed.append)
    p = Pacer(rate=1_000, after=0)
    assert p.take([region], now=0.0) == []
    first = p.next(2.0)
    assert [(r.fd, r.offset, r.count) for r in first] == [(7, 100, 2_000)]
    first[0].release()
    assert closed == []  # a slice has no closer
    rest = p.next(10.0)
    assert rest == [region]
    assert (region.offset, region.count) == (2_100, 3_000)
    region.release()
    assert closed == [7]


def test_pacer_cuts_bytes_and_holds_the_rest_in_order() -> None:
    p = Pacer(rate=1_000, after=10)
    ready = p.take([b"0123456789abcdef", b"XYZ"], now=0.0)
    assert b"".join(bytes(x) for x in ready) == b"0123456789"
    assert b"".join(bytes(x) for x in p.next(0.1)) == b"abcdefXYZ"[:100]


def test_pacer_step_is_at_least_one_segment() -> None:
    assert Pacer(rate=100, after=0).step == MIN_STEP
    assert Pacer(rate=1_000_000, after=0).step == 100_000


def test_pacer_release_returns_held_files() -> None:
    closed: list[int] = []
    p = Pacer(rate=10, after=0)
    p.take([b"x", FileRegion(3, 0, 100, closer=closed.append)], now=0.0)
    p.release()
    assert closed == [3]
    assert p.held == []


class TimerLoop(FakeLoop):
    """FakeLoop with call_later: timers fire as the clock advances."""

    def __init__(self) -> None:
        super().__init__()
        self.timers: list[tuple[float, Any]] = []

    def call_later(self, delay: float, callback: Any) -> None:
        self.timers.append((self.now + delay, callback))

    def advance(self, seconds: float) -> None:
        end = self.now + seconds
        while True:
            due = sorted((t for t in self.timers if t[0] <= end), key=lambda t: t[0])
            if not due:
                break
            when, cb = due[0]
            self.timers.remove(due[0])
            self.now = max(self.now, when)
            cb()
        super().advance(end - self.now)


BIG = b"b" * 40_000


def wire(t: FakeTransport) -> bytes:
    """What went out, bytes and the pacer's cuts of them (memoryviews)."""
    return b"".join(bytes(i) for i in t.written if not isinstance(i, FileRegion))


def big_handler(req: Any, now: float) -> Any:
    return build_response(200, [(b"Content-Type", b"text/plain")], BIG)


def test_session_paces_a_response_and_then_serves_the_next_request() -> None:
    loop = TimerLoop()
    config = ServerConfig(max_accept_wait=0, limit_rate=10_000, limit_rate_after=5_000)
    policy = Policy(config, big_handler)
    session = Session(policy, loop)
    t = FakeTransport(session)
    t.feed(b"GET /big HTTP/1.1\r\nHost: t\r\n\r\n")
    assert session.state == WRITING  # the pacer holds the rest
    assert t.paused  # no next request read while this one is paced
    first = len(wire(t))
    assert 5_000 <= first < 5_400  # the head and the first 5,000 bytes
    loop.advance(1.0)
    assert len(wire(t)) == pytest.approx(first + 10_000, abs=MIN_STEP)  # to a step
    loop.advance(2.6)  # 5,000 + 36,000 allowed: all of it
    assert wire(t).endswith(BIG[-100:])
    assert session.state == IDLE
    assert not t.paused
    t.feed(b"GET /again HTTP/1.1\r\nHost: t\r\n\r\n")  # a new budget: 5,000 at once
    assert statuses(wire(t)) == [200, 200]
    assert session.state == WRITING


def test_session_closed_while_paced_releases_the_held_file() -> None:
    loop = TimerLoop()
    closed: list[int] = []
    policy = Policy(
        ServerConfig(max_accept_wait=0, limit_rate=1_000),
        lambda req, now: build_response(200, [], FileRegion(9, 0, 10_000, closer=closed.append)),
    )
    session = Session(policy, loop)
    t = FakeTransport(session)
    t.feed(b"GET /f HTTP/1.1\r\nHost: t\r\n\r\n")
    assert session.pacer is not None
    assert session.pacer.held
    t.abort(reset=True)
    assert closed == [9]
    loop.advance(30.0)  # the pacer's timer finds the connection closed: nothing happens
    assert closed == [9]
