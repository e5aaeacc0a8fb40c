"""The overload tiers (c10k.server.overload.Tiers) without a server: which tier a reading
of lag, load and waiting connections sets, and the waiting count the tiers read (a
listener on loopback with connections nobody has accepted)."""

from __future__ import annotations

import socket

import pytest

from c10k.server.admission import Admission
from c10k.server.overload import MIN_WAITING, SHED_MIN_READY, Tiers

LIMITS = (0.05, 0.2, 0.5)


def tiers(busy: float = 1.0) -> Tiers:
    t = Tiers(*LIMITS)
    t.busy = busy  # (as tick() would read it: this process kept its core busy)
    return t


@pytest.mark.parametrize(
    ("lag", "waiting", "level"),
    [
        (0.01, 100, 0),
        (0.1, 0, 0),  # lag past tier 1, nobody at the door: keep every connection
        (0.1, MIN_WAITING, 0),  # (taken by the next accept batch)
        (0.1, MIN_WAITING + 1, 1),
        (0.3, 0, 0),  # nor 503s: a closed loop
        (0.3, MIN_WAITING + 1, 2),
        (0.6, 0, 0),
        (0.6, MIN_WAITING + 1, 3),
    ],
)
def test_tiers_need_someone_waiting(lag: float, waiting: int, level: int) -> None:
    assert tiers().update(lag, SHED_MIN_READY, waiting) == level


def test_tiers_a_loop_with_few_clients_or_a_descheduled_process_is_not_overloaded() -> None:
    assert tiers().update(1.0, SHED_MIN_READY - 1, 100) == 0
    assert tiers(busy=0.5).update(1.0, SHED_MIN_READY, 100) == 0


def test_tiers_fall_back_when_the_waiting_are_gone() -> None:
    t = tiers()
    assert t.update(0.1, SHED_MIN_READY, MIN_WAITING + 1) == 1
    assert t.update(0.1, SHED_MIN_READY, 0) == 0
    assert t.level == 0


@pytest.mark.parametrize("max_wait", [0.0, 1.0], ids=["admission-off", "admission-on"])
def test_admission_counts_the_connections_waiting_to_be_accepted(max_wait: float) -> None:
    with socket.create_server(("127.0.0.1", 0), backlog=64) as listener:
        admission = Admission([listener], 64, max_wait)
        admission.check([0], 0.1)
        assert admission.waiting == 0
        clients = [socket.create_connection(listener.getsockname()) for _ in range(5)]
        try:
            admission.check([0], 0.1)
            assert admission.waiting == 5
            admission.check([0], 0.1, held=[3])  # taken by the mode, not served: waiting
            assert admission.waiting == 8
            listener.accept()[0].close()
            admission.check([1], 0.1)
            assert admission.waiting == 4
        finally:
            for c in clients:
                c.close()
