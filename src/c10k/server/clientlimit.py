"""Per-client limits held across workers: --limit-conn-per-ip and --limit-req (issue 16).

What is limited, and when (nginx ``limit_conn`` and ``limit_req``, keyed by
``$binary_remote_addr``):

- **The key** is the client address the access log sees: the connection's peer, the
  client a PROXY protocol header named (``ProxyLayer.peer``), or the one a trusted
  proxy's ``Forwarded``/``X-Forwarded-For`` names (--trusted-proxy). IPv4 by address (/32),
  IPv6 by its /64 (one subscriber's LAN; an attacker with a /64 has 2**64 addresses),
  IPv4-mapped IPv6 (``::ffff:a.b.c.d``, a dual-stack listener) as the IPv4 address. Unix
  sockets have no client address: not limited. ``client_key`` packs all of it in one u64.
- **--limit-conn-per-ip N** counts a connection from its *first request* until it closes,
  and answers the first request of a connection over N with 503 and closes it. At the
  first request and not at accept, as nginx (which counts at request time, after the
  request head is read): only then is the client known behind a PROXY header (it arrives
  after accept) or a trusted proxy (it is in the request), and only then can the refusal be
  an HTTP answer a client understands rather than a reset. Unlike nginx, whose count ends
  with the request, the connection stays counted while it is open, idle keep-alive
  included: what one client can take from us is file descriptors and memory, and those are
  held by open connections, not by requests in flight (a static answer is over in
  microseconds). A connection that never sends a request is not counted; the header
  timeout (and TCP_DEFER_ACCEPT) bounds those. Behind a trusted proxy that reuses its
  upstream connections for many clients, a connection counts for the client of its latest
  request (re-keyed when that changes).
- **--limit-req RATE --limit-req-burst N** is nginx's leaky bucket with ``nodelay``: per
  key, ``excess`` (in thousandths of a request) drains at RATE; a request adds 1,000; one
  that would bring it above N x 1,000 is answered 429 with ``Retry-After`` (whole seconds
  until it would fit) and changes nothing (nginx: a refused request is not accounted, so
  hammering does not lengthen the wait). Without ``nodelay`` nginx *delays* requests
  within the burst to the rate; a static server has no reason to hold a request it could
  answer, so c10k answers them at once (nginx's ``burst=N nodelay``, what its own docs
  recommend for most sites) and refuses only what exceeds the burst. Burst 0 (nginx's
  default) admits one request per 1/RATE. Units as in nginx: milliseconds, rate x 1,000.

The shared table. SO_REUSEPORT hashes one client's connections over every worker, so
per-worker counters would allow N per worker; the table is one piece of shared memory
(an anonymous MAP_SHARED mapping the supervisor makes before it forks, like the status
board in c10k.server.shared), nginx's ``limit_conn_zone``:

- **Bounded.** A fixed set-associative hash table: ``nbuckets`` buckets of ``WAYS`` (8)
  entries, ``MAX_KEYS`` (65,536) keys (fewer with many worker cells: at most
  ``BUDGET_BYTES``). A key lives only in its bucket (a salted hash, so nobody can aim at
  one bucket); a new key takes an empty entry, else evicts the least recently used entry
  that holds no connection, else the least recently used one. A flood of spoofed keys
  (IPv6 /64s, or forged X-Forwarded-For through a trusted proxy) therefore evicts old keys
  and never grows anything. nginx's zones do the same with an LRU queue per zone.
- **Per-worker columns.** An entry is: key, generation, the bucket's ``excess`` and
  ``last`` (ms), ``used`` (ms, for LRU), and one connection count *per worker cell*
  (the cells of the status board: ``Board.ncells``). The limit is the sum of the columns.
  A worker writes only its own column, so when the supervisor reaps a worker that died
  (SIGKILL, a crash) it zeroes that worker's column in every entry (``forget_cell``) and
  the dead worker's connections stop counting at once: no journal to replay, nothing
  leaked. A worker that exits normally has closed (and released) all of its connections.
- **Eviction never goes negative and never leaks.** Each entry has a generation, bumped
  whenever the entry is given to a key; a Session remembers (bucket, way, generation) of
  the count it holds and releases only if the entry still has that generation, and never
  below zero. An evicted key's columns are zeroed with the bump: its open connections stop
  counting (the eviction cost that key its count, never anyone else's), and their later
  releases find another generation and do nothing, so they cannot take a count from the
  key that now owns the entry. Since an entry holding connections is evicted only when
  all 8 in its bucket do, undercounting needs 8 keys of one bucket with live
  connections, each a real TCP connection.
- **Locks that survive SIGKILL.** Each stripe of buckets (``STRIPES``) has a POSIX
  mutex in the shared memory, process-shared and *robust*: when its owner dies the
  kernel (the robust futex list) hands it to the next locker with EOWNERDEAD, which marks
  it consistent and carries on, so a worker killed mid-update wedges nobody. (A Python
  spin flag in shared memory would stay set forever; a POSIX semaphore too, which is why
  sessioncache.py has to time out.) Where libc has no robust mutexes, ``fcntl`` byte-range
  locks on a memfd do the same (the kernel drops a dead process's locks), at 4x the cost.
  What a death mid-update can leave: the bucket's two words from different requests (a
  slightly more lenient bucket for one key), or an entry half given to a new key (the old
  key's live counts carried by the new key until those connections close, or lost as in
  an eviction). No count goes below zero, none outlives its connections.
- **One process** (``--workers 1``, in-process servers): the same table, one column, no
  lock (one thread drives the Policy at a time; the threads mode holds its lock).

Cost (scripts/clientlimit_cost.py; docs/BENCHMARKS.md "Per-client limits"): a request
under --limit-req of a client already in the table costs about 1.0 us in one process and
1.8 us with workers (the two mutex calls through ctypes; fcntl locks: 2.9 us), against
~10 us for a keep-alive request; counting a connection of a known client and releasing
it at close 2.8 us (4.2 us with workers; a new client, inserted, 5.3 / 6.9 us), against
the tens of us a new connection costs anyway. With only --limit-conn-per-ip, later
requests of a counted connection cost one attribute test and a call: no lock. Without
limits the Session pays one attribute test per request.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import mmap
import os
import socket
import struct
from collections.abc import Callable
from typing import Any

from c10k.http.writers import Response, error_response

WAYS = 8  # entries per bucket: what a lookup scans (one unpack, one tuple.index)
MAX_KEYS = 65536  # nginx: a 1 MB limit_conn zone holds ~16,000 keys, 10 MB ~160,000
BUDGET_BYTES = 16 * 1024 * 1024  # with many worker cells the key count shrinks to fit
STRIPES = 1024  # locks; a bucket uses lock (bucket % STRIPES)
MUTEX_BYTES = 64  # room for a pthread_mutex_t (40 bytes on x86-64 glibc, 48 on arm64)

# One bucket, bytes: keys (8 u64), generations (8 u64), per way (excess, last, used) i64,
# then per way one i32 connection count per worker cell.
_KEYS = struct.Struct(f"{WAYS}Q")
_KEYS_GENS = struct.Struct(f"{2 * WAYS}Q")
_STATE = struct.Struct("3q")
_U64 = struct.Struct("Q")
_I32 = struct.Struct("i")
GENS_AT = 8 * WAYS
STATE_AT = 16 * WAYS
COUNTS_AT = STATE_AT + _STATE.size * WAYS

# Key space: IPv6 /64 prefixes as they are; IPv4 inside ff00::/8 (multicast, never a TCP
# source), and the prefix 0 (::/64, which holds ::1) moved there too, so 0 stays "empty".
V4_KEYS = 0xFFFF_FFFF_0000_0000
V6_ZERO_KEY = 0xFFFF_FFFE_0000_0000
_MULTICAST = 0xFF00_0000_0000_0000
_V4_MAPPED = bytes(10) + b"\xff\xff"

OK, CONN_REFUSED, REQ_REFUSED = range(3)
EOWNERDEAD = getattr(errno, "EOWNERDEAD", 130)


# -- keys ----------------------------------------------------------------------------------
def client_key(host: str | None) -> int | None:
    """The limit key of a client address (see the module comment), None if it has none.

    >>> hex(client_key("10.0.0.1")), client_key("::ffff:10.0.0.1") == client_key("10.0.0.1")
    ('0xffffffff0a000001', True)
    >>> client_key("2001:db8:1:2::5") == client_key("2001:db8:1:2:ffff::9")
    True
    >>> client_key("2001:db8:1:3::5") == client_key("2001:db8:1:2::5"), client_key("unix")
    (False, None)
    """
    if not host:
        return None
    try:
        if ":" not in host:
            return V4_KEYS | int.from_bytes(socket.inet_pton(socket.AF_INET, host), "big")
        raw = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
    except OSError:
        return None
    if raw[:12] == _V4_MAPPED:
        return V4_KEYS | int.from_bytes(raw[12:], "big")
    prefix = int.from_bytes(raw[:8], "big")
    return prefix if 0 < prefix < _MULTICAST else V6_ZERO_KEY


def peer_text(peer: object) -> str | None:
    """The host of a transport's ``peer`` ((host, port, ...) tuple), None for none."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


# -- rates and the bucket --------------------------------------------------------------------
RATE_UNITS = {"s": 1, "m": 60}


def parse_rate(text: str) -> tuple[int, str | None]:
    """``20/s`` or ``600/m`` to nginx's rate unit (requests per second x 1,000).

    >>> parse_rate("20/s"), parse_rate("600/m"), parse_rate("1/m")
    ((20000, None), (10000, None), (16, None))
    >>> parse_rate("20")[1]
    'must be requests per second or minute, e.g. 20/s or 600/m'
    """
    count, slash, unit = text.strip().partition("/")
    unit = unit.strip().lower()
    if unit in ("sec", "second"):
        unit = "s"
    if unit in ("min", "minute"):
        unit = "m"
    if not slash or unit not in RATE_UNITS or not count.strip().isdigit():
        return 0, "must be requests per second or minute, e.g. 20/s or 600/m"
    rate = int(count) * 1000 // RATE_UNITS[unit]  # nginx: rate * 1000 / scale
    if rate <= 0:
        return 0, "must be more than 0 requests (at least 1/m)"
    return rate, None


def leak(excess: int, last: int, now_ms: int, rate: int) -> tuple[int, int]:
    """nginx ``ngx_http_limit_req_lookup``: the bucket after ``now_ms`` with this request
    added, and the milliseconds since ``last`` (a clock read earlier by another worker may
    be a little ahead: no time passed).

    >>> leak(0, 0, 10_000, 20_000)  # idle: the request fits, as nginx (excess 0)
    (0, 10000)
    >>> leak(0, 1000, 1010, 20_000)  # 10 ms after one at 20/s: 0.8 of a request over
    (800, 10)
    """
    ms = now_ms - last
    if ms < 0:
        ms = 0
    e = excess - rate * ms // 1000 + 1000
    return (e if e > 0 else 0), ms


def retry_after(excess: int, burst: int, rate: int) -> int:
    """Whole seconds until a refused request (bucket ``excess`` with it) would fit: at
    least 1 (RFC 9110 delay-seconds; 0 would invite an immediate retry).

    >>> retry_after(1800, 0, 20_000), retry_after(61_000, 0, 1000)
    (1, 61)
    """
    ms = -(-(excess - burst) * 1000 // rate)
    return max(1, -(-ms // 1000))


# -- locks -----------------------------------------------------------------------------------
class RobustLocks:
    """Process-shared robust pthread mutexes in ``mm`` (see the module comment)."""

    def __init__(self, mm: mmap.mmap, count: int) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self._lock = libc.pthread_mutex_lock
        self._unlock = libc.pthread_mutex_unlock
        self._consistent = libc.pthread_mutex_consistent
        for f in (self._lock, self._unlock, self._consistent):
            f.argtypes = [ctypes.c_void_p]
        attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t: 4 bytes on glibc
        if libc.pthread_mutexattr_init(attr) or libc.pthread_mutexattr_setpshared(attr, 1):
            raise OSError("pthread_mutexattr_setpshared failed")
        if libc.pthread_mutexattr_setrobust(attr, 1):  # PTHREAD_MUTEX_ROBUST
            raise OSError("pthread_mutexattr_setrobust failed")
        self._keep = ctypes.c_char.from_buffer(mm)  # the mapping outlives this object
        self.base = ctypes.addressof(self._keep)
        init = libc.pthread_mutex_init
        init.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        for i in range(count):
            if init(self.base + i * MUTEX_BYTES, attr):
                raise OSError("pthread_mutex_init failed")
        self.recovered = 0  # locks taken over from a dead owner, in this process

    def acquire(self, stripe: int) -> None:
        addr = self.base + stripe * MUTEX_BYTES
        r = self._lock(addr)
        if r:
            if r != EOWNERDEAD:
                raise OSError(r, f"pthread_mutex_lock: {os.strerror(r)}")
            # Its owner died holding it: the data may be mid-update, which the table
            # tolerates (see the module comment). Take it over.
            self._consistent(addr)
            self.recovered += 1

    def release(self, stripe: int) -> None:
        self._unlock(self.base + stripe * MUTEX_BYTES)


class FcntlLocks:
    """Byte-range locks on a memfd, one byte per stripe: released by the kernel when the
    owner dies. POSIX record locks belong to the process, so they exclude the workers from
    each other; one process's threads are excluded by its own lock (threads mode)."""

    recovered = 0

    def __init__(self) -> None:
        self.fd = os.memfd_create("c10k-limits-locks", os.MFD_CLOEXEC)

    def acquire(self, stripe: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1, stripe)

    def release(self, stripe: int) -> None:
        fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, stripe)


def shared_locks(mm: mmap.mmap, count: int) -> RobustLocks | FcntlLocks:
    try:
        return RobustLocks(mm, count)
    except (OSError, AttributeError):
        return FcntlLocks()


# -- the table ---------------------------------------------------------------------------------
class Table:
    """The shared key table (see the module comment).

    Args:
        cells: connection-count columns: the status board's cells under a supervisor
            (each worker counts in its own), 1 for one process.
        shared: lock across processes (a supervisor's table); False: one process.
        max_keys: entries wanted (rounded down to a power of two of buckets).
    """

    def __init__(self, cells: int = 1, shared: bool = False, max_keys: int = MAX_KEYS) -> None:
        self.cells = cells
        self.bucket_bytes = COUNTS_AT + WAYS * 4 * cells
        self.bucket_bytes += -self.bucket_bytes % 8
        nbuckets = 1
        while nbuckets * 2 * WAYS <= max_keys and nbuckets * 2 * self.bucket_bytes <= BUDGET_BYTES:
            nbuckets *= 2
        self.nbuckets = nbuckets
        self.mask = nbuckets - 1
        self.stripes = min(STRIPES, nbuckets)
        self.stripe_mask = self.stripes - 1
        self.occupied_at = self.stripes * MUTEX_BYTES
        self.evicted_at = self.occupied_at + 8 * self.stripes
        self.base = self.evicted_at + 8 * self.stripes
        self.mm = mmap.mmap(-1, self.base + nbuckets * self.bucket_bytes)  # MAP_SHARED
        # None: one process, nothing to exclude (one thread drives the Policy at a time).
        self.locks: Any = shared_locks(self.mm, self.stripes) if shared else None
        self.counts = struct.Struct(f"{cells}i")
        self.salt = int.from_bytes(os.urandom(8), "little")  # inherited by every fork

    @property
    def capacity(self) -> int:
        return self.nbuckets * WAYS

    def bucket_of(self, key: int) -> int:
        return hash((key, self.salt)) & self.mask

    # -- the one operation of a request -----------------------------------------------------
    def take(
        self, bucket: int, key: int, now_ms: int, cell: int, conn_limit: int, rate: int, burst: int
    ) -> tuple[int, int, int, int]:
        """Look ``key`` up (inserting it) and apply the limits in one lock hold.

        ``cell`` >= 0 with ``conn_limit``: count one connection in that column unless the
        key holds ``conn_limit`` already. ``rate``: take one request from the leaky bucket
        unless it holds more than ``burst`` (both x 1,000). Returns (way, generation,
        verdict, retry seconds): verdict OK, CONN_REFUSED (nothing changed) or REQ_REFUSED
        (the connection was counted if asked, the bucket left as it was)."""
        mm = self.mm
        base = self.base + bucket * self.bucket_bytes
        stripe = bucket & self.stripe_mask
        locks = self.locks
        if locks is not None:
            locks.acquire(stripe)
        try:
            kg = _KEYS_GENS.unpack_from(mm, base)  # 8 keys, then their 8 generations
            try:
                way = kg.index(key, 0, WAYS)
                gen = kg[WAYS + way]
                if not gen:
                    raise ValueError
            except ValueError:
                way, gen = self._insert(base, stripe, key, kg[WAYS:], now_ms)
            at = base + STATE_AT + way * 24
            excess, last, _ = _STATE.unpack_from(mm, at)
            verdict = OK
            retry = 0
            if conn_limit and cell >= 0:
                cat = base + COUNTS_AT + way * 4 * self.cells
                if sum(self.counts.unpack_from(mm, cat)) >= conn_limit:
                    _STATE.pack_into(mm, at, excess, last, now_ms)
                    return way, gen, CONN_REFUSED, 0
                cat += cell * 4
                _I32.pack_into(mm, cat, _I32.unpack_from(mm, cat)[0] + 1)
            if rate:  # leak(), inlined: this runs per request
                ms = now_ms - last
                if ms < 0:
                    ms = 0
                e = excess - rate * ms // 1000 + 1000
                if e < 0:
                    e = 0
                if e > burst:
                    verdict, retry = REQ_REFUSED, retry_after(e, burst, rate)
                else:
                    excess = e
                    if ms:
                        last = now_ms
            _STATE.pack_into(mm, at, excess, last, now_ms)
            return way, gen, verdict, retry
        finally:
            if locks is not None:
                locks.release(stripe)

    def _insert(
        self, base: int, stripe: int, key: int, gens: tuple[int, ...], now_ms: int
    ) -> tuple[int, int]:
        """Give an entry of the bucket to ``key`` (under its lock): an empty one, else the
        least recently used without connections, else the least recently used."""
        mm = self.mm
        counts = self.counts
        cells4 = 4 * self.cells
        best, best_rank = 0, None
        for w in range(WAYS):
            if not gens[w]:
                best, best_rank = w, None
                break
            used = _STATE.unpack_from(mm, base + STATE_AT + w * 24)[2]
            live = any(counts.unpack_from(mm, base + COUNTS_AT + w * cells4))
            rank = (live, used)
            if best_rank is None or rank < best_rank:
                best, best_rank = w, rank
        gen = gens[best] + 1
        at = (self.evicted_at if gens[best] else self.occupied_at) + 8 * stripe
        _U64.pack_into(mm, at, _U64.unpack_from(mm, at)[0] + 1)
        # Order for a death mid-way (see the module comment): counts and bucket first,
        # then the generation (old holders' releases stop), then the key.
        cat = base + COUNTS_AT + best * cells4
        mm[cat : cat + cells4] = bytes(cells4)
        # A new key's first request leaves the bucket at 0, as nginx's new node does
        # (so burst 0 admits it): -1,000 plus the request's 1,000.
        _STATE.pack_into(mm, base + STATE_AT + best * 24, -1000, now_ms, now_ms)
        _U64.pack_into(mm, base + GENS_AT + best * 8, gen)
        _U64.pack_into(mm, base + best * 8, key)
        return best, gen

    def release(self, bucket: int, way: int, gen: int, cell: int) -> None:
        """A counted connection closed: its column's count goes down by one, if the entry
        is still the one it was counted in, and never below zero."""
        mm = self.mm
        base = self.base + bucket * self.bucket_bytes
        stripe = bucket & self.stripe_mask
        locks = self.locks
        if locks is not None:
            locks.acquire(stripe)
        try:
            if _U64.unpack_from(mm, base + GENS_AT + way * 8)[0] != gen:
                return  # evicted since: its count went with it
            cat = base + COUNTS_AT + (way * self.cells + cell) * 4
            n = _I32.unpack_from(mm, cat)[0]
            if n > 0:
                _I32.pack_into(mm, cat, n - 1)
        finally:
            if locks is not None:
                locks.release(stripe)

    # -- the supervisor's, and the status page's ------------------------------------------
    def forget_cell(self, cell: int) -> None:
        """A worker is gone (reaped): zero its column everywhere. No lock: nobody else
        writes that column but evictors, who write zeros too, and the cell is not given
        to a new worker before this returns."""
        ints = memoryview(self.mm).cast("i")
        stride = self.bucket_bytes // 4
        first = (self.base + COUNTS_AT) // 4 + cell
        zeros = memoryview(bytes(4 * self.nbuckets)).cast("i")
        for w in range(WAYS):
            start = first + w * self.cells
            ints[start : start + stride * self.nbuckets : stride] = zeros
        ints.release()

    def count(self, key: int) -> int:
        """Connections counted for ``key`` (tests, and the curious)."""
        base = self.base + self.bucket_of(key) * self.bucket_bytes
        keys = _KEYS.unpack_from(self.mm, base)
        gens = _KEYS.unpack_from(self.mm, base + GENS_AT)
        for w in range(WAYS):
            if keys[w] == key and gens[w]:
                return sum(self.counts.unpack_from(self.mm, base + COUNTS_AT + w * 4 * self.cells))
        return 0

    def negative(self) -> int:
        """Columns below zero anywhere (tests: must be none)."""
        ints = memoryview(self.mm).cast("i")
        bad = 0
        for b in range(self.nbuckets):
            start = (self.base + b * self.bucket_bytes + COUNTS_AT) // 4
            bad += sum(1 for v in ints[start : start + WAYS * self.cells] if v < 0)
        ints.release()
        return bad

    def stats(self) -> tuple[int, int]:
        """(keys tracked, keys evicted so far), table-wide."""
        n = self.stripes
        occupied = sum(struct.unpack_from(f"{n}Q", self.mm, self.occupied_at))
        evicted = sum(struct.unpack_from(f"{n}Q", self.mm, self.evicted_at))
        return occupied, evicted


# -- one process's face ------------------------------------------------------------------------
NO_CLIENT = (None, 0, 0, 0)  # a Session's climit when its client has no key (Unix socket)


class ClientLimits:
    """What the Policy asks per request; the table may be shared (``share``).

    A Session's ``climit`` is None until its first request, then (key, bucket, way,
    generation) with generation 0 while no connection is counted for it."""

    def __init__(
        self,
        conn_limit: int,
        rate: int,
        burst: int,
        trusted: bool,
        resolve: Callable[[Any, Any], str | None] = lambda session, req: None,
    ) -> None:
        self.conn_limit = conn_limit
        # resolve(session, request): the client's address as the access log sees it;
        # asked at a connection's first request, and at every one behind trusted proxies.
        self.resolve = resolve
        self.rate = rate
        self.burst = burst * 1000
        self.trusted = trusted  # re-key per request: see the module comment
        self.table = Table()
        self.cell = 0
        self.conn_rejected = 0
        self.req_rejected = 0
        self.conn_refusal = error_response(503, close=True)
        self._too_many: dict[int, Response] = {}

    def share(self, table: Table, cell: int) -> None:
        """Count in ``table`` (the supervisor's), column ``cell`` (-1: none was free, so
        this worker counts no connections; the rate limit still holds)."""
        self.table = table
        self.cell = cell

    def check(self, session: Any, req: Any, now: float) -> Response | None:
        """A request (``req``) on ``session``: None to serve it, or the refusal."""
        st = session.climit
        if st is None or self.trusted:
            key = client_key(self.resolve(session, req))
            if key is None:
                session.climit = NO_CLIENT
                return None
            if st is None or st[0] != key:
                if st is not None and st[3]:
                    self.release(st)  # a proxy's connection, now for another client
                st = (key, self.table.bucket_of(key), 0, 0)
        elif st[0] is None:
            return None
        count = self.conn_limit if not st[3] else 0
        if not count and not self.rate:  # counted already, and no rate: nothing to do
            session.climit = st
            return None
        way, gen, verdict, retry = self.table.take(
            st[1], st[0], int(now * 1000), self.cell, count, self.rate, self.burst
        )
        if count and verdict != CONN_REFUSED and self.cell >= 0:
            st = (st[0], st[1], way, gen)
        session.climit = st
        if verdict == OK:
            return None
        if verdict == CONN_REFUSED:
            self.conn_rejected += 1
            return self.conn_refusal
        self.req_rejected += 1
        return self.too_many(retry)

    def too_many(self, seconds: int) -> Response:
        """429 with Retry-After (RFC 6585 section 4), kept alive."""
        resp = self._too_many.get(seconds)
        if resp is None:
            if len(self._too_many) > 64:
                self._too_many.clear()
            resp = error_response(429, [(b"Retry-After", b"%d" % seconds)])
            self._too_many[seconds] = resp
        return resp

    def release(self, st: tuple[Any, int, int, int]) -> None:
        if st[3]:
            self.table.release(st[1], st[2], st[3], self.cell)

    def values(self) -> dict[str, int]:
        keys, evicted = self.table.stats()
        return {
            "limit_conn_rejected": self.conn_rejected,
            "limit_req_rejected": self.req_rejected,
            "limit_keys": keys,
            "limit_evictions": evicted,
        }
