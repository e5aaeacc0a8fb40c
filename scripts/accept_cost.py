"""Microseconds per accepted connection: the stdlib's accept + ioctl(FIONBIO) (what the
readiness mode does when it keeps peers) against one accept4(SOCK_NONBLOCK) without the
address (``c10k.core.fdio.accept_bare``). N connections are queued first, then accepted in
a tight loop; nothing else is timed.

    flock /tmp/c10k-cpu.lock taskset -c 0 .venv/bin/python scripts/accept_cost.py
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import time

from c10k.core.fdio import accept_bare, bare_accept_available, set_nonblocking


def one_round(bare: bool, n: int) -> float:
    """Seconds per accept over ``n`` queued connections."""
    with socket.socket() as ls:
        ls.bind(("127.0.0.1", 0))
        ls.listen(n + 16)
        clients = [socket.create_connection(ls.getsockname()) for _ in range(n)]
        fd, accept = ls.fileno(), ls._accept  # type: ignore[attr-defined]
        fds: list[int] = []
        t0 = time.perf_counter()
        if bare:
            fds.extend(accept_bare(fd) for _ in range(n))
        else:
            for _ in range(n):
                conn, _addr = accept()
                set_nonblocking(conn)
                fds.append(conn)
        elapsed = time.perf_counter() - t0
        for conn in fds:
            os.close(conn)
        for c in clients:
            c.close()
    return elapsed / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--conns", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    if not bare_accept_available():
        raise SystemExit("accept_cost: libc has no accept4 here")
    for bare, name in ((False, "accept + ioctl(FIONBIO)"), (True, "accept4 without address")):
        runs = [one_round(bare, args.conns) * 1e6 for _ in range(args.rounds)]
        print(f"{name}: median {statistics.median(runs):.2f} us per connection")


if __name__ == "__main__":
    main()
