"""The realtime-signal backend's own facts: siginfo_t layout, si_fd/si_band read through
ctypes, queue overflow -> SIGIO -> poll() rescan, thread ownership, signal hygiene.

The generic behaviour (readiness, edges, unregister, forget) is the contract suite's job;
it runs on rtsig because rtsig is in the registry.
"""

from __future__ import annotations

import ctypes
import fcntl
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest

from c10k.core import READ, WRITE
from c10k.core.io_rtsig import RtsigBackend, SigInfo

pytestmark = pytest.mark.skipif(
    RtsigBackend.unavailable_reason() is not None,
    reason=str(RtsigBackend.unavailable_reason()),
)


@pytest.fixture
def backend() -> Iterator[RtsigBackend]:
    b = RtsigBackend()
    yield b
    b.close()


def test_core_rtsig_siginfo_layout() -> None:
    # glibc bits/types/siginfo_t.h / asm-generic/siginfo.h on x86_64 and aarch64.
    assert ctypes.sizeof(SigInfo) == 128
    assert SigInfo.si_signo.offset == 0
    assert SigInfo.si_errno.offset == 4
    assert SigInfo.si_code.offset == 8
    assert SigInfo.si_band.offset == 16
    assert SigInfo.si_band.size == 8
    assert SigInfo.si_fd.offset == 24
    assert SigInfo.si_fd.size == 4


def test_core_rtsig_signal_carries_fd_and_band(backend: RtsigBackend) -> None:
    r, w = os.pipe()
    try:
        os.set_blocking(r, False)
        backend.register(r, READ)
        assert backend.poll(0) == []
        os.write(w, b"x")
        assert backend.poll(2.0) == [(r, READ)]
        info = backend._info  # what the kernel wrote for that event
        assert info.si_signo == backend.signum
        assert info.si_fd == r
        assert info.si_band & select.POLLIN
        assert info.si_code == 1  # POLL_IN
        backend.unregister(r)
        assert not fcntl.fcntl(r, fcntl.F_GETFL) & os.O_ASYNC  # signalling is off again
    finally:
        os.close(r)
        os.close(w)


_OVERFLOW_CHILD = r"""
import json, resource, socket, sys
from c10k.core import READ
from c10k.core.io_rtsig import RtsigBackend

limit = int(sys.argv[1])
if limit >= 0:
    resource.setrlimit(resource.RLIMIT_SIGPENDING, (limit, limit))
b = RtsigBackend()
pairs = [socket.socketpair() for _ in range(40)]
for a, _ in pairs:
    a.setblocking(False)
    b.register(a.fileno(), READ)
for _, peer in pairs:
    peer.send(b"ping")
got = {}
for _ in range(20):
    for fd, ev in b.poll(1.0):
        got[fd] = got.get(fd, 0) | ev
    if len(got) == len(pairs):
        break
want = sorted(a.fileno() for a, _ in pairs)
print(json.dumps({"all": sorted(got) == want, "read": all(ev & READ for ev in got.values()),
                  "overflows": b.overflows, "extra": sorted(set(got) - set(want))}))
b.close()
"""


def _run_overflow_child(limit: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _OVERFLOW_CHILD, str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_core_rtsig_queue_overflow_falls_back_to_poll_rescan() -> None:
    # 40 sockets become readable while at most 4 realtime signals may be queued: the
    # kernel sends plain SIGIO instead, and the backend must find all 40 with poll().
    result = _run_overflow_child(4)
    assert result == {"all": True, "read": True, "overflows": 1, "extra": []}


def test_core_rtsig_no_overflow_without_the_limit() -> None:
    result = _run_overflow_child(-1)
    assert result == {"all": True, "read": True, "overflows": 0, "extra": []}


_BYSTANDER_CHILD = r"""
import os, signal, threading
from c10k.core import READ
from c10k.core.io_rtsig import RtsigBackend

b = RtsigBackend()
ready, stop = threading.Event(), threading.Event()

def bystander():
    # A thread that does not block our signals (one started before the backend, say).
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {b.signum, signal.SIGIO})
    ready.set()
    stop.wait(10)

t = threading.Thread(target=bystander)
t.start()
ready.wait(10)
r, w = os.pipe()
b.register(r, READ)
for i in range(20):
    os.write(w, b"x")  # the signal is generated now, while no thread is in sigtimedwait
    assert b.poll(2.0) == [(r, READ)], i
    os.read(r, 10)
stop.set()
t.join()
print("ok")
"""


def test_core_rtsig_other_threads_do_not_take_the_signal() -> None:
    # A process-directed realtime signal (F_SETOWN getpid()) goes to any thread that does
    # not block it, and its default action kills the process. F_OWNER_TID directs it at
    # the polling thread only. In a subprocess, so a regression kills that, not pytest.
    out = subprocess.run(
        [sys.executable, "-c", _BYSTANDER_CHILD], capture_output=True, text=True, timeout=60
    )
    assert (out.returncode, out.stdout) == (0, "ok\n"), out.stderr


def test_core_rtsig_poll_from_another_thread_adopts_it(backend: RtsigBackend) -> None:
    r, w = os.pipe()
    got: list[list[tuple[int, int]]] = []
    try:
        backend.register(r, READ)
        os.write(w, b"queued for the creating thread")

        def other() -> None:
            got.append(backend.poll(2.0))  # rescans on adoption: the byte is found
            os.write(w, b"y")
            got.append(backend.poll(2.0))  # a signal now directed at this thread

        t = threading.Thread(target=other)
        t.start()
        t.join(10)
        assert got == [[(r, READ)], [(r, READ)]]
        backend.unregister(r)
    finally:
        os.close(r)
        os.close(w)


def test_core_rtsig_data_and_fin_together_report_rdhup(backend: RtsigBackend) -> None:
    # Data then FIN before we poll: two POLL_IN signals merge into one event, which must
    # carry POLLRDHUP, or a consumer stopping at a short read would never see the EOF.
    a, b = socket.socketpair()
    try:
        a.setblocking(False)
        backend.register(a.fileno(), READ)
        b.send(b"GET / HTTP/1.1\r\n")
        b.shutdown(socket.SHUT_WR)
        [(fd, ev)] = backend.poll(2.0)
        assert fd == a.fileno()
        assert ev & READ
        assert ev & select.POLLRDHUP
        c, d = socket.socketpair()  # one signal alone: no probe, no RDHUP claimed
        try:
            backend.register(c.fileno(), READ)
            d.send(b"x")
            assert backend.poll(2.0) == [(c.fileno(), READ)]
            backend.unregister(c.fileno())
        finally:
            c.close()
            d.close()
        backend.unregister(a.fileno())
    finally:
        a.close()
        b.close()


def test_core_rtsig_write_interest_on_a_full_unix_socket(backend: RtsigBackend) -> None:
    # unix_poll never arms the POLL_OUT edge (see "A write edge needs arming"): the watch
    # set must find the socket writable once the peer drains it.
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    try:
        try:
            while True:
                a.send(b"x" * 65536)
        except BlockingIOError:
            pass
        backend.register(a.fileno(), WRITE)
        assert backend.poll(0) == []
        assert backend._watch == {a.fileno()}
        try:
            while b.recv(65536):
                pass
        except BlockingIOError:
            pass
        assert backend.poll(2.0) == [(a.fileno(), WRITE)]
        assert backend._watch == set()
        backend.unregister(a.fileno())
    finally:
        a.close()
        b.close()


def test_core_rtsig_each_instance_has_its_own_signal_and_close_unblocks() -> None:
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    one, two = RtsigBackend(), RtsigBackend()
    try:
        assert one.signum != two.signum
        assert signal.SIGRTMIN < one.signum <= signal.SIGRTMAX
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        assert {one.signum, two.signum, signal.SIGIO} <= blocked
    finally:
        one.close()
        two.close()
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def test_core_rtsig_unavailable_reason_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    reason = RtsigBackend.unavailable_reason()
    assert reason is not None
    assert "Linux" in reason
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr("platform.machine", lambda: "mips")
    reason = RtsigBackend.unavailable_reason()
    assert reason is not None
    assert "siginfo_t" in reason


def test_core_rtsig_without_ctypes_is_unavailable_not_an_import_error() -> None:
    # A Python built without _ctypes must still import the event core; rtsig just says why.
    code = (
        "import sys; sys.modules['ctypes'] = None\n"
        "from c10k.core.registry import available_backends, unavailable_backends\n"
        "assert 'rtsig' not in available_backends()\n"
        "print(unavailable_backends()['rtsig'])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("ctypes is missing")
