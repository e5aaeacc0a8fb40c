"""What a closed connection leaves behind, in process (found by scripts/soak.py).

The soak's new-connection clients made RSS climb ~4 MiB per minute at ~900 connections/s
with the default timeouts, then level off after the header timeout (60 s); with
``--header-timeout 5`` it was flat at once. A connection is filed in a one-second deadline
bucket at accept (header timeout) and ``Deadlines`` cancels lazily, so the closed
Session stays referenced from its bucket until the bucket comes due: memory grows with
connection rate x header_timeout (~180 bytes each: ~10 MB at 1,000/s, ~200 MB at a
C10K-scale 20,000/s), not with the connections actually open.
"""

from __future__ import annotations

import gc
import socket
import threading
from pathlib import Path

import pytest
from _fault_support import get, wait_until

from c10k.core.timers import SWEEP_MIN_DEAD
from c10k.server import Server, ServerConfig
from c10k.server.session import Session
from helpers import read_response


@pytest.mark.parametrize("backend", ["epoll", "poll"])
def test_faults_closed_connections_are_not_retained(docroot: Path, backend: str) -> None:
    server = Server(ServerConfig(root=str(docroot), port=0, backend=backend))
    thread = threading.Thread(target=server.serve_forever, kwargs={"install_signals": False})
    thread.start()
    try:
        n = 3 * SWEEP_MIN_DEAD
        for _ in range(n):
            with socket.create_connection(server.address, timeout=5) as c:
                c.sendall(get("/small.txt", "Connection: close\r\n"))
                assert read_response(c, bytearray())[0] == 200
        assert wait_until(lambda: not server.nconn)
        gc.collect()
        alive = sum(
            1 for o in gc.get_objects() if isinstance(o, Session) and o.policy is server.policy
        )
        # All n are closed (the header timeout, 60 s, has not passed for any of them).
        # Closing unfiles a connection; dead entries are swept once there are more than
        # SWEEP_MIN_DEAD of them, so what stays referenced is bounded, not n.
        bound = SWEEP_MIN_DEAD + 10
        assert alive <= bound, f"{alive} of {n} closed connections are still referenced"
    finally:
        server.stop()
        thread.join(timeout=10)
    assert not thread.is_alive()
