"""Admission: keep the kernel's accept queues short enough to be worth waiting in.

Under a flood of new connections the queue is not in our loop (its lag stays low, the
overload tiers do not fire) but in the kernel: a listen backlog of 4096 at 2,000 accepts a
second is a 2-second wait, longer than clients wait, so a FIFO server ends up serving only
clients that have left (docs/BENCHMARKS.md, Overload). This belongs to the *listener*, not
to an event loop: every server mode feeds it the same two readings per check (each
listener's queue length from TCP_INFO, and how many connections it accepted since the last
check) and asks it about each new connection while it is on guard.

Three bounds, per listener, cheapest first:

1. *Admission by SYN drop* (``_admission``; ``core.listener.drop_syns``). While the queue
   stands above a tenth of ``--max-accept-wait``'s worth of accepts (at least
   ``MIN_QUEUE``) at two checks in a row, a socket filter drops a share of the incoming
   SYNs at random, set so that about as many connections join the queue as leave it, plus
   the gap to the target closed over ``ADMIT_HORIZON``. The queue then never fills, and a
   full queue is what hurts most: Linux drops the handshake's last ACK there, and that
   client, connected as far as it knows, waits seconds for a retransmission to find room
   (then it is stale: work for nothing). A dropped SYN costs this process nothing; the
   client retries in a second. Random early drop (RED), with the accept queue as the
   router queue.
2. *The backlog* (listen(2) again on the listening socket), where the filter is refused or
   not enough: while more than half a wait's worth of accepts stands queued, the backlog
   shrinks to that many and the kernel drops the excess SYNs itself; it follows the accept
   rate up while the queue stays full, and doubles back to ``--backlog`` once it is short.
3. *Stale connections reset at accept* (``admit``): while either bound is on, a new
   connection's wait is read from TCP_INFO (``core.fdio.accept_wait_ms``); one that waited
   longer than ``--max-accept-wait`` is closed unread (RST: the client learns at once).
   After ``FRESH_RUN`` fresh ones in a row only one in ``STALE_SAMPLE`` is read (the read
   is ~5 % of a request) until a stale one turns up.

The filter belongs to the socket, which the supervisor keeps across worker restarts: a
worker clears the filter and the backlog when it starts, removes its filter when it starts
draining, and sets it again at every check while dropping (a draining worker on the same
socket may have removed it). A Unix socket has no TCP_INFO and keeps its backlog.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence

from c10k.core.fdio import accept_wait_ms
from c10k.core.listener import accept_queue, drop_syns, set_backlog

log = logging.getLogger("c10k.server")

# The smallest backlog we shrink a listener to (a queue shorter than half of it is never
# called standing), and by how much smaller a new size must be than the one in force.
MIN_BACKLOG = 64
BACKLOG_HYSTERESIS = 0.2
# The queue we aim at holds this share of --max-accept-wait's worth of accepts (at least
# MIN_QUEUE); a gap to it is closed over ADMIT_HORIZON seconds; at most MAX_DROP of the
# SYNs are dropped (beyond that the backlog bound takes over).
QUEUE_SHARE = 0.1
MIN_QUEUE = 16
ADMIT_HORIZON = 0.5
MAX_DROP = 0.98
# See bound 3 in the module comment: with the queue bounded only a handshake the full queue
# delayed can be stale, and with tcp_abort_on_overflow=1 there are none.
FRESH_RUN = 32
STALE_SAMPLE = 8


class AcceptQueue:
    """What admission knows of one listener's accept queue."""

    __slots__ = ("accepted", "backlog", "can_drop", "drop", "qlen", "sock")

    def __init__(self, sock: socket.socket, backlog: int) -> None:
        self.sock = sock
        self.backlog = backlog  # the listen(2) backlog in force
        self.accepted = 0  # accepts counted at the last check
        self.qlen = 0  # queue length at the last check
        self.drop = 0.0  # share of SYNs the listener's filter drops
        self.can_drop = True  # False once the kernel refused the filter


class Admission:
    """The accept-queue bounds of one worker's listeners (see the module comment)."""

    def __init__(self, socks: Sequence[socket.socket], backlog: int, max_wait: float) -> None:
        self.max_wait = max_wait
        self.max_wait_ms = int(max_wait * 1e3)
        self.full_backlog = backlog
        self.queues = [AcceptQueue(s, backlog) for s in socks]
        self.stale = 0  # connections reset at accept as stale
        self._fresh = 0  # connections found fresh in a row (see FRESH_RUN)
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

    @property
    def backlog(self) -> int:
        return min((q.backlog for q in self.queues), default=self.full_backlog)

    @property
    def drop_percent(self) -> int:
        return round(max((q.drop for q in self.queues), default=0.0) * 100)

    def admit(self, fd: int) -> bool:
        """While on guard: False (and ``fd`` closed, RST) for a connection whose client has
        waited longer than --max-accept-wait: it has likely given up, and serving it in
        turn would make every client behind it wait as long."""
        fresh = self._fresh
        if fresh >= FRESH_RUN:
            self._fresh = fresh + 1
            if fresh % STALE_SAMPLE:
                return True  # sampled: see FRESH_RUN
        age = accept_wait_ms(fd)
        if age is None or age <= self.max_wait_ms:
            if fresh < FRESH_RUN:
                self._fresh = fresh + 1
            return True
        self._fresh = 0
        self.stale += 1
        os.close(fd)
        return False

    def release(self) -> None:
        """Draining: take our filters off (the sockets live on in the supervisor)."""
        for q in self.queues:
            if q.drop > 0:
                drop_syns(q.sock, 0)
                q.drop = 0.0

    def check(self, accepted: Sequence[int], span: float) -> bool:
        """One check: ``accepted[i]`` is listener i's accept count so far, ``span`` the
        seconds since the last check. True while a queue is guarded (filter or a shrunk
        backlog in force: the caller keeps checking often and reads each new connection's
        wait)."""
        if not self.enabled:
            return False
        standing = False
        for q, total in zip(self.queues, accepted, strict=True):
            n, q.accepted = total - q.accepted, total
            info = accept_queue(q.sock)
            if info is None:
                continue
            rate = n / span if span > 0 else 0.0
            if q.can_drop and self._admission(q, info, n, rate, span):
                standing = True
            q.qlen = info[0]
            standing = self._bound_backlog(q, info, rate) or standing
        return standing

    def _bound_backlog(self, q: AcceptQueue, info: tuple[int, int], rate: float) -> bool:
        qlen, limit = info
        size = q.backlog
        half = rate * self.max_wait / 2
        fit = max(MIN_BACKLOG, min(self.full_backlog, int(half)))
        standing = False
        if qlen > max(half, MIN_BACKLOG / 2):
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
        self, q: AcceptQueue, info: tuple[int, int], accepted: int, rate: float, span: float
    ) -> bool:
        """Set the share of SYNs the listener's filter drops so that its queue settles at
        the target; True while dropping."""
        qlen, limit = info
        target = max(MIN_QUEUE, rate * self.max_wait * QUEUE_SHARE)
        if q.drop <= 0 and (qlen <= target or q.qlen <= target):
            return False  # not standing (a queue above target at two checks in a row)
        # Connections that joined the queue since the last check, and so the SYNs that
        # came (what passed is 1 - drop of them): the offered rate, retries included.
        joined = max(0, accepted + qlen - q.qlen)
        offered = joined / (1 - q.drop)
        # As many should join as leave, plus (or minus) the gap to the target, closed over
        # ADMIT_HORIZON seconds.
        want = accepted + (target - qlen) * min(1.0, span / ADMIT_HORIZON)
        drop = q.drop / 2 if offered <= 0 else min(MAX_DROP, max(0.0, 1 - want / offered))
        if qlen >= limit:
            # Full (at the connection cap, or the backlog shrunk): nothing could join, so
            # what was offered is unknown, and a full queue is what admission avoids.
            drop = MAX_DROP
        elif drop < 0.01 and qlen <= target:
            drop = 0.0
        # Set again at every check while dropping, not only on a change: during a reload
        # the draining worker on the same socket removes its filter.
        if drop != q.drop or drop > 0:
            if not drop_syns(q.sock, drop):
                q.can_drop = False
                if q.drop > 0:
                    drop_syns(q.sock, 0)  # (best effort: an older share may still be set)
                q.drop = 0.0
                return False
            if q.drop == 0:
                log.warning(
                    "accept queue: %d waiting at %.0f accepts/s; dropping %.0f %% of new SYNs",
                    qlen,
                    rate,
                    drop * 100,
                )
            q.drop = drop
        return drop > 0
