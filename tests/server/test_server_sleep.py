"""An idle process sleeps: after a whole second with no accept, request or close it arms no
timer (no Date tick, no pressure check), so it is never scheduled until a client does
something; the first response after that carries the current Date.

Counted from /proc (voluntary context switches of every thread of the server), never
timed."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path

import pytest

from helpers import ServerProcess, backend_params, connect, read_response

GET = b"GET /small.txt HTTP/1.1\r\nHost: t\r\n\r\n"


def _switches(pid: int) -> int:
    """Voluntary context switches so far, summed over the process's threads: one per
    wakeup (each ends in a sleep). Involuntary ones are not wakeups: a thread woken once
    and preempted by another process on this 2-core box counted two."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            text = (task / "status").read_text()
        except FileNotFoundError:
            continue  # a thread that just ended
        for line in text.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                total += int(line.split()[1])
    return total


def _age(headers: dict[str, str]) -> float:
    """How old the response's Date is, in seconds (its resolution is one second)."""
    date = email.utils.parsedate_to_datetime(headers["date"]).timestamp()
    return time.time() - date


@pytest.mark.timed
@pytest.mark.parametrize("backend", backend_params())
def test_server_idle_process_sleeps_and_wakes_with_a_fresh_date(
    docroot: Path, backend: str
) -> None:
    srv = ServerProcess(docroot, backend)
    try:
        with connect(srv.port) as held, connect(srv.port) as other:
            buf = bytearray()
            held.sendall(GET)
            assert read_response(held, buf)[0] == 200
            # A whole quiet second, then the tick that finds it: counted from the accept of
            # `other`, which TCP_DEFER_ACCEPT (1 s) holds back while it sends nothing.
            time.sleep(3.5)
            before = _switches(srv.pid)
            time.sleep(2.0)
            slept = _switches(srv.pid) - before
            # Awake, the Date tick and the pressure check wake it twice a second.
            assert slept <= 1, f"{slept} context switches in 2 s of idleness"
            held.sendall(GET)  # on a connection it already had: no accept wakes it
            status, headers, _ = read_response(held, buf)
            assert status == 200
            assert _age(headers) < 1.5, headers["date"]
            other.sendall(GET)  # awake now: served as usual, on its other connection
            status, headers, _ = read_response(other, bytearray())
            assert status == 200
            assert _age(headers) < 1.5, headers["date"]
    finally:
        code, _, err = srv.stop()
    assert code == 0, err[-2000:]
    assert "Traceback" not in err, err[-4000:]
