"""Timers: a heap for precise one-shot timers, and lazy buckets for idle deadlines.

A Discussion About Time (after curio's timequeue.py)
----------------------------------------------------
A server has two kinds of timers. A few precise ones (retry accept in 100 ms, shut down in
10 s) go in a binary heap, O(log n) to add, cancelled lazily: a cancelled handle stays in
the heap with a flag and is dropped when it reaches the top (asyncio does the same).

Then one per connection: header, keep-alive and send timeouts. They are set on every
request and almost never fire, so the cost that matters is *re-arming*. ``Deadlines`` makes
re-arming a single attribute store: an item carries ``deadline`` (float seconds, or None)
and sits in a one-second bucket keyed by the integer second it was *filed* under. When a
bucket comes due, each item in it is checked: past its deadline -> ``on_deadline()``; its
deadline was pushed later meanwhile -> re-filed under the new second. So an active
keep-alive connection is looked at about once per timeout period, whatever its request
rate, and an expiry never scans connections that are not due (nginx gets the same effect
from its timer rbtree plus ``ngx_event_timer`` lazy updates; Linux from its timer wheel).

Moving a deadline *earlier* than the bucket it is filed in needs ``schedule()`` again; that
files the item in the earlier bucket too, and the later filing is skipped when it comes due
because ``deadline_key`` no longer names it.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any, Protocol


class TimerHandle:
    __slots__ = ("args", "callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True
        self.callback = _noop  # drop references now; the heap entry goes away lazily
        self.args = ()

    def __lt__(self, other: TimerHandle) -> bool:
        return self.when < other.when


def _noop(*_: Any) -> None:
    pass


class TimerHeap:
    """One-shot timers in a heap with lazy cancellation."""

    def __init__(self) -> None:
        # Never replaced: the loops read its head inline (c10k.core.loop).
        self._heap: list[TimerHandle] = []

    def __len__(self) -> int:
        return len(self._heap)

    def call_at(self, when: float, callback: Callable[..., Any], *args: Any) -> TimerHandle:
        handle = TimerHandle(when, callback, args)
        heapq.heappush(self._heap, handle)
        return handle

    def next_when(self) -> float | None:
        heap = self._heap
        while heap and heap[0].cancelled:
            heapq.heappop(heap)
        return heap[0].when if heap else None

    def pop_due(self, now: float) -> list[TimerHandle]:
        heap = self._heap
        due = []
        while heap and heap[0].when <= now:
            h = heapq.heappop(heap)
            if not h.cancelled:
                due.append(h)
        return due


class HasDeadline(Protocol):
    deadline: float | None
    deadline_key: int | None

    def on_deadline(self) -> None: ...


SWEEP_MIN_DEAD = 1024  # sweep when more than this many entries, and half of all, are dead


class Deadlines:
    """Per-connection deadlines in one-second buckets; see the module comment."""

    def __init__(self) -> None:
        # key -> (the key object itself, items): items share one int object per bucket
        # for their deadline_key (32 bytes per idle connection saved at C1M scale).
        self._buckets: dict[int, tuple[int, list[HasDeadline]]] = {}
        self._keys: list[int] = []  # heap of bucket keys (never replaced: see TimerHeap)
        # Entries in the buckets, and how many of them are dead (discarded items, and the
        # later filing of an item moved earlier). Dead entries would keep closed
        # connections alive until their bucket comes due (60 s at 15,000 connections/s
        # is ~900,000 objects), so past a bound they are swept: amortized O(1).
        self._entries = 0
        self._dead = 0

    def __len__(self) -> int:
        """Live items filed (dead entries not counted)."""
        return self._entries - self._dead

    def discard(self, item: HasDeadline) -> None:
        """Unfile ``item`` (it is closing): it will never fire, and its entry is dropped
        at the next sweep, so nothing keeps it alive. O(1) amortized."""
        if item.deadline_key is None:
            return
        item.deadline_key = None
        self._dead += 1
        if self._dead > SWEEP_MIN_DEAD and self._dead * 2 > self._entries:
            self._sweep()

    def _sweep(self) -> None:
        entries = 0
        for key, (_, items) in list(self._buckets.items()):
            live = [item for item in items if item.deadline_key == key]
            if len(live) < len(items):
                items[:] = live
            entries += len(live)
        # Empty buckets stay until due (their keys are in the heap); they cost little.
        self._entries = entries
        self._dead = 0

    def schedule(self, item: HasDeadline) -> None:
        """File ``item`` under its ``deadline`` unless it is already filed no later.

        O(1) when already filed early enough (the common case), O(log buckets) otherwise.
        """
        deadline = item.deadline
        if deadline is None:
            return
        key = math.ceil(deadline)
        old = item.deadline_key
        if old is not None:
            if old <= key:
                return
            self._dead += 1  # the later filing stays behind, dead
        self._entries += 1
        entry = self._buckets.get(key)
        if entry is None:
            self._buckets[key] = (key, [item])
            heapq.heappush(self._keys, key)
        else:
            key = entry[0]
            entry[1].append(item)
        item.deadline_key = key

    def next_when(self) -> float | None:
        return float(self._keys[0]) if self._keys else None

    def expire(self, now: float) -> int:
        """Fire ``on_deadline`` for every item past its deadline; re-file the rest.

        Returns:
            How many items expired.
        """
        keys = self._keys
        fired = 0
        while keys and keys[0] <= now:
            key = heapq.heappop(keys)
            _, items = self._buckets.pop(key, (key, []))
            self._entries -= len(items)
            for item in items:
                if item.deadline_key != key:
                    self._dead -= 1
                    continue  # re-filed earlier, or unfiled (closed)
                item.deadline_key = None
                deadline = item.deadline
                if deadline is None:
                    continue
                if deadline <= now:
                    fired += 1
                    item.on_deadline()
                else:
                    self.schedule(item)
        return fired
