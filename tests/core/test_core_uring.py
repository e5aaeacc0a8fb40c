"""The io_uring binding (c10k.core.io_uring) against the real kernel: ring indexes wrapping,
a full SQ, CQ overflow, EINTR and timeouts on enter, -errno results, provided buffers.

Skipped with the binding's own reason where io_uring cannot run (seccomp, sysctl, old
kernel, not Linux)."""

from __future__ import annotations

import errno
import signal
import socket
from collections.abc import Iterator

import pytest

from c10k.core import io_uring
from c10k.core.io_uring import CQE_F_BUFFER, CQE_F_MORE, BufferRing, Ring, result_error

REASON = io_uring.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=REASON or "")


@pytest.fixture
def ring() -> Iterator[Ring]:
    r = Ring(8, 16)
    yield r
    r.close()


def reap_all(r: Ring, n: int) -> list[tuple[int, int, int]]:
    got: list[tuple[int, int, int]] = []
    for _ in range(100):
        if len(got) >= n:
            break
        r.submit_and_wait(1.0, wait_nr=1)
        got += r.reap()
    return got


def test_ring_sizes_and_features(ring: Ring) -> None:
    assert (ring.sq_entries, ring.cq_entries) == (8, 16)
    assert ring.features & io_uring.FEAT_EXT_ARG
    assert ring.sq_space() == 8


def test_ring_cq_wraps_many_times_in_order(ring: Ring) -> None:
    # 7 completions per batch on a 16-entry CQ: batches straddle the end of the CQE array
    # (one read in two runs) and the indexes pass the array size dozens of times.
    seq = 0
    straddled = 0
    for _ in range(60):
        start = ring._cq_head & ring._cq_mask
        for _ in range(7):
            ring.prep_nop(seq)
            seq += 1
        ring.submit_and_wait(1.0, wait_nr=7)
        got = ring.reap()
        if start + 7 > ring.cq_entries:
            straddled += 1
        assert [c[0] for c in got] == list(range(seq - 7, seq))
        assert all(c[1] == 0 for c in got)
    assert straddled >= 10
    assert ring._cq_head == seq  # 420 completions through a 16-entry ring


def test_ring_sq_full_submits_and_goes_on(ring: Ring) -> None:
    # 12 SQEs on an 8-entry SQ without an explicit submit: the 9th prep submits the first
    # 8 itself; nothing is lost or doubled.
    for i in range(12):
        ring.prep_nop(i)
    assert ring.pending() == 4
    got = reap_all(ring, 12)
    assert sorted(c[0] for c in got) == list(range(12))


def test_ring_cq_overflow_is_kept_not_dropped(ring: Ring) -> None:
    # 40 completions for a 16-entry CQ before we reap: IORING_FEAT_NODROP keeps the
    # overflow in the kernel; the next enters flush it.
    assert ring.features & io_uring.FEAT_NODROP
    for i in range(40):
        ring.prep_nop(i)
    ring.submit()
    got: list[tuple[int, int, int]] = []
    for _ in range(10):
        ring.submit_and_wait(0)
        got += ring.reap()
    assert sorted(c[0] for c in got) == list(range(40))


def test_ring_wait_times_out_without_error(ring: Ring) -> None:
    assert ring.submit_and_wait(0.01) == 0
    assert ring.reap() == []


@pytest.mark.parametrize("submit_first", [True, False])
def test_ring_enter_eintr_returns_and_keeps_the_submission(ring: Ring, submit_first: bool) -> None:
    # A signal during the wait ends io_uring_enter: the binding returns (the Python
    # handler runs) and raises nothing, and the SQE is not lost (its completion comes
    # later). With nothing to submit in that enter, the kernel returns -EINTR itself;
    # when the same enter submitted SQEs, it returns their count instead.
    a, b = socket.socketpair()
    fired: list[int] = []
    old = signal.signal(signal.SIGALRM, lambda signum, frame: fired.append(signum))
    try:
        ring.prep_recv(a.fileno(), 42, addr=0, length=0)  # zero-length recv: waits for data
        if submit_first:
            assert ring.submit() == 1
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        ring.submit_and_wait(30.0)
        assert fired == [signal.SIGALRM]
        assert ring.pending() == 0  # consumed by the interrupted enter
        assert ring.reap() == []
        b.send(b"x")
        got = reap_all(ring, 1)
        assert got[0][0] == 42
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
        a.close()
        b.close()


def test_result_error_maps_errno_to_oserror_subclass(ring: Ring) -> None:
    a, b = socket.socketpair()
    try:
        b.close()
        data = b"hello"
        ring.prep_send(a.fileno(), data, 0, 1, msg_flags=socket.MSG_NOSIGNAL)
        ((ud, res, _),) = reap_all(ring, 1)
        assert (ud, res) == (1, -errno.EPIPE)
        assert isinstance(result_error(res), BrokenPipeError)
    finally:
        a.close()
    closed_fd = a.fileno()
    ring.prep_recv(closed_fd if closed_fd >= 0 else 1_000_000, 2, addr=0, length=0)
    ((ud, res, _),) = reap_all(ring, 1)
    exc = result_error(res)
    assert (ud, exc.errno) == (2, errno.EBADF)
    assert type(exc) is OSError


def test_send_with_offset_sends_the_tail(ring: Ring) -> None:
    a, b = socket.socketpair()
    with a, b:
        data = b"0123456789"
        ring.prep_send(a.fileno(), data, 4, 9)
        ((ud, res, _),) = reap_all(ring, 1)
        assert (ud, res) == (9, 6)
        assert b.recv(100) == b"456789"


def test_buffer_ring_recv_take_and_enobufs(ring: Ring) -> None:
    bufs = BufferRing(ring, 3, count=2, size=16)
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        for i, (a, b) in enumerate(pairs):
            b.send(b"msg%d" % i)
            ring.prep_recv(a.fileno(), i, buf_group=3)
        got = sorted(reap_all(ring, 3))
        ok = [c for c in got if c[1] > 0]
        dry = [c for c in got if c[1] < 0]
        assert len(ok) == 2  # two buffers, so the third recv found the group empty
        assert [c[1] for c in dry] == [-errno.ENOBUFS]
        for ud, res, flags in ok:
            assert flags & CQE_F_BUFFER
            assert bufs.take(flags, res) == b"msg%d" % ud
        # The buffers went back: the starved recv succeeds when re-armed.
        ring.prep_recv(pairs[dry[0][0]][0].fileno(), 7, buf_group=3)
        ((ud, res, flags),) = reap_all(ring, 1)
        assert bufs.take(flags, res) == b"msg%d" % dry[0][0]
    finally:
        bufs.close()
        for a, b in pairs:
            a.close()
            b.close()


def test_multishot_recv_and_cancel(ring: Ring) -> None:
    bufs = BufferRing(ring, 1, count=4, size=64)
    a, b = socket.socketpair()
    try:
        ring.prep_recv(a.fileno(), 5, buf_group=1, multishot=True)
        ring.submit()
        for word in (b"one", b"two", b"three"):
            b.send(word)
            ((ud, res, flags),) = reap_all(ring, 1)
            assert flags & CQE_F_MORE  # still armed
            assert ud == 5
            assert bufs.take(flags, res) == word
        ring.prep_cancel(5, 6)
        got = {c[0]: c for c in reap_all(ring, 2)}
        assert got[6][1] == 0  # the cancel found it
        assert got[5][1] == -errno.ECANCELED
        assert not got[5][2] & CQE_F_MORE  # and it is over
    finally:
        bufs.close()
        a.close()
        b.close()


def test_probe_lists_the_server_opcodes(ring: Ring) -> None:
    ops = ring.probe()
    assert set(io_uring.NEEDED_OPS) <= ops
    assert 255 not in ops


def test_unavailable_reason_names_what_to_enable(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> Ring:
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(io_uring, "_read_sysctl", lambda path: "1")
    monkeypatch.setattr(io_uring, "Ring", refuse)
    reason = io_uring.unavailable_reason()
    assert reason is not None
    assert "io_uring_disabled" in reason
    monkeypatch.setattr(io_uring, "_read_sysctl", lambda path: "2")
    assert "kernel.io_uring_disabled=2" in (io_uring.unavailable_reason() or "")

    def nosys(*args: object, **kwargs: object) -> Ring:
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(io_uring, "_read_sysctl", lambda path: "0")
    monkeypatch.setattr(io_uring, "Ring", nosys)
    assert "seccomp" in (io_uring.unavailable_reason() or "")


def test_unavailable_reason_reports_missing_opcodes() -> None:
    assert io_uring.unavailable_reason() is None
    reason = io_uring.unavailable_reason(needed=[io_uring.OP_RECV, 250])
    assert reason is not None
    assert "250" in reason
