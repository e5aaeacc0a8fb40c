"""Admission: keep the kernel's accept queues short enough to be worth waiting in.

Under a flood of new connections the queue is not in our loop (its lag stays low, the
overload tiers do not fire) but in the kernel: a listen backlog of 4096 at 2,000 accepts a
second is a 2-second wait, longer than clients wait, so a FIFO server ends up serving only
clients that have left (docs/BENCHMARKS.md, Overload). This belongs to the *listener*, not
to an event loop: every server mode feeds it the same readings per check (each listener's
queue length from TCP_INFO, and how many connections it accepted since the last check) and
asks it about each new connection while it is on guard (``admit``).

The measure of overload is the *sojourn*: how long the connections we accept waited in the
queue (``core.fdio.accept_wait_parts``: the time since the request arrived, not the
handshake's round trip, which a slow client stretches), and of those accepted since the
last check the one that waited least (CoDel's measure). A queue's length is not the
measure: a server under a CPU quota runs in slices (1 ms in every 10 ms at a tenth of a
core) and a check that runs at the start of a slice finds a slice's worth of arrivals
queued even when the server keeps up (docs/BENCHMARKS.md, "Overload admission at any
rate and CPU share"). The shortest wait is short whenever
the queue emptied once since the last check, whatever the rate, the CPU share or the
slicing; it grows only while arrivals outrun accepts, which is overload. (A check with no
wait sampled, the first of a flood, or whose queue grew by more than it accepted, reads
the wait from the queue's length too, over the part of the span with work when it began
idle: see ``Control.step``.)

Three bounds, per listener, cheapest first:

1. *Admission by SYN drop* (``_admission``; ``core.listener.drop_syns``). Once the
   shortest wait has stayed above ``target`` (a quarter of ``--max-accept-wait``) for
   ``OVER_TIME`` of checked time (two checks at the regular interval; one check whose
   span is that long, as in a mode whose turn outlasts the interval), a socket filter
   drops a share of the incoming SYNs at random, set so that about as many connections
   join the queue as we accept, fewer while the shortest wait is above the target and
   more while it is below (the gap closed over ``ADMIT_HORIZON``); under a slight
   overload (``FAST``) the aim is ``SLIGHT`` targets, and the queue grows to it before any
   SYN is dropped (a dropped SYN costs its client a second); at a high rate the aim is
   at most the wait at which the queue holds ``ROOM`` of its limit; a queue found empty
   with short waits lets twice as many in as were served (``Control._relaxed``). The
   queue then stays long enough to keep the server busy and never fills; a full queue is
   what hurts most: Linux drops the handshake's last ACK there, and that client,
   connected as far as it knows, waits seconds for a retransmission to find room (then it
   is stale: work for nothing). A dropped SYN costs this process nothing; the client
   retries in a second.
2. *The backlog* (listen(2) again on the listening socket), where the filter is refused or
   not enough: while more than half a wait's worth of accepts stands queued (with the
   filter at work: while the shortest wait is over the aim by a target, or a
   stale connection was reset since the last check; the queue read is the longer of now
   and the last check, as a mode may take a whole queue in one turn), the backlog shrinks
   to that many (the rate counts the connections served, not those reset as stale) and
   the kernel drops the excess SYNs itself; it follows the accept rate up while the queue
   stays full, and doubles back to ``--backlog`` once it is short.
3. *Stale connections reset at accept* (``admit``): a connection that waited longer than
   ``--max-accept-wait`` is closed unread (RST: the client learns at once).

While on guard (a queue of ``GUARD_QUEUE`` or more at the last check, or a bound in force)
one new connection in ``SAMPLE`` has its wait read (~5 % of a request each: the
shortest of 16 is close enough), and every one
after a stale one until ``FRESH_RUN`` in a row are fresh. ``--admission-trace`` appends
each check's readings and decisions as a JSON line (the overload bench plots them).

The filter belongs to the socket, which the supervisor keeps across worker restarts: a
worker clears the filter and the backlog when it starts, removes its filter when it starts
draining, and sets it again at every check while dropping (a draining worker on the same
socket may have removed it). A Unix socket has no TCP_INFO and keeps its backlog.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Sequence
from typing import IO

from c10k.core.fdio import accept_wait_parts
from c10k.core.listener import accept_queue, drop_syns, set_backlog

log = logging.getLogger("c10k.server")

# The smallest backlog we shrink a listener to (a queue shorter than half of it is never
# called standing), and by how much smaller a new size must be than the one in force.
MIN_BACKLOG = 64
BACKLOG_HYSTERESIS = 0.2
# The shortest wait we aim at is this share of --max-accept-wait (at least MIN_TARGET s):
# long enough that the queue never empties under overload (a CPU-quota slice's worth of
# arrivals is far shorter) and that a load a few percent over what the server can do (1x
# its closed-loop peak is that, docs/BENCHMARKS.md) queues for a while before any SYN is
# dropped, short enough that an admitted client waits well under --max-accept-wait. A gap
# to it is closed over ADMIT_HORIZON seconds: at a check at most MAX_STEP more than were
# accepted are let in, and at least 1 - MAX_CUT of them (a flood's first queue drains
# fast: what waits longer than --max-accept-wait is reset); at most MAX_DROP of the SYNs
# are dropped.
TARGET_SHARE = 0.25
MIN_TARGET = 0.02
# A slight overload (fewer than FAST times as many offered as accepted since the wait went
# over target) is let queue to SLIGHT targets before any SYN is dropped, and is held there:
# a dropped SYN costs its client a second (the kernel's retransmission) and comes back, so
# at 1.05-1.2x of what the server can do, dropping lost 1.2-16 % of the clients where a
# queue half a --max-accept-wait deep loses 0-13 % (scripts/admission_model.py).
# Its wait grows slowly (0.1 s a second at 1.1x), so the higher aim is not overshot toward
# --max-accept-wait; a flood's wait grows by seconds a second, and is held at the target.
SLIGHT = 2.0
FAST = 1.3
# Whatever the aim, it is at most the wait at which the queue holds ROOM of its limit at
# the rate we accept, and a queue longer than that is read at its tail at once: at 8,000
# a second twice the target is the whole of a 4096 backlog (net.core.somaxconn's
# default), and a full queue is what hurts most (bound 1 below). In the model at 8,000
# and 12,000 a second (scripts/admission_model.py --capacity N --room R) a half drops
# early, and nine tenths lets a flood fill the queue at 2x-3x; three quarters never did.
ROOM = 0.75
ADMIT_HORIZON = 0.5
MAX_STEP = 0.5
MAX_CUT = 0.9
MAX_DROP = 0.98
# A share under this with the wait below target ends dropping.
MIN_DROP = 0.01
# Dropping starts once the shortest wait has been above target for this long (seconds of
# checked time: a check's shortest wait holds over its whole span). At the regular
# interval (0.1 s) that is two checks in a row, so a one-check hiccup drops nothing; a
# mode whose turn outlasts the interval (io_uring takes the whole kernel queue in one
# turn and serves it before its timers run: spans of 0.4-1.3 s in
# test_accept_queue_admission_drops_syns_while_overloaded[uring]) needs one such check,
# not two: two would come after a 1.5 s flood.
OVER_TIME = 0.15
# On guard while a queue of this many stood at the last check (or a bound is in force).
GUARD_QUEUE = 8
# One new connection in SAMPLE has its wait read; after a stale one, every one until
# FRESH_RUN in a row were fresh.
SAMPLE = 16
FRESH_RUN = 32


class Control:
    """The SYN-drop share of one listener from its readings: sans-I/O (see bound 1)."""

    __slots__ = (
        "aim",
        "drop",
        "full",
        "joined",
        "offered",
        "over_for",
        "qlen",
        "sharers",
        "slight",
        "stuck",
        "target",
        "took",
    )

    def __init__(self, target: float) -> None:
        self.target = target  # seconds: the shortest wait we aim at under a flood
        self.aim = target  # the one in force: SLIGHT times it under a slight overload
        # Workers accepting from this socket (one without SO_REUSEPORT, or systemd's, is
        # shared): its queue is drained at about this many times our accept rate.
        self.sharers = 1
        self.drop = 0.0  # share of SYNs dropped
        self.qlen = 0  # queue length at the last check
        self.over_for = 0.0  # seconds the shortest wait has been above target
        self.offered = 0.0  # connections offered per check (SYNs, retries included), smoothed
        self.stuck = 0.0  # seconds the queue has stood with nothing accepted
        # Since the shortest wait went over target: connections offered, and accepted.
        self.joined = 0.0
        self.took = 0
        self.slight = False  # the aim is SLIGHT targets
        self.full = 0  # the largest queue limit seen: the listener's backlog

    def step(
        self,
        qlen: int,
        limit: int,
        accepted: int,
        wait: float | None,
        span: float,
        stale: int = 0,
        busy: float | None = None,
    ) -> float:
        """One check: the queue's length and limit now, the connections accepted since the
        last check (``stale`` of them reset at accept as stale), the shortest wait among
        those sampled (None: none sampled), the seconds since the last check, and, when
        the span began idle, the seconds of it since work came (``busy``). Returns the
        share of SYNs to drop until then."""
        prev, self.qlen = self.qlen, qlen
        room = math.inf  # the wait at which the queue holds ROOM of its limit
        crowded = False
        if accepted == 0 and prev > 0 and qlen > 0:
            # Nothing left a standing queue (at the connection cap, or a stalled loop):
            # what stood at the last check has waited at least as long since.
            self.stuck += span
            wait = max(wait or 0.0, self.stuck)
        else:
            self.stuck = 0.0
            leaving = accepted * self.sharers
            if busy is not None and prev < GUARD_QUEUE:
                # The queue formed within a span that began idle: its accept rate and
                # its time over target are read over the part with work. Read over the
                # slept seconds, the check at a wake-up saw four connections (one
                # accepted, three queued) as a 3 s wait, and 97.5 % of SYNs were dropped.
                span = min(span, busy)
            if accepted:
                # Of the listener's own limit, not of a backlog bound 2 has shrunk.
                self.full = max(self.full, limit)
                room = ROOM * self.full * span / leaving
                crowded = qlen > ROOM * self.full
            if qlen and accepted and (wait is None or qlen - prev > leaving or crowded):
                # Nothing sampled (not on guard since the last check: the flood has just
                # begun), more joined than twice what left (a flood), or crowded (past
                # ROOM of the limit: act at this check, at 1x at a quarter of a core the
                # head's wait trailed the length until the queue was full): the shortest
                # wait read is of the queue's head and trails the flood, so the wait is
                # read at its tail, what its newest waits for what stands ahead of it at
                # the rate we accept. A slice's worth of arrivals is a slice's time, far
                # under the target; a flood is seconds of it, and waiting on the head's
                # wait let the queue fill past --max-accept-wait (docs/BENCHMARKS.md,
                # issue 20: at fe16a4e, a flood met on guard at 62b0482, and b66452d).
                tail = qlen * span / leaving
                wait = tail if wait is None else max(wait, tail)
        # Connections that joined the queue since the last check, and so the SYNs that
        # came (what passed is 1 - drop of them): the offered load, retries included.
        joined = max(0, accepted + qlen - prev) / (1 - self.drop)
        over = self._over(wait, accepted, joined, room)
        self.over_for = self.over_for + span if over else 0.0
        if crowded:
            self.over_for = max(self.over_for, OVER_TIME)
        if self.drop <= 0 and self.over_for < OVER_TIME and qlen < limit:
            self.offered = 0.0
            return 0.0  # not overloaded: the queue emptied since the last check
        if qlen >= limit:
            # Full (at the connection cap, or the backlog shrunk): nothing could join, so
            # what was offered is unknown (the estimate is kept, not averaged with a
            # zero: it is what the share is relaxed against once the queue drains), and
            # a full queue is what admission avoids.
            self.drop = MAX_DROP
            return self.drop
        self.offered = joined if self.offered <= 0 else (self.offered + joined) / 2
        if qlen == 0 and not over:
            self.drop = self._relaxed(accepted - stale)
            return self.drop
        if wait is None:
            if qlen:
                return self.drop  # nothing sampled to judge by: hold
            wait = 0.0  # the queue is empty: no one waits (the flood is over)
        # As many should join as we accepted, fewer while the wait is above the aim, more
        # while below.
        gain = max(-MAX_CUT, min(MAX_STEP, (self.aim - wait) / ADMIT_HORIZON))
        want = max(1.0, accepted) * (1 + gain)
        drop = 1 - want / self.offered if self.offered > 0 else self.drop / 2
        # At most halved per check: one check's reading of what was offered collapses
        # when a big accept batch has just drained the queue, and the flood then refills
        # it past the target before the next check.
        drop = min(MAX_DROP, max(self.drop / 2, drop))
        if drop < MIN_DROP and not over:
            drop = 0.0
        self.drop = drop
        return drop

    def _over(self, wait: float | None, accepted: int, joined: float, room: float) -> bool:
        """Whether the shortest wait is above the aim, which is the target, or SLIGHT
        times it while fewer than FAST times as many joined as were accepted since the
        wait went over target (counted over all those checks: one check's accepts swing
        with the batches and the CPU quota's slices). Counted only until SYNs are
        dropped: each comes back a second later, and counted, the retries made a 1.1x
        load read as twice what was served (a trace in docs/BENCHMARKS.md, issue 20). While
        dropping, a wait past the aim by a target is a flood after all: the target.
        Whichever it is, the aim is at most ``room`` (see ROOM)."""
        if wait is None or wait <= min(self.target, room):
            self.joined, self.took, self.slight = 0.0, 0, False
            self.aim = min(self.target, room)
            return False
        if self.drop <= 0:
            self.joined += joined
            self.took += accepted
            self.slight = self.took > 0 and self.joined < FAST * self.took
        elif wait > self.aim + self.target:
            self.slight = False
        self.aim = min(self.target * SLIGHT if self.slight else self.target, room)
        return wait > self.aim

    def _relaxed(self, served: int) -> float:
        """The share once the queue is found empty with short waits: the server had time
        to spare, and what it served was only what the filter let through (no measure of
        what it can do), so twice as many are let in as were served, by the offered
        estimate, and at most the share is halved. Halving alone lets 25 times as many in
        from 0.98, and a flood at 3x refilled the queue past --max-accept-wait within a
        second, three times in one round (docs/BENCHMARKS.md, issue 20). A turn that takes
        the whole queue (io_uring's multishot accept, off guard) serves a batch as big as
        what joined over several checks, so there the share is still halved. (An empty
        kernel queue with long waits read is a mode that accepts ahead of serving.)"""
        drop = self.drop / 2
        if self.offered > 0:
            drop = min(self.drop, max(drop, 1 - 2 * max(1, served) / self.offered))
        return 0.0 if drop < MIN_DROP else drop


class AcceptQueue:
    """What admission knows of one listener's accept queue."""

    __slots__ = ("accepted", "backlog", "can_drop", "control", "qlen", "sock")

    def __init__(self, sock: socket.socket, backlog: int, target: float) -> None:
        self.sock = sock
        self.backlog = backlog  # the listen(2) backlog in force
        self.accepted = 0  # accepts counted at the last check
        self.qlen = 0  # queue length at the last check
        self.control = Control(target)
        self.can_drop = True  # False once the kernel refused the filter

    @property
    def drop(self) -> float:
        return self.control.drop


class Admission:
    """The accept-queue bounds of one worker's listeners (see the module comment)."""

    def __init__(
        self,
        socks: Sequence[socket.socket],
        backlog: int,
        max_wait: float,
        trace: str | None = None,
    ) -> None:
        self.max_wait = max_wait
        self.max_wait_ms = int(max_wait * 1e3)
        self.target = max(MIN_TARGET, max_wait * TARGET_SHARE)
        self.full_backlog = backlog
        self.queues = [AcceptQueue(s, backlog, self.target) for s in socks]
        self.stale = 0  # connections reset at accept as stale
        # Connections in the accept queues at the last check, and those a mode took but
        # has not served (``held``): new clients waiting to get in (the overload tiers).
        self.waiting = 0
        self._fresh = FRESH_RUN  # connections found fresh in a row (see FRESH_RUN)
        self._seen = 0  # connections admit() was asked about
        # Waits read since the last check (ms): the shortest, the longest, how many.
        self._wait_min = math.inf
        self._wait_max = 0
        self._waits = 0
        self._stale_seen = False  # a stale connection reset since the last check
        self._stale_at_check = 0  # self.stale at the last check
        self._trace: IO[str] | None = None
        if trace is not None and max_wait > 0:
            # Line-buffered append: each check one write, whole lines even with workers.
            self._trace = (
                sys.stderr if trace == "-" else open(trace, "a", buffering=1)  # noqa: SIM115
            )
        if max_wait > 0:
            # A listener kept by the supervisor across a worker's restart may still carry
            # the dead worker's SYN filter or shrunk backlog.
            for s in socks:
                if accept_queue(s) is not None:
                    set_backlog(s, backlog)
                    drop_syns(s, 0)

    @property
    def enabled(self) -> bool:
        return self.max_wait > 0

    def share(self, sharers: Sequence[int]) -> None:
        """How many workers accept from each listener (the supervisor's slots: 1 for an
        SO_REUSEPORT socket of this worker's own, all of them for a shared one)."""
        for q, n in zip(self.queues, sharers, strict=True):
            q.control.sharers = max(1, n)

    @property
    def backlog(self) -> int:
        return min((q.backlog for q in self.queues), default=self.full_backlog)

    @property
    def drop_percent(self) -> int:
        return round(max((q.drop for q in self.queues), default=0.0) * 100)

    def admit(self, fd: int) -> bool:
        """While on guard: False (and ``fd`` closed, RST) for a connection whose client has
        waited longer than --max-accept-wait: it has likely given up, and serving it in
        turn would make every client behind it wait as long. Samples the waits."""
        self._seen += 1
        if self._fresh >= FRESH_RUN and self._seen % SAMPLE:
            return True  # sampled: see SAMPLE
        parts = accept_wait_parts(fd)
        if parts is None:
            return True
        queued, age = parts
        # The sojourn is the time in our queue only; staleness is the client's whole wait.
        self._waits += 1
        self._wait_min = min(self._wait_min, queued)
        self._wait_max = max(self._wait_max, queued)
        if age <= self.max_wait_ms:
            if self._fresh < FRESH_RUN:
                self._fresh += 1
            return True
        self._fresh = 0
        self.stale += 1
        self._stale_seen = True
        os.close(fd)
        return False

    def release(self) -> None:
        """Draining: take our filters off (the sockets live on in the supervisor)."""
        for q in self.queues:
            if q.drop > 0:
                drop_syns(q.sock, 0)
                q.control.drop = 0.0
        if self._trace is not None and self._trace is not sys.stderr:
            self._trace.close()
        self._trace = None

    def check(
        self,
        accepted: Sequence[int],
        span: float,
        busy: float | None = None,
        held: Sequence[int] | None = None,
    ) -> bool:
        """One check: ``accepted[i]`` is listener i's accept count so far, ``span`` the
        seconds since the last check, ``busy`` the seconds since work came when the span
        began idle (a wake-up, a quiet process's full accept batch), ``held[i]`` what the
        mode took from listener i's queue but has not served (still queue, for the
        clients). True while on guard
        (a queue stood, or a bound is in force: the caller keeps checking often and shows
        each new connection to ``admit``)."""
        if not self.enabled:
            self.waiting = self._queued(held)
            return False
        self.waiting = 0
        wait = self._wait_min / 1e3 if self._waits else None
        guard = False
        counts = [total - q.accepted for q, total in zip(self.queues, accepted, strict=True)]
        # Those reset as stale since the last check, shared out by accepts (admit() does
        # not know the listener): resetting them costs nothing and says nothing of the
        # rate the server serves at.
        stale = self.stale - self._stale_at_check
        share = stale / max(1, sum(counts))
        for i, (q, total, n) in enumerate(zip(self.queues, accepted, counts, strict=True)):
            q.accepted = total
            info = accept_queue(q.sock)
            if info is None:
                continue
            if held is not None and held[i]:
                info = (info[0] + held[i], info[1])
            self.waiting += info[0]
            served = max(0.0, n * (1 - share))
            rate = served / span if span > 0 else 0.0
            if q.can_drop and self._admission(q, info, n, round(n - served), span, wait, busy):
                guard = True
            guard = self._bound_backlog(q, info, rate, wait) or guard
            q.qlen = info[0]
            guard = guard or info[0] >= GUARD_QUEUE
            if self._trace is not None and (n or info[0] or q.drop):
                self._write_trace(i, info, n, span, wait, q)  # (not while idle: C1M)
        self._wait_min, self._wait_max, self._waits = math.inf, 0, 0
        self._stale_seen = False
        self._stale_at_check = self.stale
        return guard

    def _queued(self, held: Sequence[int] | None) -> int:
        """Connections waiting in the accept queues (admission off: only counted)."""
        total = sum(held) if held is not None else 0
        for q in self.queues:
            info = accept_queue(q.sock)
            if info is not None:
                total += info[0]
        return total

    def _write_trace(
        self,
        index: int,
        info: tuple[int, int],
        accepted: int,
        span: float,
        wait: float | None,
        q: AcceptQueue,
    ) -> None:
        """One check's readings and decisions for listener ``index`` (--admission-trace)."""
        assert self._trace is not None
        rec = {
            "t": round(time.time(), 4),
            "pid": os.getpid(),
            "listener": index,
            "span": round(span, 4),
            "qlen": info[0],
            "limit": info[1],
            "accepted": accepted,
            "sampled": self._waits,
            "wait_min_ms": None if wait is None else round(wait * 1e3),
            "wait_max_ms": self._wait_max if self._waits else None,
            "offered": round(q.control.offered, 1),
            "drop": round(q.drop, 4),
            "aim_ms": round(q.control.aim * 1e3),
            "backlog": q.backlog,
            "sharers": q.control.sharers,
            "stale": self.stale,
            "cpu": round(time.process_time(), 4),
        }
        try:
            self._trace.write(json.dumps(rec, separators=(",", ":")) + "\n")
        except OSError as exc:
            log.warning("admission trace: %s; tracing stops", exc)
            self._trace = None

    def _bound_backlog(
        self, q: AcceptQueue, info: tuple[int, int], rate: float, wait: float | None
    ) -> bool:
        qlen, limit = info
        size = q.backlog
        half = rate * self.max_wait / 2
        fit = max(MIN_BACKLOG, min(self.full_backlog, int(half)))
        standing = False
        if q.can_drop:
            # With the filter at work, "more than half a wait's worth" is read from the
            # wait itself: the accept rate read per check swings with the accept batches
            # and the CPU quota's slices, and a backlog shrunk from a low reading fills
            # (then nearly every SYN is dropped) while the filter holds the wait. Over
            # the aim by a target (half of --max-accept-wait under a flood, three
            # quarters under a slight overload) is a wait the filter is not holding.
            # The waits read are of the queue that stood at the last check as much as of
            # the one now, and a mode may have taken all of it in one turn since (io_uring:
            # 300 stale reset from a queue of 336, none left standing at the check).
            bound = q.control.aim + self.target
            waits = self._stale_seen or (wait is not None and wait > bound)
            over = waits and max(qlen, q.qlen) > MIN_BACKLOG / 2
        else:
            over = qlen > max(half, MIN_BACKLOG / 2)
        if over:
            standing = True  # holds more than the bound: shrink to what drains in it
            size = fit
        elif qlen * 2 >= limit:
            size = max(q.backlog, fit)  # still full at a size set from a lower rate: follow it
        elif qlen * 4 < limit:
            size = min(self.full_backlog, max(q.backlog * 2, MIN_BACKLOG))
        if size > q.backlog or q.backlog - size > q.backlog * BACKLOG_HYSTERESIS:
            try:
                set_backlog(q.sock, size)
            except OSError as exc:
                log.warning("cannot resize the accept queue: %s", exc)
            else:
                if size < q.backlog:
                    log.warning(
                        "accept queue: %d waiting at %.0f accepts/s; backlog %d -> %d",
                        qlen,
                        rate,
                        q.backlog,
                        size,
                    )
                q.backlog = size
        return standing or q.backlog < self.full_backlog

    def _admission(
        self,
        q: AcceptQueue,
        info: tuple[int, int],
        accepted: int,
        stale: int,
        span: float,
        wait: float | None,
        busy: float | None,
    ) -> bool:
        """Set the share of SYNs the listener's filter drops (``Control``); True while
        dropping."""
        qlen, limit = info
        before = q.drop
        drop = q.control.step(qlen, limit, accepted, wait, span, stale, busy)
        # Set again at every check while dropping, not only on a change: during a reload
        # the draining worker on the same socket removes its filter.
        if drop != before or drop > 0:
            if not drop_syns(q.sock, drop):
                q.can_drop = False
                if before > 0:
                    drop_syns(q.sock, 0)  # (best effort: an older share may still be set)
                q.control.drop = 0.0
                return False
            if before == 0 and drop > 0:
                log.warning(
                    "accept queue: %d waiting at %.0f accepts/s, shortest wait %.0f ms; "
                    "dropping %.0f %% of new SYNs",
                    qlen,
                    accepted / span if span > 0 else 0.0,
                    (wait or 0.0) * 1e3,
                    drop * 100,
                )
        return drop > 0
