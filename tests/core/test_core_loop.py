"""Loop: posted callbacks, timers, thread wakeups, errors in callbacks, signals.

Every test runs on every backend. ``loop.run()`` is driven in the test's own thread and
stopped from a callback; a ``Watchdog`` (its own socketpair, never the loop's wakeup)
turns a hang into a failure.
"""

from __future__ import annotations

import gc
import logging
import os
import resource
import signal
import socket
import threading
from collections.abc import Iterator

import pytest
from _core_support import (
    BACKEND_PARAMS,
    PollCounter,
    SocketPairs,
    Watchdog,
    drain_socket,
    run_loop,
    socketpair,
)

from c10k.core import READ, WRITE, Loop

__all__ = ["socketpair"]  # a fixture, used by name


@pytest.fixture(params=BACKEND_PARAMS)
def loop(request: pytest.FixtureRequest) -> Iterator[Loop]:
    lp = Loop(request.param)
    assert lp.backend.name == request.param
    yield lp
    lp.close()


def test_core_loop_call_soon_runs_in_order(loop: Loop) -> None:
    order: list[int] = []
    for i in range(5):
        loop.call_soon(order.append, i)
    loop.call_soon(loop.stop)
    run_loop(loop)
    assert order == [0, 1, 2, 3, 4]


def test_core_loop_reposted_callback_waits_for_next_turn(
    loop: Loop, socketpair: SocketPairs
) -> None:
    # A callback that re-posts itself forever must not starve I/O: each turn runs only
    # what was posted before it started, then polls again.
    counter = PollCounter(loop)
    a, b = socketpair()
    spins: list[int] = []

    def spin() -> None:
        spins.append(counter.calls)
        if len(spins) < 1000:  # bounded, so a starving loop fails instead of hanging
            loop.call_soon(spin)

    def on_read(_events: int) -> None:
        drain_socket(a)
        loop.stop()

    loop.add_fd(a.fileno(), READ, on_read)
    loop.call_soon(spin)
    b.send(b"x")
    run_loop(loop)
    # One run of spin per poll call, and the ready fd was dispatched while spin kept
    # re-posting itself.
    assert 1 <= len(spins) < 1000
    assert spins == sorted(set(spins))  # never twice in the same turn
    # While callbacks are pending the loop polls without blocking.
    assert all(t == 0 for t in counter.timeouts[1:])


def test_core_loop_stop_before_run_returns(loop: Loop) -> None:
    # stop() is documented thread-safe: a stop() that lands before run() has started
    # (a server thread still starting up) must not be lost.
    loop.stop()
    run_loop(loop, seconds=5.0)


def test_core_loop_call_later_fires(loop: Loop) -> None:
    fired: list[str] = []
    loop.call_later(0.02, fired.append, "b")
    loop.call_later(0.01, fired.append, "a")

    def done() -> None:
        fired.append("c")
        loop.stop()

    loop.call_later(0.03, done)
    run_loop(loop)
    assert fired == ["a", "b", "c"]


def test_core_loop_cancelled_timer_does_not_fire(loop: Loop) -> None:
    fired: list[str] = []
    h = loop.call_later(0.01, fired.append, "cancelled")
    loop.call_later(0.02, loop.stop)
    h.cancel()
    run_loop(loop)
    assert fired == []


def test_core_loop_timer_sets_poll_timeout(loop: Loop) -> None:
    # With only a timer pending the loop blocks in poll until it is due (not 0, not None).
    counter = PollCounter(loop)
    loop.call_later(0.05, loop.stop)
    run_loop(loop)
    assert counter.timeouts, "poll was never called"
    assert counter.timeouts[0] is not None
    assert counter.timeouts[0] > 0
    assert counter.calls < 50  # a few polls, not a spin until the timer is due


def test_core_loop_call_soon_threadsafe_wakes_blocked_poll(loop: Loop) -> None:
    counter = PollCounter(loop)
    ran_in: list[threading.Thread] = []

    def cb() -> None:
        ran_in.append(threading.current_thread())
        loop.stop()

    def other_thread() -> None:
        # Wait until the loop has gone to sleep in poll(None), then post.
        counter.in_poll.wait(10)
        loop.call_soon_threadsafe(cb)

    t = threading.Thread(target=other_thread)
    with Watchdog(loop, 10.0) as dog:
        t.start()
        try:
            loop.run()
        finally:
            t.join()
    assert not dog.fired, "call_soon_threadsafe did not wake the loop"
    assert counter.timeouts[0] is None  # it really was an unbounded wait
    assert ran_in == [threading.main_thread()]


def test_core_loop_exception_in_fd_callback_logged_loop_continues(
    loop: Loop, socketpair: SocketPairs, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = socketpair()
    c, d = socketpair()
    calls: list[str] = []

    def bad(_events: int) -> None:
        calls.append("bad")
        loop.remove_fd(a.fileno())
        raise RuntimeError("boom in fd callback")

    def good(_events: int) -> None:
        calls.append("good")
        drain_socket(c)
        loop.stop()

    loop.add_fd(a.fileno(), READ, bad)
    b.send(b"x")
    # The second fd becomes ready only after the failing callback ran: proof the loop
    # went on to another turn.
    loop.call_later(0.01, d.send, b"y")
    loop.add_fd(c.fileno(), READ, good)
    with caplog.at_level(logging.ERROR, logger="c10k.loop"):
        run_loop(loop)
    assert calls == ["bad", "good"]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert f"fd {a.fileno()}" in errors[0].getMessage()
    assert errors[0].exc_info is not None
    assert "boom" in str(errors[0].exc_info[1])


def test_core_loop_exception_in_posted_callback_logged(
    loop: Loop, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    def bad() -> None:
        raise ValueError("boom in callback")

    loop.call_soon(bad)
    loop.call_later(0.001, lambda: (ran.append("timer"), loop.stop()))
    loop.call_later(0.0, bad)
    with caplog.at_level(logging.ERROR, logger="c10k.loop"):
        run_loop(loop)
    assert ran == ["timer"]
    assert sum("boom in callback" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) == 2


def test_core_loop_keyboardinterrupt_not_swallowed(loop: Loop) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    loop.call_soon(interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_loop(loop)


def test_core_loop_add_fd_rolls_back_when_register_fails(
    loop: Loop, socketpair: SocketPairs, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, _b = socketpair()
    fd = a.fileno()
    before = len(loop)

    def failing_register(fd: int, events: int) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(loop.backend, "register", failing_register)
    with pytest.raises(OSError, match="not permitted"):
        loop.add_fd(fd, READ, lambda ev: None)
    assert not loop.watching(fd)
    assert len(loop) == before
    monkeypatch.undo()
    loop.add_fd(fd, WRITE, lambda ev: None)  # not "already watched"
    assert loop.watching(fd)
    loop.remove_fd(fd)
    loop.remove_fd(fd)  # documented safe for an fd that is not watched


def test_core_loop_add_fd_twice_raises(loop: Loop, socketpair: SocketPairs) -> None:
    a, _b = socketpair()
    loop.add_fd(a.fileno(), READ, lambda ev: None)
    with pytest.raises(KeyError):
        loop.add_fd(a.fileno(), READ, lambda ev: None)
    loop.remove_fd(a.fileno())


def test_core_loop_fd_callback_gets_events_and_modify(loop: Loop, socketpair: SocketPairs) -> None:
    a, _b = socketpair()
    seen: list[int] = []

    def cb(events: int) -> None:
        seen.append(events)
        loop.remove_fd(a.fileno())
        loop.stop()

    loop.add_fd(a.fileno(), READ, cb)
    loop.modify_fd(a.fileno(), WRITE)
    run_loop(loop)
    assert len(seen) == 1
    assert seen[0] & WRITE


@pytest.fixture(params=BACKEND_PARAMS)
def backend_name(request: pytest.FixtureRequest) -> str:
    # For the signal tests, which must set up state before their Loop exists.
    name: str = request.param
    return name


@pytest.fixture
def restore_sigusr1() -> Iterator[None]:
    old_handler = signal.getsignal(signal.SIGUSR1)
    yield
    signal.signal(signal.SIGUSR1, old_handler)


def _current_wakeup_fd() -> int:
    fd = signal.set_wakeup_fd(-1)
    signal.set_wakeup_fd(fd)
    return fd


def test_core_loop_signal_handler_runs_in_loop_and_close_restores(
    backend_name: str, restore_sigusr1: None
) -> None:
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
    # A pre-existing wakeup fd (as asyncio or another loop would have set): close() must
    # put exactly this one back.
    prev_r, prev_w = socket.socketpair()
    prev_w.setblocking(False)
    prev_old = signal.set_wakeup_fd(prev_w.fileno())
    loop = Loop(backend_name)
    try:
        counter = PollCounter(loop)
        got: list[tuple[int, threading.Thread]] = []

        def on_usr1(signum: int) -> None:
            got.append((signum, threading.current_thread()))
            loop.stop()

        loop.add_signal_handler(signal.SIGUSR1, on_usr1)
        assert _current_wakeup_fd() == loop._wakeup.wsock.fileno()

        def sender() -> None:
            counter.in_poll.wait(10)  # the loop sleeps in poll(None)...
            os.kill(os.getpid(), signal.SIGUSR1)  # ...and only the wakeup fd can end it

        t = threading.Thread(target=sender)
        with Watchdog(loop, 10.0) as dog:
            t.start()
            try:
                loop.run()
            finally:
                t.join()
        assert not dog.fired, "the signal did not wake the loop"
        assert got == [(signal.SIGUSR1, threading.main_thread())]
        assert counter.timeouts[0] is None
    finally:
        loop.close()
        try:
            assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL
            assert _current_wakeup_fd() == prev_w.fileno()
        finally:
            signal.set_wakeup_fd(prev_old)
            prev_r.close()
            prev_w.close()


def test_core_loop_close_restores_previous_python_handler(backend_name: str) -> None:
    # SIGINT's previous disposition is Python's default_int_handler, not SIG_DFL: after
    # close(), Ctrl-C must raise KeyboardInterrupt again rather than kill the process.
    old = signal.getsignal(signal.SIGINT)
    loop = Loop(backend_name)
    try:
        loop.add_signal_handler(signal.SIGINT, lambda signum: None)
        assert signal.getsignal(signal.SIGINT) != old
    finally:
        loop.close()
        restored = signal.getsignal(signal.SIGINT)
        signal.signal(signal.SIGINT, old)
    assert restored == old


def test_core_loop_init_failure_leaks_nothing() -> None:
    # select cannot watch the loop's own wakeup fd if it is numbered >= FD_SETSIZE; the
    # failed constructor must raise the clear error and close what it opened (STYLE 5).
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1100:
        pytest.skip(f"RLIMIT_NOFILE soft limit {soft} < 1100")
    fillers: list[int] = []
    try:
        while True:  # occupy every free number below 1024
            fd = os.open(os.devnull, os.O_RDONLY)
            if fd >= 1024:
                os.close(fd)
                break
            fillers.append(fd)
        before = sorted(os.listdir("/proc/self/fd"), key=int)
        with pytest.raises(ValueError, match="FD_SETSIZE"):
            Loop("select")
        gc.collect()
        after = sorted(os.listdir("/proc/self/fd"), key=int)
    finally:
        for fd in fillers:
            os.close(fd)
    assert after == before
