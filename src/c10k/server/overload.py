"""Overload tiers: shed work in the order that costs clients least (Envoy's overload manager).

    tier 1  kept connections close after their response, as many as new ones wait
    tier 2  new requests get 503 + Retry-After without running the handler
    tier 3  new connections are closed at accept

The measure is the *lag*: how long a client that becomes ready waits for its turn. Each
server mode reports its own (``Tiers.update(lag, load, waiting)``): the readiness loop and
io_uring the smoothed time their turns' callbacks ran; asyncio how late a periodic probe fires; the
thread-per-client mode how late a probe thread wakes (GIL and run queue). Lag counts only
when the ``load`` (clients served per turn, smoothed) is at least ``SHED_MIN_READY`` and
this process used at least ``SHED_MIN_BUSY`` of a core since the last check: a GC pause with
few clients, or a process descheduled because others share its core (53 workers on 2 cores
while a million connections ramp up), is not overload of *this* process.

Tier 1 also needs someone at the door: connections waiting in the accept queue. Closing a
kept connection sends its client to the back of that queue, behind the new ones, so the
loop's turns are shared with them. It makes the server no faster (the client comes back
with the same request and a handshake more: its wait moves from the loop to the queue).
With nobody waiting it only costs, and closing
every response's connection at once emptied a closed loop of 1,000 big-file clients into
the accept queue in one wave, about once a second (docs/BENCHMARKS.md, issue 15). So tier 1
is in force only while at least ``KEEPALIVE_MIN_WAITING`` connections wait (a queue that
stands beyond the accept batch a turn takes), and closes half as many kept connections as
were waiting at the check: in a closed loop the clients it closed are soon all that wait,
and the rotation halves at each check until it stops; new clients keep it going.
"""

from __future__ import annotations

import logging
import time

from c10k.server.admission import GUARD_QUEUE

log = logging.getLogger("c10k.server")

# Checks every PRESSURE_INTERVAL while anything is going on, else every IDLE_INTERVAL (at
# C1M scale 53 idle workers share a core, and every wakeup of one delays the others).
PRESSURE_INTERVAL = 0.1
IDLE_INTERVAL = 1.0
SHED_MIN_READY = 16.0
SHED_MIN_BUSY = 0.8
# Tier 1 needs this many connections waiting to be accepted (admission's "a queue stood").
KEEPALIVE_MIN_WAITING = GUARD_QUEUE


class Tiers:
    """The overload tier in force and what shedding has cost so far."""

    def __init__(self, keepalive_lag: float, lag_503: float, accept_lag: float) -> None:
        self.limits = (keepalive_lag, lag_503, accept_lag)
        self.level = 0
        self.busy = 0.0  # share of a core this process used over the last interval
        self.load = 0.0
        self.shed_keepalive = 0
        self.shed_503 = 0
        self.shed_accepts = 0
        self._wall = time.monotonic()
        self._cpu = time.process_time()

    def tick(self) -> float:
        """Start a check: the seconds since the last one (the accept-queue check reads
        over the same span), and the share of a core used in them."""
        wall = time.monotonic()
        cpu = time.process_time()
        span = wall - self._wall
        self.busy = (cpu - self._cpu) / span if span > 0 else 0.0
        self._wall, self._cpu = wall, cpu
        return span

    def update(self, lag: float, load: float, waiting: int) -> int:
        """Set the tier from the mode's pressure signal and the connections ``waiting``
        in the accept queues (tier 1 needs them, see the module comment)."""
        self.load = load
        level = 0
        if load >= SHED_MIN_READY and self.busy >= SHED_MIN_BUSY:
            keepalive_lag, lag_503, accept_lag = self.limits
            if lag > accept_lag:
                level = 3
            elif lag > lag_503:
                level = 2
            elif lag > keepalive_lag and waiting >= KEEPALIVE_MIN_WAITING:
                level = 1
        if level != self.level:
            log.warning(
                "overload tier %d -> %d (lag %.0f ms, %.0f ready per turn, %d waiting)",
                self.level,
                level,
                lag * 1e3,
                load,
                waiting,
            )
            self.level = level
        return level

    @property
    def quiet(self) -> bool:
        """Nothing is shed and little is going on: the next check may wait longer."""
        return not self.level and self.load < SHED_MIN_READY / 4
