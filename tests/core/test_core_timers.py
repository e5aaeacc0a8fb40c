"""TimerHeap (precise one-shots, lazy cancel) and Deadlines (lazy one-second buckets).

Time here is a plain number handed in by the test: nothing reads a clock, so nothing
depends on the machine's speed. "Cheap" claims are checked by counting, not timing.
"""

from __future__ import annotations

import gc
import weakref

from c10k.core.timers import SWEEP_MIN_DEAD, Deadlines, TimerHeap

# -- TimerHeap -------------------------------------------------------------------------


def test_core_timerheap_pops_in_time_order() -> None:
    heap = TimerHeap()
    fired: list[str] = []
    for when, name in ((3.0, "c"), (1.0, "a"), (5.0, "e"), (2.0, "b"), (4.0, "d")):
        heap.call_at(when, fired.append, name)
    assert heap.next_when() == 1.0
    for h in heap.pop_due(2.5):
        h.callback(*h.args)
    assert fired == ["a", "b"]
    assert heap.next_when() == 3.0
    for h in heap.pop_due(100.0):
        h.callback(*h.args)
    assert fired == ["a", "b", "c", "d", "e"]
    assert heap.next_when() is None
    assert len(heap) == 0


def test_core_timerheap_due_is_inclusive() -> None:
    heap = TimerHeap()
    h = heap.call_at(2.0, print)
    assert heap.pop_due(1.999) == []
    assert heap.pop_due(2.0) == [h]


def test_core_timerheap_cancelled_never_fires() -> None:
    heap = TimerHeap()
    fired: list[int] = []
    handles = [heap.call_at(float(i), fired.append, i) for i in range(10)]
    for i in (0, 3, 9):
        handles[i].cancel()
    assert heap.next_when() == 1.0  # the cancelled head was dropped, lazily
    for h in heap.pop_due(100.0):
        h.callback(*h.args)
    assert fired == [1, 2, 4, 5, 6, 7, 8]
    assert heap.next_when() is None


def test_core_timerheap_cancel_drops_callback_reference() -> None:
    class Conn:
        def on_timeout(self) -> None:  # pragma: no cover - never called
            raise AssertionError("cancelled timer fired")

    heap = TimerHeap()
    conn = Conn()
    arg = Conn()
    ref, arg_ref = weakref.ref(conn), weakref.ref(arg)
    handle = heap.call_at(10.0, conn.on_timeout, arg)
    handle.cancel()
    del conn, arg
    gc.collect()
    # Still in the heap (cancellation is lazy), but no longer keeping the objects alive.
    assert len(heap) == 1
    assert ref() is None
    assert arg_ref() is None
    assert heap.pop_due(100.0) == []


def test_core_timerheap_cancel_inside_due_batch() -> None:
    # A handle cancelled by an earlier callback of the same batch must not run: the loop
    # reads handle.callback at call time, and cancel() replaced it.
    heap = TimerHeap()
    fired: list[str] = []
    later = heap.call_at(2.0, fired.append, "later")
    heap.call_at(1.0, later.cancel)
    for h in heap.pop_due(5.0):
        h.callback(*h.args)
    assert fired == []


# -- Deadlines -------------------------------------------------------------------------


class Item:
    """A HasDeadline that counts how often its deadline is read (a cost proxy)."""

    def __init__(self, deadline: float | None, name: object = None) -> None:
        self._deadline = deadline
        self.deadline_key: int | None = None
        self.name = name
        self.fired = 0
        self.reads = 0

    @property
    def deadline(self) -> float | None:
        self.reads += 1
        return self._deadline

    @deadline.setter
    def deadline(self, value: float | None) -> None:
        self._deadline = value

    def on_deadline(self) -> None:
        self.fired += 1


def test_core_deadlines_expire_fires_only_due() -> None:
    dl = Deadlines()
    a, b, c = Item(1.5), Item(2.5), Item(10.0)
    for it in (a, b, c):
        dl.schedule(it)
    assert dl.next_when() == 2.0  # the earliest bucket: ceil(1.5)
    assert dl.expire(1.9) == 0  # bucket 2 is not due yet: nothing fires early
    assert dl.expire(2.0) == 1
    assert (a.fired, b.fired, c.fired) == (1, 0, 0)
    assert dl.expire(3.0) == 1
    assert (a.fired, b.fired, c.fired) == (1, 1, 0)
    assert dl.expire(9.99) == 0
    assert dl.expire(10.0) == 1
    assert (a.fired, b.fired, c.fired) == (1, 1, 1)
    assert dl.next_when() is None
    assert len(dl) == 0


def test_core_deadlines_never_fire_before_deadline() -> None:
    # Bucket granularity may make an expiry late, never early.
    dl = Deadlines()
    items = [Item(1.0 + i / 10) for i in range(30)]  # 1.0 .. 3.9
    for it in items:
        dl.schedule(it)
    for now in (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0):
        dl.expire(now)
        for it in items:
            if it.fired:
                assert it._deadline is not None
                assert it._deadline <= now
    assert all(it.fired == 1 for it in items)


def test_core_deadlines_moved_later_is_refiled_not_fired() -> None:
    dl = Deadlines()
    it = Item(1.5)
    dl.schedule(it)
    it.deadline = 5.5  # re-armed by a new request: a plain store, no schedule()
    assert dl.expire(2.0) == 0
    assert it.fired == 0
    assert dl.next_when() == 6.0  # re-filed under its new second
    assert dl.expire(5.9) == 0
    assert dl.expire(6.0) == 1
    assert it.fired == 1


def test_core_deadlines_moved_earlier_via_schedule() -> None:
    dl = Deadlines()
    it = Item(10.5)
    dl.schedule(it)
    it.deadline = 2.5
    dl.schedule(it)
    assert dl.next_when() == 3.0
    assert dl.expire(3.0) == 1
    assert it.fired == 1
    # The stale filing under 11 is skipped: it fires once, not twice.
    assert dl.expire(11.0) == 0
    assert it.fired == 1


def test_core_deadlines_earlier_then_back_later_fires_once() -> None:
    # Filed under 11, then under 3; by 3 it was pushed back to 10.2, so it is re-filed
    # under 11 *again*, next to its stale filing there. It must still fire exactly once.
    dl = Deadlines()
    it = Item(10.5)
    dl.schedule(it)
    it.deadline = 2.5
    dl.schedule(it)
    it.deadline = 10.2
    assert dl.expire(3.0) == 0
    assert dl.expire(11.0) == 1
    assert it.fired == 1
    assert dl.expire(100.0) == 0


def test_core_deadlines_schedule_later_is_noop() -> None:
    dl = Deadlines()
    it = Item(2.5)
    dl.schedule(it)
    it.deadline = 7.5
    dl.schedule(it)  # already filed earlier: O(1), nothing filed
    assert len(dl) == 1
    assert dl.next_when() == 3.0


def test_core_deadlines_closed_item_never_fires() -> None:
    dl = Deadlines()
    closed, live = Item(1.5), Item(1.5)
    dl.schedule(closed)
    dl.schedule(live)
    closed.deadline = None  # the connection closed
    assert dl.expire(100.0) == 1
    assert (closed.fired, live.fired) == (0, 1)
    assert len(dl) == 0  # and it is dropped, not re-filed
    dl.schedule(Item(None))  # None is never filed at all
    assert len(dl) == 0


def test_core_deadlines_expire_touches_only_due_items() -> None:
    dl = Deadlines()
    due = [Item(1.0 + i / 100) for i in range(10)]  # all in bucket 2
    idle = [Item(100.0 + i / 100) for i in range(9990)]
    for it in due + idle:
        dl.schedule(it)
    assert len(dl) == 10_000
    for it in due + idle:
        it.reads = 0
    assert dl.expire(2.0) == 10
    assert sum(it.fired for it in due) == 10
    assert sum(it.fired for it in idle) == 0
    # The cost is a count: not one idle item was even looked at.
    assert sum(it.reads for it in idle) == 0
    assert len(dl) == 9990


def test_core_deadlines_discard_releases_items_after_sweep() -> None:
    d = Deadlines()
    items = [Item(100.0 + i % 3) for i in range(3 * SWEEP_MIN_DEAD)]
    for item in items:
        d.schedule(item)
    refs = [weakref.ref(item) for item in items[: 2 * SWEEP_MIN_DEAD]]
    for item in items[: 2 * SWEEP_MIN_DEAD]:
        d.discard(item)
    assert len(d) == SWEEP_MIN_DEAD
    del items[: 2 * SWEEP_MIN_DEAD]
    gc.collect()
    # Swept: at most SWEEP_MIN_DEAD dead entries may stay referenced, not all 2x.
    assert sum(r() is not None for r in refs) <= SWEEP_MIN_DEAD
    assert d.expire(200.0) == SWEEP_MIN_DEAD  # the live ones still fire, once each
    assert all(item.fired == 1 for item in items)
    assert len(d) == 0
