"""Status records shared by the workers: one fixed-size record per worker in shared memory.

The supervisor makes an anonymous shared mmap (``Board``) before it forks, so every worker
sees the same bytes. Its layout, in native 8-byte signed words:

    header   seq, server start (epoch s), workers exited, 0
    retired  a record: the monotone counters of every worker that has exited
    cells    ``ncells`` records, one per live worker (a slot's serving, starting and
             draining workers each hold one)

    record   seq, generation, pid, slot, started, FIELDS..., responses by status 100..599

Writers. A worker writes only its own cell (``Cell.write``): at each pressure check of its
mode (every 0.1 s while busy, every ``IDLE_INTERVAL`` when quiet; ``Policy.pressure``),
when it renders its status page, and once more when it stops. The supervisor writes the
header, the retired record and cells that no live process owns: it claims a cell for a
worker before the fork (new generation, counters zero) and, once the worker is reaped,
folds its last record into ``retired`` and frees the cell (``retire``), so a counter that
moves from a cell to ``retired`` never counts twice and never drops out.

A reused cell is told apart by its *generation* (the supervisor numbers every worker it
forks): a worker writes only while its cell still carries its own generation, and a
reader skips free cells (generation 0) and cells whose worker has not written yet (pid 0).

Torn reads: each record is a seqlock (the writer makes ``seq`` odd, writes, makes it even;
a reader copies the record and keeps the copy only if ``seq`` was even and unchanged), and
the header's ``seq`` does the same for the supervisor's fold, so a reader sees a worker's
counters either in its cell or in ``retired``, never in both or neither. Python has no
memory fence: on x86-64 (TSO: stores become visible in program order) this is exact; on a
weakly ordered CPU (ARM) a reader may rarely keep a mix of two consecutive writes of one
record. Every word is an aligned 8-byte store, so each value read is one the word really
held, at most one write interval apart; a status page is a sample, and the next one is
right. A reader retries a bounded number of times, since a writer SIGKILLed in the middle
leaves its ``seq`` odd until the supervisor reaps it; it then keeps what it copied.
"""

from __future__ import annotations

import dataclasses
import mmap
import struct
import time
from collections.abc import Mapping

# The counters and gauges of ``Policy.status()`` (its order), less uptime and pid, which
# are derived (from ``started``) or are the record's own.
FIELDS = (
    "active",
    "reading",
    "writing",
    "waiting",
    "accepts",
    "handled",
    "requests",
    "bytes_sent",
    "timeouts",
    "offloaded",
    "shed_level",
    "shed_keepalive",
    "shed_503",
    "shed_accepts",
    "shed_stale",
    "backlog",
    "syn_drop_percent",
    "access_log_dropped",
    "tls_handshakes",
    "tls_failures",
    "tls_plain_http",
    "proxy_headers",
    "proxy_errors",
    "limit_conn_rejected",
    "limit_req_rejected",
    "limit_keys",
    "limit_evictions",
)
# How the gauges of several workers make the server's; every other field is a monotone
# counter, summed and kept for exited workers in ``retired``.
SUMMED_GAUGES = frozenset(("active", "reading", "writing", "waiting"))
MAX_GAUGES = frozenset(("shed_level", "syn_drop_percent", "limit_keys"))  # the worst in force
# Counters of one thing every worker reads (the per-client limits' shared table,
# c10k.server.clientlimit): the largest reading is the latest; never summed or retired.
SHARED_COUNTERS = frozenset(("limit_evictions",))
MIN_GAUGES = frozenset(("backlog",))  # the shortest accept queue bound in force
GAUGES = SUMMED_GAUGES | MAX_GAUGES | MIN_GAUGES
COUNTERS = tuple(f for f in FIELDS if f not in GAUGES and f not in SHARED_COUNTERS)

FIRST_CODE, LAST_CODE = 100, 599  # RFC 9110 section 15; other codes are not counted here
WORD = struct.calcsize("q")
HEADER_WORDS = 4
META = ("seq", "generation", "pid", "slot", "started")
RECORD_WORDS = len(META) + len(FIELDS) + LAST_CODE - FIRST_CODE + 1
RECORD_BYTES = RECORD_WORDS * WORD
_RECORD = struct.Struct(f"{RECORD_WORDS}q")
_HEAD = struct.Struct(f"{len(META) - 1 + len(FIELDS)}q")  # a record after its seq
_CODES_AT = (len(META) + len(FIELDS)) * WORD
# A reader's attempts at a consistent copy; a write takes microseconds, so running out
# means a writer died mid-write (see the module comment).
READ_TRIES = 100


@dataclasses.dataclass
class Record:
    """One worker's (or the retired workers') numbers as read from the board."""

    generation: int
    pid: int
    slot: int
    started: int
    values: dict[str, int]
    by_status: dict[int, int]


def _decode(words: tuple[int, ...]) -> Record:
    n = len(META)
    values = dict(zip(FIELDS, words[n : n + len(FIELDS)], strict=True))
    codes = words[n + len(FIELDS) :]
    by_status = {FIRST_CODE + i: c for i, c in enumerate(codes) if c}
    return Record(words[1], words[2], words[3], words[4], values, by_status)


class Board:
    """The shared mmap: header, retired record and ``ncells`` worker cells."""

    def __init__(self, ncells: int) -> None:
        self.ncells = ncells
        self.mm = mmap.mmap(-1, HEADER_WORDS * WORD + (ncells + 1) * RECORD_BYTES)
        struct.pack_into("q", self.mm, WORD, int(time.time()))

    def offset(self, cell: int) -> int:
        """Byte offset of a cell's record; cell -1 is the retired record."""
        return HEADER_WORDS * WORD + (cell + 1) * RECORD_BYTES

    def word(self, offset: int) -> int:
        value: int = struct.unpack_from("q", self.mm, offset)[0]
        return value

    @property
    def started(self) -> int:
        return self.word(WORD)

    # -- the supervisor's writes -----------------------------------------------------------
    def claim(self, cell: int, generation: int, slot: int) -> None:
        """Give ``cell`` to a worker about to be forked: zeros, its generation and slot."""
        at = self.offset(cell)
        seq = self.word(at)
        struct.pack_into("q", self.mm, at, seq + 1)
        self.mm[at + WORD : at + RECORD_BYTES] = bytes(RECORD_BYTES - WORD)
        struct.pack_into("qqq", self.mm, at + WORD, generation, 0, slot)
        struct.pack_into("q", self.mm, at, seq + 2)

    def retire(self, cell: int, requests: int) -> Record | None:
        """A worker was reaped: fold its cell's last record (``requests`` from its pipe,
        which a killed worker never sent) into ``retired`` and free the cell; ``cell``
        -1: it had none, only ``requests`` is folded. Returns what was folded."""
        final = self.read(cell) if cell >= 0 else None
        retired = self.read(-1)
        assert retired is not None  # the retired record is never "free"
        if final is not None:
            final.values["requests"] = max(requests, final.values["requests"])
            for name in COUNTERS:
                retired.values[name] += final.values[name]
            for code, n in final.by_status.items():
                retired.by_status[code] = retired.by_status.get(code, 0) + n
        else:
            retired.values["requests"] += requests
        seq = self.word(0)
        struct.pack_into("q", self.mm, 0, seq + 1)  # readers retry the whole board
        self.write(-1, retired)
        struct.pack_into("q", self.mm, 2 * WORD, self.word(2 * WORD) + 1)
        if cell >= 0:
            self.claim(cell, 0, 0)
        struct.pack_into("q", self.mm, 0, seq + 2)
        return final

    # -- writes of one record, under its seqlock ----------------------------------------
    def write(self, cell: int, rec: Record) -> None:
        at = self.offset(cell)
        seq = self.word(at)
        struct.pack_into("q", self.mm, at, seq + 1)
        meta = (rec.generation, rec.pid, rec.slot, rec.started)
        _HEAD.pack_into(self.mm, at + WORD, *meta, *(rec.values[f] for f in FIELDS))
        for code, n in rec.by_status.items():
            if FIRST_CODE <= code <= LAST_CODE:
                struct.pack_into("q", self.mm, at + _CODES_AT + (code - FIRST_CODE) * WORD, n)
        struct.pack_into("q", self.mm, at, seq + 2)

    # -- reads -------------------------------------------------------------------------------
    def read(self, cell: int) -> Record | None:
        """A consistent copy of a record (see the module comment); None for a free cell
        or one whose worker has not written yet."""
        at = self.offset(cell)
        words = _RECORD.unpack_from(self.mm, at)
        for _ in range(READ_TRIES):
            if not words[0] & 1 and self.word(at) == words[0]:
                break
            words = _RECORD.unpack_from(self.mm, at)
        if cell >= 0 and (words[1] == 0 or words[2] == 0):
            return None
        return _decode(words)

    def snapshot(self) -> tuple[Record, list[Record], int]:
        """(retired, live workers' records by slot, workers exited), all from one state
        of the supervisor's folds."""
        for _ in range(READ_TRIES):
            seq = self.word(0)
            retired, live, exited = self._read_all()
            if not seq & 1 and self.word(0) == seq:
                break
        live.sort(key=lambda r: (r.slot, r.started, r.pid))
        return retired, live, exited

    def _read_all(self) -> tuple[Record, list[Record], int]:
        live = [r for r in map(self.read, range(self.ncells)) if r is not None]
        retired = self.read(-1)
        assert retired is not None  # the retired record is never "free"
        return retired, live, self.word(2 * WORD)


class Cell:
    """A worker's own record on the board: what ``Policy`` writes through."""

    def __init__(
        self, board: Board, index: int, generation: int, slot: int, pid: int, started: float
    ) -> None:
        self.board = board
        self.index = index
        self.generation = generation
        self.slot = slot
        self.pid = pid
        self.started = int(started)

    def write(self, values: Mapping[str, int], by_status: dict[int, int]) -> None:
        """Publish this worker's numbers, unless the cell is no longer its own."""
        at = self.board.offset(self.index)
        if self.board.word(at + WORD) != self.generation:
            return
        rec = Record(self.generation, self.pid, self.slot, self.started, dict(values), by_status)
        self.board.write(self.index, rec)


def aggregate(retired: Record, live: list[Record]) -> tuple[dict[str, int], dict[int, int]]:
    """The server's numbers: monotone counters of the live workers plus the retired ones,
    gauges of the live workers summed (connections), their maximum (shedding) or their
    minimum (backlog); responses by status likewise summed."""
    totals: dict[str, int] = {}
    for name in FIELDS:
        got = [r.values[name] for r in live]
        if name in MAX_GAUGES or name in SHARED_COUNTERS:
            totals[name] = max(got, default=0)
        elif name in MIN_GAUGES:
            totals[name] = min(got, default=0)
        else:
            totals[name] = sum(got) + (0 if name in SUMMED_GAUGES else retired.values[name])
    by_status = dict(retired.by_status)
    for r in live:
        for code, n in r.by_status.items():
            by_status[code] = by_status.get(code, 0) + n
    return totals, dict(sorted(by_status.items()))
