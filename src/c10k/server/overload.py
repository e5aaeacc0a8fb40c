"""Overload tiers: shed work in the order that costs clients least (Envoy's overload manager).

    tier 1  kept connections close after their response, half as many as new ones wait
    tier 2  new requests get 503 + Retry-After without running the handler (and tier 1)
    tier 3  new connections are closed at accept (and tiers 1 and 2)

The measure is the *lag*: how long a client that becomes ready waits for its turn. Each
server mode reports its own (``Tiers.update(lag, load, waiting)``): the readiness loop and
io_uring the smoothed time their turns' callbacks ran; asyncio how late a periodic probe
fires; the thread-per-client mode how late a probe thread wakes (GIL and run queue). Lag
counts only when the ``load`` (clients served per turn, smoothed) is at least
``SHED_MIN_READY`` and this process used at least ``SHED_MIN_BUSY`` of a core since the last
check: a GC pause with few clients, or a process descheduled because others share its core
(53 workers on 2 cores while a million connections ramp up), is not overload of *this*
process.

Every tier also needs someone at the door: more connections waiting in the accept queues
than the accept batch a turn takes (``MIN_WAITING``). HTTP/1.1 clients on kept
connections wait for each answer, so with nobody new coming the loop serves a closed loop:
its lag is the clients' number times what each costs, and shedding makes no one faster (a
closed client comes back with the same request, after a handshake if its connection was
closed; a 503 only turns its answer into an error). A thousand clients downloading 1 MiB
files make turns of 100-300 ms: closing every response's connection at once emptied the
loop into the accept queue in one wave about once a second, and with that held off, tier 2
answered 503s (docs/BENCHMARKS.md, issue 15). Load grows only by new clients, who wait at
the door; there, shedding lets them share the turns. And every tier closes half as many
kept connections (a 503 included) as were waiting at the check: a closed client whose
connection is closed is soon one of those waiting, so a rotation fed only by the tiers
halves at each check until it stops, and new clients keep it going.
"""

from __future__ import annotations

import logging
import time

from c10k.core.listener import ACCEPT_BATCH

log = logging.getLogger("c10k.server")

# Checks every PRESSURE_INTERVAL while anything is going on, else every IDLE_INTERVAL (at
# C1M scale 53 idle workers share a core, and every wakeup of one delays the others).
PRESSURE_INTERVAL = 0.1
IDLE_INTERVAL = 1.0
SHED_MIN_READY = 16.0
SHED_MIN_BUSY = 0.8
# The tiers need more connections waiting to be accepted than one turn takes in: fewer are
# in at the next turn, no later than the kept clients' next answers. (At 8, the trickle a
# turn of 100-300 ms gathers was enough: in 3 of 4 runs of scripts/fast_reader_latency.py
# --size 1m --conns 1000, the 1,000 clients' own start-up burst set off 503s that went on
# through the 8 s measured, 973 and 985 of them; at 64, none in 6 runs.)
MIN_WAITING = ACCEPT_BATCH


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
        in the accept queues (see the module comment)."""
        self.load = load
        level = 0
        if load >= SHED_MIN_READY and self.busy >= SHED_MIN_BUSY:
            keepalive_lag, lag_503, accept_lag = self.limits
            if waiting <= MIN_WAITING:
                level = 0  # a closed loop: see the module comment
            elif lag > accept_lag:
                level = 3
            elif lag > lag_503:
                level = 2
            elif lag > keepalive_lag:
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
