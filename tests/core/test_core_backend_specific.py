"""What only one backend does: select's FD_SETSIZE limit, kqueue's and /dev/poll's
translation (driven through fakes of the OS objects, since neither runs on Linux), and the
registry that picks among them.
"""

from __future__ import annotations

import os
import resource
import select
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from _core_support import (
    EV_ADD,
    EV_CLEAR,
    EV_DELETE,
    EV_EOF,
    EV_ERROR,
    EVFILT_READ,
    EVFILT_WRITE,
    FakeKevent,
)

from c10k.core import (
    ERROR,
    HUP,
    READ,
    READ_MASK,
    WRITE,
    WRITE_MASK,
    BackendUnavailable,
    Capability,
    get_backend_class,
    make_backend,
)
from c10k.core.io_kqueue import MAX_EVENTS as KQ_MAX_EVENTS
from c10k.core.io_kqueue import KqueueBackend, KqueueEdgeBackend
from c10k.core.io_poll import DevpollBackend
from c10k.core.io_select import SelectBackend
from c10k.core.registry import AUTO_ORDER, BACKENDS, available_backends, unavailable_backends

# -- select: FD_SETSIZE ----------------------------------------------------------------


@pytest.fixture
def high_fd() -> Iterator[int]:
    """An open fd numbered >= 1024 (a dup of one end of a socketpair)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1100
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} does not allow fds >= 1024")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    a, b = socket.socketpair()
    fd = -1
    try:
        for candidate in range(1024, want):
            try:
                os.fstat(candidate)
            except OSError:  # EBADF: free, so dup2 closes nothing of anyone else's
                fd = candidate
                break
        assert fd >= 1024, "no free fd number in [1024, 1100)"
        os.dup2(a.fileno(), fd)
        yield fd
    finally:
        if fd >= 0:
            os.close(fd)
        a.close()
        b.close()
        if soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_core_select_refuses_fd_at_or_above_fd_setsize(high_fd: int) -> None:
    backend = SelectBackend()
    with pytest.raises(ValueError, match="FD_SETSIZE") as info:
        backend.register(high_fd, READ)
    msg = str(info.value)
    assert str(high_fd) in msg
    assert "poll" in msg
    assert "epoll" in msg
    assert len(backend) == 0  # nothing half-registered
    assert backend.poll(0) == []


def test_core_select_stdlib_refuses_high_fd_too(high_fd: int) -> None:
    # Sanity check of the premise: CPython's select() cannot take it either, so refusing
    # at register (rather than failing later inside poll) is the only useful place.
    with pytest.raises(ValueError, match="out of range"):
        select.select([high_fd], [], [], 0)


def test_core_select_advertises_fd_limit() -> None:
    assert SelectBackend.capabilities & Capability.FD_LIMIT
    assert SelectBackend.max_fd == 1024
    assert not SelectBackend.capabilities & Capability.EDGE


def test_core_select_accepts_fd_just_below_limit() -> None:
    # The boundary: 1023 is fine (refusing it would cost a connection for nothing).
    a, b = socket.socketpair()
    try:
        try:
            os.fstat(1023)
            pytest.skip("fd 1023 is in use")
        except OSError:
            pass
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft <= 1023:
            pytest.skip("RLIMIT_NOFILE too low for fd 1023")
        os.dup2(a.fileno(), 1023)
        try:
            backend = SelectBackend()
            backend.register(1023, WRITE)
            assert backend.poll(1.0) == [(1023, WRITE)]
        finally:
            os.close(1023)
    finally:
        a.close()
        b.close()


# -- kqueue through a fake -------------------------------------------------------------
#
# Every test runs for both variants: ``kqueue`` adds kevents with EV_ADD, ``kqueue-et``
# with EV_ADD|EV_CLEAR; everything else (which filters change, deletes, errors, the
# translation of what comes back) must be the same, except the RDHUP the edge variant adds
# to a read EOF. That the flags make a difference on real sockets is the contract suite's
# job (its ``*-emulated`` params).

RDHUP = 0x2000  # EPOLLRDHUP on Linux, the bit c10k's READ_MASK and server read as "FIN queued"


class FakeKqueue:
    """Records every changelist passed to control() and returns scripted event lists."""

    def __init__(self) -> None:
        self.changes: list[list[tuple[int, int, int]]] = []
        self.waits: list[tuple[int, float | None]] = []
        self.script: list[list[FakeKevent]] = []
        self.fail_with: OSError | None = None
        self.closed = False

    def control(self, changes: Any, max_events: int, timeout: float | None = None) -> Any:
        if self.fail_with is not None:
            raise self.fail_with
        if changes:
            self.changes.append([(c.ident, c.filter, c.flags) for c in changes])
        if max_events:
            self.waits.append((max_events, timeout))
            return self.script.pop(0) if self.script else []
        return []

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def kq() -> FakeKqueue:
    return FakeKqueue()


@pytest.fixture(params=[KqueueBackend, KqueueEdgeBackend], ids=lambda cls: cls.name)
def kqb(request: pytest.FixtureRequest, kq: FakeKqueue) -> KqueueBackend:
    cls: type[KqueueBackend] = request.param
    return cls(kq=kq, kevent=FakeKevent)


def add_flags(kqb: KqueueBackend) -> int:
    # What every added kevent must carry, from the name (not from the capability the
    # backend derives its flags from, which would make the test agree with any bug).
    return EV_ADD | EV_CLEAR if kqb.name == "kqueue-et" else EV_ADD


def test_core_kqueue_register_read_write_adds_two_filters(
    kq: FakeKqueue, kqb: KqueueBackend
) -> None:
    add = add_flags(kqb)
    kqb.register(5, READ | WRITE)
    assert kq.changes == [[(5, EVFILT_READ, add), (5, EVFILT_WRITE, add)]]
    assert len(kqb) == 1


def test_core_kqueue_register_one_direction(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    add = add_flags(kqb)
    kqb.register(5, READ)
    kqb.register(6, WRITE)
    assert kq.changes == [[(5, EVFILT_READ, add)], [(6, EVFILT_WRITE, add)]]


def test_core_kqueue_double_register_raises_without_syscall(
    kq: FakeKqueue, kqb: KqueueBackend
) -> None:
    kqb.register(5, READ)
    with pytest.raises(KeyError):
        kqb.register(5, WRITE)
    assert kq.changes == [[(5, EVFILT_READ, add_flags(kqb))]]


def test_core_kqueue_modify_changes_only_the_right_filter(
    kq: FakeKqueue, kqb: KqueueBackend
) -> None:
    add = add_flags(kqb)
    kqb.register(5, READ | WRITE)
    kq.changes.clear()
    kqb.modify(5, READ)
    assert kq.changes == [[(5, EVFILT_WRITE, EV_DELETE)]]
    kq.changes.clear()
    kqb.modify(5, WRITE)
    assert kq.changes == [[(5, EVFILT_READ, EV_DELETE), (5, EVFILT_WRITE, add)]]
    kq.changes.clear()
    kqb.modify(5, WRITE)  # no change, no syscall
    assert kq.changes == []
    kqb.modify(5, READ | WRITE)
    assert kq.changes == [[(5, EVFILT_READ, add)]]


def test_core_kqueue_every_added_kevent_carries_the_variant_flags(
    kq: FakeKqueue, kqb: KqueueBackend
) -> None:
    # Through register, modify back and forth, unregister and register again: no kevent
    # is added without EV_CLEAR on kqueue-et (one without it would be level-triggered and
    # re-reported forever to a loop that only reads on edges), none with it on kqueue.
    kqb.register(5, READ)
    kqb.modify(5, WRITE)
    kqb.modify(5, READ | WRITE)
    kqb.unregister(5)
    kqb.register(5, READ | WRITE)
    kqb.register(6, WRITE)
    added = [flags for batch in kq.changes for _, _, flags in batch if not flags & EV_DELETE]
    assert len(added) == 6
    assert set(added) == {add_flags(kqb)}
    deleted = [flags for batch in kq.changes for _, _, flags in batch if flags & EV_DELETE]
    assert deleted == [EV_DELETE] * 3  # deletes carry nothing else


def test_core_kqueue_modify_unregister_unknown_raise_keyerror(
    kq: FakeKqueue, kqb: KqueueBackend
) -> None:
    with pytest.raises(KeyError):
        kqb.modify(9, READ)
    with pytest.raises(KeyError):
        kqb.unregister(9)
    with pytest.raises(KeyError):
        kqb.forget(9)
    assert kq.changes == []


def test_core_kqueue_failed_modify_keeps_old_interest(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    kqb.register(5, READ)
    kq.fail_with = OSError(9, "Bad file descriptor")
    with pytest.raises(OSError, match="Bad file descriptor"):
        kqb.modify(5, WRITE)
    kq.fail_with = None
    kq.changes.clear()
    kqb.modify(5, READ | WRITE)  # from READ, the recorded interest: only WRITE is added
    assert kq.changes == [[(5, EVFILT_WRITE, add_flags(kqb))]]


def test_core_kqueue_unregister_deletes_filters(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    kqb.register(5, READ | WRITE)
    kqb.register(6, READ)
    kq.changes.clear()
    kqb.unregister(5)
    kqb.unregister(6)
    assert kq.changes == [
        [(5, EVFILT_READ, EV_DELETE), (5, EVFILT_WRITE, EV_DELETE)],
        [(6, EVFILT_READ, EV_DELETE)],
    ]
    assert len(kqb) == 0


def test_core_kqueue_unregister_after_close_forgets_fd(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    kqb.register(5, READ)
    kq.fail_with = OSError(9, "Bad file descriptor")  # fd closed first: kevents already gone
    kqb.unregister(5)
    assert len(kqb) == 0
    kq.fail_with = None
    kqb.register(5, READ)  # the number can be reused
    assert len(kqb) == 1


def test_core_kqueue_forget_makes_no_syscall(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    # close() drops an fd's kevents (kqueue(2)), so forget() before close() is bookkeeping.
    kqb.register(5, READ | WRITE)
    kq.changes.clear()
    kqb.forget(5)
    assert kq.changes == []
    assert len(kqb) == 0
    kqb.register(5, READ)  # the number, reused by a new socket, registers again
    assert kq.changes == [[(5, EVFILT_READ, add_flags(kqb))]]


def test_core_kqueue_failed_register_leaves_nothing(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    kq.fail_with = OSError(9, "Bad file descriptor")
    with pytest.raises(OSError, match="Bad file descriptor"):
        kqb.register(5, READ)
    assert len(kqb) == 0


def test_core_kqueue_poll_merges_and_maps_flags(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    for fd in (5, 6, 7, 8):
        kqb.register(fd, READ | WRITE)
    kq.script.append(
        [
            FakeKevent(5, EVFILT_READ, EV_ADD),
            FakeKevent(5, EVFILT_WRITE, EV_ADD),
            FakeKevent(6, EVFILT_READ, EV_ADD | EV_EOF),
            FakeKevent(7, EVFILT_WRITE, EV_ADD | EV_ERROR),
            FakeKevent(8, EVFILT_WRITE, EV_ADD | EV_EOF),
        ]
    )
    ready = kqb.poll(1.5)
    fds = [fd for fd, _ in ready]
    assert sorted(fds) == [5, 6, 7, 8]  # one entry per fd
    got = dict(ready)
    assert got[5] == READ | WRITE
    # The peer's FIN: HUP, and on the edge variant also RDHUP (EPOLLRDHUP's bit), which
    # tells a reader that stopped at a short read that no new edge will come for the EOF.
    assert got[6] == (READ | HUP | RDHUP if kqb.name == "kqueue-et" else READ | HUP)
    assert got[7] == WRITE | ERROR
    assert got[8] == WRITE | HUP  # EOF on the write filter: no RDHUP on either variant
    assert got[7] & READ_MASK  # the loop wakes the reader too
    assert got[6] & WRITE_MASK
    assert kq.waits == [(KQ_MAX_EVENTS, 1.5)]


def test_core_kqueue_poll_timeouts(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    assert kqb.poll(None) == []
    assert kqb.poll(-1.0) == []  # negative means "don't block", never "forever"
    assert kqb.poll(0) == []
    assert [t for _, t in kq.waits] == [None, 0, 0]


def test_core_kqueue_close(kq: FakeKqueue, kqb: KqueueBackend) -> None:
    kqb.close()
    assert kq.closed


def test_core_kqueue_et_is_edge_and_scalable_and_kqueue_is_not_edge() -> None:
    assert KqueueEdgeBackend.name == "kqueue-et"
    assert KqueueEdgeBackend.capabilities == Capability.EDGE | Capability.SCALABLE
    assert KqueueBackend.capabilities == Capability.SCALABLE
    assert KqueueEdgeBackend.max_fd is None
    # Same kernel object, so the same verdict and sentence wherever it runs.
    assert KqueueEdgeBackend.unavailable_reason() == KqueueBackend.unavailable_reason()


@pytest.mark.skipif(hasattr(select, "kqueue"), reason="kqueue runs here")
def test_core_kqueue_et_unavailable_without_kqueue() -> None:
    reason = KqueueEdgeBackend.unavailable_reason()
    assert reason is not None
    assert "BSD" in reason
    assert unavailable_backends()["kqueue-et"] == reason
    assert "kqueue-et" not in available_backends()
    with pytest.raises(BackendUnavailable, match="kqueue-et"):
        make_backend("kqueue-et")


# -- /dev/poll through a fake ----------------------------------------------------------


class FakeDevpoll:
    """/dev/poll semantics: writing an fd that is already there ORs the new mask in."""

    instances: list[FakeDevpoll] = []

    def __init__(self) -> None:
        self.masks: dict[int, int] = {}
        self.calls: list[tuple[Any, ...]] = []
        self.closed = False
        FakeDevpoll.instances.append(self)

    def register(self, fd: int, mask: int) -> None:
        self.calls.append(("register", fd, mask))
        self.masks[fd] = self.masks.get(fd, 0) | mask

    def modify(self, fd: int, mask: int) -> None:  # pragma: no cover - must not be needed
        self.calls.append(("modify", fd, mask))
        self.masks[fd] = mask

    def unregister(self, fd: int) -> None:
        self.calls.append(("unregister", fd))
        del self.masks[fd]

    def poll(self, timeout: int) -> list[tuple[int, int]]:
        self.calls.append(("poll", timeout))
        return list(self.masks.items())  # "everything watched is ready"

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def devpoll(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeDevpoll]:
    FakeDevpoll.instances.clear()
    monkeypatch.setattr(select, "devpoll", FakeDevpoll, raising=False)
    yield FakeDevpoll  # type: ignore[misc]
    FakeDevpoll.instances.clear()


def test_core_devpoll_available_when_select_has_it(devpoll: Any) -> None:
    assert DevpollBackend.unavailable_reason() is None
    assert DevpollBackend.capabilities & Capability.SCALABLE


def test_core_devpoll_modify_unregisters_then_registers(devpoll: Any) -> None:
    b = DevpollBackend()
    fake = FakeDevpoll.instances[-1]
    b.register(5, READ)
    b.modify(5, WRITE)
    assert fake.calls == [("register", 5, READ), ("unregister", 5), ("register", 5, WRITE)]
    assert fake.masks == {5: WRITE}  # not READ|WRITE, which a bare re-register would give
    assert b.poll(0) == [(5, WRITE)]


def test_core_devpoll_modify_unknown_raises(devpoll: Any) -> None:
    b = DevpollBackend()
    with pytest.raises(KeyError):
        b.modify(5, READ)
    assert FakeDevpoll.instances[-1].calls == []


def test_core_devpoll_poll_timeout_in_ms_rounded_up(devpoll: Any) -> None:
    b = DevpollBackend()
    fake = FakeDevpoll.instances[-1]
    b.poll(None)
    b.poll(0)
    b.poll(0.0001)
    b.poll(1.5)
    assert [c[1] for c in fake.calls if c[0] == "poll"] == [-1, 0, 1, 1500]
    b.close()
    assert fake.closed


# -- registry --------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(select, "epoll"), reason="auto is epoll only on Linux")
def test_core_registry_auto_is_epoll_here() -> None:
    assert get_backend_class("auto").name == "epoll"
    b = make_backend()
    try:
        assert b.name == "epoll"
    finally:
        b.close()


def test_core_registry_available_and_unavailable_partition() -> None:
    avail = available_backends()
    unavail = unavailable_backends()
    assert set(avail) | set(unavail) == set(BACKENDS)
    assert not set(avail) & set(unavail)
    # auto's preference order is kept: the O(1) kernels before poll before select.
    ranked = [n for n in avail if n in AUTO_ORDER]
    assert ranked == [n for n in AUTO_ORDER if n in avail]
    assert all(reason for reason in unavail.values())


def test_core_registry_kqueue_et_registered_but_never_auto() -> None:
    assert BACKENDS["kqueue-et"] is KqueueEdgeBackend
    assert BACKENDS["kqueue"] is KqueueBackend
    # auto prefers level-triggered kqueue on BSD as it prefers epoll LT on Linux.
    assert "kqueue-et" not in AUTO_ORDER
    assert "epoll-et" not in AUTO_ORDER
    assert "kqueue" in AUTO_ORDER


def test_core_registry_kqueue_et_listed_after_kqueue_where_kqueue_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A BSD as the registry sees it: select.kqueue present, select.epoll absent. Only
    # classes are resolved here (instantiating would need the rest of BSD's select).
    monkeypatch.setattr(select, "kqueue", FakeKqueue, raising=False)
    monkeypatch.delattr(select, "epoll", raising=False)
    avail = available_backends()
    assert "kqueue" in avail
    assert "kqueue-et" in avail
    assert avail.index("kqueue") < avail.index("kqueue-et")
    assert "kqueue-et" not in unavailable_backends()
    assert get_backend_class("auto") is KqueueBackend
    assert get_backend_class("kqueue-et") is KqueueEdgeBackend


def test_core_registry_unknown_name_lists_available() -> None:
    with pytest.raises(BackendUnavailable) as info:
        get_backend_class("bogus")
    msg = str(info.value)
    assert "bogus" in msg
    for name in available_backends():
        assert name in msg
    # It must not offer a choice that would only fail next (kqueue on Linux, say).
    for name in unavailable_backends():
        assert name not in msg


@pytest.mark.parametrize("name", sorted(unavailable_backends()) or ["none"])
def test_core_registry_unavailable_backend_says_why(name: str) -> None:
    if name == "none":
        pytest.skip("every backend runs here")
    with pytest.raises(BackendUnavailable) as info:
        get_backend_class(name)
    msg = str(info.value)
    assert unavailable_backends()[name] in msg
    for avail in available_backends():
        assert avail in msg
