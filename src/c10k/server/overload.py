"""Overload tiers: shed work in the order that costs clients least (Envoy's overload manager).

    tier 1  new responses close their connection (no keep-alive: clients spread out)
    tier 2  new requests get 503 + Retry-After without running the handler
    tier 3  new connections are closed at accept

The measure is the *lag*: how long a client that becomes ready waits for its turn. Each
server mode reports its own (``Tiers.update(lag, load)``): the readiness loop and io_uring
the smoothed time their turns' callbacks ran; asyncio how late a periodic probe fires; the
thread-per-client mode how late a probe thread wakes (GIL and run queue). Lag counts only
when the ``load`` (clients served per turn, smoothed) is at least ``SHED_MIN_READY`` and
this process used at least ``SHED_MIN_BUSY`` of a core since the last check: a GC pause with
few clients, or a process descheduled because others share its core (53 workers on 2 cores
while a million connections ramp up), is not overload of *this* process.
"""

from __future__ import annotations

import logging
import time

log = logging.getLogger("c10k.server")

# Checks every PRESSURE_INTERVAL while anything is going on, else every IDLE_INTERVAL (at
# C1M scale 53 idle workers share a core, and every wakeup of one delays the others).
PRESSURE_INTERVAL = 0.1
IDLE_INTERVAL = 1.0
SHED_MIN_READY = 16.0
SHED_MIN_BUSY = 0.8


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

    def update(self, lag: float, load: float) -> float:
        """Set the tier from the mode's pressure signal; returns the seconds since the
        last update (the accept-queue check needs the span too)."""
        wall = time.monotonic()
        cpu = time.process_time()
        span = wall - self._wall
        self.busy = (cpu - self._cpu) / span if span > 0 else 0.0
        self._wall, self._cpu = wall, cpu
        self.load = load
        level = 0
        if load >= SHED_MIN_READY and self.busy >= SHED_MIN_BUSY:
            keepalive_lag, lag_503, accept_lag = self.limits
            if lag > accept_lag:
                level = 3
            elif lag > lag_503:
                level = 2
            elif lag > keepalive_lag:
                level = 1
        if level != self.level:
            log.warning(
                "overload tier %d -> %d (lag %.0f ms, %.0f ready per turn)",
                self.level,
                level,
                lag * 1e3,
                load,
            )
            self.level = level
        return span

    @property
    def quiet(self) -> bool:
        """Nothing is shed and little is going on: the next check may wait longer."""
        return not self.level and self.load < SHED_MIN_READY / 4
