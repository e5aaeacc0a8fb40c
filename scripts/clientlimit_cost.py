#!/usr/bin/env python3
"""What the per-client limits cost (c10k.server.clientlimit), per request and per connection.

No server and no sockets: the Policy's call into ``ClientLimits.check`` as the Session
makes it, timed over many calls, in one process (no lock) and with the supervisor's shared
table (robust mutexes; and fcntl locks, the fallback), with 12 worker columns (2 workers).
Prints the median of ``--rounds`` rounds of each, in microseconds:

    flock /tmp/c10k-cpu.lock .venv/bin/python scripts/clientlimit_cost.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

from c10k.server.clientlimit import ClientLimits, FcntlLocks, Table

CELLS = 12  # the status board's cells for 2 workers: 4 per slot + 4


class FakeSession:
    climit: Any = None


def _as_given(_session: Any, client: Any) -> Any:
    """The request argument of ``check`` is the client's address here."""
    return client


def table(locks: str) -> Table:
    t = Table(cells=CELLS, shared=locks != "none")
    if locks == "fcntl":
        t.locks = FcntlLocks()
    return t


def per_request(locks: str, n: int) -> float:
    """--limit-req, a client already in the table: one check per request."""
    lim = ClientLimits(0, 1_000_000_000, 1_000_000, False, resolve=_as_given)
    lim.table = table(locks)
    s = FakeSession()
    lim.check(s, "10.0.0.1", 1.0)
    t0 = time.perf_counter()
    for i in range(n):
        lim.check(s, None, 1.0 + i * 1e-6)
    return (time.perf_counter() - t0) / n * 1e6


def per_connection(locks: str, n: int, new_keys: bool) -> float:
    """--limit-conn-per-ip: a connection's first request counted, then released at close
    (a client seen before, or a new client each time: an insert)."""
    lim = ClientLimits(1_000_000, 0, 0, False, resolve=_as_given)
    lim.table = table(locks)
    hosts = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
    if not new_keys:
        hosts = ["10.0.0.1"] * n
    sessions = [FakeSession() for _ in range(n)]
    t0 = time.perf_counter()
    for s, host in zip(sessions, hosts, strict=True):
        lim.check(s, host, 1.0)
        lim.release(s.climit)
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("-n", type=int, default=100_000)
    args = ap.parse_args()
    cases = {
        "request, known client": lambda lk: per_request(lk, args.n),
        "connection, known client": lambda lk: per_connection(lk, args.n // 4, False),
        "connection, new client": lambda lk: per_connection(lk, args.n // 4, True),
    }
    for name, run in cases.items():
        for locks in ("none", "robust", "fcntl"):
            got = [run(locks) for _ in range(args.rounds)]
            print(f"{name:26} locks={locks:6}  median {statistics.median(got):5.2f} us")


if __name__ == "__main__":
    main()
