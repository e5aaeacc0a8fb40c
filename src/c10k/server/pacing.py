"""Throttling: a connection's output handed out at ``--limit-rate`` bytes a second.

nginx's ``limit_rate``/``limit_rate_after`` and thttpd's throttles: the first
``limit_rate_after`` bytes of a response go at once (a page's head and first screen), the
rest at the rate, counted from the response's start. A ``Pacer`` belongs to one Session
(sans-I/O: it is told the time and returns what may be written now); the Session writes
that, and asks again at ``due()`` with a loop timer, never by sleeping, so paced clients
cost a timer each and the loop serves everyone else meanwhile. The pacer never holds more
than the response itself: file bodies stay FileRegions, sent in slices by sendfile.

Per response (issue 15: per site and per path prefix): a response may carry its own
``Pace`` (c10k.http.writers), which the Session puts in the output before the response's
items. The pacer takes it as a mark: from there on, that rate, and a new budget (the
first ``after`` bytes at once) counted from the moment the response's first byte is due,
as nginx counts limit_rate_after per request. ``Pace(0)`` is no limit. A connection gets a
pacer with its first paced response and keeps it; responses after that carry a mark each
(the server's own pace when they have none), so the rate never leaks into the next one.

Steps: once the allowance is spent, the next write waits until at least ``step`` bytes are
allowed: a tenth of a second's worth, at least one Ethernet segment (1,460 bytes), so a
slow rate is not paced byte by byte and a fast one wakes the loop ten times a second.
"""

from __future__ import annotations

from collections.abc import Iterable

from c10k.http.writers import Pace
from c10k.region import FileRegion

Chunk = bytes | memoryview | FileRegion
Item = Chunk | Pace  # a Pace: a mark, see the module comment
MIN_STEP = 1460  # one Ethernet MSS
STEPS_PER_SECOND = 10
UNLIMITED = 1 << 62  # the allowance under Pace(0)


class Pacer:
    __slots__ = ("after", "blocked", "held", "rate", "sent", "start", "step")

    def __init__(self, rate: int, after: int) -> None:
        self.rate = rate
        self.after = after
        self.step = max(MIN_STEP, rate // STEPS_PER_SECOND)
        self.held: list[Item] = []
        self.blocked = False  # the transport holds output too (its pause_writing)
        self.start = 0.0
        self.sent = 0

    def take(self, out: Iterable[Item], now: float) -> list[Chunk]:
        """A response's items (or several): what may go now; the rest is held. A new
        budget starts with the first response after the pacer ran dry."""
        if self.held:
            self.held.extend(out)  # after what waits, in order
            return []
        self.start, self.sent = now, 0
        self.held = list(out)
        return self.next(now)

    def allowed(self, now: float) -> int:
        if not self.rate:
            return UNLIMITED
        return int(self.after + self.rate * (now - self.start)) - self.sent

    def next(self, now: float) -> list[Chunk]:
        """What may be written now, taken from the held items."""
        budget = self.allowed(now)
        held = self.held
        ready: list[Chunk] = []
        while held:
            item = held[0]
            if isinstance(item, Pace):  # a response with its own rate starts here
                held.pop(0)
                self._restart(item, now)
                budget = self.allowed(now)
                continue
            if budget <= 0:
                break
            size = len(item)
            if size <= budget:
                ready.append(item)
                held.pop(0)
            else:
                size = budget
                ready.append(_head(item, size))
                if not isinstance(item, FileRegion):
                    held[0] = memoryview(item)[size:]
            budget -= size
            self.sent += size
        return ready

    def _restart(self, pace: Pace, now: float) -> None:
        self.rate, self.after = pace.rate, pace.after
        self.step = max(MIN_STEP, pace.rate // STEPS_PER_SECOND)
        self.start, self.sent = now, 0

    def due(self, now: float) -> float:
        """Seconds until the next ``step`` bytes (or the rest, if less) are allowed."""
        if not self.rate:
            return 0.0
        want = min(self.step, sum(len(i) for i in self.held if not isinstance(i, Pace)))
        return max(0.0, (want - self.allowed(now)) / self.rate)

    def release(self) -> None:
        """The connection closed: give back the files of what was never sent."""
        for item in self.held:
            if isinstance(item, FileRegion):
                item.release()
        self.held = []


def _head(item: Chunk, n: int) -> Chunk:
    """The first ``n`` bytes of ``item``. A region is advanced past them in place and keeps
    its closer, which runs after its last slice; bytes are cut by the caller."""
    if isinstance(item, FileRegion):
        head = item.slice(0, n)
        item.offset += n
        item.count -= n
        return head
    return memoryview(item)[:n]
