"""The per-client limits without a server (c10k.server.clientlimit): keys, rates, the leaky
bucket's arithmetic against nginx's, and the shared table: bounded under a flood of keys,
eviction that never makes a count negative or leaks one, a dead worker's column forgotten,
and locks that a SIGKILLed holder does not wedge."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

from c10k.server.clientlimit import (
    CONN_REFUSED,
    OK,
    REQ_REFUSED,
    V4_KEYS,
    WAYS,
    ClientLimits,
    FcntlLocks,
    RobustLocks,
    Table,
    client_key,
    leak,
    parse_rate,
    retry_after,
)


class FakeSession:
    climit: Any = None


def _as_given(_session: Any, client: Any) -> Any:
    """The request argument of ``check`` is the client's address here."""
    return client


# -- keys and rates ------------------------------------------------------------------------
def test_client_key_v4_v6_and_mapped() -> None:
    assert client_key("127.0.0.2") == V4_KEYS | 0x7F000002
    assert client_key("127.0.0.2") != client_key("127.0.0.3")
    assert client_key("::ffff:127.0.0.2") == client_key("127.0.0.2")  # dual-stack listener
    assert client_key("2001:db8:0:1::1") == client_key("2001:db8:0:1:abcd::2")  # one /64
    assert client_key("2001:db8:0:1::1") != client_key("2001:db8:0:2::1")
    assert client_key("fe80::1%eth0") == client_key("fe80::2")
    assert client_key("::1") not in (0, None)  # ::/64 is a key, 0 stays "empty"
    for bad in (None, "", "unix", "/tmp/x.sock", "1.2.3", "::g"):
        assert client_key(bad) is None


def test_client_key_v4_never_meets_a_v6_prefix() -> None:
    # IPv4 keys live in ff00::/8 (multicast, never a TCP source); v6 prefixes there fold.
    assert client_key("ff02::1") == client_key("::1")
    assert client_key("255.255.255.255") != client_key("ffff:ffff:ffff:ffff::1")


@pytest.mark.parametrize(
    ("text", "rate"),
    [("20/s", 20000), ("600/m", 10000), ("1/m", 16), (" 5 / sec ", 5000), ("30/minute", 500)],
)
def test_parse_rate(text: str, rate: int) -> None:
    assert parse_rate(text) == (rate, None)


@pytest.mark.parametrize("text", ["20", "20/h", "x/s", "-1/s", "0/s", "", "/s", "1.5/s"])
def test_parse_rate_refuses(text: str) -> None:
    rate, problem = parse_rate(text)
    assert rate == 0
    assert problem


# -- the bucket -----------------------------------------------------------------------------
def nginx_lookup(state: dict[str, int], now: int, rate: int, burst: int) -> bool:
    """ngx_http_limit_req_lookup (nodelay), transcribed: a new node starts at excess 0."""
    if not state:
        state.update(excess=0, last=now)
        return True
    ms = now - state["last"]
    if ms < -60000:
        ms = 1
    elif ms < 0:
        ms = 0
    excess = state["excess"] - rate * ms // 1000 + 1000
    excess = max(excess, 0)
    if excess > burst:
        return False
    state["excess"] = excess
    if ms:
        state["last"] = now
    return True


@pytest.mark.parametrize(("rate", "burst"), [(20000, 0), (20000, 5000), (1000, 2000), (16, 0)])
def test_bucket_matches_nginx(rate: int, burst: int) -> None:
    """The same sequence of request times, admitted or refused alike, through the table."""
    lim = ClientLimits(0, rate, burst // 1000, False, resolve=_as_given)
    s = FakeSession()
    ours, theirs = [], []
    ref: dict[str, int] = {}
    t = 1000
    for step in [0, 1, 1, 2, 3, 10, 50, 50, 0, 0, 0, 200, 1, 1, 1, 1, 1, 1, 1000, 0, 5] * 3:
        t += step
        ours.append(lim.check(s, "10.0.0.1" if s.climit is None else None, t / 1000) is None)
        theirs.append(nginx_lookup(ref, t, rate, burst))
    assert ours == theirs
    assert not all(ours)  # the sequence does hit the limit


def test_leak_and_retry_after() -> None:
    assert leak(3000, 0, 500, 2000) == (3000, 500)  # 2/s for 0.5 s: 1 left, +1 added
    assert leak(0, 1000, 990, 2000) == (1000, 0)  # another worker's clock a bit ahead
    assert retry_after(3000, 2000, 1000) == 1  # 1 over at 1/s: 1 s
    assert retry_after(2001, 2000, 1000) == 1  # at least 1
    assert retry_after(4500, 2000, 1000) == 3  # 2.5 s rounds up


def test_burst_then_429_then_recovers() -> None:
    lim = ClientLimits(0, 1000, 2, False, resolve=_as_given)  # 1/s, burst 2: three at once
    s = FakeSession()
    verdicts = [lim.check(s, "10.0.0.1", 5.0) for _ in range(4)]
    assert verdicts[:3] == [None, None, None]
    refused = verdicts[3]
    assert refused is not None
    assert refused.status == 429
    assert b"Retry-After: 1\r\n" in refused.head
    assert lim.check(s, None, 5.5) is not None  # half a second: still full
    assert lim.check(s, None, 6.0) is None  # a whole one: one request leaked out
    assert lim.req_rejected == 2
    other = FakeSession()
    assert lim.check(other, "10.0.0.2", 6.0) is None  # another client has its own


# -- connections -----------------------------------------------------------------------------
def test_conn_limit_counts_from_the_first_request_until_release() -> None:
    lim = ClientLimits(2, 0, 0, False, resolve=_as_given)
    a, b, c = FakeSession(), FakeSession(), FakeSession()
    assert lim.check(a, "10.0.0.1", 1.0) is None
    assert lim.check(a, None, 1.1) is None  # later requests of a counted connection: free
    assert lim.check(b, "10.0.0.1", 1.2) is None
    refused = lim.check(c, "10.0.0.1", 1.3)
    assert refused is not None
    assert refused.status == 503
    assert refused.close
    assert lim.table.count(client_key("10.0.0.1")) == 2  # type: ignore[arg-type]
    lim.release(a.climit)
    lim.release(a.climit)  # (connection_lost once; twice would still not go below 0)
    assert lim.check(FakeSession(), "10.0.0.1", 1.4) is None
    assert lim.conn_rejected == 1
    assert lim.table.negative() == 0


def test_unix_peer_is_not_limited() -> None:
    lim = ClientLimits(1, 1000, 0, False, resolve=_as_given)
    for _ in range(5):
        assert lim.check(FakeSession(), None, 1.0) is None


def test_trusted_proxy_connection_is_rekeyed_per_client() -> None:
    """Behind a trusted proxy a connection counts for the client of its latest request."""
    lim = ClientLimits(1, 0, 0, True, resolve=_as_given)
    proxy = FakeSession()
    assert lim.check(proxy, "10.0.0.1", 1.0) is None
    assert lim.check(proxy, "10.0.0.2", 1.1) is None  # the proxy reused it for another
    assert lim.table.count(client_key("10.0.0.1")) == 0  # type: ignore[arg-type]
    assert lim.table.count(client_key("10.0.0.2")) == 1  # type: ignore[arg-type]
    assert lim.check(FakeSession(), "10.0.0.1", 1.2) is None


# -- the table: bounded, evicting, never negative -------------------------------------------
def test_flood_of_keys_stays_bounded_and_evicts() -> None:
    table = Table(cells=2, max_keys=256)
    assert table.capacity == 256
    size = len(table.mm)
    for i in range(256 * 20):
        key = V4_KEYS | i
        table.take(table.bucket_of(key), key, i, -1, 0, 1000, 0)
    keys, evicted = table.stats()
    assert keys == 256  # every entry in use, no more
    assert evicted == 256 * 19  # each new key beyond them evicted an old one
    assert len(table.mm) == size


def test_eviction_prefers_keys_without_connections_and_never_goes_negative() -> None:
    table = Table(cells=2, max_keys=WAYS)  # one bucket of 8
    assert table.nbuckets == 1
    held = []
    for i in range(WAYS - 1):  # 7 keys hold a connection each (worker cell 1)
        key = V4_KEYS | i
        way, gen, verdict, _ = table.take(0, key, 10 + i, 1, 5, 0, 0)
        assert verdict == OK
        held.append((key, way, gen))
    for i in range(100):  # a flood of fresh keys goes through the one free entry
        key = V4_KEYS | (1000 + i)
        table.take(0, key, 100 + i, -1, 0, 1000, 0)
    for key, _, _ in held:
        assert table.count(key) == 1  # none of the held keys was evicted
    # An eighth key with a connection takes the last flood key's entry; then all 8 hold
    # connections, and the next key evicts the least recently used of them.
    table.take(0, V4_KEYS | 4000, 900, 1, 5, 0, 0)
    assert table.count(V4_KEYS | 4000) == 1
    key = V4_KEYS | 5000
    table.take(0, key, 1000, 1, 5, 0, 0)
    assert table.count(held[0][0]) == 0
    assert table.count(key) == 1
    # The evicted key's connection closes: its release must not touch the new owner.
    table.release(0, held[0][1], held[0][2], 1)
    assert table.count(key) == 1
    assert table.negative() == 0
    for k, w, g in held[1:]:
        table.release(0, w, g, 1)
        table.release(0, w, g, 1)  # twice: still not below zero
        assert table.count(k) == 0
    assert table.negative() == 0


def test_conn_refusal_changes_nothing() -> None:
    table = Table(cells=1, max_keys=64)
    key = V4_KEYS | 7
    b = table.bucket_of(key)
    table.take(b, key, 0, 0, 1, 1000, 5)
    assert table.take(b, key, 1, 0, 1, 1000, 5)[2] == CONN_REFUSED
    assert table.count(key) == 1


def test_req_refusal_still_counts_the_connection() -> None:
    table = Table(cells=1, max_keys=64)
    key = V4_KEYS | 8
    b = table.bucket_of(key)
    assert table.take(b, key, 0, -1, 0, 1000, 0)[2] == OK
    assert table.take(b, key, 1, 0, 5, 1000, 0)[2] == REQ_REFUSED
    assert table.count(key) == 1  # the connection is open, and counted


def _keys_that_fit(table: Table, n: int) -> list[int]:
    """``n`` keys no bucket of which overflows (the salt is random: 300 plain keys in 128
    buckets of 8 overflow one now and then, and an evicted key counts 0)."""
    per_bucket: dict[int, int] = {}
    keys: list[int] = []
    i = 0
    while len(keys) < n:
        key = V4_KEYS | i
        i += 1
        b = table.bucket_of(key)
        if per_bucket.get(b, 0) < WAYS:
            per_bucket[b] = per_bucket.get(b, 0) + 1
            keys.append(key)
    return keys


def test_forget_cell_releases_a_dead_workers_counts() -> None:
    table = Table(cells=3, max_keys=1024)
    keys = _keys_that_fit(table, 300)
    for k in keys:
        for cell in (0, 1, 1, 2):
            table.take(table.bucket_of(k), k, 0, cell, 100, 0, 0)
    assert all(table.count(k) == 4 for k in keys)
    table.forget_cell(1)  # the worker in cell 1 was SIGKILLed and reaped
    assert all(table.count(k) == 2 for k in keys)
    table.forget_cell(0)
    table.forget_cell(2)
    assert all(table.count(k) == 0 for k in keys)
    assert table.negative() == 0


# -- locks across processes -----------------------------------------------------------------
def _killed_holding(table: Table, stripe: int) -> None:
    """Fork a child that takes ``stripe``'s lock and is SIGKILLed holding it."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: lock, say so, wait to be killed
        try:
            table.locks.acquire(stripe)
            os.write(w, b"x")
            time.sleep(60)
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 1) == b"x"
    os.close(r)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


@pytest.mark.parametrize("kind", ["robust", "fcntl"])
def test_lock_of_a_killed_holder_is_not_wedged(kind: str) -> None:
    table = Table(cells=2, shared=True, max_keys=64)
    if kind == "fcntl":
        table.locks = FcntlLocks()
    else:
        assert isinstance(table.locks, RobustLocks)
    _killed_holding(table, 0)
    got = threading.Event()

    def take() -> None:
        table.locks.acquire(0)
        table.locks.release(0)
        got.set()

    threading.Thread(target=take, daemon=True).start()
    assert got.wait(5), "the lock a SIGKILLed process held is still held"
    key = V4_KEYS | 1
    assert table.take(table.bucket_of(key), key, 0, 0, 3, 0, 0)[2] == OK


def test_shared_table_is_one_table_across_fork() -> None:
    table = Table(cells=2, shared=True, max_keys=64)
    key = V4_KEYS | 9
    b = table.bucket_of(key)
    pid = os.fork()
    if pid == 0:
        code = 0 if table.take(b, key, 0, 1, 2, 0, 0)[2] == OK else 1
        os._exit(code)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
    assert table.take(b, key, 1, 0, 2, 0, 0)[2] == OK  # 2 held, one per cell
    assert table.take(b, key, 2, 0, 2, 0, 0)[2] == CONN_REFUSED  # the total, not per cell
    table.forget_cell(1)  # the child is gone
    assert table.take(b, key, 3, 0, 2, 0, 0)[2] == OK
