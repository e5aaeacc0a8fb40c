"""Is a file range in memory, and bring it there off the loop: the page's AMPED point.

A ``read()`` or ``sendfile()`` of a page that is not in the page cache waits for the
disk, and on an event loop every client of the loop waits with it (Flash's AMPED design,
nginx ``aio threads``). Transports therefore ask before each sendfile chunk:

``resident(fd, offset, count)`` reads one byte at the range's first and last page with
``preadv2(RWF_NOWAIT)``: the kernel answers EAGAIN instead of waiting for the disk, so the
probe never blocks (about 0.8 us a call here; a 256 KiB sendfile costs ~100 times that); a
miss may start a readahead of a few pages there, without waiting for it. Both
ends in memory is taken as the whole range in memory: the kernel reads ahead sequentially,
so a hole in the middle of a resident range is rare, and the cost of a miss is one loop
wait of one disk read, not a stall per chunk. ``cold`` asks about ``PROBE_SPAN`` (4 MiB)
at a time, the chunks a fast socket takes in a wakeup or two, and its answer holds for
``TRUST_SECONDS`` for every region that shares the ``Residency`` of one file version (the
static handler's cached fd gives one to all its responses). A filesystem that cannot say
(EOPNOTSUPP: FUSE, some network filesystems) counts as cold: every chunk goes through the
pool, the safe side. Where ``RWF_NOWAIT`` does not exist (not Linux) everything counts as
resident, as before.

``warm(fd, offset, count)`` runs in the loop's disk pool: it reads the range into a buffer
of its thread (the data is dropped; the pages stay in the page cache), and the loop then
sends the chunk with ``sendfile`` from memory. One copy of cold data, in a pool thread,
against a disk read that costs milliseconds: nginx reads into a buffer there too.

``COUNTS`` counts what happened in this process (the status page reads it).
``set_enabled(False)`` makes every range resident: file bodies are then read on the loop
whatever it costs (``c10k serve --io-threads 0``: the measurement baseline, and how the
slow-disk test shows what this module is for).
"""

from __future__ import annotations

import errno
import os
import threading
from dataclasses import dataclass
from time import monotonic

from c10k.region import FileRegion

RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)
# One warm read at most: the chunk the transport is about to send, rounded up to this so
# the next chunks of a big cold file come in one pool trip (readahead does the rest).
WARM_MAX = 1 << 20
# How far ahead one resident probe vouches for (its two ends: see the module comment).
PROBE_SPAN = 4 << 20
# How long a probe's answer holds for the other responses of the same file (a
# FileRegion's ``residency``): a hot 1 MiB file sent 3,000 times a second was probed 3,000
# times (two preadv2 calls and ~3 us each). Pages just found in memory and being read
# this often are the last the kernel reclaims; the risk taken is one disk read on the
# loop if they go within this window.
TRUST_SECONDS = 0.1
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
_probe = bytearray(1)  # loop thread only: the probe's byte is never read
_local = threading.local()


@dataclass
class Counts:
    probes: int = 0  # ranges asked about
    cold: int = 0  # ranges found cold and warmed in the pool
    warm_errors: int = 0  # warm reads that failed (the send then reports it)


COUNTS = Counts()
_enabled = True


def set_enabled(enabled: bool) -> None:
    """Offload cold chunks (the default), or send everything from the loop."""
    global _enabled
    _enabled = enabled


def enabled() -> bool:
    return _enabled


def resident(fd: int, offset: int, count: int) -> bool:
    """Would a sendfile of ``count`` bytes at ``offset`` find them in memory? Never
    blocks. An error other than would-block says yes: the send will report it."""
    if RWF_NOWAIT is None or count <= 0 or not _enabled:
        return True
    COUNTS.probes += 1
    try:
        if not os.preadv(fd, [_probe], offset, RWF_NOWAIT):
            return True  # at or past the end: sendfile says the file shrank
        last = offset + count - 1
        if last // _PAGE != offset // _PAGE:
            os.preadv(fd, [_probe], last, RWF_NOWAIT)
    except BlockingIOError:
        return False
    except OSError as exc:
        return exc.errno != errno.EOPNOTSUPP
    return True


def cold(region: FileRegion, count: int) -> bool:
    """Must the next ``count`` bytes of ``region`` be warmed before a loop sends them?
    Not if the pool just read them or a probe found them resident (``region.warm_end``:
    a socket that takes half a chunk per wakeup does not cost a probe per wakeup), nor
    if a probe of another response found them resident less than ``TRUST_SECONDS`` ago
    (``region.residency``)."""
    offset = region.offset
    if offset + count <= region.warm_end:
        return False
    # One probe answers for PROBE_SPAN ahead (the chunks a fast socket takes in one or
    # two wakeups), not just this chunk: a 1 GiB stream asked twice per MiB before.
    end = offset + min(region.count, max(count, PROBE_SPAN))
    seen = region.residency
    if seen is not None:
        now = monotonic()
        if now < seen.until and seen.start <= offset and end <= seen.end:
            region.warm_end = end
            return False
    if not resident(region.fd, offset, end - offset):
        return True
    region.warm_end = end  # not asked about again
    if seen is not None:
        seen.start, seen.end, seen.until = offset, end, now + TRUST_SECONDS
    return False


def warm_region(region: FileRegion) -> tuple[int, int, int]:
    """What to read in the pool for ``region``'s next bytes (fd, offset, count), and note
    them warm: the send that follows reports an error or a short file itself, and a
    filesystem that cannot say (EOPNOTSUPP) must not send us round again."""
    count = min(region.count, WARM_MAX)
    region.warm_end = region.offset + count
    COUNTS.cold += 1
    return region.fd, region.offset, count


def warm(fd: int, offset: int, count: int) -> int:
    """In a pool thread: read ``[offset, offset + count)`` (up to WARM_MAX) so its pages
    are in the page cache. Returns the bytes read (0 at the end of the file)."""
    count = min(count, WARM_MAX)
    buf = getattr(_local, "buf", None)
    if buf is None:
        buf = _local.buf = bytearray(WARM_MAX)
    view = memoryview(buf)
    done = 0
    while done < count:
        n = os.preadv(fd, [view[: count - done]], offset + done)
        if n <= 0:
            break
        done += n
    return done
